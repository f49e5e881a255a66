/**
 * PendingCalls times calls out with one shared timer instead of one per call: the same
 * outcomes (TimeoutError at each call's own deadline, in order; a refused answer's error
 * instead of the timeout; nothing after an answer), with one timer however many are pending.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TimeoutError, ZmcpError } from "../../src/errors.js";
import { PendingCalls } from "../../src/support/pending.js";

type Outcome = { key: string; ok: boolean; err?: unknown };

function track(pending: PendingCalls<string>, key: string, timeoutMs: number, outcomes: Outcome[], signal?: AbortSignal): void {
  pending.add(key, timeoutMs, signal, `call ${key}`).then(
    () => outcomes.push({ key, ok: true }),
    (err: unknown) => outcomes.push({ key, ok: false, err }),
  );
}

describe("PendingCalls deadlines", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("holds one timer for a thousand pending calls, and none once they are settled", async () => {
    const pending = new PendingCalls<string>();
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 1000; i++) track(pending, `k${i}`, 5_000, outcomes);
    expect(vi.getTimerCount()).toBe(1);
    for (let i = 0; i < 1000; i += 2) pending.resolve(`k${i}`, "answer");
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(outcomes.filter((o) => o.ok)).toHaveLength(500);
    const failed = outcomes.filter((o) => !o.ok);
    expect(failed).toHaveLength(500);
    for (const o of failed) {
      expect(o.err).toBeInstanceOf(TimeoutError);
      expect((o.err as TimeoutError).code).toBe("timeout");
    }
    expect((failed[0]!.err as Error).message).toBe("call k1 got no answer within 5000 ms");
    expect(pending.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("times each call out at its own deadline, earliest first, whatever the order they were added in", async () => {
    const pending = new PendingCalls<string>();
    const outcomes: Outcome[] = [];
    track(pending, "slow", 3_000, outcomes);
    track(pending, "fast", 1_000, outcomes);
    track(pending, "mid", 2_000, outcomes);
    track(pending, "answered", 1_500, outcomes);
    await vi.advanceTimersByTimeAsync(999);
    expect(outcomes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(outcomes.map((o) => o.key)).toEqual(["fast"]);
    pending.resolve("answered", "yes");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(outcomes.map((o) => `${o.key}:${o.ok}`)).toEqual(["fast:false", "answered:true", "mid:false"]);
    // A call added now with a short timeout goes before the one still pending.
    track(pending, "late-fast", 100, outcomes);
    await vi.advanceTimersByTimeAsync(100);
    expect(outcomes.map((o) => o.key)).toEqual(["fast", "answered", "mid", "late-fast"]);
    await vi.advanceTimersByTimeAsync(900);
    expect(outcomes.map((o) => o.key)).toEqual(["fast", "answered", "mid", "late-fast", "slow"]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("fails a call whose answer was refused with that refusal at its deadline, and an aborted one at once", async () => {
    const pending = new PendingCalls<string>();
    const outcomes: Outcome[] = [];
    const controller = new AbortController();
    track(pending, "forged", 1_000, outcomes);
    track(pending, "aborted", 1_000, outcomes, controller.signal);
    pending.refuse("forged", new ZmcpError("bad_seal", "forged answer"));
    controller.abort();
    await vi.advanceTimersByTimeAsync(0);
    expect(outcomes.map((o) => o.key)).toEqual(["aborted"]);
    expect((outcomes[0]!.err as ZmcpError).code).toBe("aborted");
    await vi.advanceTimersByTimeAsync(1_000);
    expect((outcomes[1]!.err as ZmcpError).code).toBe("bad_seal");
    expect(vi.getTimerCount()).toBe(0);
  });
});
