/**
 * Attack on the answer cache's intrusive chains (src/agent/idempotency.ts, commit dc2ad03):
 * the new cache is run beside the one it replaced (3227ab9, kept as test/support/answer-cache-3227ab9.ts,
 * which held its four finish orders in ordered maps) under random operation sequences with tight
 * limits, a clock that steps back, deadlines already past, keys finished twice, retries waiting
 * on runs that are then forgotten: every begin's outcome, every answer a retry gets, the sizes,
 * the budget's counts (total and per owner) and the bodies dropped must agree step by step, and
 * once every deadline is long past everything must be gone (no counter left over, nothing held).
 */
import { describe, expect, it } from "vitest";
import { AnswerCache, type Answer } from "../../src/agent/idempotency.js";
import { AnswerCache as OldAnswerCache } from "../support/answer-cache-3227ab9.js";
import { rng } from "../support/random.js";

type Cache = AnswerCache | OldAnswerCache;
const OWNERS = ["a", "b", "c"];

function run(seed: number, steps: number, odd = false): { trace: unknown[]; pending: [Promise<Answer>, Promise<Answer>][]; bodiesDropped: number } {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const limits = { maxEntries: 2 + int(10), maxBytes: 600 + int(4000), maxEntriesPerOwner: 1 + int(6), maxBytesPerOwner: 300 + int(2500) };
  const ttl = 200 + int(2000);
  const late = int(3000);
  const caches: [Cache, Cache] = [new AnswerCache(ttl, limits, late), new OldAnswerCache(ttl, limits, late)];
  const trace: unknown[] = [];
  const pending: [Promise<Answer>, Promise<Answer>][] = [];
  let now = 1_000_000;
  for (let step = 0; step < steps; step++) {
    const op = r();
    if (op < 0.15) now += int(2500);
    else if (op < 0.2) now -= int(3000); // a clock stepping back
    const owner = OWNERS[int(OWNERS.length)]!;
    const key = `${owner}:${int(8)}`;
    if (op < 0.6) {
      let deadline = now + int(4000) - 1500; // sometimes already past
      let sentExp = deadline + int(2000) - 1000;
      // Values no header carries (exp is a finite integer), in case a caller of begin passes them.
      const strange = [NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER, -1];
      if (odd && int(10) === 0) deadline = strange[int(strange.length)]!;
      if (odd && int(10) === 0) sentExp = strange[int(strange.length)]!;
      const got = caches.map((c) => c.begin(key, owner, now, deadline, sentExp));
      const [n, o] = got;
      expect(n!.kind, `seed ${seed} step ${step}`).toBe(o!.kind);
      if (n!.kind === "earlier" && o!.kind === "earlier") pending.push([n!.answer, o!.answer]);
      trace.push(n!.kind === "earlier" ? "earlier" : n);
    } else {
      const size = int(3) === 0 ? int(3000) : int(60);
      const answer: Answer = int(4) === 0 ? { st: "error", error: { code: "x", message: "m".repeat(size) } } : { st: "ok", result: { s: "r".repeat(size), step } };
      const keep = r() < 0.85;
      const bytes = int(2) ? size : int(5000);
      for (const c of caches) c.finish(key, answer, bytes, keep, now);
    }
    const [n, o] = caches;
    const state = (c: Cache) => ({ size: c.size, entries: c.budget.entries, bytes: c.budget.bytes, dropped: c.bodiesDropped, own: OWNERS.map((w) => c.budget.held(w)) });
    expect(state(n!), `seed ${seed} step ${step}`).toEqual(state(o!));
    expect(n!.budget.entries).toBeGreaterThanOrEqual(0);
    expect(n!.budget.bytes).toBeGreaterThanOrEqual(0);
  }
  const bodiesDropped = caches[0].bodiesDropped;
  // Every run finished (as a busy refusal or kept), then the clock far past every deadline: a
  // begin prunes everything, and only that new entry is held.
  for (const c of caches) {
    for (const owner of OWNERS) for (let i = 0; i < 8; i++) c.finish(`${owner}:${i}`, { st: "ok", result: null }, 1, true, now);
    if (odd) continue; // an infinite or NaN exp is kept for ever (forgetAt), by both
    expect(c.begin("z:0", "z", now + 1e9, now + 1e9 + 1).kind).toBe("new");
    expect(c.size).toBe(1);
    expect(c.budget.entries).toBe(1);
    expect(c.budget.bytes).toBe(0);
    for (const owner of OWNERS) expect(c.budget.held(owner)).toEqual({ entries: 0, bytes: 0 });
  }
  return { trace, pending, bodiesDropped };
}

describe("perf7 attack: answer cache chains against the ordered maps they replaced", () => {
  it("agrees with the 3227ab9 cache on 400 random sequences of 400 operations (tight limits, clock steps back)", async () => {
    const kinds: Record<string, number> = {};
    let dropped = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const { trace, pending, bodiesDropped } = run(seed, 400);
      for (const t of trace) kinds[typeof t === "string" ? t : (t as { kind: string }).kind] = (kinds[typeof t === "string" ? t : (t as { kind: string }).kind] ?? 0) + 1;
      dropped += bodiesDropped;
      for (const [n, o] of pending) expect(await n).toEqual(await o);
    }
    // Every path was taken, many times: new runs, retries, refusals, marks of dropped requests, bodies dropped.
    for (const kind of ["new", "earlier", "full", "dropped"]) expect(kinds[kind], kind).toBeGreaterThan(500);
    expect(dropped).toBeGreaterThan(500);
  });

  it("agrees with it too when deadlines and exps are NaN, infinite, negative or huge (200 sequences)", async () => {
    for (let seed = 1001; seed <= 1200; seed++) {
      const { pending } = run(seed, 300, true);
      for (const [n, o] of pending) expect(await n).toEqual(await o);
    }
  });
});

describe("perf7 attack: one far-future exp at the front of the finish order (pre-existing in 3227ab9; fixed by the far heap)", () => {
  // Any authenticated caller may write exp = 2^53 - 1 (HeaderSchema: a nonnegative number; the
  // expiry and deadline steps refuse only the past). Its answer is kept until exp + the late
  // window, and #prune takes only from the front of the finish order: every answer finished
  // after it, anyone's, is then never forgotten by time, only under budget pressure, so the
  // cache sits at its bounds (64 MiB + 100,000 entries by default) for the life of the process.
  // Fixed without a protocol change: answers kept longer than the usual span are forgotten by
  // their own time (idempotency.ts FarHeap), not held in the finish order.
  it("a pinned answer does not hold back the time-based forgetting of everyone else's", () => {
    const c = new AnswerCache(10_000, { maxEntries: 100_000, maxBytes: 1 << 30, maxEntriesPerOwner: 25_000, maxBytesPerOwner: 1 << 28 }, 60_000);
    let now = 1_000_000;
    c.begin("x:0", "x", now, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    c.finish("x:0", { st: "ok", result: 1 }, 1, true, now);
    for (let i = 0; i < 5_000; i++) {
      now += 5;
      const o = `h${i % 10}`;
      c.begin(`${o}:${i}`, o, now, now + 10_000);
      c.finish(`${o}:${i}`, { st: "ok", result: 1 }, 1, true, now);
    }
    now += 200_000; // every honest answer's exp + late window long past
    c.begin("h0:z", "h0", now, now + 10_000);
    expect(c.size).toBe(2); // the pinned one and the new one (it is 5,002)
  });
});
