/**
 * The offered-load driver (bench/driver.ts measureRate): every request due in the measured
 * interval is sent, and a stall of the sender shows in the latency taken from the intended
 * send time (coordinated omission counted), not only in the one request that was running.
 */
import { describe, expect, it } from "vitest";
import { measureRate } from "../../bench/driver.js";

describe("measureRate", () => {
  it("sends every due request and counts a 200 ms stall against the requests due during it", async () => {
    let calls = 0;
    const client = {
      call: () => {
        calls++;
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    };
    // Half-way through the measured second the event loop is blocked for 200 ms: the 40
    // requests due meanwhile leave late, and their latency must say so.
    const stall = setTimeout(() => {
      const until = Date.now() + 200;
      while (Date.now() < until) {
        // busy: nothing else runs
      }
    }, 600);
    const r = await measureRate(client, 16, 200, 1000, 100);
    clearTimeout(stall);
    expect(r.offered).toBe(200); // due times in [100 ms, 1100 ms) at 5 ms apart
    expect(r.completed).toBe(200);
    expect(r.errors).toBe(0);
    expect(r.unfinished).toBe(0);
    expect(calls).toBe(220); // the warm-up's 20 as well
    expect(r.corrected.count).toBe(200);
    expect(r.corrected.max).toBeGreaterThanOrEqual(150_000); // µs
    expect(r.corrected.max).toBeGreaterThan(r.service.max);
    expect(typeof r.histograms.corrected).toBe("string");
  });
});
