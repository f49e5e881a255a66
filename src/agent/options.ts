/**
 * The agent's options: every default in one frozen constant (AGENT_DEFAULTS, read by the
 * CLIs and stated in the README's table, which a unit test compares), and one
 * resolveAgentOptions() that validates them all when the agent is built, not at first use.
 */
import type { DurableCallOptions } from "../store/caller.js";
import type { EventSealerFactory } from "../events/sealer.js";
import { DEFAULT_LOG_INTERVAL_MS } from "../support/log-throttle.js";
import type { Certificate } from "../auth/certs.js";
import { DEFAULT_AUDIENCE, DEFAULT_CLOCK_SKEW_MS } from "../auth/tokens.js";
import { type AuthorityInput } from "../auth/token-verifier.js";
import type { TokenProvider } from "../auth/token-source.js";
import { ConfigError } from "../errors.js";
import type { BudgetLimits } from "../support/budget.js";
import { defaultAgentLogger, toLogger, type Logger, type LoggerInput } from "../support/log.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../wire/envelope.js";
import { DEFAULT_HEARTBEAT_MS } from "../wire/services.js";
import { DEFAULT_CIRCUIT, resolveCircuitOptions, type CircuitOptions } from "./circuit.js";
import { DEFAULT_ANSWER_LIMITS } from "./idempotency.js";
import { DEFAULT_JOB_LIMITS } from "./jobs.js";
import { DEFAULT_REPLAY_WINDOW_MS, DEFAULT_START_GRACE_MS } from "./replay.js";
import { retryPolicy, type RetryOptions } from "./retry.js";
import { DIRECT_DEFAULTS, resolveDirectOptions, type DirectAgentOptions, type ResolvedDirectOptions } from "./direct-links.js";

export interface AgentOptions extends DirectAgentOptions {
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
  /**
   * Circuit breakers per destination (circuit.ts): after `failures` consecutive calls failing
   * `no_route`, `timeout` or `busy`, calls to it fail at once with `circuit_open` for `openFor`
   * ms, then one probe call decides. `false` turns them off. Default on: 5 failures, 5,000 ms.
   */
  circuit?: CircuitOptions | false;
  /** Accepted clock difference with peers, ms (replay window). Default 60,000. */
  replayWindow?: number;
  /**
   * Requests stamped more than this before the agent started are refused `busy` (callers
   * retry them with a fresh timestamp): a message the previous process may have run cannot be
   * replayed to this one. Also the clock lag tolerated from callers during the first moments
   * after a start (see replay.ts): peers' clocks are assumed within this of each other, ms.
   * Default 2,000.
   */
  startGrace?: number;
  /**
   * A directory where the agent keeps an "alive until" mark per key (agent/alive-mark.ts), so
   * that a restarted process refuses replays of what the previous one may have run, however
   * quick the restart. Default: none (then a restart quicker than `startGrace` leaves requests
   * stamped in that gap replayable; docs/SECURITY.md).
   */
  stateDir?: string;
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
   * can abort the process when its broker dies while input is backed up (support/liveness.ts). Default 2,000.
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
  /**
   * Clock difference tolerated on callers' tokens' `exp` and `nbf`, ms. Default 30,000. Not the
   * broker's `clockSkew` (which bounds header deadlines at the broker).
   */
  tokenClockSkew?: number;
  /** @deprecated the old name of `tokenClockSkew`. */
  clockSkew?: number;
  /** Deny list file of revoked token ids and keys (JSON, see auth/denylist.ts), re-read when it changes. */
  denyList?: string;
  /** This agent's own token, attached to every call: fixed, or a provider asked again before expiry. */
  token?: TokenProvider;
  /**
   * Where the agent logs: a zmcp {@link Logger} (`createLogger(level)`), or a pino-style logger
   * as it is (`log: pino()`). Default: warnings and errors as JSON lines on stderr.
   */
  log?: LoggerInput;
  /**
   * Log lines a peer can cause (dropped answers, refused or failed requests, ...) are written at
   * most once per this interval per event and peer, the next one saying how many were skipped
   * (`suppressed`), ms. Default 10,000 (support/log-throttle.ts).
   */
  logInterval?: number;
  /**
   * Publish-subscribe (docs/EVENTS.md): makes the sealer that seals and opens publications with
   * the topics' group keys. Without it, `publish` and `subscribe` reject with a ConfigError.
   */
  events?: EventSealerFactory;
}

export interface CallOptions extends DurableCallOptions /* durable, onStored: docs/DURABLE.md */ {
  /** Deadline, ms from now; also sent to the broker and callee. Default: the agent's `timeout`. */
  timeout?: number;
  signal?: AbortSignal;
  /** Retry policy for this call; `false` sends once. Default: the agent's. */
  retry?: RetryOptions | false;
  /** `false`: ignore the destination's circuit breaker for this call (neither refused nor counted). */
  circuit?: false;
}

