/**
 * Adversarial review of b500577/431359a (answers kept msgpack-encoded, job results kept as a
 * copy through msgpack). The kept copy is made by reading the tool's result again, after the
 * read that was counted (and, for a call, sent): a getter that answers small the first time(s)
 * and large after that made the answer cache and the job table hold megabytes counted as a few
 * bytes, and a retry that waited for the first run got a different answer than a later retry.
 */
import { describe, expect, it } from "vitest";
import { AnswerCache, type Answer } from "../../src/agent/idempotency.js";
import { JobTable } from "../../src/agent/jobs.js";
import { encodedSize } from "../../src/wire/envelope.js";

const limits = { maxEntries: 100, maxBytes: 64 << 20, maxEntriesPerOwner: 10, maxBytesPerOwner: 64 << 20 };
const BIG = 1 << 20;

/** A result whose `value` is "x" on its first `small` reads (an encode with ignoreUndefined reads each value twice) and 1 MiB after. */
function growing(small: number): { value: string } {
  let reads = 0;
  return {
    get value() {
      return ++reads <= small ? "x" : "y".repeat(BIG);
    },
  };
}

describe("answer cache: the kept answer is the one counted", () => {
  it("an answer that grows when read again is counted at what is held", () => {
    const cache = new AnswerCache(120_000, limits);
    const t0 = 5_000_000;
    const answer: Answer = { st: "ok", result: growing(2) };
    const bytes = encodedSize(answer); // the responder's read: "x"
    expect(bytes).toBeLessThan(64);
    expect(cache.begin("e:0", "e", t0, t0 + 60_000).kind).toBe("new");
    cache.finish("e:0", answer, bytes, true, t0);
    // What the cache holds for this answer must be counted: at least the kept bytes.
    expect(cache.budget.held("e").bytes).toBeGreaterThanOrEqual(BIG);
    // and the budget returns to nothing once the entry is forgotten
    cache.begin("e:1", "e", t0 + 60_000 + 120_000 + 10, t0 + 500_000);
    expect(cache.budget.held("e").bytes).toBe(0);
  });

  it("a retry waiting for the first run gets the same answer as a retry after it", async () => {
    const cache = new AnswerCache(120_000, limits);
    const t0 = 6_000_000;
    expect(cache.begin("f:0", "f", t0, t0 + 60_000).kind).toBe("new");
    const waiting = cache.begin("f:0", "f", t0 + 1, t0 + 60_000);
    expect(waiting.kind).toBe("earlier");
    let reads = 0;
    const result = {
      get n() {
        return ++reads;
      },
    };
    cache.finish("f:0", { st: "ok", result }, 16, true, t0 + 2);
    const later = cache.begin("f:0", "f", t0 + 3, t0 + 60_000);
    expect(later.kind).toBe("earlier");
    if (waiting.kind !== "earlier" || later.kind !== "earlier") return;
    const a = await waiting.answer;
    const b = await later.answer;
    // Both are what was kept: plain values, the same, not the tool's live object.
    expect(Object.getOwnPropertyDescriptor(a.result as object, "n")?.get).toBeUndefined();
    expect(a).toEqual(b);
  });
});

describe("job table: the kept result is the one counted", () => {
  it("a result that grows when read again is counted at what is held", () => {
    const jobs = new JobTable();
    jobs.create("job-g", "g");
    const result = growing(2);
    const bytes = encodedSize(result); // the handler's #fitting read
    jobs.finish("job-g", { status: "done", result }, bytes);
    const kept = jobs.get("job-g", "g").result as { value: string };
    expect(kept.value.length).toBe(BIG);
    expect(jobs.budget.held("g").bytes).toBeGreaterThanOrEqual(BIG);
  });

  it("a result that cannot be copied is not kept as the live object", () => {
    const jobs = new JobTable();
    jobs.create("job-h", "h");
    let reads = 0;
    const frame = new Uint8Array(BIG);
    const result = {
      view: frame.subarray(0, 8),
      get value() {
        if (++reads > 1) throw new Error("read twice");
        return 1;
      },
    };
    void result.value; // the handler's read
    const state = jobs.finish("job-h", { status: "done", result }, 32);
    // Either an error saying so, or a plain copy: never the object (its getter, the 1 MiB frame).
    expect(state?.result).not.toBe(result);
    expect(state?.status).toBe("error");
    expect(state?.error?.code).toBe("tool_failed");
  });
});
