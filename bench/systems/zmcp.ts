/**
 * zmcp, one system per security step, all through the real `zmq-broker` bin:
 *
 * - `zmcp-curve`: CURVE transport only. Raw DEALERs send real headers with an unsealed
 *   payload, so the broker does its full job (ZAP identity routing, header checks) but no
 *   agent seals, opens or validates a body.
 * - `zmcp-sealed`: CURVE + sealed payload: `Agent.call` to an echo tool of another `Agent`.
 * - `zmcp-token`: CURVE + sealed + an EdDSA capability token on every call, required and checked
 *   by the responder.
 * - `zmcp-direct`: as `zmcp-sealed` over a direct link (README "Direct links"): the responder
 *   listens, the caller learns its endpoint and dials it before the measurement; the broker
 *   stays up for the first call and as the fallback.
 *
 * A new step is one entry of {@link ZMCP_STEPS}: an `agent` step can prepare files once per
 * deployment (`prepare`) and take extra agent and call options from hooks that run in the
 * worker processes (`agentOptions`, `callOptions`).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as zmq from "zeromq";
import { z } from "zod";
import { Agent, type AgentOptions, type CallOptions } from "../../src/agent/agent.js";
import { generateCertificate, loadSecretCertificate, saveCertificate } from "../../src/auth/certs.js";
import { generateAuthority, saveAuthority } from "../../src/auth/jwk.js";
import { TokenIssuer } from "../../src/auth/tokens.js";
import { decodeHeader, encodeHeader, idKey, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { receiveLoop } from "../../src/support/receive-loop.js";
import { SocketWriter } from "../../src/support/writer.js";
import { ROOT, sleep, spawnNode, startWorker, type SpawnedProc } from "../proc.js";
import type { Client, Service, WorkerConfig } from "../types.js";
import { nodeCaller, stopAll, type SystemSpec } from "./spec.js";

export interface ZmcpStep {
  id: string;
  title: string;
  describe: string;
  /** `raw`: DEALERs with headers and an unsealed payload; `agent`: the real Agent SDK. */
  mode: "raw" | "agent";
  /**
   * Runs once per deployment in the bench process, after the certificates are written and
   * before any process starts: e.g. write a token authority's key pair into `certDir`.
   */
  prepare?: (certDir: string) => void | Promise<void>;
  /** Extra options for `Agent.connect` of the caller or the responder (worker side), e.g. `token` or `authority`. */
  agentOptions?: (certDir: string, role: "caller" | "responder") => Partial<AgentOptions>;
  /** Extra options for every `Agent.call` (worker side). */
  callOptions?: (certDir: string) => Partial<CallOptions>;
  /** Runs in the caller's worker once it is connected, before any measured call (e.g. open a direct link). */
  callerReady?: (agent: Agent, responderKey: string) => Promise<void>;
  /** Listed but not run, with this reason. */
  skip?: string;
  /** Environment of every process of this step (broker, responder, caller), e.g. `ZMCP_CRYPTO`. */
  env?: Record<string, string>;
}

