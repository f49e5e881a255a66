/**
 * Faults with real processes and real signals: a frozen peer (SIGSTOP), an agent killed in the
 * middle of a call, clocks skewed inside and outside the allowance. The broker and the workers
 * are the built bins (dist/), so build first.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError, TimeoutError, ZmcpError } from "../../src/errors.js";
import { newId } from "../../src/wire/envelope.js";
import { metricSum } from "../../src/support/metrics.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { startBroker } from "../support/mesh.js";
import { MiB, RssSampler, rssOf, startBrokerProcess, startWorker, type Child } from "../support/process.js";
import { rawPeer } from "../support/raw-peer.js";
import { sleep, waitFor } from "../support/wait.js";
import { agentKilledMidJob, brokerKillRestart, twoBrokersOneKilled } from "./scenarios.js";

type Outcome = { ok: true; value: unknown } | { ok: false; err: ZmcpError };
const settle = (p: Promise<unknown>): Promise<Outcome> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (err: ZmcpError) => ({ ok: false as const, err }),
  );
const codeOf = (o: Outcome) => (o.ok ? "ok" : `${o.err.constructor.name}:${o.err.code}`);

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, code: string): Promise<ZmcpError> {
  const o = await settle(p);
  expect(o.ok ? "resolved" : o.err, `expected ${cls.name}(${code})`).toBeInstanceOf(cls);
  expect((o as { err: ZmcpError }).err.code).toBe(code);
  return (o as { err: ZmcpError }).err;
}

describe("faults", () => {
  let keys: CertFixture;
  const children: Child[] = [];
  const agents: Agent[] = [];
  const brokers: Broker[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await Promise.all(children.splice(0).map((c) => c.stop("SIGTERM", 3000)));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
    keys?.cleanup();
  });
  const connect = async (name: string, endpoint: string | string[], timeout = 3000, startGrace?: number) => {
    // circuit: false: these faults are judged by the codes the broker and the peer answer (circuit.test.ts covers the breaker).
    const agent = await Agent.connect({ broker: endpoint, cert: keys.secretPath(name), certs: keys.dir, connectTimeout: 10_000, timeout, circuit: false, ...(startGrace === undefined ? {} : { startGrace }) });
    agents.push(agent);
    return agent;
  };

  it("a peer frozen with SIGSTOP: liveness cuts it off in bounded time, callers get timeout/no_route, broker memory stays bounded, it recovers after SIGCONT", async () => {
    keys = tempCerts("alice", "bob", "mallory");
    // The agents' `hb` interval is 2 s (default), so the broker's silence limit must exceed it.
    const broker = await startBrokerProcess(keys, { args: ["--heartbeat-interval", "500", "--heartbeat-timeout", "5000"] });
    children.push(broker);
    const bob = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob);
    const alice = await connect("alice", broker.endpoint, 1500);
    expect(await alice.call("bob", "work", { n: 1 })).toEqual({ n: 1 });
    const before = await broker.scrape();
    const disconnectedBefore = before.get("zmcp_broker_peers_disconnected_total")!;
    const rssBefore = await rssOf(broker);
    const sampler = new RssSampler(broker, 100);

    bob.kill("SIGSTOP");
    const frozenAt = Date.now();
    // A burst toward the frozen peer: it must queue up to the high-water mark at most.
    const flood = await rawPeer(keys, "mallory", broker.endpoint);
    const pad = new Uint8Array(32 * 1024);
    for (let i = 0; i < 1500; i++) {
      const [header] = flood.frames(keys.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "work", args: {} });
      await flood.socket.send([header, pad]);
    }
    // Calls while it is frozen: each settles (never hangs) as timeout, busy or no_route.
    const during: Array<Promise<Outcome>> = [];
    for (let i = 0; i < 20; i++) {
      during.push(settle(alice.call("bob", "work", { n: i })));
      await sleep(50);
    }
    // Liveness is kept with `hb` messages, not ZMTP heartbeats (src/support/liveness.ts): the broker
    // does not drop the TCP connection of a frozen peer, it refuses to route to it.
    void disconnectedBefore;
    await waitFor(
      () => alice.call("bob", "work", { n: -1 }, { timeout: 1000, retry: false }).then(() => false, (e: unknown) => e instanceof RemoteError && e.code === "no_route"),
      15_000,
      "broker to refuse the frozen peer",
    );
    const detectedMs = Date.now() - frozenAt;
    const outcomes = (await Promise.all(during)).map(codeOf);
    for (const o of outcomes) expect(["TimeoutError:timeout", "RemoteError:no_route", "RemoteError:busy"]).toContain(o);
    // Once dropped, the broker answers at once.
    const err = await rejectsWith(alice.call("bob", "work", { n: 0 }), RemoteError, "no_route");
    expect((err as RemoteError).origin).toBe("broker");
    await sampler.sample();
    sampler.stop();
    flood.close();
    // 1,000 queued messages of 32 KiB plus socket buffers: bounded, far below the 1,500 sent × 2.
    expect(sampler.peak - rssBefore).toBeLessThan(160 * MiB);

    bob.kill("SIGCONT");
    await waitFor(() => alice.call("bob", "work", { n: 2 }, { timeout: 1000 }).then(() => true, () => false), 20_000, "bob to serve again after SIGCONT");
    expect(await alice.call("bob", "work", { n: 3 })).toEqual({ n: 3 });
    const after = await broker.scrape();
    expect(after.get("zmcp_broker_internal_errors_total")).toBe(0);
    expect(detectedMs).toBeLessThan(15_000);
  });

  it("an agent killed mid-call: the caller gets a timeout, later calls no_route, and the agent restarted with the same key serves again", async () => {
    keys = tempCerts("alice", "bob");
    const broker = await startBrokerProcess(keys);
    children.push(broker);
    const alice = await connect("alice", broker.endpoint);
    let bob = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob);
    expect(await alice.call("bob", "work", { n: 1 })).toEqual({ n: 1 });
    const started = Date.now();
    const inFlight = settle(alice.call("bob", "work", { n: 2, ms: 10_000 }, { timeout: 2000 }));
    await sleep(300);
    bob.kill("SIGKILL");
    const o = await inFlight;
    // Its retries find the agent gone: the last attempt's no_route, or the deadline.
    expect(["TimeoutError:timeout", "RemoteError:no_route"]).toContain(codeOf(o));
    expect(Date.now() - started).toBeLessThan(2000 + 5000); // settled by its own deadline, no hang
    await waitFor(async () => metricSum(await broker.scrape(), "zmcp_broker_peers_disconnected_total") >= 1, 10_000, "disconnect seen");
    await rejectsWith(alice.call("bob", "work", { n: 3 }), RemoteError, "no_route");
    bob = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob);
    await waitFor(() => alice.call("bob", "work", { n: 4 }, { timeout: 1000 }).then(() => true, () => false), 10_000, "restarted bob to serve");
    expect(await alice.call("bob", "work", { n: 5 })).toEqual({ n: 5 });
  });

  describe("clock skew between agents", () => {
    const setup = async (offsetMs: number, probe?: string) => {
      keys = tempCerts("alice", "bob");
      const broker = await startBroker(keys);
      brokers.push(broker);
      // Both agents were just started: a start grace covering the skew (the default, 2 s, asks
      // clocks to agree within 2 s; a larger skew is refused busy until the callee's uptime passes it).
      const alice = await connect("alice", broker.endpoint, 3000, 30_000);
      alice.tool("ping", { input: z.object({}) }, () => "pong");
      const bob = await startWorker(keys, "bob", [broker.endpoint], { clockOffsetMs: offsetMs, args: ["--start-grace", "30000"], ...(probe ? { probe } : {}) });
      children.push(bob);
      return { broker, alice, bob };
    };
    const bobCalls = (alice: Agent) => alice.call("bob", "call_peer", { to: "alice", tool: "ping", args: {}, timeout: 3000 }, { timeout: 8000 });

    for (const offset of [20_000, -20_000]) {
      it(`inside the allowance (${offset / 1000} s, window 60 s, call timeouts 3 s): calls work both ways`, async () => {
        const { alice, broker } = await setup(offset);
        // The 3 s deadline is shorter than the skew: it must be read on the peer's clock.
        for (let i = 0; i < 3; i++) expect(await alice.call("bob", "work", { n: i }, { timeout: 3000 })).toEqual({ n: i });
        for (let i = 0; i < 3; i++) expect(await bobCalls(alice)).toEqual({ ok: "pong" });
        expect(broker.stats.refused).toEqual({});
      });
    }

    it("outside the allowance, bob's clock 90 s ahead: refused replay (peer) both ways", async () => {
      const { alice, bob } = await setup(90_000, "alice/ping");
      const err = await rejectsWith(alice.call("bob", "work", { n: 1 }, { timeout: 3000 }), RemoteError, "replay");
      expect((err as RemoteError).origin).toBe("peer");
      const probe = await waitFor(() => bob.logs.find((l) => l["msg"] === "probe"), 10_000, "bob's probe");
      expect(probe).toMatchObject({ error: { class: "RemoteError", code: "replay", origin: "peer" } });
    });

    it("outside the allowance, bob's clock 90 s behind: alice's calls refused replay (peer), bob's refused expired (broker)", async () => {
      const { alice, broker, bob } = await setup(-90_000, "alice/ping");
      const err = await rejectsWith(alice.call("bob", "work", { n: 1 }, { timeout: 3000 }), RemoteError, "replay");
      expect((err as RemoteError).origin).toBe("peer");
      const probe = await waitFor(() => bob.logs.find((l) => l["msg"] === "probe"), 10_000, "bob's probe");
      expect(probe).toMatchObject({ error: { class: "RemoteError", code: "expired", origin: "broker" } });
      expect(broker.stats.refused.expired).toBe(1);
    });
  });

  // Sized for CI (2,000 calls); `npm run figures` runs the full 10,000.
  it("broker SIGKILLed and restarted during 2,000 idempotent calls: every call completes, no tool runs twice", async () => {
    const r = await brokerKillRestart(2000, 1);
    expect(r.answered, JSON.stringify(r.codes)).toBe(2000);
    expect(r.lost).toBe(0);
    expect(r.duplicates, r.notes).toBe(0);
    expect(r.survived).toBe(1);
  }, 180_000);

  it("two brokers, every agent on both, one SIGKILLed mid-stream: traffic continues through the other, no call lost", async () => {
    const r = await twoBrokersOneKilled(2000);
    expect(r.answered, JSON.stringify(r.codes)).toBe(2000);
    expect(r.lost).toBe(0);
    expect(r.duplicates).toBe(0);
  }, 180_000);

  it("an agent SIGKILLed mid-job: the job and a running call fail clearly (no hang); restarted with the same key it runs jobs again", async () => {
    const r = await agentKilledMidJob(1);
    expect(r.refused, JSON.stringify(r.codes)).toBe(2);
    expect(r.answered).toBe(1);
    expect(r.lost).toBe(0);
    for (const code of Object.keys(r.codes)) expect(["job:TimeoutError:timeout", "job:RemoteError:no_route", "call:TimeoutError:timeout", "call:RemoteError:no_route"]).toContain(code);
  }, 120_000);
});
