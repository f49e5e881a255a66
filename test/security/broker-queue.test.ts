/**
 * The broker's queue toward one peer is bounded in bytes: one stalled reader sent 512 KiB
 * messages costs the broker at most its byte budget, not the ~1,000 × message size that a message-count
 * high-water mark alone allowed. Runs the same command as the measurement in the docs.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { DIST } from "../support/process.js";

describe("broker memory under a stalled reader", () => {
  it("512 KiB messages to a peer that never reads: busy early, RSS growth bounded by the byte budget", { timeout: 90_000 }, async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(DIST, "bench", "stalled-reader-rss.js"), "--count", "1200"], { timeout: 80_000 });
    const r = JSON.parse(stdout.trim().split("\n").pop()!) as { busy: number; rssBeforeMiB: number; rssPeakMiB: number; sent: number };
    expect(r.busy).toBeGreaterThan(0);
    // Default budget 256 MiB toward the peer (about 200 MiB measured), plus kernel socket
    // buffers; the old count-only mark let ~540 MiB pile up here.
    expect(r.rssPeakMiB - r.rssBeforeMiB).toBeLessThan(320);
  });
});
