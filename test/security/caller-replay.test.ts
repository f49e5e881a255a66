/**
 * A request replayed byte for byte (captured by a stand-in broker, the one party that sees
 * whole frames) does not run again after its callee restarts, nor on a replica started since
 * (agents refuse requests stamped more than `startGrace` before they started; replay.ts).
 * Real replica processes; every run is counted from their own logs.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { decodeHeader, decodeInner } from "../../src/wire/envelope.js";
import { Sealer } from "../../src/wire/seal.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";
import { spawnReplica, startRelay, type Captured, type Relay, type ReplicaProcess } from "../support/stand-in-broker.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Clocks here are one clock: a short grace, so the test need not wait half a window. */
const GRACE = ["--start-grace", "500"];

describe("trust: replayed requests across restarts and replicas", () => {
  let fx: CertFixture;
  let relay: Relay;
  let procs: ReplicaProcess[] = [];
  let alice: Agent | undefined;
  afterEach(async () => {
    await alice?.close();
    await Promise.all(procs.map((p) => p.stop("SIGKILL")));
    procs = [];
    relay?.close();
    fx?.cleanup();
  });

  it("captured frames resent after the callee restarts, and to a second replica, run nothing", async () => {
    fx = tempCerts("alice", "r1", "r2");
    fx.addService("summarize");
    relay = await startRelay(fx);
    const first = await spawnReplica(fx, "r1", relay.endpoint, 0, GRACE);
    procs.push(first);
    await waitFor(() => relay.replicas.get("summarize")?.length === 1, 5000, "r1 announced");
    alice = await connectAgent(fx, "alice", relay.endpoint, { timeout: 50_000 });
    const requestsOf = (): Captured[] => relay.captured.filter((m) => m.header.k === "req" && m.from === alice!.publicKey);

    // Two genuine calls, each run once: to the service, and to r1 by its own key.
    await alice.call("svc:summarize", "summarize", { text: "pay once" });
    await alice.call(fx.key("r1"), "summarize", { text: "pay once, direct" });
    const [viaService, direct] = requestsOf() as [Captured, Captured];
    expect(viaService.header.to).toBe("svc:summarize");
    expect(direct.header.to).toBe(fx.key("r1"));
    expect(first.runs).toHaveLength(2);

    // Refusals come back to alice (the stand-in broker passes them on): collect them by the
    // request they answer, opened with alice's key as the test's witness.
    const refusals = new Map<string, string>();
    const aliceSealer = new Sealer(fx.certs["alice"]!.secretKey);
    relay.onMessage = (m) => {
      if (m.header.k !== "res" || m.header.to !== alice!.publicKey || !m.header.re) return true;
      const sealedBy = m.header.as ? fx.key("svc-summarize") : m.from;
      const inner = decodeInner(aliceSealer.open(sealedBy, m.frames[1]), m.frames[0], 1 << 20);
      if (inner.t === "res" && inner.st === "error") refusals.set(Buffer.from(m.header.re).toString("hex"), inner.error!.code);
      return true;
    };
    const idOf = (m: Captured) => Buffer.from(decodeHeader(m.frames[0]).id).toString("hex");

    // A second replica, started after the capture: the service request resent to it.
    await sleep(1100);
    const second = await spawnReplica(fx, "r2", relay.endpoint, 0, GRACE);
    procs.push(second);
    await waitFor(() => relay.replicas.get("summarize")?.includes(fx.key("r2")), 5000, "r2 announced");
    await relay.resend(viaService, fx.key("r2"));
    await waitFor(() => refusals.has(idOf(viaService)), 5000, "r2's refusal");
    expect(refusals.get(idOf(viaService))).toBe("busy");
    expect(second.runs).toHaveLength(0);

    // r1 restarts (same key); both captured requests resent to it.
    await first.stop("SIGTERM");
    refusals.clear();
    const restarted = await spawnReplica(fx, "r1", relay.endpoint, 0, GRACE);
    procs.push(restarted);
    await relay.resend(viaService, fx.key("r1"));
    await relay.resend(direct, fx.key("r1"));
    await waitFor(() => refusals.size === 2, 5000, "the restarted r1's refusals");
    expect([...refusals.values()]).toEqual(["busy", "busy"]);
    expect(restarted.runs).toHaveLength(0);

    // Honest calls are not hurt: a new call (fresh timestamp) runs on the restarted replica.
    expect(await alice.call(fx.key("r1"), "summarize", { text: "new call" })).toMatchObject({ words: 2 });
    expect(restarted.runs).toHaveLength(1);
  });
});
