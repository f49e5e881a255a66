/**
 * The agent SDK: one DEALER socket, one curve key. An agent offers tools (arguments checked
 * with zod), calls other agents' tools, runs long tools as jobs, and may serve as a replica of
 * a named service. Every payload is sealed end to end.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import * as zmq from "zeromq";
import { z } from "zod";
import { loadCertDirectory, loadCertificate, loadSecretCertificate, type Certificate, type CertDirectory } from "./certs.js";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  decodeArgs,
  decodeHeader,
  encodedSize,
  MAX_DEPTH,
  ProgressSchema,
  decodeInner,
  encodeHeader,
  encodeInner,
  idKey,
  newId,
  PROTOCOL_VERSION,
  type Event,
  type Header,
  type InnerDraft,
  type Progress,
  type Request,
  type Response,
} from "./envelope.js";
import { answererOf, jobAnswerer, KeyCounts, mismatch, type Answerer } from "./answerer.js";
import { ConfigError, ForgedAnswerError, isWireCode, ProtocolError, remoteError, TimeoutError, ZmcpError, type WireCode } from "./errors.js";
import type { BudgetLimits } from "./budget.js";
import { describeThrown, failure } from "./handler.js";
import { AnswerCache, DEFAULT_ANSWER_LIMITS, type Answer } from "./idempotency.js";
import { BUILTIN_TOOLS, DEFAULT_JOB_LIMITS, isBuiltinTool, Job, jobRunner, JobTable, newJobId, type JobState } from "./jobs.js";
import { silentLogger, type Logger } from "./log.js";
import { answerExp, ClockOffsets, eventExp, refusalExp, wireMs } from "./clock.js";
import { bump, latencyHistogram, readCounter, readGauge, readLabelledCounter, Registry } from "./metrics.js";
import { checkMsgpack } from "./msgpack-guard.js";
import { PendingCalls } from "./pending.js";
import { receiveLoop } from "./receive-loop.js";
import { DEFAULT_MAX_SEEN, DEFAULT_REPLAY_WINDOW_MS, defaultStartGrace, ReplayGuard } from "./replay.js";
import { StoredCalls, type DurableCallOptions } from "./store/caller.js"; // hook(durable)
import { OrphanEvents } from "./store/orphans.js"; // hook(durable)
import { attemptTimeout, backoff, isRetryable, retryPolicy, sleep, type RetryOptions } from "./retry.js";
import { Sealer } from "./seal.js";
import { checkSendable } from "./sendable.js";
import { AckWatch } from "./liveness.js";
import { DEFAULT_HEARTBEAT_MS, isServiceName, makeServiceProof, parseServiceAddress, serviceAddress } from "./services.js";
import { TokenSource, type TokenProvider } from "./token-source.js";
import { checkScopeToken, defaultToolScope, scopeCovers, TokenVerifier, type AuthorityInput, type VerifiedToken } from "./tokens.js";
import { SocketWriter } from "./writer.js";
import { isZ85Key } from "./z85.js";

export interface AgentOptions {
  /** Broker endpoint(s), e.g. `tcp://127.0.0.1:5555`. With several, the agent connects to all. */
  broker: string | string[];
  /** The agent's secret certificate: a `.key_secret` path, or a loaded certificate. */
  cert: string | Required<Certificate>;
  /** Directory of public certificates: resolves names (and service keys) to keys, and holds `broker.key`. */
  certs?: string;
  /** The broker's Z85 public key. Default: read from `<certs>/broker.key`. */
  serverKey?: string;
  /** Wait this long (ms) for the first CURVE handshake; 0 returns without waiting. Default 10,000. */
  connectTimeout?: number;
  /** Default deadline of a call, ms. Default 30,000. */
  timeout?: number;
  /** Retries of calls on `busy`, `no_route` and lost answers, within the deadline; `false` turns them off. Default on. */
  retry?: RetryOptions | false;
  /** Accepted clock difference with peers, ms (replay window). Default 60,000. */
  replayWindow?: number;
  /**
   * Requests stamped more than this before the agent started are refused `busy` (callers
   * retry them with a fresh timestamp): a message the previous process may have run cannot be
   * replayed to this one. Also the clock lag tolerated from callers during the first moments
   * after a start (see replay.ts), ms. Default: half of `replayWindow` (30,000).
   */
  startGrace?: number;
  /** Largest message sent or accepted (header + body), bytes. Default 1 MiB (the broker's default). */
  maxMessageBytes?: number;
  /** Tool runs (calls and jobs) at once; past it requests are answered `busy`. Default 64. */
  maxConcurrency?: number;
  /** How long a finished job stays pollable, ms. Default 600,000. */
  jobTtl?: number;
  /**
   * Jobs held (running, and finished until `jobTtl`) and the bytes of their results, in total
   * and per caller; past them new job requests are answered `busy`. Default 1,000 jobs and
   * 128 MiB in total, 200 jobs and 32 MiB per caller.
   */
  jobLimits?: Partial<BudgetLimits>;
  /**
   * Answers remembered for retries (idempotency, 120 s) and their bytes, in total and per
   * caller; past them new requests are answered `busy`. Default 100,000 answers and 64 MiB in
   * total, 25,000 answers and 16 MiB per caller (each answer counts its bytes + 256).
   */
  answerLimits?: Partial<BudgetLimits>;
  /** How often a caller polls a job it started, in case a pushed event was lost, ms; 0 = never. Default 2,000. */
  jobPollInterval?: number;
  /**
   * A started job whose runner answers no poll for this long fails with `timeout` (the runner
   * was killed and did not come back), so `job.result` never waits forever, ms. Default 30,000.
   */
  jobLostAfter?: number;
  /** Interval of service heartbeats to the broker, ms. Default 1,000. */
  serviceHeartbeat?: number;
  /**
   * Liveness with the broker, ms: a `hb` message this often, and a redial when nothing came from
   * the broker for 3 × this (a frozen broker, a half-open connection); the broker refuses to
   * route to an agent silent that long. 0 disables. Not ZMTP heartbeats: with those libzmq 4.3.5
   * can abort the process when its broker dies while input is backed up (liveness.ts). Default 2,000.
   */
  heartbeatInterval?: number;
  /**
   * Trusted token authorities: a public JWK file or JWK Set file (re-read when it changes), a
   * JWK, or a list of them; several are trusted at once during a rotation, picked by `kid`.
   */
  authority?: AuthorityInput;
  /** Refuse requests without a valid token (`token_missing`). Default true when `authority` is set. */
  requireToken?: boolean;
  /** The audience this agent answers to; tokens' `aud` must name it. Default `"mesh"`. */
  audience?: string;
  /** Clock difference tolerated on tokens' `exp` and `nbf`, ms. Default 30,000. */
  clockSkew?: number;
  /** Deny list file of revoked token ids and keys (JSON, see denylist.ts), re-read when it changes. */
  denyList?: string;
  /** This agent's own token, attached to every call: fixed, or a provider asked again before expiry. */
  token?: TokenProvider;
  log?: Logger;
}

export interface CallOptions extends DurableCallOptions /* hook(durable): durable, onStored */ {
  /** Deadline, ms from now; also sent to the broker and callee. Default: the agent's `timeout`. */
  timeout?: number;
  signal?: AbortSignal;
  /** Retry policy for this call; `false` sends once. Default: the agent's. */
  retry?: RetryOptions | false;
}

/** What a tool handler learns about the call. */
export interface ToolContext {
  /** The caller's Z85 key, as authenticated by the broker's CURVE handshake. */
  from: string;
  /** The caller's certificate name, if its public certificate is in `certs`. */
  fromName: string | undefined;
  /** Hex request id (stable across retries). */
  requestId: string;
  /** The request's deadline, ms since the epoch (for a job: when it was accepted). */
  deadline: number;
  /** Fires when the agent closes, when the caller's deadline passes (plain calls), or when the job is cancelled. */
  signal: AbortSignal;
  /** The caller's verified token, when this agent checks tokens and the request carried one. */
  token: VerifiedToken | undefined;
  /** The job id, for a tool registered with `job: true`. */
  jobId: string | undefined;
  /**
   * Reports progress to the caller of a job (pushed, and kept for polls); a no-op for other
   * tools. Throws TypeError for what a caller could not read (not a `{progress, total?,
   * message?}` object of finite numbers), whatever the tool.
   */
  progress(progress: Progress): void;
}