export const ZMCP_STEPS: ZmcpStep[] = [
  {
    id: "zmcp-curve",
    title: "zmcp CURVE only",
    describe: "real zmq-broker (CURVE, ZAP identity routing, header checks); raw DEALERs, header + unsealed payload",
    mode: "raw",
  },
  {
    id: "zmcp-sealed",
    title: "zmcp CURVE+sealed",
    describe: "real zmq-broker; Agent.call → echo tool of another Agent, payload sealed end to end (NaCl box)",
    mode: "agent",
  },
  {
    // The same as zmcp-sealed with the pure-JS reference crypto: what libsodium buys, in one run.
    id: "zmcp-sealed-js",
    title: "zmcp CURVE+sealed, tweetnacl",
    describe: "as zmcp-sealed with ZMCP_CRYPTO=js: the box in tweetnacl (pure JS) instead of libsodium",
    mode: "agent",
    env: { ZMCP_CRYPTO: "js" },
  },
  {
    id: "zmcp-token",
    title: "zmcp CURVE+sealed+token",
    describe: "as zmcp-sealed, plus an EdDSA capability token on every call, required and checked by the responder",
    mode: "agent",
    prepare: (certDir) => {
      saveAuthority(generateAuthority().privateJwk, certDir, "authority", { force: true });
    },
    agentOptions: (certDir, role) => {
      if (role === "responder") return { authority: join(certDir, "authority.pub.jwk"), requireToken: true };
      // The caller holds a provider, as a long-lived agent would: tokens are minted once and
      // refreshed before expiry, verified once by the responder and then served from its cache.
      const issuer = new TokenIssuer(join(certDir, "authority.jwk"));
      const key = loadSecretCertificate(join(certDir, "caller.key_secret")).publicKey;
      return { token: () => issuer.issue({ sub: "caller", key, scope: "call:*" }) };
    },
  },
  {
    id: "zmcp-direct",
    title: "zmcp CURVE+sealed, direct link",
    describe: "as zmcp-sealed over a direct link: the caller's CURVE DEALER to the responder's own listener, payload still sealed; the broker only for the first call",
    mode: "agent",
    // The bench's agents know the broker by serverKey, not certs: the listener admits the certificate directory.
    agentOptions: (certDir, role) => (role === "responder" ? { listen: "tcp://127.0.0.1:0", listenAllow: certDir } : { direct: true }),
    callerReady: async (agent, responderKey) => {
      // The first calls go through the broker while the endpoint is learned and the link dialled.
      for (let i = 0; i < 200 && (agent.direct.links?.sent ?? 0) === 0; i++) {
        await agent.call(responderKey, "echo", { data: new Uint8Array(1) });
        await sleep(10);
      }
      if ((agent.direct.links?.sent ?? 0) === 0) throw new Error("zmcp-direct: no direct link after 200 calls");
    },
  },
];

const ECHO_INPUT = z.strictObject({ data: z.instanceof(Uint8Array) });
const CALL_TIMEOUT_MS = 10_000;
/** Idle agents connected concurrently while growing. */
const CONNECT_BATCH = 50;
const BROKER_BIN = join(ROOT, "dist", "bin", "zmq-broker.js");

export const idleName = (i: number) => `idle-${String(i).padStart(5, "0")}`;

/** The message cap of the benchmark's broker and agents: the 1 MiB rows need more than the 1 MiB default. */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Messages the benchmark's broker queues per peer (see spawnBroker): libzmq's default high-water mark. */
const BROKER_QUEUE_MESSAGES = 1000;

/** Spawns the real broker bin on a free port and waits for its `ready` log line. */
async function spawnBroker(certDir: string, n: number, env?: Record<string, string>): Promise<{ proc: SpawnedProc; endpoint: string }> {
  const proc = spawnNode(`zmq-broker#${n}`, BROKER_BIN, [
    "--bind",
    "tcp://127.0.0.1:*",
    "--key",
    join(certDir, "broker.key_secret"),
    "--allow",
    certDir,
    "--log-level",
    "info",
    // 4 MiB: room for the 1 MiB rows (payload + msgpack + seal); agents get the same cap.
    "--max-message-bytes",
    String(MAX_MESSAGE_BYTES),
    // The broker derives its per-peer queue in messages (libzmq's high-water marks) from
    // queueBytes / maxMessageBytes: 64 with the 4 MiB cap, fewer than the 256 calls in flight,
    // so answers were dropped (`X's queue is full`) and retried after the 2 s attempt timeout.
    // Sized as a deployment with 256 calls in flight per caller would be: the libzmq default.
    "--queue-bytes",
    String(BROKER_QUEUE_MESSAGES * MAX_MESSAGE_BYTES),
  ], env);
  try {
    const match = await proc.waitFor(/"msg":"ready".*"endpoint":"([^"]+)"/, 15_000);
    return { proc, endpoint: match[1]! };
  } catch (err) {
    await proc.stop(0);
    throw err;
  }
}

function zmcpSystem(step: ZmcpStep): SystemSpec {
  const spec: SystemSpec = {
    id: step.id,
    title: step.title,
    describe: step.describe,
    maxBrokers: 8,
    async start(env, options) {
      const certDir = join(env.tmp, step.id);
      mkdirSync(certDir, { recursive: true });
      const keys: Record<string, string> = {};
      for (const name of ["broker", "caller", "responder"]) {
        const cert = generateCertificate({ name });
        saveCertificate(cert, certDir, name, { force: true });
        keys[name] = cert.publicKey;
      }
      for (let i = 0; i < (options.idleAgents ?? 0); i++) saveCertificate(generateCertificate({ name: idleName(i) }), certDir, idleName(i), { force: true });
      await step.prepare?.(certDir);
      const brokers: SpawnedProc[] = [];
      const endpoints: string[] = [];
      const config = () => ({ endpoints, certDir, serverKey: keys["broker"], responderKey: keys["responder"] });
      try {
        for (let i = 0; i < (options.brokers ?? 1); i++) {
          const b = await spawnBroker(certDir, i, step.env);
          brokers.push(b.proc);
          endpoints.push(b.endpoint);
        }
        const responder = await startWorker(step.id, "responder", config(), undefined, step.env);
        return {
          brokers,
          responder,
          caller: () => nodeCaller(step.id, config(), step.env),
          idle: () => startWorker(step.id, "idle", config(), 60_000, step.env),
          stop: () => stopAll([responder, ...brokers]),
        };
      } catch (err) {
        await stopAll(brokers);
        throw err;
      }
    },
    roles: step.mode === "raw" ? rawRoles() : agentRoles(step),
  };
  if (step.skip !== undefined) spec.skip = step.skip;
  return spec;
}

