/**
 * Publish-subscribe figures (docs/EVENTS.md): publish-to-deliver latency and messages/s with
 * 1, 10 and 100 subscribers, zmcp next to NATS publish/subscribe, in one run on one machine.
 *
 *   npm run bench:events -- [--subscribers 1,10,100] [--systems zmcp,nats] [--payload 256]
 *                           [--rate 200] [--latency-ms 3000] [--burst 2000] [--out bench/results] [--name events]
 *
 * Processes: the broker (the real `zmq-broker` bin) or `nats-server`; one subscriber process
 * holding all N subscribers (N agents, or N NATS connections); the publisher in this process.
 * Systems (`--systems`, default all three):
 * - `zmcp`: the real group keys (src/events): a key distributor agent (`serveEventKeys`, in
 *   this process, checking tokens of a bench authority), members with `groupKeys` and tokens
 *   (`pub:bench.>` for the publisher, `sub:bench.>` for each subscriber): each publication is
 *   sealed once under the topic's epoch key and signed, each subscriber checks the credential
 *   and the signature;
 * - `zmcp-psk`: the PSK TEST SEALER (test/support/events-psk.ts: one pre-shared secretbox key,
 *   SHA-512 of the header bound in, no signature), to show what the group keys cost;
 * - `nats`: nats-server with nats.js, no TLS.
 *
 * - latency: publications at a fixed `--rate` for `--latency-ms`, each stamped with the wall
 *   clock (µs, performance.timeOrigin + now) when `publish` is called; every subscriber records
 *   its receipt time minus that stamp (same host, same clock) in one HDR histogram: p50/p99
 *   over all deliveries.
 * - throughput: `--burst` publications as fast as the publisher goes; publications/s = burst /
 *   (last receipt at any subscriber − first publish), deliveries/s = N × that, and the share
 *   delivered (at most once: a subscriber that falls behind loses copies, and it is reported).
 *
 * Internal mode: `--role sub` is the subscriber process (JSON lines on stdout, commands on stdin).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { spawn } from "node:child_process";
import hdr from "hdr-histogram-js";
import { Agent } from "../src/agent/agent.js";
import { generateCertificate, loadCertificate, saveCertificate } from "../src/auth/certs.js";
import { generateAuthority, saveAuthority } from "../src/auth/jwk.js";
import { TokenIssuer } from "../src/auth/tokens.js";
import { serveEventKeys } from "../src/events/distributor.js";
import { groupKeys } from "../src/events/group-keys.js";
import type { EventSealerFactory } from "../src/events/sealer.js";
import type { TokenProvider } from "../src/auth/token-source.js";
import { createLogger } from "../src/support/log.js";
import { pskEvents } from "../test/support/events-psk.js";
import { installCleanup, removeOnExit, ROOT, sleep, spawnNode, spawnProgram, type SpawnedProc } from "./proc.js";
import { machineInfo } from "./run.js";
import { findNatsServer } from "./systems/nats.js";

const { values } = parseArgs({
  options: {
    role: { type: "string", default: "main" },
    system: { type: "string" },
    count: { type: "string" },
    endpoint: { type: "string" },
    certs: { type: "string" },
    subscribers: { type: "string", default: "1,10,100" },
    systems: { type: "string", default: "zmcp,zmcp-psk,nats" },
    payload: { type: "string", default: "256" },
    rate: { type: "string", default: "200" },
    "latency-ms": { type: "string", default: "3000" },
    burst: { type: "string", default: "2000" },
    out: { type: "string", default: join(ROOT, "bench", "results") },
    name: { type: "string", default: "events" },
  },
});

const TOPIC = "bench.events";
/** The distributor's certificate name (members find its key in the certs directory). */
const DISTRIBUTOR = "keys";

/**
 * What a zmcp member of `system` connects with: the group-key sealer and a token of `scope`
 * (issued by the bench authority whose private JWK is in the certs directory, renewed by the
 * agent before it expires), or the PSK test sealer and no token.
 */
