import { encode } from "@msgpack/msgpack";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { RemoteError, TimeoutError, ZmcpError } from "../../src/errors.js";
import { jobRunner } from "../../src/agent/jobs.js";
import { generateCertificate } from "../../src/auth/certs.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { rejectsWith } from "../support/assert.js";
import { connectAgent } from "../support/mesh.js";
import { built, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";
import { rawPeer } from "../support/raw-peer.js";


interface Summary {
  replica: string;
  words: number;
}

describe("services: replicas behind one name", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let replicas: Child[];
  let alice: Agent;
  const brokerArgs = () => ["--key", fx.secretPath("broker"), "--allow", fx.dir];
  const startReplica = (name: string) =>
    spawnChild(built("examples/replica.js"), ["--broker", broker.endpoint, "--cert", fx.secretPath(name), "--certs", fx.dir, "--service", "summarize"], "replica ready");

  beforeEach(async () => {
    fx = tempCerts("alice", "r1", "r2", "r3", "impostor");
    fx.addService("summarize");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", ...brokerArgs()]);
    replicas = await Promise.all(["r1", "r2", "r3"].map(startReplica));
    alice = await connectAgent(fx, "alice", broker.endpoint);
  });
  afterEach(async () => {
    await alice.close();
    await Promise.all(replicas.map((r) => r.stop()));
    await broker.stop();
    fx.cleanup();
  });

  it("spreads calls over 3 replica processes, sealed to the service key", async () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 150; i++) {
      const out = (await alice.call("svc:summarize", "summarize", { text: "one two three" })) as Summary;
      expect(out.words).toBe(3);
      counts[out.replica] = (counts[out.replica] ?? 0) + 1;
    }
    expect(Object.keys(counts).sort()).toEqual([fx.key("r1"), fx.key("r2"), fx.key("r3")].sort());
    for (const n of Object.values(counts)) expect(n).toBeGreaterThanOrEqual(150 * 0.15);
    const tools = await alice.listTools("svc:summarize");
    expect(tools.map((t) => t.name).sort()).toEqual(["long_summary", "summarize"]);
  });

  it("a replica killed mid-stream: only the calls it held fail (timeout, not resent to another replica), the rest go on", async () => {
    // A timed-out attempt to a service is not resent (retry.ts): the request may still run on
    // the first replica, and a second replica would run it again. So the calls that the killed
    // replica held fail at their deadline (at most one per worker), and no request runs twice.
    const results: Summary[] = [];
    const failures: unknown[] = [];
    let next = 0;
    const worker = async () => {
      while (next < 240) {
        next++;
        try {
          results.push((await alice.call("svc:summarize", "summarize", { text: "a b" }, { timeout: 3000, retry: { attemptTimeout: 500 } })) as Summary);
        } catch (err) {
          failures.push(err);
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await waitFor(() => results.length >= 60, 10_000, "traffic");
    await replicas[0]!.stop("SIGKILL");
    await Promise.all(workers);
    expect(results.length + failures.length).toBe(240);
    expect(failures.length).toBeLessThanOrEqual(8);
    for (const err of failures) expect(err).toBeInstanceOf(TimeoutError);
    expect(results.every((r) => r.words === 2)).toBe(true);
    const late = results.slice(-40).map((r) => r.replica);
    expect(late).not.toContain(fx.key("r1"));
  });

  it("a job on a replica is polled on that same replica", async () => {
    const job = await alice.start("svc:summarize", "long_summary", { text: "x y z", seconds: 0.5 });
    expect(jobRunner(job.id)).toBe(job.runner); // the id names its runner (hex, PROTOCOL §10.1)
    const state = await waitFor(async () => {
      const s = await alice.poll("svc:summarize", job.id);
      return s.status === "done" ? s : undefined;
    }, 5000, "job done");
    expect(state.result).toEqual({ replica: job.runner, words: 3 });
    expect(await job.result).toEqual({ replica: job.runner, words: 3 });
  });

  it("an agent that cannot prove the service key is refused", async () => {
    const impostor = await connectAgent(fx, "impostor", broker.endpoint);
    try {
      const fake = { ...generateCertificate({ service: "summarize" }) }; // right name, wrong key
      await rejectsWith(impostor.serve("summarize", { cert: fake }), RemoteError, "forbidden");
      // A heartbeat replaying a real key with a forged proof is refused too.
      const m = await rawPeer(fx, "impostor", broker.endpoint);
      try {
        const header = encodeHeader({ v: PROTOCOL_VERSION, k: "hb", id: newId(), to: "", exp: Date.now() + 5000 });
        const body = encode({ svc: [{ name: "summarize", key: fx.key("svc-summarize"), ts: Date.now(), proof: new Uint8Array(60), free: 100 }] });
        await m.socket.send([header, body]);
        const [, nack] = await m.receive();
        expect(decodeHeader(nack!)).toMatchObject({ k: "nack", code: "forbidden" });
      } finally {
        m.close();
      }
      for (let i = 0; i < 30; i++) {
        const out = (await alice.call("svc:summarize", "summarize", { text: "a" })) as Summary;
        expect(out.replica).not.toBe(fx.key("impostor"));
      }
    } finally {
      await impostor.close();
    }
  });

  it("the directory is whole again after a broker restart, with no operator action", async () => {
    const port = new URL(broker.endpoint.replace("tcp://", "http://")).port;
    await alice.call("svc:summarize", "summarize", { text: "warm" });
    await broker.stop("SIGKILL");
    broker = await spawnBroker(["--bind", `tcp://127.0.0.1:${port}`, ...brokerArgs()]);
    const restarted = Date.now();
    const seen = new Set<string>();
    await waitFor(async () => {
      const out = (await alice.call("svc:summarize", "summarize", { text: "again" }, { timeout: 2000 }).catch(() => undefined)) as Summary | undefined;
      if (out) seen.add(out.replica);
      return seen.size === 3;
    }, 10_000, "all replicas back");
    expect(Date.now() - restarted).toBeLessThan(10_000);
  });
});
