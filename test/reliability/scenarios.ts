/**
 * The reliability scenarios, each with real processes on 127.0.0.1, shared by the tests
 * (small counts, assertions) and `npm run figures` (full counts, the table in RELIABILITY.md).
 * Each returns a {@link Row}; counts come from the metrics of the broker and agents, not from
 * tallies of the scenario, except what only the caller can know (how each call ended).
 */
import { connect as tcpConnect } from "node:net";
import * as zmq from "zeromq";
import type { Agent, AgentOptions } from "../../src/agent/agent.js";
import { encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { RemoteError, TimeoutError, ZmcpError } from "../../src/errors.js";
import { metricSum } from "../../src/support/metrics.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent as connectFixtureAgent } from "../support/mesh.js";
import { MiB, RssSampler, rssOf, startBrokerProcess, startWorker, type BrokerProcess } from "../support/process.js";
import { sleep, waitFor } from "../support/wait.js";

export interface Row {
  scenario: string;
  /** Faults injected (kills, freezes, restarts, floods) and how many the system came through. */
  faults: number;
  survived: number;
  /** Requests sent, answered with their result, refused with an explicit error, and lost (no answer, or a wrong one). */
  sent: number;
  answered: number;
  refused: number;
  lost: number;
  /** Tools that ran more than once for one request (idempotency failures). */
  duplicates: number;
  /** Hostile inputs tried, and processes that crashed. */
  badInputs: number;
  crashes: number;
  /** Peak RSS of the broker process, bytes (0 when the broker ran in the test process). */
  peakRss: number;
  /** Free text: what was checked. */
  notes: string;
  /** Refusals by code, for the details. */
  codes: Record<string, number>;
}

function row(scenario: string, partial: Partial<Row>): Row {
  return { scenario, faults: 0, survived: 0, sent: 0, answered: 0, refused: 0, lost: 0, duplicates: 0, badInputs: 0, crashes: 0, peakRss: 0, notes: "", codes: {}, ...partial };
}

/** Runs `calls` calls with at most `concurrency` in flight; tallies outcomes by code. */
async function stream(
  n: number,
  concurrency: number,
  one: (i: number) => Promise<unknown>,
  onProgress?: (done: number) => void,
): Promise<{ ok: number; codes: Record<string, number>; errors: Record<string, number> }> {
  let next = 0;
  let done = 0;
  let ok = 0;
  const codes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const worker = async () => {
    while (next < n) {
      const i = next++;
      try {
        await one(i);
        ok++;
      } catch (err) {
        const code = err instanceof ZmcpError ? err.code : "error";
        codes[code] = (codes[code] ?? 0) + 1;
        const cls = err instanceof RemoteError ? `RemoteError(${err.origin})` : err instanceof TimeoutError ? "TimeoutError" : err instanceof ZmcpError ? "ZmcpError" : "Error";
        errors[`${cls}:${code}`] = (errors[`${cls}:${code}`] ?? 0) + 1;
      }
      done++;
      onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { ok, codes, errors };
}

const EXPLICIT = new Set(["busy", "no_route", "rate_limited", "expired", "too_large", "unknown_tool", "invalid_args", "tool_failed"]);

/** How each call ended → answered / refused explicitly / lost (timeouts count as lost). */
function account(r: { ok: number; codes: Record<string, number> }): { answered: number; refused: number; lost: number } {
  let refused = 0;
  let lost = 0;
  for (const [code, n] of Object.entries(r.codes)) (EXPLICIT.has(code) ? (refused += n) : (lost += n));
  return { answered: r.ok, refused, lost };
}

/** An agent with the scenarios' long deadlines (they run under load). */
function connectAgent(keys: CertFixture, name: string, brokers: string[], extra: Partial<AgentOptions> = {}): Promise<Agent> {
  // circuit: false: the scenarios count what the broker and the peer answer; a circuit breaker
  // would answer for them (circuit_open). The breaker has its own test (test/integration/circuit.test.ts).
  return connectFixtureAgent(keys, name, brokers, { connectTimeout: 15_000, timeout: 30_000, circuit: false, ...extra });
}

async function report(alice: Agent, to: string): Promise<{ executions: number; distinct: number; duplicates: number }> {
  return (await alice.call(to, "report", {}, { timeout: 10_000 })) as { executions: number; distinct: number; duplicates: number };
}

/**
 * The broker is SIGKILLed and restarted (same port) `kills` times during a stream of `calls`
 * idempotent calls: every call must complete and no tool run twice.
 */
export async function brokerKillRestart(calls: number, kills = 1, concurrency = 32): Promise<Row> {
  const keys = tempCerts("alice", "bob");
  let broker: BrokerProcess | undefined;
  const stopping: Array<Promise<unknown>> = [];
  let bob: Awaited<ReturnType<typeof startWorker>> | undefined;
  let alice: Agent | undefined;
  let peakRss = 0;
  try {
    broker = await startBrokerProcess(keys);
    const endpoint = broker.endpoint; // the port is fixed from here on
    bob = await startWorker(keys, "bob", [endpoint]);
    alice = await connectAgent(keys, "alice", [endpoint]);
    const marks = Array.from({ length: kills }, (_, i) => Math.floor(((i + 1) * calls) / (kills + 1)));
    let survived = 0;
    let restarting: Promise<void> = Promise.resolve();
    const r = await stream(calls, concurrency, (i) => alice!.call("bob", "work", { n: i }), (done) => {
      if (marks[0] !== undefined && done >= marks[0]) {
        marks.shift();
        const victim = broker!;
        restarting = restarting.then(async () => {
          peakRss = Math.max(peakRss, await rssOf(victim).catch(() => 0));
          victim.kill("SIGKILL");
          await victim.exited;
          await sleep(200);
          broker = await startBrokerProcess(keys, { bind: endpoint });
          survived++;
        });
      }
    });
    await restarting;
    const rep = await report(alice, "bob");
    peakRss = Math.max(peakRss, await rssOf(broker).catch(() => 0));
    return row("broker SIGKILL + restart", {
      faults: kills,
      survived: survived === kills && r.ok === calls ? kills : 0,
      sent: calls,
      ...account(r),
      duplicates: rep.duplicates,
      peakRss,
      codes: r.errors,
      notes: `${calls} idempotent calls, ${concurrency} in flight; executions ${rep.executions} for ${rep.distinct} request ids`,
    });
  } finally {
    await alice?.close();
    stopping.push(bob?.stop() ?? Promise.resolve(), broker?.stop() ?? Promise.resolve());
    await Promise.all(stopping);
    keys.cleanup();
  }
}

/** Two brokers, every agent connected to both; one is SIGKILLed mid-stream and not restarted. */
export async function twoBrokersOneKilled(calls: number, concurrency = 32): Promise<Row> {
  const keys = tempCerts("alice", "bob");
  const brokers: BrokerProcess[] = [];
  let bob: Awaited<ReturnType<typeof startWorker>> | undefined;
  let alice: Agent | undefined;
  try {
    brokers.push(await startBrokerProcess(keys), await startBrokerProcess(keys));
    const endpoints = brokers.map((b) => b.endpoint);
    bob = await startWorker(keys, "bob", endpoints);
    alice = await connectAgent(keys, "alice", endpoints);
    // Both brokers must know both agents before the stream starts.
    await waitFor(async () => (await Promise.all(brokers.map((b) => b.scrape()))).every((m) => (m.get("zmcp_broker_peers_connected_total") ?? 0) >= 2), 10_000, "both agents on both brokers");
    const before = await Promise.all(brokers.map((b) => b.scrape()));
    let killed = false;
    const r = await stream(calls, concurrency, (i) => alice!.call("bob", "work", { n: i }), (done) => {
      if (!killed && done >= calls / 3) {
        killed = true;
        brokers[0]!.kill("SIGKILL");
      }
    });
    const rep = await report(alice, "bob");
    const after = await brokers[1]!.scrape();
    const routedByFirst = metricSum(before[0]!, "zmcp_broker_messages_routed_total");
    return row("two brokers, one SIGKILLed", {
      faults: 1,
      survived: r.ok === calls ? 1 : 0,
      sent: calls,
      ...account(r),
      duplicates: rep.duplicates,
      peakRss: metricSum(after, "process_resident_memory_bytes"),
      codes: r.errors,
      notes: `survivor routed ${metricSum(after, "zmcp_broker_messages_routed_total")} messages (the killed one ${routedByFirst} before the stream)`,
    });
  } finally {
    await alice?.close();
    await Promise.all([bob?.stop(), ...brokers.map((b) => b.stop())]);
    keys.cleanup();
  }
}

/**
 * A worker is SIGKILLed while running a job and while serving a call: the callers get a clear
 * failure or a timeout, never a hang; the worker restarted with the same key serves again.
 */
export async function agentKilledMidJob(rounds = 1): Promise<Row> {
  const keys = tempCerts("alice", "bob");
  let broker: BrokerProcess | undefined;
  let bob: Awaited<ReturnType<typeof startWorker>> | undefined;
  let alice: Agent | undefined;
  const codes: Record<string, number> = {};
  const tally = (what: string) => (codes[what] = (codes[what] ?? 0) + 1);
  let refused = 0;
  let answered = 0;
  let survived = 0;
  try {
    broker = await startBrokerProcess(keys);
    bob = await startWorker(keys, "bob", [broker.endpoint]);
    alice = await connectAgent(keys, "alice", [broker.endpoint], { jobPollInterval: 250, jobLostAfter: 2000, timeout: 3000 });
    for (let round = 0; round < rounds; round++) {
      const job = await alice.start("bob", "long", { ms: 30_000, steps: 30 });
      const call = alice.call("bob", "work", { n: round, ms: 30_000 }, { timeout: 3000 }).then(
        () => "ok",
        (e: ZmcpError) => `${e.constructor.name}:${e.code}`,
      );
      await new Promise<void>((r) => job.once("progress", () => r()));
      bob.kill("SIGKILL");
      const started = Date.now();
      const jobEnd = await job.result.then(
        () => "ok",
        (e: ZmcpError) => `${e.constructor.name}:${e.code}`,
      );
      const callEnd = await call;
      tally(`job:${jobEnd}`);
      tally(`call:${callEnd}`);
      const clear = (s: string) => s === "TimeoutError:timeout" || s === "RemoteError:no_route" || s.endsWith(":unknown_job");
      if (clear(jobEnd) && clear(callEnd) && Date.now() - started < 20_000) refused += 2;
      bob = await startWorker(keys, "bob", [broker.endpoint]);
      const again = await alice.start("bob", "long", { ms: 200, steps: 2 }, { timeout: 10_000 });
      if (JSON.stringify(await again.result) === JSON.stringify({ steps: 2 })) {
        answered++;
        survived++;
      }
    }
    return row("agent SIGKILLed mid-job", {
      faults: rounds,
      survived,
      sent: 3 * rounds,
      answered,
      refused,
      lost: 3 * rounds - answered - refused,
      peakRss: await rssOf(broker),
      codes,
      notes: "a running job and a running call per round; the restarted worker (same key) then runs a job",
    });
  } finally {
    await alice?.close();
    await Promise.all([bob?.stop(), broker?.stop()]);
    keys.cleanup();
  }
}

/**
 * A recipient that stops reading: senders get `busy`, the broker's memory stays bounded, and
 * other agents are unaffected.
 */
export async function stalledReader(messages: number, pad = 16 * 1024): Promise<Row> {
  const keys = tempCerts("alice", "bob", "sender", "stalled");
  let broker: BrokerProcess | undefined;
  const sockets: zmq.Dealer[] = [];
  const agents: Agent[] = [];
  try {
    broker = await startBrokerProcess(keys);
    const rssBefore = await rssOf(broker);
    const sampler = new RssSampler(broker, 100);
    const dealer = async (name: string) => {
      const c = keys.certs[name]!;
      const s = new zmq.Dealer({ curveServerKey: keys.key("broker"), curvePublicKey: c.publicKey, curveSecretKey: c.secretKey, routingId: c.publicKey, linger: 0, receiveHighWaterMark: 10, receiveTimeout: 5 });
      const hs = (async () => {
        for await (const e of s.events) if (e.type === "handshake") return;
      })();
      s.connect(broker!.endpoint);
      await hs;
      sockets.push(s);
      return s;
    };
    await dealer("stalled"); // connected, never reads
    const sender = await dealer("sender");
    const bob = await connectAgent(keys, "bob", [broker.endpoint], { retry: false });
    bob.tool("echo", { input: (await import("zod")).z.object({ n: (await import("zod")).z.number() }) }, ({ n }) => ({ n }));
    const alice = await connectAgent(keys, "alice", [broker.endpoint], { retry: false, timeout: 5000 });
    agents.push(bob, alice);
    const { encodeHeader, PROTOCOL_VERSION } = await import("../../src/wire/envelope.js");
    const body = new Uint8Array(pad);
    // Other traffic, all along.
    let otherOk = 0;
    let otherFailed = 0;
    let flooding = true;
    const others = (async () => {
      for (let i = 0; flooding || i < 20; i++) {
        await alice.call("bob", "echo", { n: i }).then(
          () => otherOk++,
          () => otherFailed++,
        );
      }
    })();
    let nacks = 0;
    const codes: Record<string, number> = {};
    const readNacks = async () => {
      for (;;) {
        try {
          const [, h] = await sender.receive();
          const { decodeHeader } = await import("../../src/wire/envelope.js");
          const code = decodeHeader(h!).code ?? "?";
          codes[code] = (codes[code] ?? 0) + 1;
          nacks++;
        } catch {
          return;
        }
      }
    };
    for (let i = 0; i < messages; i++) {
      const header = encodeHeader({ v: PROTOCOL_VERSION, k: "req", id: newId(), to: keys.key("stalled"), exp: Date.now() + 60_000 });
      await sender.send([header, body]);
      if (i % 100 === 99) await readNacks();
    }
    sender.receiveTimeout = 1000;
    await waitFor(async () => {
      const m = await broker!.scrape();
      return metricSum(m, "zmcp_broker_messages_received_total") >= messages + 2 * otherOk;
    }, 30_000, "broker to take every message");
    await readNacks();
    flooding = false;
    await others;
    await sampler.sample();
    sampler.stop();
    const m = await broker.scrape();
    const routedToStalled = messages - nacks;
    return row("recipient stops reading", {
      faults: 1,
      survived: otherFailed === 0 && (codes["busy"] ?? 0) > 0 ? 1 : 0,
      sent: messages + otherOk + otherFailed,
      answered: otherOk,
      refused: nacks,
      // Forwarded into the stalled peer's bounded queue: accepted by the broker, not lost by it.
      lost: otherFailed,
      peakRss: sampler.peak,
      codes,
      notes: `${messages} × ${pad / 1024} KiB to a peer that never reads: ${routedToStalled} queued (high-water mark + socket buffers), ${codes["busy"] ?? 0} busy; broker RSS +${((sampler.peak - rssBefore) / MiB).toFixed(0)} MiB; ${otherOk} calls between two other agents meanwhile, ${otherFailed} failed; broker received ${metricSum(m, "zmcp_broker_messages_received_total")} = routed ${metricSum(m, "zmcp_broker_messages_routed_total")} + refused ${metricSum(m, "zmcp_broker_messages_refused_total")}`,
    });
  } finally {
    sockets.forEach((s) => s.close());
    await Promise.all(agents.map((a) => a.close()));
    await broker?.stop();
    keys.cleanup();
  }
}

/**
 * A flood at several times a worker's capacity (its maxConcurrency 64 and a 20 ms tool):
 * every request is accounted for (sent = answered + refused explicitly), nothing is lost, and
 * the mesh serves normally once the flood stops.
 */
export async function flood(calls: number, callers = 4, concurrency = 400): Promise<Row> {
  const names = Array.from({ length: callers }, (_, i) => `caller${i}`);
  const keys = tempCerts("bob", ...names);
  let broker: BrokerProcess | undefined;
  let bob: Awaited<ReturnType<typeof startWorker>> | undefined;
  const agents: Agent[] = [];
  try {
    broker = await startBrokerProcess(keys);
    const sampler = new RssSampler(broker, 200);
    bob = await startWorker(keys, "bob", [broker.endpoint]);
    for (const n of names) agents.push(await connectAgent(keys, n, [broker.endpoint], { retry: false, timeout: 20_000 }));
    const per = Math.ceil(calls / callers);
    const results = await Promise.all(agents.map((a) => stream(per, concurrency, (i) => a.call("bob", "work", { n: i, ms: 20 }))));
    const merged = { ok: 0, codes: {} as Record<string, number>, errors: {} as Record<string, number> };
    for (const r of results) {
      merged.ok += r.ok;
      for (const [k, v] of Object.entries(r.codes)) merged.codes[k] = (merged.codes[k] ?? 0) + v;
      for (const [k, v] of Object.entries(r.errors)) merged.errors[k] = (merged.errors[k] ?? 0) + v;
    }
    // Recovery: once the flood stops, every call succeeds.
    const after = await stream(50, 5, (i) => agents[0]!.call("bob", "work", { n: i }));
    await sampler.sample();
    sampler.stop();
    const m = await broker.scrape();
    const w = await bob.scrape();
    const sent = per * callers;
    return row("flood at several times capacity", {
      faults: 1,
      survived: after.ok === 50 ? 1 : 0,
      sent,
      ...account(merged),
      peakRss: sampler.peak,
      codes: merged.errors,
      notes: `${callers} callers × ${concurrency} in flight against maxConcurrency 64; worker refused busy ${w.get('zmcp_agent_request_failures_total{code="busy"}') ?? 0}; broker nacks lost ${metricSum(m, "zmcp_broker_nacks_lost_total")}; 50/50 calls after the flood: ${after.ok === 50}`,
    });
  } finally {
    await Promise.all(agents.map((a) => a.close()));
    await Promise.all([bob?.stop(), broker?.stop()]);
    keys.cleanup();
  }
}

/**
 * `total` CURVE connections opened and closed in batches; the broker's RSS and handles must
 * stay flat (compared after a warm-up) and every connection be counted in and out.
 */
export async function connectionChurn(total: number, batch = 50): Promise<Row & { rssWarm: number; rssEnd: number; handlesWarm: number; handlesEnd: number }> {
  // One key per concurrent connection: connections with one key would take over from each other.
  const names = Array.from({ length: batch }, (_, i) => `churn${i}`);
  const keys = tempCerts(...names);
  let broker: BrokerProcess | undefined;
  try {
    broker = await startBrokerProcess(keys);
    const round = async (n: number) => {
      // No socket observers here: zeromq.js names each monitor by address, and a churn of
      // thousands reuses addresses (EADDRINUSE). A message to itself proves the handshake.
      const certs = names.slice(0, n).map((name) => keys.certs[name]!);
      const socks = certs.map((c) => new zmq.Dealer({ curveServerKey: keys.key("broker"), curvePublicKey: c.publicKey, curveSecretKey: c.secretKey, routingId: c.publicKey, linger: 0, receiveTimeout: 15_000 }));
      await Promise.all(
        socks.map(async (s, i) => {
          const c = certs[i]!;
          s.connect(broker!.endpoint);
          const header = encodeHeader({ v: PROTOCOL_VERSION, k: "req", id: newId(), to: c.publicKey, exp: Date.now() + 60_000 });
          await s.send([header, "x"]);
          const [from] = await s.receive();
          if (from!.toString("latin1") !== c.publicKey) throw new Error("churn: message came back from someone else");
        }),
      );
      for (const s of socks) s.close();
    };
    const warm = Math.min(200, Math.floor(total / 5));
    for (let done = 0; done < warm; done += batch) await round(Math.min(batch, warm - done));
    await waitFor(async () => metricSum(await broker!.scrape(), "zmcp_broker_peers_disconnected_total") >= warm, 20_000, "warm-up disconnects");
    const mw = await broker.scrape();
    const rssWarm = metricSum(mw, "process_resident_memory_bytes");
    const handlesWarm = metricSum(mw, "nodejs_active_handles_total");
    const sampler = new RssSampler(broker, 200);
    for (let done = warm; done < total; done += batch) await round(Math.min(batch, total - done));
    await waitFor(async () => metricSum(await broker!.scrape(), "zmcp_broker_peers_disconnected_total") >= total, 30_000, "every disconnect");
    await sleep(300);
    await sampler.sample();
    sampler.stop();
    const me = await broker.scrape();
    const rssEnd = metricSum(me, "process_resident_memory_bytes");
    const handlesEnd = metricSum(me, "nodejs_active_handles_total");
    const connected = metricSum(me, "zmcp_broker_peers_connected_total");
    const disconnected = metricSum(me, "zmcp_broker_peers_disconnected_total");
    return {
      ...row("connection churn", {
        faults: total,
        survived: connected === total && disconnected === total ? total : connected,
        peakRss: sampler.peak,
        notes: `${total} CURVE connections opened and closed, ${batch} at a time: connected ${connected}, disconnected ${disconnected}; after warm-up (${warm}) RSS ${(rssWarm / MiB).toFixed(1)} → ${(rssEnd / MiB).toFixed(1)} MiB, handles ${handlesWarm} → ${handlesEnd}`,
      }),
      rssWarm,
      rssEnd,
      handlesWarm,
      handlesEnd,
    };
  } finally {
    await broker?.stop();
    keys.cleanup();
  }
}

/** ZMTP 3.0 greeting for `mechanism`, as a client. */
function greeting(mechanism: string): Buffer {
  const g = Buffer.alloc(64);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 0;
  g.write(mechanism, 12, "ascii");
  return g;
}

/**
 * Connections that speak garbage before or during the CURVE handshake (raw TCP), and a ZeroMQ
 * client without CURVE: none gets in, the broker counts them, and other traffic flows.
 */
export async function garbageHandshakes(rounds = 5): Promise<Row> {
  const keys = tempCerts("alice", "bob");
  let broker: BrokerProcess | undefined;
  const agents: Agent[] = [];
  try {
    broker = await startBrokerProcess(keys);
    const [host, port] = broker.endpoint.replace("tcp://", "").split(":") as [string, string];
    const bob = await connectAgent(keys, "bob", [broker.endpoint], { retry: false });
    bob.tool("ping", { input: (await import("zod")).z.object({}) }, () => "pong");
    const alice = await connectAgent(keys, "alice", [broker.endpoint], { retry: false, timeout: 5000 });
    agents.push(bob, alice);
    const send = (chunks: Buffer[]) =>
      new Promise<void>((resolve) => {
        const s = tcpConnect({ host, port: Number(port) }, () => {
          for (const c of chunks) s.write(c);
          setTimeout(() => s.destroy(), 150);
        });
        s.on("error", () => undefined);
        s.on("close", () => resolve());
        s.setTimeout(3000, () => s.destroy());
      });
    const random = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)));
    const cases: Array<[string, () => Buffer[]]> = [
      ["random bytes", () => [random(200)]],
      ["HTTP request", () => [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")]],
      ["ZMTP greeting with NULL mechanism", () => [greeting("NULL"), random(100)]],
      ["ZMTP greeting with PLAIN mechanism", () => [greeting("PLAIN"), random(100)]],
      ["CURVE greeting then a garbage HELLO", () => [greeting("CURVE"), Buffer.from([0x04, 200]), random(200)]],
      ["CURVE greeting then a truncated HELLO", () => [greeting("CURVE"), Buffer.from([0x04, 0xc8, 0x05]), Buffer.from("HELLO"), random(20)]],
      ["half a greeting", () => [greeting("CURVE").subarray(0, 30)]],
      ["a huge declared frame", () => [greeting("CURVE"), Buffer.from([0x06, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), random(100)]],
    ];
    let tried = 0;
    let controlOk = 0;
    for (let r = 0; r < rounds; r++) {
      for (const [, make] of cases) {
        await send(make());
        tried++;
      }
      if ((await alice.call("bob", "ping", {}).catch(() => "failed")) === "pong") controlOk++;
    }
    // ZeroMQ clients without CURVE (NULL mechanism): refused, nothing routed.
    let noCurveIn = 0;
    for (let r = 0; r < rounds; r++) {
      const plain = new zmq.Dealer({ linger: 0, sendTimeout: 200, receiveTimeout: 300 });
      let failed = false;
      const watch = (async () => {
        for await (const e of plain.events) {
          if (e.type === "handshake") return;
          if (e.type.startsWith("handshake:error")) {
            failed = true;
            return;
          }
        }
      })();
      plain.connect(broker.endpoint);
      await Promise.race([watch, sleep(1500)]);
      if (!failed) noCurveIn++;
      plain.close();
      tried++;
    }
    const m = await broker.scrape();
    const ok = (await alice.call("bob", "ping", {})) === "pong";
    return row("garbage before/during the CURVE handshake", {
      faults: 0,
      survived: 0,
      sent: rounds + 1,
      answered: controlOk + (ok ? 1 : 0),
      lost: rounds + 1 - controlOk - (ok ? 1 : 0),
      badInputs: tried,
      crashes: broker.alive() ? 0 : 1,
      peakRss: metricSum(m, "process_resident_memory_bytes"),
      codes: Object.fromEntries([...m].filter(([k]) => k.startsWith("zmcp_broker_handshake_failures_total")).map(([k, v]) => [k.replace("zmcp_broker_handshake_failures_total", "handshake_failures"), v])),
      notes: `${cases.length} kinds of garbage × ${rounds} and ${rounds} clients without CURVE (${noCurveIn} got a handshake: must be 0); routed from them: none; control calls answered ${controlOk + (ok ? 1 : 0)}/${rounds + 1}`,
    });
  } finally {
    await Promise.all(agents.map((a) => a.close()));
    await broker?.stop();
    keys.cleanup();
  }
}
