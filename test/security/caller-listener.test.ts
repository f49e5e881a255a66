/**
 * A caller's own progress listener that throws (or returns a promise that rejects, with a
 * value String() cannot print) must not end the caller's process, on the push path or on the
 * poll path (pushes lost: a stand-in broker swallows them), and the job's result still comes.
 * The caller runs in a child process so that a crash is observed, not suffered.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { ROOT } from "../support/process.js";
import { startRelay, type Relay } from "../support/stand-in-broker.js";

function runChild(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, "dist/test/security/caller-listener-child.js"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  return new Promise((resolve) =>
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

describe("trust: a throwing progress listener does not kill the caller", () => {
  let fx: CertFixture;
  let relay: Relay;
  let bob: Agent | undefined;
  afterEach(async () => {
    await bob?.close();
    relay?.close();
    fx?.cleanup();
  });

  for (const path of ["push", "poll"] as const) {
    it(`${path} path: the process stays alive and the job's result arrives`, async () => {
      fx = tempCerts("alice", "bob");
      relay = await startRelay(fx);
      // On the poll path every pushed event is lost: progress and the end come from polls.
      if (path === "poll") relay.onMessage = (m) => m.header.k !== "evt";
      bob = await connectAgent(fx, "bob", relay.endpoint);
      bob.tool("ticker", { input: z.object({ ticks: z.number() }), job: true }, async ({ ticks }, ctx) => {
        for (let i = 1; i <= ticks; i++) {
          await new Promise((r) => setTimeout(r, 150));
          ctx.progress({ progress: i, total: ticks });
        }
        return { ticks };
      });
      const out = await runChild([relay.endpoint, fx.dir, fx.secretPath("alice"), path]);
      expect(out.code, out.stderr).toBe(0);
      const report = JSON.parse(out.stdout.trim()) as { result: unknown; calls: number; listenerErrors: number };
      expect(report.result).toEqual({ ticks: 4 });
      expect(report.calls).toBeGreaterThanOrEqual(1);
      expect(report.listenerErrors).toBe(2 * report.calls);
    });
  }
});