/** Every default of AgentOptions (ms, bytes, counts). */
export const AGENT_DEFAULTS = Object.freeze({
  connectTimeout: 10_000,
  timeout: 30_000,
  circuit: DEFAULT_CIRCUIT,
  replayWindow: DEFAULT_REPLAY_WINDOW_MS,
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
  maxConcurrency: 64,
  jobTtl: 600_000,
  jobLimits: Object.freeze({ ...DEFAULT_JOB_LIMITS }),
  answerLimits: Object.freeze({ ...DEFAULT_ANSWER_LIMITS }),
  jobPollInterval: 2000,
  jobLostAfter: 30_000,
  serviceHeartbeat: DEFAULT_HEARTBEAT_MS,
  heartbeatInterval: 2000,
  startGrace: DEFAULT_START_GRACE_MS,
  audience: DEFAULT_AUDIENCE,
  tokenClockSkew: DEFAULT_CLOCK_SKEW_MS,
  /** How long `serve()` waits for the broker to accept an announcement. */
  serveTimeout: 5000,
  logInterval: DEFAULT_LOG_INTERVAL_MS,
  ...DIRECT_DEFAULTS, // direct links (direct-links.ts)
});

/** AgentOptions with every default applied and every value checked. */
export interface ResolvedAgentOptions {
  endpoints: string[];
  /** Direct links: listener and links (direct-links.ts). */
  direct: ResolvedDirectOptions;
  certs: string | undefined;
  connectTimeout: number;
  timeout: number;
  retry: RetryOptions | false | undefined;
  circuit: Required<CircuitOptions> | false;
  replayWindow: number;
  startGrace: number;
  stateDir: string | undefined;
  maxMessageBytes: number;
  maxConcurrency: number;
  jobTtl: number;
  jobLimits: BudgetLimits;
  answerLimits: BudgetLimits;
  jobPollInterval: number;
  jobLostAfter: number;
  serviceHeartbeat: number;
  heartbeatInterval: number;
  authority: AuthorityInput | undefined;
  requireToken: boolean;
  audience: string;
  tokenClockSkew: number;
  denyList: string | undefined;
  token: TokenProvider | undefined;
  log: Logger;
  logInterval: number;
  events: EventSealerFactory | undefined;
}

/** The agent's retry option, checked once here (retryPolicy throws ConfigError) rather than at its first call. */
function checkedRetry(retry: RetryOptions | false | undefined): RetryOptions | false | undefined {
  if (retry) retryPolicy(retry, AGENT_DEFAULTS.timeout);
  return retry;
}

/** Applies AGENT_DEFAULTS and validates every option. Throws ConfigError naming the option. */
export function resolveAgentOptions(options: AgentOptions): ResolvedAgentOptions {
  const endpoints = Array.isArray(options.broker) ? [...options.broker] : [options.broker];
  if (endpoints.length === 0) throw new ConfigError("at least one broker endpoint is required");
  const d = AGENT_DEFAULTS;
  const replayWindow = positive("replayWindow", options.replayWindow ?? d.replayWindow);
  const requireToken = options.requireToken ?? options.authority !== undefined;
  if (options.authority === undefined && (requireToken || options.denyList !== undefined)) {
    throw new ConfigError("requireToken and denyList need an authority (trusted public JWK)");
  }
  const maxConcurrency = options.maxConcurrency ?? d.maxConcurrency;
  if (!(maxConcurrency >= 1)) throw new ConfigError("maxConcurrency must be at least 1");
  return {
    endpoints,
    direct: resolveDirectOptions(options, options.certs),
    certs: options.certs,
    connectTimeout: atLeastZero("connectTimeout", options.connectTimeout ?? d.connectTimeout),
    timeout: positive("timeout", options.timeout ?? d.timeout),
    retry: checkedRetry(options.retry),
    circuit: resolveCircuitOptions(options.circuit),
    replayWindow,
    startGrace: atLeastZero("startGrace", options.startGrace ?? d.startGrace),
    stateDir: options.stateDir,
    maxMessageBytes: positive("maxMessageBytes", options.maxMessageBytes ?? d.maxMessageBytes),
    maxConcurrency,
    jobTtl: positive("jobTtl", options.jobTtl ?? d.jobTtl),
    jobLimits: { ...d.jobLimits, ...options.jobLimits },
    answerLimits: { ...d.answerLimits, ...options.answerLimits },
    jobPollInterval: atLeastZero("jobPollInterval", options.jobPollInterval ?? d.jobPollInterval),
    jobLostAfter: positive("jobLostAfter", options.jobLostAfter ?? d.jobLostAfter),
    serviceHeartbeat: positive("serviceHeartbeat", options.serviceHeartbeat ?? d.serviceHeartbeat),
    heartbeatInterval: atLeastZero("heartbeatInterval", options.heartbeatInterval ?? d.heartbeatInterval),
    authority: options.authority,
    requireToken,
    audience: options.audience ?? d.audience,
    tokenClockSkew: atLeastZero("tokenClockSkew", options.tokenClockSkew ?? options.clockSkew ?? d.tokenClockSkew),
    denyList: options.denyList,
    token: options.token,
    log: toLogger(options.log, defaultAgentLogger()),
    logInterval: atLeastZero("logInterval", options.logInterval ?? d.logInterval),
    events: options.events,
  };
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new ConfigError(`${name} must be a positive number (got ${String(value)})`);
  return value;
}

function atLeastZero(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value)) throw new ConfigError(`${name} must be a non-negative number (got ${String(value)})`);
  return value;
}
