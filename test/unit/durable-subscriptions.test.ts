/**
 * The broker's durable-subscription directory (src/store/durable-subscriptions.ts) and the
 * subscriber's marks (src/agent/durable-marks.ts), against an in-memory stand-in of the store's
 * three declaration methods (the Redis engine is exercised in test/integration/events-durable).
 */
import { describe, expect, it } from "vitest";
import { DurableMarks, MAX_MARKS } from "../../src/agent/durable-marks.js";
import { DurableSubscriptions, REDECLARE_GRACE_MS } from "../../src/store/durable-subscriptions.js";
import type { DurableStore } from "../../src/store/store.js";

function memoryStore(): { store: DurableStore; rows: Map<string, number> } {
  const rows = new Map<string, number>();
  const store = {
    available: true,
    subscribeDurable: async (key: string, pattern: string, until: number) => void rows.set(`${key} ${pattern}`, until),
    unsubscribeDurable: async (key: string, pattern: string) => void rows.delete(`${key} ${pattern}`),
    durableSubscriptions: async () => [...rows].filter(([, until]) => until >= Date.now()).map(([m]) => m.split(" ") as [string, string]),
  } as unknown as DurableStore;
  return { store, rows };
}

describe("DurableSubscriptions", () => {
  it("records a declaration in the store, matches it by pattern, and ends it when a heartbeat no longer carries it", async () => {
    const { store, rows } = memoryStore();
    const d = new DurableSubscriptions(store, 60_000);
    expect(d.declare("K1", ["news.>", "a.*"])).toBeUndefined();
    expect([...d.match("news.x.y")]).toEqual(["K1"]);
    expect([...d.match("a.b")]).toEqual(["K1"]);
    expect([...d.match("a.b.c")]).toEqual([]);
    await Promise.resolve();
    expect([...rows.keys()].sort()).toEqual(["K1 a.*", "K1 news.>"]);
    d.declare("K1", ["a.*"]);
    await Promise.resolve();
    expect([...d.match("news.x")]).toEqual([]);
    expect([...rows.keys()]).toEqual(["K1 a.*"]);
    d.declare("K1", []);
    expect(d.size).toBe(0);
  });

  it("a broker that never heard the key learns it from the store (restart, another broker), and a lapsed one leaves", async () => {
    const { store, rows } = memoryStore();
    new DurableSubscriptions(store, 60_000).declare("K2", ["t"]);
    await Promise.resolve();
    const other = new DurableSubscriptions(store, 60_000);
    expect([...other.match("t")]).toEqual([]);
    await other.reload();
    expect([...other.match("t")]).toEqual(["K2"]);
    rows.clear(); // the key ended it through another broker
    await other.reload();
    // Held until two re-reads miss it, then dropped on the way.
    expect([...other.match("t", Date.now() + 60_000)]).toEqual([]);
    expect(other.size).toBe(0);
  });

  it("holds a reconnected key's backlog until it declares again, at most the grace", () => {
    const { store } = memoryStore();
    const d = new DurableSubscriptions(store, 60_000);
    d.connecting("K3", 0);
    expect(d.awaitingDeclaration("K3", 1)).toBe(false); // no declaration: nothing to wait for
    d.declare("K3", ["t"]);
    d.connecting("K3", 100);
    expect(d.awaitingDeclaration("K3", 200)).toBe(true);
    expect(d.awaitingDeclaration("K3", 100 + REDECLARE_GRACE_MS)).toBe(false);
    d.connecting("K3", 300);
    d.declare("K3", ["t"]);
    expect(d.awaitingDeclaration("K3", 400)).toBe(false);
  });
});

describe("DurableMarks", () => {
  it("admits only what is newer than the mark: (time, sq), time first; a restarted publisher (sq from 1, later) is newer", () => {
    const m = new DurableMarks();
    expect(m.admit("P", "t", 1000, 5)).toBe(true);
    expect(m.admit("P", "t", 1000, 5)).toBe(false); // the same again
    expect(m.admit("P", "t", 999, 9)).toBe(false); // older
    expect(m.admit("P", "t", 1000, 6)).toBe(true);
    expect(m.admit("P", "t", 2000, 1)).toBe(true); // restarted
    expect(m.admit("P", "t", 1500, 7)).toBe(false); // from before the restart, after it
    expect(m.admit("Q", "t", 1, 1)).toBe(true); // per publisher
    expect(m.admit("P", "u", 1, 1)).toBe(true); // and per topic
    m.note("P", "t", 5000, 3); // accepted live
    expect(m.admit("P", "t", 4000, 9)).toBe(false);
    m.note("P", "t", 10, 1); // an older live one never moves the mark back
    expect(m.admit("P", "t", 4500, 1)).toBe(false);
  });

  it("is bounded", () => {
    const m = new DurableMarks();
    for (let i = 0; i < MAX_MARKS + 10; i++) m.note(`P${i}`, "t", 1, 1);
    expect(m.size).toBe(MAX_MARKS);
  });
});
