/**
 * A request runs at most once per service, not once per replica: a slow tool behind
 * `svc:NAME` is not run again by the SDK's retry on another replica, nor when the replica
 * running it dies (that call fails `timeout` instead). Real broker and replica processes;
 * every run is counted from the replicas' own logs.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { TimeoutError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { spawnBroker, type BrokerProcess } from "../support/process.js";
import { waitFor } from "../support/wait.js";
import { spawnReplica, type ReplicaProcess } from "../support/stand-in-broker.js";

type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };
const settle = (p: Promise<unknown>): Promise<Outcome> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (err: unknown) => ({ ok: false as const, err }),
  );

/** Runs per request id, over all replicas. */
function runsPerRequest(replicas: ReplicaProcess[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of replicas) for (const id of r.runs) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

describe("trust: one run per service", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let replicas: ReplicaProcess[] = [];
  let alice: Agent | undefined;
  afterEach(async () => {
    await alice?.close();
    await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
    replicas = [];
    await broker?.stop();
    fx?.cleanup();
  });
  const setUp = async (workMs: number) => {
    fx = tempCerts("alice", "r1", "r2", "r3");
    fx.addService("summarize");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    replicas = await Promise.all(["r1", "r2", "r3"].map((name) => spawnReplica(fx, name, broker.endpoint, workMs)));
    alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 8000 });
    return alice;
  };

  it("slow tools: each call runs once although it outlasts several attempt timeouts", async () => {
    // 2.5 s of work; the default attempt timeout for an 8 s call is 2 s.
    const alice = await setUp(2500);
    const outcomes = await Promise.all(Array.from({ length: 4 }, (_, i) => settle(alice.call("svc:summarize", "summarize", { text: `call ${i}` }))));
    expect(outcomes.every((o) => o.ok)).toBe(true);
    const counts = runsPerRequest(replicas);
    expect(counts.size).toBe(4);
    expect([...counts.values()]).toEqual([1, 1, 1, 1]);
  });

  it("a replica killed while running: its calls fail timeout and run nowhere else; the others run once", async () => {
    const alice = await setUp(3000);
    const calls = Array.from({ length: 6 }, (_, i) => settle(alice.call("svc:summarize", "summarize", { text: `call ${i}` }, { timeout: 6000 })));
    await waitFor(() => replicas.reduce((n, r) => n + r.runs.length, 0) === 6, 5000, "six runs started");
    const victim = replicas.find((r) => r.runs.length > 0)!;
    const held = victim.runs.length;
    await victim.stop("SIGKILL");
    const outcomes = await Promise.all(calls);
    const failed = outcomes.filter((o) => !o.ok);
    expect(failed).toHaveLength(held);
    for (const o of failed) expect((o as { err: unknown }).err).toBeInstanceOf(TimeoutError);
    const counts = runsPerRequest(replicas);
    expect(counts.size).toBe(6);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
  });
});