export const zmcpSystems: SystemSpec[] = ZMCP_STEPS.map(zmcpSystem);

interface ZmcpConfig {
  endpoints: string[];
  certDir: string;
  serverKey: string;
  responderKey: string;
}
const zmcpConfig = (c: WorkerConfig) => c as unknown as ZmcpConfig;

async function connectAgent(c: ZmcpConfig, name: string, extra: Partial<AgentOptions> = {}): Promise<Agent> {
  const agent = await Agent.connect({
    broker: c.endpoints,
    cert: join(c.certDir, `${name}.key_secret`),
    serverKey: c.serverKey,
    connectTimeout: 20_000,
    timeout: CALL_TIMEOUT_MS,
    maxMessageBytes: MAX_MESSAGE_BYTES,
    ...extra,
  });
  // Agent.connect waits for the first handshake; give the other brokers of a fleet theirs.
  if (c.endpoints.length > 1) await sleep(500);
  return agent;
}

function agentRoles(step: ZmcpStep): Record<string, (config: WorkerConfig) => Promise<Client | Service>> {
  return {
    async responder(config) {
      const c = zmcpConfig(config);
      // The answer cache keeps an entry per request for retries until its request's deadline
      // (10 s here), within a budget per caller (src/agent/idempotency.ts): by default 25,000
      // entries and 16 MiB, i.e. about 2,500 calls/s sustained from one caller, which one
      // benchmark client exceeds (on a direct link, 12,000/s). The benchmark measures the path,
      // so its one caller may use the whole cache (64 MiB, as by default in all) and any count.
      const answerLimits = { maxEntries: 10_000_000, maxEntriesPerOwner: 10_000_000, maxBytesPerOwner: 64 * 1024 * 1024 };
      const agent = await connectAgent(c, "responder", { answerLimits, ...step.agentOptions?.(c.certDir, "responder") });
      agent.tool("echo", { description: "returns its argument", input: ECHO_INPUT }, ({ data }) => ({ data }));
      return { close: () => agent.close() };
    },
    async caller(config) {
      const c = zmcpConfig(config);
      const agent = await connectAgent(c, "caller", step.agentOptions?.(c.certDir, "caller"));
      await step.callerReady?.(agent, c.responderKey);
      const callOptions = step.callOptions?.(c.certDir) ?? {};
      return {
        async call(payload) {
          const result = (await agent.call(c.responderKey, "echo", { data: payload }, callOptions)) as { data?: Uint8Array } | undefined;
          if (result?.data?.length !== payload.length) throw new Error(`echo of ${result?.data?.length} bytes for a call of ${payload.length}`);
        },
        close: () => agent.close(),
      };
    },
    idle: idleRole,
  };
}

/** Agents that connect and do nothing else: the broker's cost per connected agent. */
async function idleRole(config: WorkerConfig): Promise<Service> {
  const c = zmcpConfig(config);
  // Each agent holds a DEALER and its monitor (two sockets); libzmq's default cap is 1023.
  zmq.context.maxSockets = Math.min(zmq.context.maxSocketsLimit, 65_536);
  const agents: Agent[] = [];
  return {
    async grow(n) {
      const t0 = Date.now();
      while (agents.length < n) {
        const batch = Array.from({ length: Math.min(CONNECT_BATCH, n - agents.length) }, (_, i) =>
          Agent.connect({ broker: c.endpoints, cert: join(c.certDir, `${idleName(agents.length + i)}.key_secret`), serverKey: c.serverKey, connectTimeout: 30_000 }),
        );
        agents.push(...(await Promise.all(batch)));
      }
      return { agents: agents.length, connectMs: Date.now() - t0 };
    },
    async close() {
      await Promise.all(agents.map((a) => a.close()));
    },
  };
}