export interface ToolSpec<I extends z.ZodType, O extends z.ZodType | undefined = undefined> {
  description?: string;
  /** Arguments schema; a request whose arguments fail it is answered `invalid_args`. */
  input: I;
  /** Result schema; a result that fails it is answered `tool_failed`. */
  output?: O;
  /** Run as a job: answer `accepted` with a job id at once, push progress and the end. */
  job?: boolean;
  /** Scope a caller's token must cover (wildcards like `call:jobs.*` in tokens). Default `call:<name>`. */
  scope?: string;
  /** JSON Schema advertised by `tools/list` instead of the one derived from `input` (e.g. a wrapped MCP tool's). */
  inputSchema?: Record<string, unknown>;
  /** JSON Schema of the result advertised by `tools/list` instead of the one derived from `output` (not checked here). */
  outputSchema?: Record<string, unknown>;
}

export type ToolHandler<I extends z.ZodType, O extends z.ZodType | undefined> = (
  args: z.output<I>,
  ctx: ToolContext,
) => Promise<O extends z.ZodType ? z.input<O> : unknown> | (O extends z.ZodType ? z.input<O> : unknown);

/** One entry of `tools/list`. */
export interface ToolInfo {
  name: string;
  description: string;
  /** JSON Schema of the arguments (zod 4 `z.toJSONSchema`). */
  inputSchema: Record<string, unknown>;
  outputSchema?: Record<string, unknown>;
  /** True when the tool runs as a job (answers `accepted`, then pushes its end). */
  job: boolean;
}

const ToolInfoSchema = z.object({
  name: z.string(),
  description: z.string(),
  inputSchema: z.record(z.string(), z.unknown()),
  outputSchema: z.record(z.string(), z.unknown()).optional(),
  job: z.boolean(),
});
const JobStateSchema = z.object({
  job_id: z.string(),
  status: z.enum(["running", "done", "error", "cancelled"]),
  progress: z.object({ progress: z.number(), total: z.number().optional(), message: z.string().optional() }).optional(),
  result: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
const JobIdArgs = z.strictObject({ job_id: z.string().max(128) });

/** Counters, for tests and operators; `agent.metrics` serves them to Prometheus. */
export interface AgentStats {
  /** Calls made (`call`), and those that failed, by code (local or remote). */
  calls: number;
  callFailures: Partial<Record<string, number>>;
  /** Requests received from peers, and those answered with an error, by code. */
  requests: number;
  requestFailures: Partial<Record<string, number>>;
  /** Messages dropped (nothing to answer, or an answer refused), by reason; see {@link DropReason}. */
  dropped: Partial<Record<DropReason, number>>;
  /** Job progress listeners (the caller's own code) that threw; the job and the agent go on. */
  listenerErrors: number;
  /** CURVE handshakes with a broker completed, and connections lost. */
  connects: number;
  disconnects: number;
  /** Redials after the broker was silent for 3 × `heartbeatInterval` (liveness.ts). */
  redials: number;
}

/**
 * Why the agent dropped a message. Open: other parts of the agent add their own reasons.
 * - `frames`, `sender`, `header`: not a well-formed message from a broker
 * - `unsolicited`: a response or job event that answers nothing pending
 * - `nack`: a broker refusal of nothing pending
 * - `bad_seal`: a response or job event not sealed by the party asked (forged), see answerer.ts
 * - `invalid_answer`: an answer sealed by the right party whose content the caller cannot read
 *   (a `jobs/poll` state of the wrong shape); the call or job fails with `bad_frame`
 * - `refused`: a response or event that failed a check after opening (replay, expired, kind)
 * - `broker_header`: a broker's own message (nack, ack) with an invalid header
 */
export type DropReason =
  | "frames"
  | "sender"
  | "header"
  | "unsolicited"
  | "nack"
  | "bad_seal"
  | "invalid_answer"
  | "refused"
  | "broker_header"
  | (string & {});

interface RegisteredTool {
  info: ToolInfo;
  input: z.ZodType;
  output: z.ZodType | undefined;
  scope: string;
  handler: (args: unknown, ctx: ToolContext) => unknown;
}

/** Where a reply goes and how it is sealed: as this agent, or as the service it was addressed to. */
interface Reply {
  peer: string;
  /** Set once a response is sent, so that the guard answers at most once. */
  answered?: boolean;
  request: Header;
  sealer: Sealer;
  /** `svc:NAME` when sealed with a service's key. */
  as: string | undefined;
}

/** Where a request goes: the header's `to`, and the public key it is sealed to. */
interface Route {
  to: string;
  sealKey: string;
}

interface Answered {
  response: Response;
  /** The key of the agent (or service replica) that answered. */
  from: string;
  /** Who was asked (and so who may speak for a job it accepted). */
  answerer: Answerer;
}

/** A job this agent started, and who may speak for it. */
interface StartedJob {
  job: Job;
  answerer: Answerer;
}

/** A message dropped on purpose, with its reason; thrown inside #dispatch only. */
class Dropped extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message);
  }
}

interface Served {
  sealer: Sealer;
  publicKey: string;
}

export class Agent {
  readonly publicKey: string;
  readonly log: Logger;
  /**
   * Resolves once the agent is closed: with undefined after {@link Agent.close}, or with the
   * error that closed it otherwise: `displaced` (another connection with this key took its
   * route at a broker) or `revoked` (the broker no longer admits this key). Never rejects.
   */
  readonly closed: Promise<ZmcpError | undefined>;
  #closedWith!: (reason: ZmcpError | undefined) => void;
  #liveTimer: NodeJS.Timeout | undefined;
  /** Why the agent closed, when a broker notice closed it: later calls throw it too. */
  #closeReason: ZmcpError | undefined;
  #brokerWatch: AckWatch | undefined;
  readonly #socket: zmq.Dealer;
  readonly #writer: SocketWriter;
  readonly #sealer: Sealer;
  readonly #serverKey: string;
  readonly #replay: ReplayGuard;
  /** hook(durable): durable attempts awaiting the broker's `stored` ack. */
  readonly #storedCalls = new StoredCalls();
  /** hook(durable): durable events of jobs not (yet) re-attached. */
  readonly #orphans = new OrphanEvents();
  readonly #pending = new PendingCalls<Omit<Answered, "answerer">, Answerer>();
  readonly #acks = new PendingCalls<void>();
  readonly #tools = new Map<string, RegisteredTool>();
  readonly #answers: AnswerCache;
  readonly #jobs: JobTable;
  readonly #started = new Map<string, StartedJob>();
  /** The keys that may seal a job event now: the runners (or service keys) of #started. */
  readonly #eventSealers = new KeyCounts();
  readonly #served = new Map<string, Served>();
  readonly #closing = new AbortController();
  readonly #certsDir: string | undefined;
  #directory: CertDirectory = { byName: new Map(), byKey: new Map(), services: new Map() };
  #directoryMtime = -1;
  readonly #options: AgentOptions;
  readonly #defaultTimeout: number;
  readonly #maxMessageBytes: number;
  readonly #maxConcurrency: number;
  #active = 0;
  readonly #verifier: TokenVerifier | undefined;
  readonly #requireToken: boolean;
  readonly #token: TokenSource | undefined;
  readonly #endpoints: string[];
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #loop: Promise<void> = Promise.resolve();
  #closed = false;
  #handshake: { resolve: () => void; reject: (err: Error) => void } | undefined;
  /** Endpoints that refused a connection / ever connected, while the first handshake is awaited. */
  readonly #refused = new Set<string>();
  readonly #connected = new Set<string>();
  readonly #clocks = new ClockOffsets();
  readonly stats: AgentStats = { calls: 0, callFailures: {}, requests: 0, requestFailures: {}, dropped: {}, listenerErrors: 0, connects: 0, disconnects: 0, redials: 0 };
  /** Prometheus metrics of this agent (a registry of its own; serve it with `serveMetrics`). */
  readonly metrics = new Registry();
  readonly #latency = latencyHistogram(this.metrics, "zmcp_agent_call_duration_seconds", "Call latency, from call() to its outcome (retries included)");

