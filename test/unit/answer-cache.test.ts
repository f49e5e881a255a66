/**
 * The callee's answer cache (src/agent/idempotency.ts): bounded by its budget, it makes room
 * from answers whose request deadline has passed before it refuses `busy`; answers still inside
 * their deadline are never evicted whole (a retry of them would run the tool again): when bytes
 * are full their bodies are dropped, and a retry gets DROPPED_ANSWER, never a second run.
 */
import { describe, expect, it } from "vitest";
import { AnswerCache, DROPPED_ANSWER, ENTRY_OVERHEAD_BYTES } from "../../src/agent/idempotency.js";
import { JobTable } from "../../src/agent/jobs.js";

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

  it("bytes full for one caller: its oldest bodies are dropped (not the entries, not another caller's), and their retries get DROPPED_ANSWER, not a second run", async () => {
    const cache = new AnswerCache(120_000, { maxEntries: 1000, maxBytes: 1 << 30, maxEntriesPerOwner: 1000, maxBytesPerOwner: 10_000 });
    const t0 = 3_000_000;
    const big = { st: "ok" as const, result: "x".repeat(10) };
    cache.begin("b:0", "b", t0, t0 + 60_000);
    cache.finish("b:0", { st: "ok", result: "b's" }, 9_000, true, t0);
    for (let i = 0; i < 4; i++) {
      expect(cache.begin(`a:${i}`, "a", t0, t0 + 60_000).kind).toBe("new");
      cache.finish(`a:${i}`, big, 3_000 - ENTRY_OVERHEAD_BYTES, true, t0); // 3,000 bytes each counted
    }
    // a holds 12,000 of its 10,000 bytes, all inside their deadlines: the fifth still runs.
    expect(cache.begin("a:4", "a", t0 + 10, t0 + 60_000).kind).toBe("new");
    expect(cache.size).toBe(6);
    const held = cache.budget.held("a").bytes;
    expect(held).toBeLessThanOrEqual(7_500);
    // The oldest of a's answers lost its body; its retry is told so, and runs nothing.
    const retry = cache.begin("a:0", "a", t0 + 20, t0 + 60_000);
    expect(retry.kind).toBe("earlier");
    if (retry.kind === "earlier") expect(await retry.answer).toEqual(DROPPED_ANSWER);
    // The newest kept its body, and b (another caller) kept everything.
    const recent = cache.begin("a:3", "a", t0 + 20, t0 + 60_000);
    if (recent.kind === "earlier") expect(await recent.answer).toEqual(big);
    const other = cache.begin("b:0", "b", t0 + 20, t0 + 60_000);
    if (other.kind === "earlier") expect(await other.answer).toEqual({ st: "ok", result: "b's" });
    expect(DROPPED_ANSWER.error?.code).toBe("tool_failed");
  });

  it("bytes full in total: the oldest bodies of anyone are dropped; entries full still refuses busy", () => {
    const cache = new AnswerCache(120_000, { maxEntries: 6, maxBytes: 8_000, maxEntriesPerOwner: 6, maxBytesPerOwner: 1 << 20 });
    const t0 = 4_000_000;
    for (let i = 0; i < 4; i++) {
      const owner = i % 2 === 0 ? "a" : "b";
      cache.begin(`${owner}:${i}`, owner, t0, t0 + 60_000);
      cache.finish(`${owner}:${i}`, ok, 2_500 - ENTRY_OVERHEAD_BYTES, true, t0);
    }
    expect(cache.begin("c:0", "c", t0 + 1, t0 + 60_000).kind).toBe("new");
    expect(cache.budget.bytes).toBeLessThanOrEqual(6_000);
    cache.finish("c:0", ok, 10, true, t0 + 1);
    expect(cache.begin("c:1", "c", t0 + 2, t0 + 60_000).kind).toBe("new");
    // Six entries held (dropped bodies still count as entries): the seventh is refused.
    expect(cache.begin("c:2", "c", t0 + 3, t0 + 60_000).kind).toBe("full");
  });

  it("an answer is kept until its request's exp plus the late window (when no copy can be accepted any more), however long that is", async () => {
    const cache = new AnswerCache(120_000, limits, 60_000);
    const t0 = 5_000_000;
    cache.begin("a:0", "a", t0, t0 + 10_000, t0 + 10_000); // exp in 10 s: kept until t0 + 70 s
    cache.finish("a:0", ok, 10, true, t0);
    cache.begin("b:0", "b", t0, t0 + 600_000, t0 + 600_000); // exp in 10 min: kept until t0 + 11 min
    cache.finish("b:0", ok, 10, true, t0);
    expect(cache.begin("a:0", "a", t0 + 70_000, t0 + 10_000, t0 + 10_000).kind).toBe("earlier"); // inclusive
    expect(cache.begin("x:0", "x", t0 + 70_002, t0 + 80_000).kind).toBe("new");
    expect(cache.size).toBe(2); // a:0 forgotten, b:0 and x:0 held
    expect(cache.begin("b:0", "b", t0 + 660_000, t0 + 600_000, t0 + 600_000).kind).toBe("earlier");
    cache.finish("x:0", ok, 10, true, t0 + 70_002);
    expect(cache.begin("y:0", "y", t0 + 660_002, t0 + 670_000).kind).toBe("new");
    expect(cache.size).toBe(1); // b:0 gone at its exp + 60 s, x:0 at its own
  });

  it("a request whose answer was dropped after its deadline is refused, not run, if a copy still comes (its deadline now reads later)", () => {
    const cache = new AnswerCache(120_000, { ...limits, maxEntriesPerOwner: 1 }, 60_000);
    const t0 = 8_000_000;
    expect(cache.begin("a:0", "a", t0, t0 + 1000, t0 + 1000).kind).toBe("new");
    cache.finish("a:0", ok, 10, true, t0);
    // Past a:0's deadline, a's next request makes room by dropping a:0 (its exp is remembered).
    expect(cache.begin("a:1", "a", t0 + 2000, t0 + 3000, t0 + 3000).kind).toBe("new");
    cache.finish("a:1", ok, 10, true, t0 + 2000);
    // A copy of a:0 (same exp) read with a later deadline (the caller's clock stepped back): refused.
    expect(cache.begin("a:0", "a", t0 + 2500, t0 + 11_000, t0 + 1000).kind).toBe("dropped");
    // Another caller is not concerned; a's new requests with later exps are not either.
    expect(cache.begin("b:0", "b", t0 + 2500, t0 + 1000, t0 + 1000).kind).toBe("new");
    // After exp + late window the mark is forgotten (the expiry check refuses such copies anyway).
    expect(cache.begin("a:9", "a", t0 + 61_002, t0 + 70_000, t0 + 70_000).kind).not.toBe("dropped");
  });

  it("dropping bodies over several rounds takes the oldest remaining bodies each time, one owner's or anyone's", async () => {
    const cache = new AnswerCache(120_000, { maxEntries: 10_000, maxBytes: 40_000, maxEntriesPerOwner: 10_000, maxBytesPerOwner: 20_000 });
    const t0 = 6_000_000;
    const body = (i: number) => ({ st: "ok" as const, result: i });
    const order: string[] = [];
    for (let i = 0; i < 60; i++) {
      const owner = i % 3 === 0 ? "b" : "a";
      const key = `${owner}:${i}`;
      expect(cache.begin(key, owner, t0 + i, t0 + 60_000).kind).toBe("new");
      cache.finish(key, body(i), 1_000 - ENTRY_OVERHEAD_BYTES, true, t0 + i);
      order.push(key);
      expect(cache.budget.held("a").bytes).toBeLessThanOrEqual(20_000 + 1_000);
      expect(cache.budget.bytes).toBeLessThanOrEqual(40_000 + 1_000);
    }
    // Whose bodies are gone: always a prefix of each owner's answers in finish order.
    for (const owner of ["a", "b"]) {
      const mine = order.filter((k) => k.startsWith(owner));
      let seenKept = false;
      for (const key of mine) {
        const again = cache.begin(key, owner, t0 + 100, t0 + 60_000);
        expect(again.kind).toBe("earlier");
        if (again.kind !== "earlier") continue;
        const dropped = (await again.answer).error?.message === DROPPED_ANSWER.error!.message;
        if (!dropped) seenKept = true;
        else expect(seenKept, `${key} lost its body after a younger one of ${owner} kept its own`).toBe(false);
      }
      expect(seenKept).toBe(true);
    }
    expect(cache.bodiesDropped).toBeGreaterThan(20);
  });

  it("a caller whose answers inside their deadlines fit its share is never refused, at any rate (no sweep rate limit between it and room)", () => {
    const cache = new AnswerCache(120_000, { maxEntries: 100_000, maxBytes: 1 << 30, maxEntriesPerOwner: 1000, maxBytesPerOwner: 1 << 30 }, 60_000);
    const t0 = 7_000_000;
    let refused = 0;
    // 990 answers inside their 1 s deadlines at any moment (one every 1.01 ms): 99% of the share.
    for (let i = 0; i < 20_000; i++) {
      const now = t0 + Math.floor(i * 1.01);
      const begun = cache.begin(`a:${i}`, "a", now, now + 1000);
      if (begun.kind === "full") refused++;
      else cache.finish(`a:${i}`, ok, 10, true, now);
    }
    expect(refused).toBe(0);
    expect(cache.budget.held("a").entries).toBeLessThanOrEqual(1000);
    // Another caller filling the whole cache is held to its share, and a's newest answers stay.
    const again = cache.begin("a:19999", "a", t0 + 20_200, t0 + 21_000);
    expect(again.kind).toBe("earlier");
  });
});

