/**
 * The replay guard forgets an id as soon as no copy of its message can pass the time check
 * (ts + window), never before: a copy at any time is refused, by the id while it is held and by
 * the window after.
 */
import { describe, expect, it } from "vitest";
import { ReplayGuard } from "../../src/agent/replay.js";

describe("replay guard lifetime", () => {
  it("refuses a copy at every moment, holding the id only until ts + window", () => {
    const w = 60_000;
    const t0 = 10_000_000;
    const guard = new ReplayGuard(w, 1000, 0);
    for (const skew of [-w, -1000, 0, 1000, w]) {
      const ts = t0 + skew;
      guard.check(`k${skew}`, ts, t0, false, "peer");
      for (const later of [t0, t0 + 1, ts + w - 1, ts + w, ts + w + 1, t0 + 2 * w + 1]) {
        expect(() => guard.check(`k${skew}`, ts, later, false, "peer"), `skew ${skew} at +${later - t0}`).toThrow(/replay|window/);
      }
    }
    // Past every id's ts + window, pruning leaves nothing held (it kept them for twice the window before).
    guard.check("fresh", t0 + 2 * w + 2, t0 + 2 * w + 2, false, "peer");
    expect(guard.size).toBe(1);
    expect(guard.heldBy("peer")).toBe(1);
  });

  it("holds an id stamped now for the window (inclusive), not twice it", () => {
    const guard = new ReplayGuard(60_000, 1000, 0);
    guard.check("a", 1_000_000, 1_000_000, false, "p");
    guard.check("b", 1_060_001, 1_060_001, false, "p"); // a was accepted up to 1_060_000 inclusive
    expect(guard.size).toBe(1);
  });
});