  private constructor(options: AgentOptions, cert: Required<Certificate>, serverKey: string, endpoints: string[]) {
    this.publicKey = cert.publicKey;
    this.log = options.log ?? silentLogger;
    this.closed = new Promise((resolve) => (this.#closedWith = resolve));
    this.#options = options;
    this.#certsDir = options.certs;
    this.#serverKey = serverKey;
    this.#endpoints = endpoints;
    this.#defaultTimeout = options.timeout ?? 30_000;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#maxConcurrency = options.maxConcurrency ?? 64;
    if (!(this.#maxConcurrency >= 1)) throw new ConfigError("maxConcurrency must be at least 1");
    this.#jobs = new JobTable(options.jobTtl ?? 600_000, { ...DEFAULT_JOB_LIMITS, ...options.jobLimits });
    this.#answers = new AnswerCache(undefined, { ...DEFAULT_ANSWER_LIMITS, ...options.answerLimits });
    this.#sealer = new Sealer(cert.secretKey);
    const replayWindow = options.replayWindow ?? DEFAULT_REPLAY_WINDOW_MS;
    const startGrace = options.startGrace ?? defaultStartGrace(replayWindow);
    if (!(startGrace >= 0)) throw new ConfigError("startGrace must be a non-negative number of ms");
    this.#replay = new ReplayGuard(replayWindow, DEFAULT_MAX_SEEN, Date.now() - startGrace);
    // Before the socket exists: an unreadable key file throws here and leaks nothing.
    this.#requireToken = options.requireToken ?? options.authority !== undefined;
    if (options.authority === undefined && (this.#requireToken || options.denyList !== undefined)) {
      throw new ConfigError("requireToken and denyList need an authority (trusted public JWK)");
    }
    this.#verifier = options.authority === undefined ? undefined : new TokenVerifier(tokenVerifierOptions(options, this.log));
    this.#token = options.token === undefined ? undefined : new TokenSource(options.token, this.log);
    this.#socket = new zmq.Dealer({
      curveServerKey: serverKey,
      curvePublicKey: cert.publicKey,
      curveSecretKey: cert.secretKey,
      // The broker renames every peer to its key anyway (zap.ts); asking for the same id
      // makes that hold even if libzmq applies our request after the broker's.
      routingId: cert.publicKey,
      linger: 0,
      // Queue only to brokers with a live connection (ZMQ_IMMEDIATE). Otherwise, connected to
      // several brokers, the DEALER keeps round-robining into the pipe of a dead one, where
      // every other request and response waits for a reconnect that never comes.
      immediate: true,
      // No ZMTP heartbeats (liveness.ts): the `hb` messages of #keepAlive do their work.
      // Above the cap plus headroom libzmq drops the connection rather than buffer it.
      maxMessageSize: 4 * this.#maxMessageBytes,
    });
    this.#writer = new SocketWriter(this.#socket);
    this.#reloadDirectory();
    this.#registerMetrics();
  }

  /** Connects to the broker(s) and, unless `connectTimeout` is 0, waits for the CURVE handshake. */
  static async connect(options: AgentOptions): Promise<Agent> {
    const cert = typeof options.cert === "string" ? loadSecretCertificate(options.cert) : options.cert;
    let serverKey = options.serverKey;
    if (!serverKey) {
      if (!options.certs) throw new ConfigError("serverKey or certs (holding broker.key) is required");
      const brokerCert = join(options.certs, "broker.key");
      if (!existsSync(brokerCert)) throw new ConfigError(`no serverKey given and ${brokerCert} does not exist`);
      serverKey = loadCertificate(brokerCert).publicKey;
    }
    if (!isZ85Key(serverKey)) throw new ConfigError("serverKey must be a 40-character Z85 key");
    const endpoints = Array.isArray(options.broker) ? options.broker : [options.broker];
    if (endpoints.length === 0) throw new ConfigError("at least one broker endpoint is required");

    const agent = new Agent(options, cert, serverKey, endpoints);
    const connectTimeout = options.connectTimeout ?? 10_000;
    const handshake =
      connectTimeout > 0
        ? new Promise<void>((resolve, reject) => {
            agent.#handshake = { resolve, reject };
          })
        : Promise.resolve();
    agent.#keepAlive();
    void agent.#watch();
    try {
      for (const endpoint of endpoints) agent.#socket.connect(endpoint);
    } catch (err) {
      await agent.close();
      throw new ConfigError(`cannot connect to ${endpoints.join(", ")}: ${(err as Error).message}`, { cause: err });
    }
    agent.#loop = agent.#run();
    if (connectTimeout > 0) {
      try {
        await withTimeout(handshake, connectTimeout, `no CURVE handshake with ${endpoints.join(", ")} within ${connectTimeout} ms`);
      } catch (err) {
        await agent.close();
        throw err;
      }
    }
    return agent;
  }

  /** The certificate name of a key, if known. */
  nameOf(key: string): string | undefined {
    let name = this.#directory.byKey.get(key);
    if (name === undefined && this.#reloadDirectory()) name = this.#directory.byKey.get(key);
    return name;
  }

  /** A name (from `certs`) or a Z85 key → Z85 key. Throws ZmcpError(unknown_peer). */
  resolve(to: string): string {
    if (isZ85Key(to)) return to;
    let key = this.#directory.byName.get(to);
    if (!key && this.#reloadDirectory()) key = this.#directory.byName.get(to);
    if (!key) throw new ZmcpError("unknown_peer", `no certificate named ${JSON.stringify(to)}${this.#certsDir ? ` in ${this.#certsDir}` : ""}`);
    return key;
  }

  /** Offers a tool. Its arguments are validated with `spec.input` before `handler` runs. */
  tool<I extends z.ZodType, O extends z.ZodType | undefined = undefined>(name: string, spec: ToolSpec<I, O>, handler: ToolHandler<I, O>): this {
    if (typeof name !== "string" || name.length === 0 || name.length > 256) throw new ConfigError("tool name must be 1 to 256 characters");
    if (isBuiltinTool(name)) throw new ConfigError(`tool name ${JSON.stringify(name)} is reserved`);
    if (this.#tools.has(name)) throw new ConfigError(`tool ${JSON.stringify(name)} is already registered`);
    const scope = spec.scope ?? defaultToolScope(name);
    checkScopeToken(scope);
    const info: ToolInfo = { name, description: spec.description ?? "", inputSchema: spec.inputSchema ?? jsonSchemaOf(spec.input), job: spec.job ?? false };
    if (spec.outputSchema) info.outputSchema = spec.outputSchema;
    else if (spec.output) info.outputSchema = jsonSchemaOf(spec.output);
    this.#tools.set(name, { info, input: spec.input, output: spec.output, scope, handler: handler as RegisteredTool["handler"] });
    return this;
  }

  /**
   * Withdraws a tool: it leaves `tools/list` and new requests for it are answered
   * `unknown_tool`; runs already started finish. Returns false if no such tool was offered.
   */
  removeTool(name: string): boolean {
    return this.#tools.delete(name);
  }

  /**
   * Calls `tool` on `to` (a certificate name, a Z85 key, or `svc:NAME`) and resolves with its
   * result; for a job tool, with the job's result. Retries on `busy`, `no_route` and lost
   * answers within the deadline (the callee runs the tool once). Rejects with RemoteError (the
   * broker's or the peer's code), TimeoutError, or ZmcpError(aborted | closed | unknown_peer |
   * too_large | invalid_args).
   */
  async call(to: string, tool: string, args: unknown = {}, options: CallOptions = {}): Promise<unknown> {
    this.stats.calls++;
    const started = performance.now();
    try {
      const result = await this.#call(to, tool, args, options);
      this.#latency.ok.observe((performance.now() - started) / 1000);
      return result;
    } catch (err) {
      this.#latency.error.observe((performance.now() - started) / 1000);
      bump(this.stats.callFailures, err instanceof ZmcpError ? err.code : "error");
      throw err;
    }
  }

  async #call(to: string, tool: string, args: unknown, options: CallOptions): Promise<unknown> {
    const deadline = Date.now() + (options.timeout ?? this.#defaultTimeout);
    const answered = await this.#request(to, tool, args, options);
    if (answered.response.st !== "accepted") return answered.response.result;
    const job = this.#adopt(to, answered);
    const remaining = deadline - Date.now();
    return withTimeout(job.result, Math.max(1, remaining), `job ${job.id} did not end within the call's deadline`, options.signal);
  }

  /**
   * Starts a job tool and returns its handle at once: `await job.result`,
   * `job.on("progress", ...)`, `job.cancel()`. The options' timeout covers the start only.
   */
  async start(to: string, tool: string, args: unknown = {}, options: CallOptions = {}): Promise<Job> {
    const answered = await this.#request(to, tool, args, options);
    const { response, from } = answered;
    if (response.st === "accepted") return this.#adopt(to, answered);
    // Not a job tool: a handle that is already done, so callers need not care.
    const job = new Job("", to, from, () => Promise.reject(new ZmcpError("unknown_job", "not a job")));
    job.update({ status: "done", result: response.result });
    return job;
  }

  /**
   * hook(durable): re-attaches to a job this agent's key started on `to` (an id kept across a
   * restart, say): a handle fed by the runner's events (stored ones included, docs/DURABLE.md)
   * and by polls, the first at once. Throws ZmcpError(config) for an id that names no runner;
   * the job fails `unknown_job` when the runner no longer knows it (past its jobTtl).
   */
  job(to: string, jobId: string): Job {
    const runner = jobRunner(jobId);
    if (runner === undefined) throw new ConfigError(`job id ${JSON.stringify(jobId)} names no runner`);
    const route = this.#routeFor(to);
    const job = this.#adopt(to, { response: { t: "res", h: new Uint8Array(32), ts: Date.now(), st: "accepted", result: { job_id: jobId } }, from: runner, answerer: answererOf(route.to, route.sealKey) });
    for (const frames of this.#orphans.take(runner)) this.#dispatch(frames); // events stored for it that came before this call
    this.poll(to, jobId).then((state) => job.update(state), (err: unknown) => {
      if (err instanceof ZmcpError && (err.code === "unknown_job" || err.code === "forbidden")) job.fail(err);
    });
    return job;
  }

  /** Polls a job started by this agent on `to` (the same address it was started on). */
  async poll(to: string, jobId: string, options: CallOptions = {}): Promise<JobState> {
    const { response } = await this.#request(jobAddress(to, jobId), BUILTIN_TOOLS.poll, { job_id: jobId }, options);
    return this.#jobStateOf(response, jobId, BUILTIN_TOOLS.poll);
  }

  /**
   * A `jobs/poll` or `jobs/cancel` answer → the job's state. Throws ZmcpError(bad_frame) when it
   * cannot be read, or is about another job: the caller cannot tell what became of its job, and
   * waiting for another poll would only repeat the same answer.
   */
  #jobStateOf(response: Response, jobId: string, tool: string): JobState {
    const parsed = JobStateSchema.safeParse(response.result);
    const why = !parsed.success ? z.prettifyError(parsed.error) : parsed.data.job_id !== jobId ? `it is about job ${parsed.data.job_id}` : undefined;
    if (why !== undefined) {
      bump(this.stats.dropped, "invalid_answer");
      throw new ZmcpError("bad_frame", `invalid ${tool} answer for job ${jobId}: ${why}`);
    }
    return parsed.data as JobState;
  }

  /** The tools `to` offers (its built-in `tools/list`), filtered by what this agent's token covers. */
  async listTools(to: string, options: CallOptions = {}): Promise<ToolInfo[]> {
    const { response } = await this.#request(to, BUILTIN_TOOLS.list, {}, options);
    const parsed = z.object({ tools: z.array(ToolInfoSchema) }).safeParse(response.result);
    if (!parsed.success) throw new ZmcpError("bad_frame", `invalid tools/list answer: ${z.prettifyError(parsed.error)}`);
    return parsed.data.tools as ToolInfo[];
  }

  /**
   * Serves as a replica of service `name`: callers address `svc:NAME` and the broker hands
   * their requests to a live replica. `cert` is the service's secret certificate, shared by
   * its replicas (default `<certs>/svc-NAME.key_secret`); the broker admits the replica only
   * if it proves it holds that key. Resolves once the broker has accepted the announcement.
   */
  async serve(name: string, options: { cert?: string | Required<Certificate>; timeout?: number } = {}): Promise<void> {
    if (!isServiceName(name)) throw new ConfigError(`invalid service name ${JSON.stringify(name)}`);
    const source = options.cert ?? (this.#certsDir ? join(this.#certsDir, `svc-${name}.key_secret`) : undefined);
    if (!source) throw new ConfigError("serve() needs the service's secret certificate (cert) or a certs directory");
    const cert = typeof source === "string" ? loadSecretCertificate(source) : source;
    this.#served.set(name, { sealer: new Sealer(cert.secretKey), publicKey: cert.publicKey });
    const interval = this.#options.serviceHeartbeat ?? DEFAULT_HEARTBEAT_MS;
    this.#heartbeatTimer ??= setInterval(() => void this.#heartbeat().catch(() => undefined), interval).unref();
    try {
      await this.#heartbeat(options.timeout ?? 5000);
    } catch (err) {
      this.#served.delete(name);
      throw err;
    }
  }

  /**
   * The state of a job this agent runs, as `caller` may see it (for tools that expose polling
   * under their own name, like the reference protocol's `poll_job`). Throws ZmcpError(unknown_job | forbidden).
   */
  jobState(jobId: string, caller: string): JobState {
    return { ...this.#jobs.get(jobId, caller) };
  }

  /** Closes the socket; pending calls reject with `closed`, running handlers and jobs see `signal` fire. */
  async close(): Promise<void> {
    return this.#shutdown(undefined);
  }

  async #shutdown(reason: ZmcpError | undefined): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    this.#closedWith(reason);
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#liveTimer);
    this.#closing.abort();
    this.#jobs.abortAll();
    this.#verifier?.close();
    const closed = reason ?? new ZmcpError("closed", "agent closed");
    this.#pending.rejectAll(closed);
    this.#acks.rejectAll(closed);
    for (const { job } of this.#started.values()) job.fail(closed);
    this.#socket.close();
    await this.#loop;
  }

  #registerMetrics(): void {
    const r = this.metrics;
    const s = this.stats;
    readCounter(r, "zmcp_agent_calls_total", "Calls made", () => s.calls);
    readLabelledCounter(r, "zmcp_agent_call_failures_total", "Calls that failed, by error code (local or remote)", "code", () => entries(s.callFailures));
    readCounter(r, "zmcp_agent_requests_total", "Requests received from peers", () => s.requests);
    readLabelledCounter(r, "zmcp_agent_request_failures_total", "Requests answered with an error, by code", "code", () => entries(s.requestFailures));
    readGauge(r, "zmcp_agent_handlers_running", "Tool handlers running now (jobs included)", () => this.#active);
    readGauge(r, "zmcp_agent_jobs_running", "Jobs running now", () => this.#jobs.running);
    readGauge(r, "zmcp_agent_calls_pending", "Requests waiting for an answer (each attempt of a call)", () => this.#pending.size);
    readLabelledCounter(r, "zmcp_agent_messages_dropped_total", "Messages dropped with a log line, by reason", "reason", () => entries(s.dropped));
    readCounter(r, "zmcp_agent_listener_errors_total", "Job progress listeners that threw (caught; the job goes on)", () => s.listenerErrors);
    readCounter(r, "zmcp_agent_broker_connects_total", "CURVE handshakes with a broker completed", () => s.connects);
    readCounter(r, "zmcp_agent_broker_disconnects_total", "Connections to a broker lost", () => s.disconnects);
  }

  // ---- calling -----------------------------------------------------------------------------

  /** Where a message to `to` goes and which key seals it. */
  #routeFor(to: string): Route {
    const service = parseServiceAddress(to);
    if (service) return { to, sealKey: this.#serviceKey(service.name) };
    const key = this.resolve(to);
    return { to: key, sealKey: key };
  }

  /** The public key of service `name`: the certificate `svc-NAME.key` in `certs` (certs.ts). */
  #serviceKey(name: string): string {
    let key = this.#directory.services.get(name);
    if (!key && this.#reloadDirectory()) key = this.#directory.services.get(name);
    if (!key) throw new ZmcpError("unknown_peer", `no certificate for service ${JSON.stringify(name)} (svc-${name}.key) in ${this.#certsDir ?? "certs"}`);
    return key;
  }

  /**
   * One request with retries: the same request id every attempt, a fresh message id each.
   * Retried after a timed-out attempt only where the retry reaches the agent that may still be
   * running the first one (see retry.ts, {@link attemptTimeout}): never across service replicas.
   */
  async #request(to: string, tool: string, args: unknown, options: CallOptions): Promise<Answered> {
    if (this.#closed) throw this.#closeReason ?? new ZmcpError("closed", "agent is closed");
    const route = this.#routeFor(to);
    const timeout = options.timeout ?? this.#defaultTimeout;
    if (!(timeout > 0)) throw new ConfigError("timeout must be a positive number of ms");
    const deadline = Date.now() + timeout;
    const policy = retryPolicy(options.retry ?? this.#options.retry, timeout);
    const tok = this.#token ? await this.#token.get() : undefined;
    const rid = newId();
    const what = `call ${tool} on ${to}`;
    for (let attempt = 1; ; attempt++) {
      const remaining = deadline - Date.now();
      const last = attempt >= policy.attempts;
      try {
        const answered = await this.#attempt(route, { t: "req", ts: Date.now(), rid, tool, args, ...(tok === undefined ? {} : { tok }) }, deadline, attemptTimeout(policy, route.to, remaining, last), options.signal, what, options.durable ? { to, tool, onStored: options.onStored } : undefined); // hook(durable): pass the durable flag
        if (answered.response.st === "error") throw remoteError(answered.response.error, "peer");
        return answered;
      } catch (err) {
        const delay = backoff(policy, attempt);
        if (last || !isRetryable(err) || Date.now() + delay >= deadline) {
          throw err instanceof TimeoutError ? new TimeoutError(`${what} got no answer within ${timeout} ms (${attempt} attempt${attempt > 1 ? "s" : ""})`) : err;
        }
        if (this.log.enabled("debug")) this.log.debug("retrying", { tool, to, attempt, error: String(err) });
        await sleep(delay, options.signal);
      }
    }
  }

  async #attempt(route: Route, draft: Omit<Request, "h">, deadline: number, timeout: number, signal: AbortSignal | undefined, what: string, durable?: { to: string; tool: string; onStored: DurableCallOptions["onStored"] }): Promise<Answered> {
    if (this.#closed) throw this.#closeReason ?? new ZmcpError("closed", "agent is closed");
    const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: route.to, exp: deadline };
    if (durable) header.dur = true; // hook(durable): the header flag
    const frames = this.#seal(this.#sealer, route.sealKey, header, draft);
    const key = idKey(header.id);
    const answerer = answererOf(route.to, route.sealKey);
    const answer = this.#pending.add(key, Math.max(1, timeout), signal, what, answerer);
    if (durable) this.#storedCalls.track(key, { to: durable.to, tool: durable.tool, deadline }, durable.onStored, answer); // hook(durable)
    this.#writer.send(frames).catch((err) => {
      this.#pending.reject(key, new ZmcpError("closed", `send failed: ${(err as Error).message}`, { cause: err }));
    });
    return { ...(await answer), answerer };
  }

  /**
   * Wraps an `accepted` answer into a Job that gathers pushes and polls as a fallback. Its
   * events are accepted only from the runner its id names (answerer.ts). Throws
   * ZmcpError(bad_frame) for an answer without a job id, ForgedAnswerError when the id names
   * another runner than the one that accepted it.
   */
  #adopt(to: string, { response, from, answerer: asked }: Answered): Job {
    const parsed = z.object({ job_id: z.string().min(1).max(128) }).safeParse(response.result);
    if (!parsed.success) {
      bump(this.stats.dropped, "invalid_answer");
      throw new ZmcpError("bad_frame", `accepted answer without a job id: ${z.prettifyError(parsed.error)}`);
    }
    const jobId = parsed.data.job_id;
    const answerer = jobAnswerer(asked, jobId, from);
    if (typeof answerer === "string") {
      bump(this.stats.dropped, "bad_seal");
      throw new ForgedAnswerError(answerer);
    }
    if (this.#started.has(jobId)) throw new ZmcpError("bad_frame", `job ${jobId} was already accepted once`);
    const onListenerError = (err: unknown) => {
      this.stats.listenerErrors++;
      this.log.error("a job progress listener threw", { job: jobId, error: describeThrown(err) });
    };
    const job = new Job(
      jobId,
      to,
      from,
      async () => {
        const { response: r } = await this.#request(jobAddress(to, jobId), BUILTIN_TOOLS.cancel, { job_id: jobId }, {});
        return this.#jobStateOf(r, jobId, BUILTIN_TOOLS.cancel);
      },
      onListenerError,
    );
    this.#started.set(jobId, { job, answerer });
    this.#eventSealers.add(answerer.sealKey);
    const every = this.#options.jobPollInterval ?? 2000;
    const lostAfter = this.#options.jobLostAfter ?? 30_000;
    let heard = Date.now();
    job.on("progress", () => (heard = Date.now()));
    const timer =
      every > 0
        ? setInterval(() => {
            this.poll(to, jobId, { timeout: Math.max(1000, every) }).then(
              (state) => {
                heard = Date.now();
                job.update(state);
              },
              (err: unknown) => {
                // The job is gone for good (or its runner's answers cannot be read: asking again
                // would give the same); a transient failure waits for the next poll, unless the
                // runner has been unreachable for too long (killed and not back): without this,
                // `await job.result` would wait forever.
                if (err instanceof ZmcpError && (err.code === "unknown_job" || err.code === "forbidden" || err.code === "bad_frame" || err.code === "bad_seal")) job.fail(err);
                else if (Date.now() - heard > lostAfter) {
                  const code = err instanceof ZmcpError ? err.code : "timeout";
                  job.fail(new TimeoutError(`job ${jobId}: its runner has not answered a poll for ${lostAfter} ms (last: ${code})`));
                }
              },
            );
          }, every).unref()
        : undefined;
    void job.result.finally(() => {
      clearInterval(timer);
      this.#started.delete(jobId);
      this.#eventSealers.delete(answerer.sealKey);
    }).catch(() => undefined);
    return job;
  }

  // ---- services -----------------------------------------------------------------------------

  /**
   * Announces the served services to every broker (DEALER spreads sends over its connections,
   * so one heartbeat per endpoint reaches each). Resolves on the first ack when `waitMs` is given.
   */
  async #heartbeat(waitMs?: number, evenWithoutServices = false): Promise<void> {
    if (this.#closed || (this.#served.size === 0 && !evenWithoutServices)) return;
    const ts = Date.now();
    const svc = [...this.#served].map(([name, s]) => ({
      name,
      key: s.publicKey,
      ts,
      proof: makeServiceProof(s.sealer.sharedKey(this.#serverKey), this.publicKey, ts),
      free: Math.max(0, this.#maxConcurrency - this.#active),
    }));
    const body = encode({ svc });
    const interval = this.#options.serviceHeartbeat ?? DEFAULT_HEARTBEAT_MS;
    const acks: Array<Promise<void>> = [];
    for (let i = 0; i < this.#endpoints.length; i++) {
      const header: Header = { v: PROTOCOL_VERSION, k: "hb", id: newId(), to: "", exp: ts + 2 * interval };
      if (waitMs !== undefined) acks.push(this.#acks.add(idKey(header.id), waitMs, undefined, "service announcement"));
      this.#writer.send([encodeHeader(header), body]).catch((err) => this.log.warn("heartbeat not sent", { error: String(err) }));
    }
    if (waitMs !== undefined) await Promise.any(acks).catch((err: AggregateError) => Promise.reject(err.errors[0]));
  }

  /**
   * Liveness with the broker (liveness.ts): a `hb` every `heartbeatInterval` (service heartbeats
   * count when there are services), and a redial of every endpoint when nothing at all came
   * from a broker for 3 × the interval.
   */
  #keepAlive(): void {
    const interval = this.#options.heartbeatInterval ?? 2000;
    if (!(interval > 0)) return;
    this.#brokerWatch = new AckWatch(3 * interval);
    this.#liveTimer = setInterval(() => {
      if (this.#closed) return;
      if (this.#served.size === 0) void this.#heartbeat(undefined, true).catch(() => undefined);
      if (!this.#brokerWatch!.expired()) return;
      this.stats.redials++;
      this.log.warn("broker silent; redialling", { silentMs: 3 * interval, endpoints: this.#endpoints });
      for (const endpoint of this.#endpoints) {
        try {
          this.#socket.disconnect(endpoint);
        } catch {
          // not connected right now; connect below is what matters
        }
        try {
          this.#socket.connect(endpoint);
        } catch (err) {
          this.log.error("redial failed", { endpoint, error: String(err) });
        }
      }
    }, interval).unref();
  }

  // ---- receiving ----------------------------------------------------------------------------

  #reloadDirectory(): boolean {
    // Re-reads `certs` if the directory changed since it was read (a certificate may have
    // been added); a lookup miss costs one stat, not a directory read.
    if (!this.#certsDir) return false;
    let mtime: number;
    try {
      mtime = statSync(this.#certsDir).mtimeMs;
    } catch (err) {
      this.log.warn("certificate directory unreadable", { error: String(err) });
      return false;
    }
    if (mtime === this.#directoryMtime) return false;
    this.#directoryMtime = mtime;
    try {
      this.#directory = loadCertDirectory(this.#certsDir, (err) => this.log.warn("certificate skipped", { error: err.message }));
    } catch (err) {
      this.log.warn("certificate directory unreadable", { error: String(err) });
    }
    return true;
  }

  /** Header + inner draft → `[header, sealed body]`. Throws ZmcpError(invalid_args | too_large). */
  #seal(sealer: Sealer, to: string, header: Header, draft: InnerDraft): [Uint8Array, Uint8Array] {
    const headerBytes = encodeHeader(header);
    let plaintext: Uint8Array;
    try {
      plaintext = encodeInner(draft, headerBytes);
    } catch (err) {
      throw new ZmcpError("invalid_args", `cannot encode message: ${(err as Error).message}`, { cause: err });
    }
    // The receiver's own structural limits (depth, values per message, no extension types):
    // what it would drop is refused here, with the reason, instead of lost on the way.
    try {
      checkMsgpack(plaintext, MAX_DEPTH);
    } catch (err) {
      throw new ZmcpError("invalid_args", `message not readable by its receiver: ${describeThrown(err)}`, { cause: err });
    }
    const body = sealer.seal(to, plaintext);
    const size = headerBytes.length + body.length;
    if (size > this.#maxMessageBytes) throw new ZmcpError("too_large", `message of ${size} bytes exceeds ${this.#maxMessageBytes}`);
    return [headerBytes, body];
  }

  async #watch(): Promise<void> {
    try {
      for await (const event of this.#socket.events) {
        if (event.type === "handshake") {
          this.stats.connects++;
          this.#brokerWatch?.acked();
          this.#handshake?.resolve();
          this.#handshake = undefined;
          this.log.debug("connected", { address: event.address });
          // A restarted broker learns our services at once, and that we keep liveness (liveness.ts).
          void this.#heartbeat(undefined, this.#brokerWatch !== undefined).catch(() => undefined);
        } else if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol" || event.type === "handshake:error:other") {
          // Seen with zeromq 6 / libzmq 4.3.5: a key the broker's allowlist refuses gives
          // `handshake:error:auth` (a ZAP denial); a wrong server key (a stale broker.key) makes
          // the broker drop the connection unanswered, seen here as `handshake:error:other`.
          const hint =
            event.type === "handshake:error:auth"
              ? "the broker refused this agent's key: is it in the broker's allowlist (--allow)?"
              : "the broker closed the connection during the CURVE handshake: is the server key (serverKey, or <certs>/broker.key) the running broker's public key?";
          const err = new ZmcpError("handshake_failed", `broker at ${event.address}: ${hint} (${event.type})`);
          this.#handshake?.reject(err);
          this.#handshake = undefined;
          this.log.warn("handshake failed", { address: event.address, type: event.type });
        } else if (event.type === "connect") {
          this.#refused.delete(event.address);
          this.#connected.add(event.address);
        } else if (event.type === "connect:retry" && this.#handshake && !this.#connected.has(event.address)) {
          // Nothing listens at an endpoint (connection refused): say so at once, rather than
          // let a caller wait out its connect timeout for a generic `timeout`.
          this.#refused.add(event.address);
          if (this.#refused.size >= this.#endpoints.length) {
            this.#handshake.reject(new ZmcpError("unreachable", `no broker is listening at ${[...this.#refused].join(", ")} (connection refused)`));
            this.#handshake = undefined;
          }
        } else if (event.type === "disconnect") {
          this.stats.disconnects++;
          this.log.debug("disconnected", { address: event.address });
        }
      }
    } catch {
      // the observer ends when the socket closes
    }
  }

  #run(): Promise<void> {
    return receiveLoop(
      this.#socket,
      () => this.#closed,
      (frames) => this.#dispatch(frames),
      (what, err) => this.log.error(what === "receive" ? "receive failed" : "dispatch failed", { error: String(err) }),
    );
  }

  #dispatch(frames: Buffer[]): void {
    if (frames.length !== 3) {
      bump(this.stats.dropped, "frames");
      return this.log.warn("dropped message with wrong frame count", { frames: frames.length });
    }
    const [from, headerBytes, body] = frames as [Buffer, Buffer, Buffer];
    this.#brokerWatch?.acked(); // anything from a broker shows the connection is alive
    if (from.length === 0) return this.#onBroker(headerBytes);
    const peer = from.toString("latin1");
    if (!isZ85Key(peer)) {
      // The broker stamps the sender's authenticated key; anything else is not from a broker.
      bump(this.stats.dropped, "sender");
      return this.log.warn("dropped message with an invalid sender", { from: from.toString("hex").slice(0, 120) });
    }
    let header: Header;
    try {
      header = decodeHeader(headerBytes);
    } catch (err) {
      // Only a faulty broker forwards a header it could not read itself.
      bump(this.stats.dropped, "header");
      return this.log.warn("dropped message with invalid header", { from: peer, error: String(err) });
    }
    // Addressed to a service we serve: opened (and answered) with the service's key.
    const service = parseServiceAddress(header.to);
    const served = service ? this.#served.get(service.name) : undefined;
    const reply: Reply = { peer, request: header, sealer: served?.sealer ?? this.#sealer, as: served ? serviceAddress(service!.name) : undefined };
    if (header.k === "req") this.stats.requests++;
    let opened = false; // the body opened with the sender's key: what follows is its own word
    try {
      if (service && !served) throw new ProtocolError("no_route", `this agent does not serve ${service.name}`);
      const now = Date.now();
      const mono = performance.now();
      // Before opening: only what is past its deadline even allowing the largest accepted clock
      // difference; the precise check follows once the sealed timestamp is known (clock.ts).
      if (header.exp + this.#replay.windowMs < now) throw new ProtocolError("expired", "message is past its deadline");
      const size = headerBytes.length + body.length;
      if (size > this.#maxMessageBytes) throw new ProtocolError("too_large", `message of ${size} bytes exceeds ${this.#maxMessageBytes}`);
      // Sealed as a service (a replica's answer): opened with that service's public key.
      const sealedBy = header.as === undefined ? peer : this.#serviceKeyOf(header.as);
      if (header.k === "res") this.#checkResponder(header, peer, sealedBy);
      else if (header.k === "evt" && header.dur && !this.#eventSealers.has(sealedBy) && this.#orphans.keep(peer, frames)) return; // hook(durable): kept for a job re-attached later (agent.job)
      else if (header.k === "evt" && !this.#eventSealers.has(sealedBy)) throw new Dropped(this.#started.size ? "bad_seal" : "unsolicited", `event sealed by ${sealedBy}, which runs no job of ours`);
      const plaintext = reply.sealer.open(sealedBy, body);
      opened = true;
      // A request's arguments stay undecoded until its token is checked (#serveRequest).
      const inner = decodeInner(plaintext, headerBytes, this.#maxMessageBytes, { deferArgs: true });
      if (inner.t !== header.k) throw new ProtocolError("bad_frame", `header kind ${header.k} does not match message kind ${inner.t}`);
      const ts = wireMs(inner.ts);
      this.#replay.check(`${peer}:${idKey(header.id)}`, ts, now, header.dur === true); // hook(durable): a stored message too old for the window is refused busy (retried fresh), not replay
      // The sender's deadline on this agent's clock (integer ms: clock.ts, rules 1 and 3).
      const deadline = header.exp + this.#clocks.observe(peer, ts, now, mono);
      if (deadline < now) throw new ProtocolError("expired", `message is past its deadline (by ${now - deadline} ms on this clock)`);
      if (deadline !== header.exp) reply.request = { ...header, exp: deadline };
      if (inner.t === "req") void this.#onRequest(reply, inner);
      else if (inner.t === "res") {
        if (!this.#pending.resolve(idKey(header.re!), { response: inner, from: peer })) throw new Dropped("unsolicited", "response to nothing pending");
      } else this.#onEvent(peer, header, sealedBy, inner);
    } catch (err) {
      if (header.k !== "req") return this.#dropAnswer(header, peer, err, opened);
      const code: WireCode = err instanceof ProtocolError ? (err.code as WireCode) : "bad_frame";
      const message = err instanceof Error ? err.message : String(err);
      if (this.log.enabled("debug")) this.log.debug("refused message", { from: peer, code, message });
      // Sealed as what was asked (the service, when it is served here), so that callers, who
      // accept answers only from whom they addressed, can read the refusal; its exp is clock.ts's refusalExp.
      this.#respond(reply, failure(code, message), refusalExp(header.exp));
    }
  }

  /**
   * Throws Dropped unless this response answers a pending request and comes from the party
   * that request was addressed to: the broker's `from`, the header's `as` and the sealing key.
   * A forged response is noted on the request, so that if the real answer never comes the call
   * fails with `bad_seal` (ForgedAnswerError) rather than a plain timeout.
   */
  #checkResponder(header: Header, peer: string, sealedBy: string): void {
    const key = header.re ? idKey(header.re) : undefined;
    const expected = key === undefined ? undefined : this.#pending.meta(key);
    if (!expected) throw new Dropped("unsolicited", "response to nothing pending");
    const why = mismatch(expected, peer, header.as, sealedBy);
    if (why !== undefined) {
      this.#pending.refuse(key!, new ForgedAnswerError(`refused an answer not sealed by the party asked: ${why}`));
      throw new Dropped("bad_seal", why);
    }
  }

  /**
   * A response or event that is dropped: counted by reason and logged. A response that opened
   * with the key of the party asked but failed a later check (its clock outside the window, a
   * malformed message) fails its call with that code, as it is that party's answer; anything
   * not proven to come from it (forged, not opening, refused before opening) only notes the
   * refusal, and the real answer may still come.
   */
  #dropAnswer(header: Header, peer: string, err: unknown, opened: boolean): void {
    const code = err instanceof ZmcpError ? err.code : "bad_frame";
    const message = err instanceof Error ? err.message : String(err);
    const reason: DropReason = err instanceof Dropped ? err.reason : code === "bad_seal" ? "bad_seal" : "refused";
    bump(this.stats.dropped, reason);
    this.log.warn("dropped message", { from: peer, kind: header.k, reason, message });
    if (err instanceof Dropped || header.k !== "res" || !header.re) return;
    const key = idKey(header.re);
    // A copy replayed later finds nothing pending, so rejecting on an opened answer is safe.
    if (opened) this.#pending.reject(key, remoteError({ code, message }, "peer"));
    else if (code === "bad_seal") this.#pending.refuse(key, new ForgedAnswerError(`refused an answer that did not open with the key of the party asked: ${message}`));
    else this.#pending.refuse(key, remoteError({ code, message }, "peer"));
  }

  #serviceKeyOf(as: string): string {
    const service = parseServiceAddress(as);
    if (!service) throw new ProtocolError("bad_seal", `sealed as ${JSON.stringify(as)}, which is no service`);
    try {
      return this.#serviceKey(service.name);
    } catch {
      throw new ProtocolError("bad_seal", `sealed as service ${service.name}, whose key is unknown here`);
    }
  }

  /** The broker's own answers: nacks (a message refused) and acks (a heartbeat accepted). */
  #onBroker(headerBytes: Buffer): void {
    let header: Header;
    try {
      header = decodeHeader(headerBytes);
    } catch (err) {
      bump(this.stats.dropped, "broker_header");
      return this.log.warn("dropped invalid message from broker", { error: String(err) });
    }
    const key = header.re ? idKey(header.re) : undefined;
    if (header.k === "ack" && header.code === "stored" && key) {
      // hook(durable): the broker stored a durable request: wait for its answer until the deadline
      const wait = this.#storedCalls.onStoredAck(key, (err) => this.log.error("an onStored listener threw", { error: describeThrown(err) }));
      if (wait !== undefined) this.#pending.extend(key, wait);
      return;
    }
    if (header.k === "ack") {
      // An ack nobody waits for is the normal answer to a liveness hb (liveness.ts): not a drop.
      if (key) this.#acks.resolve(key, undefined);
      return;
    }
    const err = remoteError({ code: header.code ?? "bad_frame", message: header.msg ?? "refused by broker" }, "broker");
    if (key && (this.#pending.reject(key, err) || this.#acks.reject(key, err))) return;
    if (!key && (err.code === "displaced" || err.code === "revoked")) {
      // A broker notice (broker.ts #notice): this connection will receive nothing more. Staying
      // up would look alive while every call to this key fails, so the agent closes, loudly.
      this.log.error(err.code === "displaced" ? "displaced: another process connected with this agent's key" : "revoked: the broker no longer admits this agent's key", {
        key: this.publicKey,
        message: header.msg,
      });
      void this.#shutdown(err);
      return;
    }
    bump(this.stats.dropped, "nack");
    this.log.warn("broker refused a message", { code: err.code, message: header.msg });
  }

  /** A job's event: accepted only from the runner its id names, sealed as the job was accepted. */
  #onEvent(peer: string, header: Header, sealedBy: string, event: Event): void {
    const started = this.#started.get(event.job);
    if (!started) throw new Dropped("unsolicited", `event for job ${event.job}, which is not ours (or has ended)`);
    const why = mismatch(started.answerer, peer, header.as, sealedBy);
    if (why !== undefined) throw new Dropped("bad_seal", `event for job ${event.job}: ${why}`);
    started.job.update({ status: event.st, ...pick(event, "progress", "result", "error") });
  }

  /**
   * The guard around everything from an inbound request to its answer: authorization, the
   * argument schema (whose transforms and refinements may throw), the handler, its result and
   * the answer itself. Whatever throws becomes a `tool_failed` answer (at most one per request);
   * nothing reaches the receive loop or the process as an unhandled rejection.
   */
  #onRequest(reply: Reply, request: Request): void {
    this.#serveRequest(reply, request).catch((err: unknown) => {
      const message = describeThrown(err);
      this.log.warn("request failed inside the agent", { from: reply.peer, tool: request.tool, error: message });
      try {
        if (!reply.answered) this.#respond(reply, failure("tool_failed", `${request.tool}: ${message}`));
      } catch (again) {
        this.log.error("could not answer a failed request", { from: reply.peer, error: describeThrown(again) });
      }
    });
  }

  async #serveRequest(reply: Reply, request: Request): Promise<void> {
    const builtin = isBuiltinTool(request.tool);
    const tool = builtin ? undefined : this.#tools.get(request.tool);
    // Built-ins need a valid token but no scope: tools/list is filtered by it, jobs by owner.
    const grant = this.#authorize(reply, request, builtin ? undefined : (tool?.scope ?? defaultToolScope(request.tool)));
    if (grant === false) return;
    try {
      request.args = decodeArgs(request.args);
    } catch (err) {
      return this.#respond(reply, failure("bad_frame", describeThrown(err)));
    }
    if (builtin) return this.#respond(reply, this.#builtin(reply, request, grant));
    if (!tool) return this.#respond(reply, failure("unknown_tool", `no tool named ${JSON.stringify(request.tool)}`));
    let parsed: ReturnType<z.ZodType["safeParse"]>;
    try {
      parsed = tool.input.safeParse(request.args);
    } catch (err) {
      // A transform or refinement that throws (JSON.parse, new URL) rejects these arguments.
      return this.#respond(reply, failure("invalid_args", `${tool.info.name}: arguments refused by the schema: ${describeThrown(err)}`));
    }
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      return this.#respond(reply, failure("invalid_args", `${tool.info.name}: ${issues}`));
    }
    // A retried request (same id from the same caller) gets the first answer; the tool runs once.
    const key = `${reply.peer}:${idKey(request.rid)}`;
    const begun = this.#answers.begin(key, reply.peer);
    if (begun.kind === "earlier") return void begun.answer.then((answer) => this.#respond(reply, answer));
    if (begun.kind === "full") return this.#respond(reply, failure("busy", begun.reason));
    const full = this.#active >= this.#maxConcurrency ? `${this.#active} tool runs in progress (maxConcurrency ${this.#maxConcurrency})` : tool.info.job ? this.#jobs.refusal(reply.peer) : undefined;
    if (full !== undefined) {
      const busy = failure("busy", full);
      this.#answers.finish(key, busy, 0, false); // not remembered: a retry may find room
      return this.#respond(reply, busy);
    }
    const ctx: ToolContext = {
      from: reply.peer,
      fromName: this.nameOf(reply.peer),
      requestId: idKey(request.rid),
      deadline: reply.request.exp,
      signal: this.#closing.signal,
      token: grant,
      jobId: undefined,
      progress: (progress) => void checkProgress(progress),
    };
    if (tool.info.job) return this.#startJob(tool, parsed.data, ctx, reply, key);
    const ran = await this.#runTool(tool, parsed.data, ctx, reply.request.exp);
    const answer = sendable(ran.answer, 1);
    this.#answers.finish(key, answer, encodedSize(answer));
    // Past the deadline the caller has given up (its own timer says `timeout`): nothing is sent,
    // but a retry of this request id still finds the answer.
    if (ran.late) reply.answered = true;
    else this.#respond(reply, answer);
  }

  async #startJob(tool: RegisteredTool, args: unknown, ctx: ToolContext, reply: Reply, key: string): Promise<void> {
    const jobId = newJobId(this.publicKey);
    const { signal } = this.#jobs.create(jobId, reply.peer);
    const accepted: Answer = { st: "accepted", result: { job_id: jobId } };
    this.#answers.finish(key, accepted, encodedSize(accepted));
    this.#respond(reply, accepted);
    ctx.jobId = jobId;
    ctx.signal = AbortSignal.any([this.#closing.signal, signal]);
    ctx.progress = (progress) => {
      checkProgress(progress);
      const state = this.#jobs.progress(jobId, { ...progress });
      if (state) this.#push(reply, state);
    };
    let answer: Answer;
    try {
      answer = (await this.#runTool(tool, args, ctx, undefined)).answer;
    } catch (err) {
      answer = failure("tool_failed", describeThrown(err));
    }
    // The result is served by polls too: inside a poll answer it sits one level deeper.
    answer = sendable(answer, 2);
    const bytes = encodedSize(answer);
    const state =
      answer.st === "ok"
        ? this.#jobs.finish(jobId, { status: "done", result: answer.result }, bytes)
        : this.#jobs.finish(jobId, { status: "error", error: answer.error! }, bytes);
    if (state) this.#push(reply, state); // undefined: cancelled meanwhile, already pushed
  }

  /**
   * Runs a handler: never throws; a failure becomes an error answer, and so does a result a
   * caller could not read (sendable.ts). With a `deadline` (plain calls), the handler's signal
   * fires then and its concurrency slot is given back even if it never returns (`late`).
   */
  async #runTool(tool: RegisteredTool, args: unknown, ctx: ToolContext, deadline: number | undefined): Promise<{ answer: Answer; late: boolean }> {
    this.#active++;
    let timer: NodeJS.Timeout | undefined;
    let expired: Promise<{ answer: Answer; late: boolean }> | undefined;
    if (deadline !== undefined) {
      const late = new AbortController();
      ctx.signal = AbortSignal.any([this.#closing.signal, late.signal]);
      expired = new Promise((resolve) => {
        timer = setTimeout(() => {
          resolve({ answer: failure("expired", `${tool.info.name} was still running at the caller's deadline`), late: true });
          late.abort(new TimeoutError("the caller's deadline passed"));
        }, Math.max(0, deadline - Date.now()));
      });
    }
    const attempt = async (): Promise<Answer> => {
      try {
        let result = await tool.handler(args, ctx);
        if (tool.output) {
          const checked = tool.output.safeParse(result);
          if (!checked.success) return failure("tool_failed", `${tool.info.name} returned a result that fails its output schema`);
          result = checked.data;
        }
        return { st: "ok", result: result ?? null };
      } catch (err) {
        const code = err instanceof ZmcpError && isWireCode(err.code) ? err.code : "tool_failed";
        const message = describeThrown(err);
        if (this.log.enabled("debug")) this.log.debug("tool failed", { tool: tool.info.name, code, message });
        return failure(code, message);
      }
    };
    const run = (async (): Promise<{ answer: Answer; late: boolean }> => ({ answer: await attempt(), late: false }))();
    try {
      return await (expired ? Promise.race([run, expired]) : run);
    } finally {
      clearTimeout(timer);
      this.#active--;
    }
  }

  /** tools/list, jobs/poll, jobs/cancel. */
  #builtin(reply: Reply, request: Request, grant: VerifiedToken | undefined): Answer {
    if (request.tool === BUILTIN_TOOLS.list) {
      const tools = [...this.#tools.values()].filter((t) => !grant || scopeCovers(grant.scopes, t.scope)).map((t) => t.info);
      return { st: "ok", result: { tools } };
    }
    const args = JobIdArgs.safeParse(request.args);
    if (!args.success) return failure("invalid_args", `${request.tool}: ${z.prettifyError(args.error)}`);
    try {
      const state = this.#jobs.get(args.data.job_id, reply.peer);
      if (request.tool === BUILTIN_TOOLS.cancel && state.status === "running") {
        const ended = this.#jobs.finish(state.job_id, { status: "cancelled", error: { code: "cancelled", message: "cancelled by its caller" } });
        if (ended) this.#push(reply, ended);
      }
      return { st: "ok", result: state };
    } catch (err) {
      const code = err instanceof ZmcpError && isWireCode(err.code) ? err.code : "tool_failed";
      return failure(code, describeThrown(err));
    }
  }

  /**
   * Checks the request's token before the tool is even looked at (so unauthorized callers
   * learn nothing of the tools offered). Returns the verified token (undefined when no check
   * applies), or false once the refusal is answered.
   */
  #authorize(reply: Reply, request: Request, scope: string | undefined): VerifiedToken | undefined | false {
    if (!this.#verifier || (!this.#requireToken && request.tok === undefined)) return undefined;
    try {
      return this.#verifier.authorize(request.tok, reply.peer, scope);
    } catch (err) {
      const code = err instanceof ProtocolError ? (err.code as WireCode) : "token_invalid";
      const message = err instanceof Error ? err.message : String(err);
      if (this.log.enabled("debug")) this.log.debug("request refused", { from: reply.peer, tool: request.tool, code, message });
      this.#respond(reply, failure(code, message));
      return false;
    }
  }

  /**
   * Sends a sealed response; a result that a caller could not read (sendable.ts) or that is
   * too large becomes a `tool_failed` / `too_large` error naming what was wrong.
   */
  #respond(reply: Reply, answer: Answer, exp = answerExp(reply.request.exp)): void {
    if (this.#closed) return;
    reply.answered = true;
    const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: reply.peer, exp, re: reply.request.id };
    if (reply.as) header.as = reply.as;
    if (reply.request.dur) header.dur = true; // hook(durable): the answer to a durable request waits for an offline caller too
    let frames: [Uint8Array, Uint8Array];
    try {
      if (answer.st !== "error") checkSendable(answer.result, "result", 1);
      frames = this.#seal(reply.sealer, reply.peer, header, { t: "res", ts: Date.now(), ...answer });
    } catch (err) {
      const code = err instanceof ZmcpError && err.code === "too_large" ? "too_large" : "tool_failed";
      answer = failure(code, `result not sendable: ${describeThrown(err)}`);
      frames = this.#seal(reply.sealer, reply.peer, header, { t: "res", ts: Date.now(), ...answer });
    }
    if (answer.st === "error") bump(this.stats.requestFailures, answer.error?.code ?? "error");
    this.#writer.send(frames).catch((err) => this.log.warn("response not sent", { to: reply.peer, error: String(err) }));
  }

  /** Pushes a job's state to the caller that started it (progress, or its end). */
  #push(reply: Reply, state: JobState): void {
    if (this.#closed) return;
    const header: Header = { v: PROTOCOL_VERSION, k: "evt", id: newId(), to: reply.peer, exp: eventExp() };
    if (reply.as) header.as = reply.as;
    if (reply.request.dur) header.dur = true; // hook(durable): a durable job's events wait for an offline caller too
    const draft = { t: "evt" as const, ts: Date.now(), job: state.job_id, st: state.status, ...pick(state, "progress", "result", "error") };
    let frames: [Uint8Array, Uint8Array];
    try {
      frames = this.#seal(reply.sealer, reply.peer, header, draft);
    } catch (err) {
      const error = failure("tool_failed", `result not sendable: ${describeThrown(err)}`).error;
      frames = this.#seal(reply.sealer, reply.peer, header, { t: "evt", ts: draft.ts, job: draft.job, st: "error", error });
    }
    this.#writer.send(frames).catch((err) => this.log.warn("event not sent", { to: reply.peer, error: String(err) }));
  }
}

/**
 * Throws TypeError unless `progress` is what a caller accepts (envelope.ts ProgressSchema, the
 * receiver's own definition: finite numbers, a message of at most 4,096 characters).
 */
function checkProgress(progress: unknown): asserts progress is Progress {
  const parsed = ProgressSchema.safeParse(progress);
  if (!parsed.success) throw new TypeError(`ctx.progress: not a progress a caller can read: ${z.prettifyError(parsed.error)}`);
}

/**
 * `answer`, or for a result a peer could not read (checked `depth` levels below the top of
 * the message that carries it), the `tool_failed` answer saying what was wrong.
 */
function sendable(answer: Answer, depth: number): Answer {
  if (answer.st === "error") return answer;
  try {
    checkSendable(answer.result, "result", depth, MAX_DEPTH);
    return answer;
  } catch (err) {
    return failure("tool_failed", `result not sendable: ${describeThrown(err)}`);
  }
}

function entries(counts: Partial<Record<string, number>>): Array<[string, number]> {
  return Object.entries(counts) as Array<[string, number]>;
}


/** Copies the listed keys that are defined (exactOptionalPropertyTypes forbids explicit undefined). */
function pick<T extends object, K extends keyof T>(source: T, ...keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  return out;
}

/** A job's polls and cancels go to the agent that runs it: for a service, that very replica. */
function jobAddress(to: string, jobId: string): string {
  const service = parseServiceAddress(to);
  const runner = jobRunner(jobId);
  return service && runner ? serviceAddress(service.name, runner) : to;
}

function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  try {
    return z.toJSONSchema(schema, { unrepresentable: "any" }) as Record<string, unknown>;
  } catch {
    return { type: "object" }; // transforms and the like have no JSON Schema
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(message)), ms);
    const onAbort = () => reject(new ZmcpError("aborted", "call aborted", { cause: signal?.reason }));
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    });
  });
}

function tokenVerifierOptions(options: AgentOptions, log: Logger): ConstructorParameters<typeof TokenVerifier>[0] {
  return {
    authority: options.authority!,
    log,
    ...(options.audience === undefined ? {} : { audience: options.audience }),
    ...(options.clockSkew === undefined ? {} : { clockSkew: options.clockSkew }),
    ...(options.denyList === undefined ? {} : { denyList: options.denyList }),
  };
}