describe("answer cache: what is held is what is counted", () => {
  it("an answer holding a view of a large buffer keeps only its own bytes, and a retry still gets it whole", async () => {
    const cache = new AnswerCache(120_000, limits);
    const t0 = 3_000_000;
    const frame = new Uint8Array(1 << 20).fill(7); // as a received 1 MiB request frame
    const view = frame.subarray(100, 108); // a tool answering with 8 bytes of its argument
    expect(cache.begin("c:0", "c", t0, t0 + 60_000).kind).toBe("new");
    cache.finish("c:0", { st: "ok", result: { head: view, n: 8 } }, 8 + 16, true, t0);
    frame.fill(9); // the frame's memory reused: the kept answer is unaffected
    const again = cache.begin("c:0", "c", t0 + 10, t0 + 60_000);
    expect(again.kind).toBe("earlier");
    const answer = await (again as { answer: Promise<{ st: string; result: { head: Uint8Array; n: number } }> }).answer;
    expect(answer.st).toBe("ok");
    expect(answer.result.n).toBe(8);
    expect([...answer.result.head]).toEqual([7, 7, 7, 7, 7, 7, 7, 7]);
    // Held in a buffer of the answer's encoded size, not in the 1 MiB the view pointed into.
    expect(answer.result.head.buffer.byteLength).toBeLessThan(64);
  });

  it("a finished job's result holding a view of a large buffer keeps only its own bytes for the polls", () => {
    const jobs = new JobTable();
    const frame = new Uint8Array(1 << 20).fill(5);
    jobs.create("job-1", "c");
    jobs.finish("job-1", { status: "done", result: { head: frame.subarray(0, 4) } }, 16);
    frame.fill(6);
    const state = jobs.get("job-1", "c");
    const head = (state.result as { head: Uint8Array }).head;
    expect([...head]).toEqual([5, 5, 5, 5]);
    expect(head.buffer.byteLength).toBeLessThan(64);
  });
});

describe("answer cache: an answer that does not encode a second time", () => {
  it("is kept as the error saying so: the retry is answered, the entry finished and later forgotten", async () => {
    const cache = new AnswerCache(120_000, limits, 1000);
    const t0 = 4_000_000;
    let reads = 0;
    const result = {
      get value() {
        if (++reads > 1) throw new Error("read twice");
        return 1;
      },
    };
    void result.value; // the first read: as the responder's encode did when it sent the answer
    expect(cache.begin("d:0", "d", t0, t0 + 5000).kind).toBe("new");
    cache.finish("d:0", { st: "ok", result }, 16, true, t0);
    const again = cache.begin("d:0", "d", t0 + 10, t0 + 5000);
    expect(again.kind).toBe("earlier");
    const answer = await (again as { answer: Promise<{ st: string; error?: { code: string; message: string } }> }).answer;
    expect(answer.st).toBe("error");
    expect(answer.error?.code).toBe("tool_failed");
    expect(answer.error?.message).toMatch(/could not be kept/);
    // Finished like any other: forgotten once past its time.
    cache.begin("d:1", "d", t0 + 5000 + 1000 + 2, t0 + 20_000);
    expect(cache.size).toBe(1);
  });
});
