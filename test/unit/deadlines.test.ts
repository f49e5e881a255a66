/**
 * One timer for many deadlines (src/support/deadlines.ts): every entry fires once its time has
 * passed, none fires early or after cancel, a callback that throws or adds entries does not
 * stop the others.
 */
import { describe, expect, it } from "vitest";
import { Deadlines } from "../../src/support/deadlines.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Deadlines", () => {
  it("fires each entry once, not before its time, never a cancelled one", async () => {
    const d = new Deadlines();
    const fired: Array<[number, number]> = [];
    const t0 = performance.now();
    for (const ms of [40, 5, 25, 5, 60]) d.add(t0 + ms, () => fired.push([ms, performance.now() - t0]));
    const cancelled = d.add(t0 + 10, () => fired.push([-1, 0]));
    d.cancel(cancelled);
    for (let i = 0; i < 100 && fired.length < 5; i++) await sleep(10);
    expect(fired.map(([ms]) => ms).sort((a, b) => a - b)).toEqual([5, 5, 25, 40, 60]);
    for (const [ms, at] of fired) expect(at).toBeGreaterThanOrEqual(ms - 1); // setTimeout may round down by under 1 ms
    expect(d.size).toBe(0);
  });

  it("a callback that throws, or adds an earlier entry, does not stop the others", async () => {
    const d = new Deadlines();
    const fired: string[] = [];
    const t0 = performance.now();
    d.add(t0 + 5, () => {
      fired.push("a");
      throw new Error("odd");
    });
    d.add(t0 + 5, () => {
      fired.push("b");
      d.add(performance.now() + 1, () => fired.push("added"));
    });
    d.add(t0 + 30, () => fired.push("c"));
    for (let i = 0; i < 100 && fired.length < 4; i++) await sleep(10);
    expect(fired.sort()).toEqual(["a", "added", "b", "c"]);
  });

  it("cancelling the last entry disarms the timer (nothing keeps firing)", async () => {
    const d = new Deadlines();
    const e = d.add(performance.now() + 10_000, () => {
      throw new Error("must not fire");
    });
    d.cancel(e);
    d.cancel(undefined);
    expect(d.size).toBe(0);
  });
});
