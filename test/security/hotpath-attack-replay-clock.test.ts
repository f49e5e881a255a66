/**
 * Adversarial review of issue 12 (ReplayGuard: an id remembered until ts + window + 1 instead of
 * arrival + 2 windows). Claim: no copy of a message is ever accepted twice, at any arrival time.
 *
 * The receiver's wall clock (Date.now(), what `check` is given) can step back (NTP, VM resume):
 * clock.ts treats this very case for the offsets. With the new lifetime an id is forgotten the
 * moment the window closes on the receiver's clock, so a step back of just a few ms re-opens
 * the window for a copy whose id is gone: a broker that captured the frames replays them and the
 * request runs twice. With the old lifetime (arrival + 2 windows) a step of a full window was needed.
 */
import { describe, expect, it } from "vitest";
import { ReplayGuard } from "../../src/agent/replay.js";

describe("hotpath-attack: ReplayGuard and a receiver clock that steps back", () => {
  it("a copy is refused after the id was pruned and the receiver's clock stepped back 2 ms", () => {
    const T = 1_800_000_000_000;
    const guard = new ReplayGuard(60_000, 1000, 0);
    guard.check("mallory:req-1", T, T + 5, false, "bob"); // the original, stamped T, arrives at T + 5
    // Another message arrives just after the window closed for req-1: req-1's id is pruned.
    guard.check("carol:other", T + 60_001, T + 60_001, false, "carol");
    // The receiver's clock steps back by 2 ms; the broker re-sends its captured copy of req-1.
    expect(() => guard.check("mallory:req-1", T, T + 59_999, false, "bob")).toThrow();
  });
});
