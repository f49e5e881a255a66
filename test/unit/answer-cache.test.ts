/**
 * The callee's answer cache (src/agent/idempotency.ts): bounded by its budget, it makes room
 * from answers whose request deadline has passed before it refuses `busy`; answers still inside
 * their deadline are never evicted (a retry of them would run the tool again).
 */
import { describe, expect, it } from "vitest";
import { AnswerCache } from "../../src/agent/idempotency.js";

const limits = { maxEntries: 100, maxBytes: 1 << 20, maxEntriesPerOwner: 3, maxBytesPerOwner: 1 << 20 };
const ok = { st: "ok" as const, result: 1 };

describe("answer cache", () => {
  it("a full owner gets room from answers past their request deadline, not from live ones", () => {
    const cache = new AnswerCache(120_000, limits);
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) {
      expect(cache.begin(`a:${i}`, "a", t0, t0 + 1000).kind).toBe("new");
      cache.finish(`a:${i}`, ok, 10, true, t0);
    }
    // Inside every deadline: nothing may be dropped, so the fourth is refused.
    expect(cache.begin("a:3", "a", t0 + 500, t0 + 1500).kind).toBe("full");
    // Past their deadlines (the callers stopped retrying): room is made, and the retry of an
    // answer still kept finds it.
    expect(cache.begin("a:3", "a", t0 + 2000, t0 + 3000).kind).toBe("new");
    expect(cache.size).toBe(1);
  });

  it("another owner's live answers are untouched, and a retry still gets its first answer", async () => {
    const cache = new AnswerCache(120_000, limits);
    const t0 = 2_000_000;
    expect(cache.begin("b:0", "b", t0, t0 + 60_000).kind).toBe("new");
    cache.finish("b:0", { st: "ok", result: "first" }, 10, true, t0);
    for (let i = 0; i < 3; i++) {
      cache.begin(`a:${i}`, "a", t0, t0 + 10);
      cache.finish(`a:${i}`, ok, 10, true, t0);
    }
    expect(cache.begin("a:9", "a", t0 + 1000, t0 + 2000).kind).toBe("new");
    const again = cache.begin("b:0", "b", t0 + 1000, t0 + 60_000);
    expect(again.kind).toBe("earlier");
    if (again.kind === "earlier") expect(await again.answer).toEqual({ st: "ok", result: "first" });
  });
});
