/**
 * Finding 3 of the adversarial review of issue 10: a request replayed byte for byte after its
 * callee restarted ran again when the restart took less than `startGrace` (then 30 s). Now the
 * default grace is 2 s, and with a `stateDir` the agent keeps an "alive until" mark, so a
 * process restarted at once (SIGKILL, then a new process within a second) refuses the replay
 * `busy` and runs nothing. Real processes; runs are counted from their own logs.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { AGENT_DEFAULTS } from "../../src/agent/options.js";
import { decodeHeader, decodeInner } from "../../src/wire/envelope.js";
import { Sealer } from "../../src/wire/seal.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { spawnReplica, startRelay, type Captured, type Relay, type ReplicaProcess } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

describe("trust: a replay after a quick restart", () => {
  let fx: CertFixture | undefined;
  let relay: Relay | undefined;
  let procs: ReplicaProcess[] = [];
  let alice: Agent | undefined;
  let stateDir: string | undefined;
  afterEach(async () => {
    await alice?.close();
    alice = undefined;
    await Promise.all(procs.map((p) => p.stop("SIGKILL")));
    procs = [];
    relay?.close();
    fx?.cleanup();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it("the default start grace is a few seconds, not half the replay window", () => {
    expect(AGENT_DEFAULTS.startGrace).toBe(2000);
  });

  it("captured frames resent to a process started within a second of a SIGKILL run nothing (stateDir)", async () => {
    fx = tempCerts("alice", "r1");
    fx.addService("summarize");
    stateDir = mkdtempSync(join(tmpdir(), "zmcp-state-"));
    const flags = ["--state-dir", stateDir];
    relay = await startRelay(fx);
    const first = await spawnReplica(fx, "r1", relay.endpoint, 0, flags);
    procs.push(first);
    alice = await connectAgent(fx, "alice", relay.endpoint, { timeout: 20_000 });
    await alice.call(fx.key("r1"), "summarize", { text: "pay once" });
    expect(first.runs).toHaveLength(1);
    const direct = relay.captured.find((m) => m.header.k === "req" && m.from === alice!.publicKey) as Captured;

    const refusals = new Map<string, string>();
    const aliceSealer = new Sealer(fx.certs["alice"]!.secretKey);
    relay.onMessage = (m) => {
      if (m.header.k !== "res" || m.header.to !== alice!.publicKey || !m.header.re) return true;
      const inner = decodeInner(aliceSealer.open(m.from, m.frames[1]), m.frames[0], 1 << 20);
      if (inner.t === "res" && inner.st === "error") refusals.set(Buffer.from(m.header.re).toString("hex"), inner.error!.code);
      return true;
    };

    // A crash and an immediate restart with the same key: well inside the 2 s grace.
    await first.stop("SIGKILL");
    const restarted = await spawnReplica(fx, "r1", relay.endpoint, 0, flags);
    procs.push(restarted);
    await relay.resend(direct, fx.key("r1"));
    const id = Buffer.from(decodeHeader(direct.frames[0]).id).toString("hex");
    await waitFor(() => refusals.has(id), 5000, "the restarted r1's refusal");
    expect(refusals.get(id)).toBe("busy");
    await sleep(200);
    expect(restarted.runs).toHaveLength(0);

    // Honest calls go through (the SDK retries `busy` with a fresh timestamp) once the floor
    // (the previous process's alive mark + the grace, ~3 s after its death) has passed: enough
    // attempts to outlast it on a loaded machine.
    expect(await alice.call(fx.key("r1"), "summarize", { text: "new call" }, { retry: { attempts: 30 } })).toMatchObject({ words: 2 });
    expect(restarted.runs).toHaveLength(1);
  });
});