/** Resolves once `socket` has completed `count` CURVE handshakes. */
function handshakes(socket: zmq.Dealer, count: number, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => reject(new Error(`only ${seen} of ${count} CURVE handshakes within ${timeoutMs} ms`)), timeoutMs);
    void (async () => {
      try {
        for await (const event of socket.events) {
          if (event.type === "handshake" && ++seen === count) {
            clearTimeout(timer);
            return resolve();
          }
          if (event.type.startsWith("handshake:error")) {
            clearTimeout(timer);
            return reject(new Error(`CURVE handshake failed: ${event.type}`));
          }
        }
      } catch {
        // socket closed
      }
    })();
  });
}

async function rawDealer(c: ZmcpConfig, name: string): Promise<zmq.Dealer> {
  const cert = loadSecretCertificate(join(c.certDir, `${name}.key_secret`));
  const dealer = new zmq.Dealer({
    routingId: cert.publicKey, // as Agent does: the broker's rename then holds whatever the ZAP timing
    curveServerKey: c.serverKey,
    curvePublicKey: cert.publicKey,
    curveSecretKey: cert.secretKey,
    linger: 0,
    maxMessageSize: MAX_MESSAGE_BYTES,
  });
  const ready = handshakes(dealer, c.endpoints.length);
  for (const endpoint of c.endpoints) dealer.connect(endpoint);
  try {
    await ready;
  } catch (err) {
    dealer.close();
    throw err;
  }
  return dealer;
}

function rawRoles(): Record<string, (config: WorkerConfig) => Promise<Client | Service>> {
  return {
    async responder(config) {
      const c = zmcpConfig(config);
      const dealer = await rawDealer(c, "responder");
      const writer = new SocketWriter(dealer);
      let closed = false;
      // Receive errors are ignored: a benchmark role stops only when closed.
      const loop = receiveLoop(dealer, () => closed, (frames) => {
        const [from, headerBytes, body] = frames as [Buffer, Buffer, Buffer];
        if (from.length === 0) return; // a nack
        try {
          const request = decodeHeader(headerBytes);
          const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: from.toString("latin1"), exp: Math.max(request.exp, Date.now() + 1000), re: request.id };
          void writer.send([encodeHeader(header), body]).catch(() => undefined);
        } catch {
          // a bad header from a faulty peer: nothing to answer
        }
      }, () => undefined);
      return {
        async close() {
          closed = true;
          dealer.close();
          await loop;
        },
      };
    },

    async caller(config) {
      const c = zmcpConfig(config);
      const dealer = await rawDealer(c, "caller");
      const writer = new SocketWriter(dealer);
      const pending = new Map<string, { size: number; resolve: () => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
      const settle = (key: string, err: Error | undefined, size?: number) => {
        const p = pending.get(key);
        if (!p) return;
        pending.delete(key);
        clearTimeout(p.timer);
        if (err) p.reject(err);
        else if (size !== p.size) p.reject(new Error(`echo of ${size} bytes for a call of ${p.size}`));
        else p.resolve();
      };
      let closed = false;
      // Receive errors are ignored: a benchmark role stops only when closed.
      const loop = receiveLoop(dealer, () => closed, (frames) => {
        const [from, headerBytes, body] = frames as [Buffer, Buffer, Buffer];
        try {
          const header = decodeHeader(headerBytes);
          if (!header.re) return;
          if (from.length === 0) settle(idKey(header.re), new Error(`broker: ${header.code}: ${header.msg}`));
          else settle(idKey(header.re), undefined, body.length);
        } catch {
          // unreadable header: ignored, the call times out
        }
      }, () => undefined);
      return {
        call(payload) {
          return new Promise<void>((resolve, reject) => {
            const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: c.responderKey, exp: Date.now() + CALL_TIMEOUT_MS };
            const key = idKey(header.id);
            const timer = setTimeout(() => settle(key, new Error("timeout")), CALL_TIMEOUT_MS);
            pending.set(key, { size: payload.length, resolve, reject, timer });
            writer.send([encodeHeader(header), payload]).catch((err: Error) => settle(key, err));
          });
        },
        async close() {
          closed = true;
          for (const key of [...pending.keys()]) settle(key, new Error("closed"));
          dealer.close();
          await loop;
        },
      };
    },
  };
}
