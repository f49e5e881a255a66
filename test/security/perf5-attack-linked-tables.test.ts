/**
 * Adversarial pass on 2e2c53e (LinkedMap behind the replay guard, the answer cache, RecencyMap
 * and the byte-bounded caches). The tables before it (57add7d, copied to perf5-reference/) are
 * the reference: on random sequences of operations with explicit times, tight budgets and
 * clocks that step back, the new ones must give the same verdicts and hold the same entries.
 */
import { describe, expect, it } from "vitest";
import { AnswerCache, type Answer } from "../../src/agent/idempotency.js";
import { ReplayGuard } from "../../src/agent/replay.js";
import { ProtocolError } from "../../src/errors.js";
import { LinkedMap } from "../../src/support/linked-map.js";
import { RecencyMap } from "../../src/support/recency-map.js";
import { encodedSize } from "../../src/wire/envelope.js";
import { AnswerCache as OldAnswerCache } from "./perf5-reference/idempotency-57add7d.js";
import { ReplayGuard as OldReplayGuard } from "./perf5-reference/replay-57add7d.js";
import { rng } from "../support/random.js";

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

describe("LinkedMap against a Map (as a model)", () => {
  it("random set/delete/moveToEnd/shift/clear, and iterations deleting as they go", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const lm = new LinkedMap<number, number>();
      let model = new Map<number, number>();
      for (let step = 0; step < 300; step++) {
        const k = Math.floor(r() * 12);
        const op = Math.floor(r() * 8);
        if (op <= 2) {
          lm.set(k, step);
          model.set(k, step);
        } else if (op === 3) expect(lm.delete(k)).toBe(model.delete(k));
        else if (op === 4) {
          const had = model.has(k);
          expect(lm.moveToEnd(k)).toBe(had);
          if (had) {
            const v = model.get(k)!;
            model.delete(k);
            model.set(k, v);
          }
        } else if (op === 5) {
          const first = model.keys().next();
          expect(lm.firstKey()).toBe(first.done ? undefined : first.value);
          expect(lm.shift()).toBe(first.done ? undefined : model.get(first.value));
          if (!first.done) model.delete(first.value);
        } else if (op === 6 && r() < 0.1) {
          lm.clear();
          model = new Map();
        } else {
          const stop = Math.floor(r() * 20);
          const got: number[] = [];
          const expected: number[] = [];
          const r2 = rng(seed * 1000 + step);
          const r3 = rng(seed * 1000 + step);
          for (const [key] of lm) {
            got.push(key);
            if (r2() < 0.5) lm.delete(key);
            const other = Math.floor(r2() * 12);
            if (r2() < 0.3) lm.delete(other);
            if (got.length >= stop) break;
          }
          for (const [key] of model) {
            expected.push(key);
            if (r3() < 0.5) model.delete(key);
            const other = Math.floor(r3() * 12);
            if (r3() < 0.3) model.delete(other);
            if (expected.length >= stop) break;
          }
          expect(got).toEqual(expected);
        }
        expect(lm.size).toBe(model.size);
        expect([...lm]).toEqual([...model]);
        expect(lm.firstValue()).toBe(model.size ? model.values().next().value : undefined);
      }
    }
  });
});

describe("RecencyMap at capacity evicts exactly the least recently used", () => {
  it("random get/set/peek/delete against a Map-based LRU", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const r = rng(seed);
      const cap = 1 + Math.floor(r() * 5);
      const rm = new RecencyMap<number, number>(cap);
      const model = new Map<number, number>();
      for (let step = 0; step < 300; step++) {
        const k = Math.floor(r() * 10);
        const op = Math.floor(r() * 4);
        if (op === 0) {
          const v = model.get(k);
          if (v !== undefined) {
            model.delete(k);
            model.set(k, v);
          }
          expect(rm.get(k)).toBe(v);
        } else if (op === 1) {
          model.delete(k);
          model.set(k, step);
          if (model.size > cap) model.delete(model.keys().next().value!);
          rm.set(k, step);
        } else if (op === 2) expect(rm.peek(k)).toBe(model.get(k));
        else expect(rm.delete(k)).toBe(model.delete(k));
        expect([...rm.entries()]).toEqual([...model.entries()]);
      }
    }
  });
});

function verdict(f: () => void): string {
  try {
    f();
    return "ok";
  } catch (err) {
    return err instanceof ProtocolError ? err.code : `THREW ${String(err)}`;
  }
}

describe("ReplayGuard: same verdicts as 57add7d", () => {
  it("random ids, senders, timestamps at the window edges, clocks stepping back", () => {
    for (let seed = 1; seed <= 150; seed++) {
      const r = rng(seed);
      const window = pick(r, [5, 10, 100]);
      const maxSeen = pick(r, [3, 8, 50]);
      const a = new ReplayGuard(window, maxSeen, 0, -Infinity, Math.max(1, Math.floor(maxSeen / 2)));
      const b = new OldReplayGuard(window, maxSeen, 0, -Infinity, Math.max(1, Math.floor(maxSeen / 2)));
      let now = 1000;
      for (let step = 0; step < 400; step++) {
        const jump = Math.floor(r() * 7) - 2; // sometimes back
        now += r() < 0.05 ? -window : jump;
        const key = `id${Math.floor(r() * 30)}`;
        const ts = now + pick(r, [0, -window, window, -window - 1, window + 1, -1, 1, Math.floor(r() * 2 * window) - window]);
        const durable = r() < 0.1;
        const sender = r() < 0.8 ? pick(r, ["s1", "s2", "s3"]) : undefined;
        const got = verdict(() => a.check(key, ts, now, durable, sender));
        const want = verdict(() => b.check(key, ts, now, durable, sender));
        expect({ seed, step, got }).toEqual({ seed, step, got: want });
        expect(a.size).toBe(b.size);
        for (const s of ["s1", "s2", "s3"]) expect(a.heldBy(s)).toBe(b.heldBy(s));
      }
    }
  });

  it("an id pruned then re-sent is refused busy, never accepted", () => {
    const g = new ReplayGuard(10, 100, 0);
    g.check("a", 1000, 1000);
    g.check("b", 1011, 1011); // prunes a (forgetAt 1011)
    expect(g.size).toBe(1);
    // the clock steps back: a's copy looks fresh again
    expect(verdict(() => g.check("a", 1000, 1001))).toBe("busy");
    // exactly at the window edge
    expect(verdict(() => g.check("c", 1001, 1011))).toBe("ok");
    expect(verdict(() => g.check("c", 1001, 1011))).toBe("replay");
    expect(verdict(() => g.check("d", 1000, 1011))).toBe("replay"); // now - ts = 11 > 10
  });
});

