/**
 * The handler's signal made on first read (src/support/lazy-signal.ts): aborted at the
 * deadline whether it was read before or after, aborted when the agent closes, and not made
 * at all when nobody reads it.
 */
import { describe, expect, it } from "vitest";
import { TimeoutError } from "../../src/errors.js";
import { LazySignal } from "../../src/support/lazy-signal.js";

describe("LazySignal", () => {
  it("aborts with the deadline's reason, read before or after the abort", () => {
    const closing = new AbortController();
    const before = new LazySignal(closing.signal);
    const ctx = {
      get signal(): AbortSignal {
        return before.signal;
      },
    };
    const seen = ctx.signal;
    expect(seen.aborted).toBe(false);
    const reason = new TimeoutError("the caller's deadline passed");
    before.abort(reason);
    expect(seen.aborted).toBe(true);
    expect(seen.reason).toBe(reason);
    expect(ctx.signal).toBe(seen); // one signal, however often it is read

    const after = new LazySignal(closing.signal);
    after.abort(reason);
    expect(after.signal.aborted).toBe(true);
    expect((after.signal.reason as TimeoutError).code).toBe("timeout");
  });

  it("aborts when its parent (the agent closing) aborts", () => {
    const closing = new AbortController();
    const lazy = new LazySignal(closing.signal);
    const signal = lazy.signal;
    closing.abort(new Error("closed"));
    expect(signal.aborted).toBe(true);
  });

  it("makes no AbortController while nobody reads the signal", () => {
    const made: unknown[] = [];
    const Original = globalThis.AbortController;
    globalThis.AbortController = class extends Original {
      constructor() {
        super();
        made.push(this);
      }
    };
    try {
      const lazy = new LazySignal(new Original().signal);
      lazy.abort(new Error("deadline"));
      expect(made).toHaveLength(0);
      void lazy.signal;
      expect(made).toHaveLength(1);
    } finally {
      globalThis.AbortController = Original;
    }
  });
});
