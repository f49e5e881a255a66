/**
 * LinkedMap (src/support/linked-map.ts) against a Map on random operations: the same entries in
 * the same order after every step, and iteration that survives deleting the entry it stands on
 * (the loops that prune). Two users of it checked through their own behaviour: RecencyMap's
 * least-recent eviction and the replay guard's pruning in arrival order.
 */
import { describe, expect, it } from "vitest";
import { ReplayGuard } from "../../src/agent/replay.js";
import { LinkedMap } from "../../src/support/linked-map.js";
import { RecencyMap } from "../../src/support/recency-map.js";
import { rng as random } from "../support/random.js";

describe("LinkedMap", () => {
  it("matches a Map on 20,000 random sets, deletes, moves to the end, shifts and clears", () => {
    const next = random(7);
    const linked = new LinkedMap<number, number>();
    const map = new Map<number, number>();
    for (let step = 0; step < 20_000; step++) {
      const key = Math.floor(next() * 200);
      const op = next();
      if (op < 0.45) {
        linked.set(key, step);
        map.set(key, step);
      } else if (op < 0.7) expect(linked.delete(key)).toBe(map.delete(key));
      else if (op < 0.85) {
        const had = map.has(key);
        expect(linked.moveToEnd(key)).toBe(had);
        if (had) {
          const value = map.get(key)!;
          map.delete(key);
          map.set(key, value);
        }
      } else if (op < 0.9995) {
        const first = map.keys().next();
        expect(linked.firstKey()).toBe(first.done ? undefined : first.value);
        const value = first.done ? undefined : map.get(first.value);
        if (!first.done) map.delete(first.value);
        expect(linked.shift()).toBe(value);
      } else {
        linked.clear();
        map.clear();
      }
      expect(linked.size).toBe(map.size);
      expect(linked.get(key)).toBe(map.get(key));
      expect(linked.has(key)).toBe(map.has(key));
      if (step % 97 === 0) expect([...linked]).toEqual([...map]);
    }
    expect([...linked.keys()]).toEqual([...map.keys()]);
    expect([...linked.values()]).toEqual([...map.values()]);
  });

  it("iteration survives deleting the current entry, and others, as a Map's does", () => {
    const linked = new LinkedMap<string, number>();
    for (let i = 0; i < 10; i++) linked.set(`k${i}`, i);
    const seen: number[] = [];
    for (const [key, value] of linked) {
      seen.push(value);
      linked.delete(key); // the entry it stands on
      if (value === 3) linked.delete("k5"); // one ahead: not visited
      if (value === 6) break;
    }
    expect(seen).toEqual([0, 1, 2, 3, 4, 6]);
    expect([...linked.keys()]).toEqual(["k7", "k8", "k9"]);
  });
});

describe("users of LinkedMap", () => {
  it("RecencyMap forgets the least recently used first, a read making an entry recent", () => {
    const map = new RecencyMap<string, number>(3);
    map.set("a", 1).set("b", 2).set("c", 3);
    expect(map.get("a")).toBe(1); // a is now the most recent
    map.set("d", 4); // b goes
    expect([...map.keys()]).toEqual(["c", "a", "d"]);
    map.set("c", 30); // re-set: most recent, value replaced
    map.set("e", 5); // a goes
    expect([...map.entries()]).toEqual([["d", 4], ["c", 30], ["e", 5]]);
    expect(map.peek("d")).toBe(4);
    map.set("f", 6); // peek did not make d recent: d goes
    expect(map.has("d")).toBe(false);
  });

  it("the replay guard forgets ids in arrival order once past their window, and no sooner", () => {
    const window = 10_000;
    const guard = new ReplayGuard(window, 1_000_000, 0);
    const t0 = 1_000_000;
    for (let i = 0; i < 5000; i++) guard.check(`id${i}`, t0 + i, t0 + i);
    expect(guard.size).toBe(5000);
    // Each id is kept until its ts + window + 1: at t0 + 2500 + window + 1 the first 2501 are gone.
    guard.check("late", t0 + 2500 + window + 1, t0 + 2500 + window + 1);
    expect(guard.size).toBe(5000 - 2501 + 1);
    expect(() => guard.check("id2501", t0 + 2501, t0 + 2500 + window + 1)).toThrow(/seen before/);
    expect(() => guard.check("id4999", t0 + 4999, t0 + 2500 + window + 1)).toThrow(/seen before/);
  });
});