function memberOptions(system: string, certs: string, name: string, scope: string): { events: EventSealerFactory; token?: TokenProvider } {
  if (system === "zmcp-psk") return { events: pskEvents() };
  const issuer = new TokenIssuer(join(certs, "authority.jwk"));
  return { events: groupKeys({ distributor: DISTRIBUTOR }), token: () => issuer.issue({ sub: name, key: keyOf(certs, name), scope }) };
}

function keyOf(certs: string, name: string): string {
  return loadCertificate(join(certs, `${name}.key_secret`)).publicKey;
}
/** Wall clock in µs (fractional), comparable across processes of one host. */
const wallUs = () => (performance.timeOrigin + performance.now()) * 1000;

interface Stamp {
  t: number;
  pad: string;
}

// ---- the subscriber process --------------------------------------------------------------

async function subscriberProcess(): Promise<void> {
  const system = values.system!;
  const count = Number(values.count);
  let histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60e6, numberOfSignificantValueDigits: 3 });
  let received = 0;
  let firstAt = 0;
  let lastAt = 0;
  const onStamp = (stamp: Stamp) => {
    const now = wallUs();
    received++;
    if (firstAt === 0) firstAt = now;
    lastAt = now;
    histogram.recordValue(Math.max(1, Math.round(now - stamp.t)));
  };
  const closers: Array<() => Promise<unknown>> = [];
  if (system.startsWith("zmcp")) {
    for (let i = 0; i < count; i++) {
      const member = memberOptions(system, values.certs!, `sub${i}`, "sub:bench.>");
      const agent = await Agent.connect({ broker: values.endpoint!, cert: join(values.certs!, `sub${i}.key_secret`), certs: values.certs!, log: createLogger("error"), ...member });
      await agent.subscribe(TOPIC, (event) => onStamp(event.data as Stamp), { maxQueue: 100_000, maxQueueBytes: 1 << 30 });
      closers.push(() => agent.close());
    }
  } else {
    const { connect, JSONCodec } = await import("nats");
    const codec = JSONCodec<Stamp>();
    for (let i = 0; i < count; i++) {
      const nc = await connect({ servers: values.endpoint! });
      nc.subscribe(TOPIC, { callback: (err, msg) => void (err ? undefined : onStamp(codec.decode(msg.data))) });
      await nc.flush();
      closers.push(() => nc.close());
    }
  }
  const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  say({ ready: true });
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { cmd: string };
    if (cmd.cmd === "reset") {
      histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60e6, numberOfSignificantValueDigits: 3 });
      received = firstAt = lastAt = 0;
      say({ reset: true });
    } else if (cmd.cmd === "report") {
      say({ report: { received, firstAt, lastAt, p50: histogram.getValueAtPercentile(50), p99: histogram.getValueAtPercentile(99), max: histogram.maxValue } });
    } else if (cmd.cmd === "stop") {
      await Promise.all(closers.map((c) => c().catch(() => undefined)));
      process.exit(0);
    }
  }
}

// ---- the publisher and the run ------------------------------------------------------------

interface Report {
  received: number;
  firstAt: number;
  lastAt: number;
  p50: number;
  p99: number;
  max: number;
}

