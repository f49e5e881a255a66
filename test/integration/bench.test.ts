/**
 * Smoke test of the built `zmq-bench`: one system with tiny counts, checking the shape of
 * what it writes (never its timings) and that every process it started is gone after.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { BenchResults } from "../../bench/types.js";
import { built } from "../support/process.js";

let out: string | undefined;
let pgid: number | undefined;

afterEach(() => {
  // The bench kills its own children; this is the net under it (its whole process group).
  if (pgid) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone, as it should be
    }
  }
  pgid = undefined;
  if (out) rmSync(out, { recursive: true, force: true });
  out = undefined;
});

function runBench(args: string[], timeoutMs = 25_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [built("bench/cli.js"), ...args], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    pgid = child.pid;
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`zmq-bench did not finish within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("zmq-bench", () => {
  it("the sealed direct floor (zmq-direct-sealed) echoes every call, each echo opened and its size checked", async () => {
    out = mkdtempSync(join(tmpdir(), "zmq-bench-direct-"));
    const { code, stderr } = await runBench([
      "--quick", "--systems", "zmq-direct-sealed", "--calls", "100", "--warmup", "10",
      "--windows", "1,4", "--duration", "200", "--throughput-warmup", "50", "--out", out, "--name", "direct",
    ]);
    expect(code, stderr).toBe(0);
    const r = JSON.parse(readFileSync(join(out, "direct.json"), "utf8")) as BenchResults;
    const s = r.systems[0]!;
    expect(s).toMatchObject({ id: "zmq-direct-sealed", status: "ok" });
    expect(s.latency[0]).toMatchObject({ payload: 256, calls: 100, errors: 0 });
    for (const t of s.throughput) expect(t).toMatchObject({ errors: 0 });
    expect(s.throughput.every((t) => t.perSecond > 0)).toBe(true);
  });

  it("runs one system with tiny counts and writes results of the documented shape", async () => {
    out = mkdtempSync(join(tmpdir(), "zmq-bench-smoke-"));
    const { code, stdout, stderr } = await runBench([
      "--quick", "--systems", "zmq-floor", "--calls", "200", "--warmup", "20",
      "--windows", "1,4", "--duration", "300", "--throughput-warmup", "50", "--out", out, "--name", "smoke",
    ]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("Round-trip latency");
    expect(stdout).toContain("zeromq.js floor");
    expect(stderr).toMatch(/zmq-floor/); // the progress line

    const r = JSON.parse(readFileSync(join(out, "smoke.json"), "utf8")) as BenchResults;
    expect(r.schema).toBe("zmq-bench/1");
    expect(r.machine).toMatchObject({ nproc: expect.any(Number), cpu: expect.any(String), node: process.version });
    expect(r.settings).toMatchObject({ profile: "quick", payloads: [256], windows: [1, 4], latencyCalls: 200 });
    expect(r.systems).toHaveLength(1);
    const s = r.systems[0]!;
    expect(s).toMatchObject({ id: "zmq-floor", status: "ok" });
    expect(s.latency).toHaveLength(1);
    expect(s.latency[0]).toMatchObject({ payload: 256, calls: 200, errors: 0, histogram: expect.any(String) });
    for (const key of ["p50", "p90", "p99", "p999", "max", "mean"] as const) expect(s.latency[0]!.us[key]).toBeGreaterThan(0);
    expect(s.latency[0]!.us.count).toBe(200);
    expect(s.throughput.map((t) => t.window)).toEqual([1, 4]);
    for (const t of s.throughput) {
      expect(t).toMatchObject({ payload: 256, errors: 0 });
      expect(t.perSecond).toBeGreaterThan(0);
      expect(t.cpuMsPer10k).toEqual({ broker: expect.any(Number), responder: expect.any(Number), caller: expect.any(Number) });
    }
    expect(s.broker?.[0]).toMatchObject({ pid: expect.any(Number), rssMiB: expect.any(Number) });
    expect(r.scenarios).toEqual({});
    expect(r.goals.length).toBeGreaterThan(0);
    for (const g of r.goals) expect(g).toMatchObject({ name: expect.any(String), target: expect.any(String), value: expect.any(String) });

    expect(readFileSync(join(out, "smoke.svg"), "utf8")).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    // Every process the bench started is gone: the broker it measured, and its whole group.
    expect(alive(s.broker![0]!.pid)).toBe(false);
    expect(alive(pgid!)).toBe(false);
  });

  it("refuses an unknown system before starting anything", async () => {
    const { code, stderr } = await runBench(["--quick", "--systems", "nope"], 10_000);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/unknown system\(s\) nope; known: .*zmq-floor/);
    expect(existsSync(join("bench", "results", "nope.json"))).toBe(false);
  });
});