const ok = (n: number): Answer => ({ st: "ok", result: n }) as Answer;

describe("AnswerCache: same outcomes as 57add7d under pressure", () => {
  it("random begin/finish with tight budgets and explicit times", async () => {
    const kinds: Record<string, number> = {};
    let bodies = 0;
    for (let seed = 1; seed <= 150; seed++) {
      const r = rng(seed);
      const limits = { maxEntries: pick(r, [3, 6, 20]), maxBytes: pick(r, [600, 2000, 1e6]), maxEntriesPerOwner: pick(r, [2, 4, 20]), maxBytesPerOwner: pick(r, [400, 1500, 1e6]) };
      const ttl = pick(r, [10, 50]);
      const late = pick(r, [5, 20]);
      const a = new AnswerCache(ttl, limits, late);
      const b = new OldAnswerCache(ttl, limits, late);
      let now = 10_000;
      const running: string[] = [];
      for (let step = 0; step < 300; step++) {
        now += r() < 0.1 ? Math.floor(r() * 1500) : Math.floor(r() * 4);
        if (running.length > 0 && r() < 0.45) {
          const key = running.splice(Math.floor(r() * running.length), 1)[0]!;
          // At least the answer's encoded size: the cache counts no less than what it keeps (3c61eea).
          const bytes = Math.max(encodedSize(ok(step)), Math.floor(r() * 300));
          const keep = r() < 0.9;
          a.finish(key, ok(step), bytes, keep, now);
          b.finish(key, ok(step), bytes, keep, now);
        } else {
          const owner = pick(r, ["o1", "o2", "o3"]);
          const key = `${owner}:${Math.floor(r() * 15)}`;
          const deadline = now + Math.floor(r() * ttl) - (r() < 0.3 ? ttl : 0); // some copies sent long ago
          const sentExp = deadline;
          const x = a.begin(key, owner, now, deadline, sentExp);
          const y = b.begin(key, owner, now, deadline, sentExp);
          expect({ seed, step, kind: x.kind }).toEqual({ seed, step, kind: y.kind });
          if (x.kind === "earlier" && y.kind === "earlier") {
            const [ax, by] = await Promise.race([Promise.all([x.answer, y.answer]), Promise.resolve(undefined)]).then((v) => v ?? [undefined, undefined]);
            expect(ax).toEqual(by);
          }
          kinds[x.kind] = (kinds[x.kind] ?? 0) + 1;
          if (x.kind === "new") running.push(key);
        }
        expect(a.size).toBe(b.size);
        expect(a.budget.entries).toBe(b.budget.entries);
        expect(a.budget.bytes).toBe(b.budget.bytes);
        expect(a.bodiesDropped).toBe(b.bodiesDropped);
      }
      bodies += a.bodiesDropped;
      // everything finishes, then expires: nothing is left
      for (const key of running) a.finish(key, ok(0), 10, true, now);
      now += 1e9;
      a.begin("x:1", "x", now, now + 1, now + 1);
      a.finish("x:1", ok(1), 1, false, now);
      expect(a.size).toBe(0);
      expect(a.budget.entries).toBe(0);
      expect(a.budget.bytes).toBe(0);
    }
    // every path was taken
    expect(kinds).toEqual({ new: expect.any(Number), earlier: expect.any(Number), full: expect.any(Number), dropped: expect.any(Number) });
    expect(bodies).toBeGreaterThan(0);
  });

  it("never runs a request twice while its answer is kept, however full", () => {
    const c = new AnswerCache(10, { maxEntries: 2, maxBytes: 400, maxEntriesPerOwner: 2, maxBytesPerOwner: 400 }, 10);
    expect(c.begin("o:1", "o", 0, 10, 10).kind).toBe("new");
    expect(c.begin("o:1", "o", 1, 10, 10).kind).toBe("earlier"); // running
    c.finish("o:1", ok(1), 300, true, 2);
    expect(c.begin("o:2", "o", 3, 13, 13).kind).toBe("new");
    c.finish("o:2", ok(2), 300, true, 4); // bytes over: bodies drop on the next begin
    expect(c.begin("o:3", "o", 5, 15, 15).kind).toBe("full"); // entries full, nothing past its deadline
    expect(c.begin("o:1", "o", 5, 10, 10).kind).toBe("earlier");
    // past o:1's deadline: dropped to make room, and its copies are refused, not run
    expect(c.begin("o:3", "o", 11, 21, 21).kind).toBe("new");
    expect(c.begin("o:1", "o", 12, 10, 10).kind).toBe("dropped");
  });
});