interface SubscriberProc {
  ask(cmd: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

async function startSubscribers(system: string, count: number, endpoint: string, certs: string): Promise<SubscriberProc> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--role", "sub", "--system", system, "--count", String(count), "--endpoint", endpoint, "--certs", certs], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(o: Record<string, unknown>) => void> = [];
  lines.on("line", (line) => {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    waiting.shift()?.(o);
  });
  const next = (timeoutMs: number) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${system} subscribers: no answer within ${timeoutMs} ms`)), timeoutMs);
      waiting.push((o) => {
        clearTimeout(timer);
        resolve(o);
      });
    });
  await next(120_000); // ready
  return {
    ask(cmd) {
      // Generous: a subscriber process behind on its backlog (100 agents verifying signatures) answers late, not never.
      const answer = next(180_000);
      child.stdin!.write(`${JSON.stringify({ cmd })}\n`);
      return answer;
    },
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin!.write(`${JSON.stringify({ cmd: "stop" })}\n`);
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface Publisher {
  publish(stamp: Stamp): Promise<void> | void;
  flush(): Promise<void>;
  close(): Promise<void>;
}

interface Deployment {
  endpoint: string;
  publisher: () => Promise<Publisher>;
  stop(): Promise<void>;
}

/** Certificates for the broker, the distributor, the publisher and the subscribers, and the bench's token authority. */
function makeCerts(tmp: string, maxSubscribers: number): string {
  const certs = join(tmp, "certs");
  mkdirSync(certs, { recursive: true });
  for (const name of ["broker", DISTRIBUTOR, "pub", ...Array.from({ length: maxSubscribers }, (_, i) => `sub${i}`)]) saveCertificate(generateCertificate({ name }), certs, name);
  saveAuthority(generateAuthority().privateJwk, certs, "authority");
  return certs;
}

/** One broker process; for the group keys, the distributor agent too (in this process: it answers one fetch per member and lease). */
async function deployZmcp(system: string, certs: string): Promise<Deployment> {
  const broker: SpawnedProc = spawnNode("zmq-broker", join(ROOT, "dist", "bin", "zmq-broker.js"), ["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs, "--log-level", "info"]);
  const m = await broker.waitFor(/"msg":"ready".*"endpoint":"(tcp:\/\/[^"]+)"/, 15_000);
  const endpoint = m[1]!;
  let keys: Agent | undefined;
  if (system === "zmcp") {
    keys = await Agent.connect({ broker: endpoint, cert: join(certs, `${DISTRIBUTOR}.key_secret`), certs, log: createLogger("error"), authority: join(certs, "authority.pub.jwk"), requireToken: true });
    serveEventKeys(keys, { topics: ["bench.>"] });
  }
  return {
    endpoint,
    async publisher() {
      const agent = await Agent.connect({ broker: endpoint, cert: join(certs, "pub.key_secret"), certs, log: createLogger("error"), ...memberOptions(system, certs, "pub", "pub:bench.>") });
      return { publish: (stamp) => agent.publish(TOPIC, stamp), flush: () => Promise.resolve(), close: () => agent.close() };
    },
    async stop() {
      await keys?.close();
      await broker.stop();
    },
  };
}

async function deployNats(): Promise<Deployment> {
  const server = spawnProgram("nats-server", findNatsServer()!, ["-a", "127.0.0.1", "-p", "-1"]);
  const m = await server.waitFor(/Listening for client connections on ([\d.]+:\d+)/, 10_000);
  await server.waitFor(/Server is ready/, 10_000);
  const endpoint = m[1]!;
  return {
    endpoint,
    async publisher() {
      const { connect, JSONCodec } = await import("nats");
      const codec = JSONCodec<Stamp>();
      const nc = await connect({ servers: endpoint });
      return { publish: (stamp) => nc.publish(TOPIC, codec.encode(stamp)), flush: () => nc.flush(), close: () => nc.close() };
    },
    stop: () => server.stop(),
  };
}

interface Row {
  system: string;
  subscribers: number;
  latency: { p50Us: number; p99Us: number; maxUs: number; delivered: number; expected: number };
  throughput: { publications: number; publicationsPerSec: number; deliveriesPerSec: number; delivered: number; expected: number };
}

async function waitForDeliveries(subs: SubscriberProc, expected: number): Promise<Report> {
  let last = -1;
  let stableSince = Date.now();
  for (;;) {
    const report = (await subs.ask("report"))["report"] as Report;
    if (report.received >= expected) return report;
    if (report.received !== last) {
      last = report.received;
      stableSince = Date.now();
    } else if (Date.now() - stableSince > 1500) return report; // at most once: what is lost stays lost
    await sleep(100);
  }
}

async function measure(system: string, deployment: Deployment, count: number, certs: string): Promise<Row> {
  const subs = await startSubscribers(system, count, deployment.endpoint, certs);
  const publisher = await deployment.publisher();
  try {
    const pad = "p".repeat(Math.max(0, Number(values.payload) - 40));
    await sleep(300);
    // Latency: a fixed rate, each publication stamped when publish is called.
    await subs.ask("reset");
    const rate = Number(values.rate);
    const total = Math.round((rate * Number(values["latency-ms"])) / 1000);
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      await publisher.publish({ t: wallUs(), pad });
    }
    await publisher.flush();
    const lat = await waitForDeliveries(subs, total * count);
    // Throughput: a burst, as fast as the publisher goes.
    await subs.ask("reset");
    const burst = Number(values.burst);
    const t0 = wallUs();
    const sent: Array<Promise<void> | void> = [];
    for (let i = 0; i < burst; i++) sent.push(publisher.publish({ t: wallUs(), pad }));
    await Promise.all(sent);
    await publisher.flush();
    const thr = await waitForDeliveries(subs, burst * count);
    const seconds = Math.max(1e-6, (thr.lastAt - t0) / 1e6);
    const us = (v: number) => Math.round(v * 10) / 10;
    return {
      system,
      subscribers: count,
      latency: { p50Us: us(lat.p50), p99Us: us(lat.p99), maxUs: us(lat.max), delivered: lat.received, expected: total * count },
      throughput: {
        publications: burst,
        publicationsPerSec: Math.round(thr.received / count / seconds),
        deliveriesPerSec: Math.round(thr.received / seconds),
        delivered: thr.received,
        expected: burst * count,
      },
    };
  } finally {
    await publisher.close();
    await subs.stop();
  }
}

async function main(): Promise<void> {
  installCleanup();
  const tmp = mkdtempSync(join(tmpdir(), "zmq-bench-events-"));
  removeOnExit(tmp);
  const counts = values.subscribers!.split(",").map(Number);
  const systems = values.systems!.split(",").map((s) => s.trim());
  const rows: Row[] = [];
  const skipped: Record<string, string> = {};
  const max = Math.max(...counts);
  const deployments: Record<string, Deployment> = {};
  const certs = makeCerts(tmp, max);
  for (const system of systems.filter((s) => s.startsWith("zmcp"))) {
    if (system !== "zmcp" && system !== "zmcp-psk") throw new Error(`unknown system ${system}`);
    deployments[system] = await deployZmcp(system, certs);
  }
  if (systems.includes("nats")) {
    if (findNatsServer()) deployments["nats"] = await deployNats();
    else skipped["nats"] = "nats-server not found";
  }
  try {
    // Each size, the systems in turn: a burst of other load on the machine weighs on both alike.
    for (const count of counts) {
      for (const system of systems) {
        const d = deployments[system];
        if (!d) continue;
        process.stderr.write(`  ${system}, ${count} subscriber(s)...\n`);
        rows.push(await measure(system, d, count, certs));
      }
    }
  } finally {
    await Promise.all(Object.values(deployments).map((d) => d.stop()));
  }
  const title = (s: string) => TITLES[s] ?? s;
  const lines = [
    `publish-subscribe, payload ${values.payload} B, latency at ${values.rate}/s for ${values["latency-ms"]} ms, throughput over a burst of ${values.burst}`,
    "| system | subscribers | p50 µs | p99 µs | delivered (latency) | publications/s | deliveries/s | delivered (burst) |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${title(r.system)} | ${r.subscribers} | ${r.latency.p50Us} | ${r.latency.p99Us} | ${r.latency.delivered}/${r.latency.expected} | ${r.throughput.publicationsPerSec} | ${r.throughput.deliveriesPerSec} | ${r.throughput.delivered}/${r.throughput.expected} |`,
    ),
    ...Object.entries(skipped).map(([s, why]) => `skipped ${s}: ${why}`),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  mkdirSync(values.out!, { recursive: true });
  const file = join(values.out!, `${values.name}.json`);
  writeFileSync(file, JSON.stringify({ machine: machineInfo(), options: values, sealers: { zmcp: "group keys (src/events: groupKeys + serveEventKeys, tokens with pub:/sub: scopes)", "zmcp-psk": "PSK test sealer (test/support/events-psk.ts)" }, rows, skipped }, null, 2));
  process.stderr.write(`wrote ${file}\n`);
}

const TITLES: Record<string, string> = { zmcp: "zmcp (group keys)", "zmcp-psk": "zmcp (PSK test sealer)", nats: "NATS (no TLS)" };

if (values.role === "sub") await subscriberProcess();
else await main();
