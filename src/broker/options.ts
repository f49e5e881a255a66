/**
 * The broker's options: every default in one frozen constant (BROKER_DEFAULTS, read by
 * `zmq-broker` and stated in the README's table, which a unit test compares), and one
 * resolveBrokerOptions() that validates them all before anything is bound.
 */
import { ConfigError } from "../errors.js";
import type { RateLimitOptions } from "../auth/ratelimit.js";
import { silentLogger, type Logger } from "../support/log.js";
import { DEFAULT_RELOAD_INTERVAL_MS } from "../support/watch.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../wire/envelope.js";
import { DEFAULT_REPLICA_TTL_MS } from "../wire/services.js";
import { isZ85Key } from "../wire/z85.js";
import { DEFAULT_REPLAY_WINDOW_MS } from "../agent/replay.js";
import { DEFAULT_LOG_INTERVAL_MS } from "../support/log-throttle.js";
import { DEFAULT_VISIBILITY_MS } from "../store/durable.js";
import { DEFAULT_MAX_RETENTION_MS, DEFAULT_STORE_LIMITS, type DurableStore, type StoreLimits } from "../store/index.js";

export interface BrokerOptions {
  /** Endpoint to bind, e.g. `tcp://127.0.0.1:5555` (`tcp://127.0.0.1:*` picks a free port). */
  bind: string;
  /** The broker's curve key pair, Z85. */
  publicKey: string;
  secretKey: string;
  /**
   * Who may connect: a directory of public certificates (`*.key`, re-read by
   * {@link Broker.reloadAllowlist}) or a list of Z85 public keys.
   */
  allow: string | Iterable<string>;
  /** Largest message (header + body) forwarded, bytes. Default 1 MiB. */
  maxMessageBytes?: number;
  /**
   * Bytes the broker may hold queued toward one peer (and from one peer), at most. libzmq counts
   * its high-water marks in messages, so the default marks are derived from it: queueBytes /
   * maxMessageBytes messages (at least 16, at most 1,000), which bounds a stalled reader's
   * queue by bytes whatever the size of the messages sent to it. Default 256 MiB.
   */
  queueBytes?: number;
  /** Messages queued per peer before sends to it answer `busy` (ZMQ_SNDHWM). Default: derived from `queueBytes`. */
  sendHighWaterMark?: number;
  /** Messages queued from each peer (ZMQ_RCVHWM). Default: derived from `queueBytes`. */
  receiveHighWaterMark?: number;
  /**
   * Revoked keys: a deny list file (JSON `{"jti": [...], "keys": [...]}`, see auth/denylist.ts),
   * re-read when it changes and by {@link Broker.reloadDenyList}. A listed key is refused
   * `revoked` on its next message, even on an open connection, and at its next handshake.
   */
  denyList?: string;
  /** Polling interval of the deny list file, ms. Default 1,000. */
  denyListInterval?: number;
  /**
   * Token bucket per sender key; a message above it is answered `rate_limited`. A response
   * (`k: "res"`) is free only against a request forwarded to its sender earlier (one each,
   * response-budget.ts); any other draws on the bucket. Default: no limit.
   */
  rateLimit?: RateLimitOptions;
  /**
   * Trusted service keys, name → Z85 public key. With a directory, also the certificates named
   * `svc-NAME.key` (never certificate metadata, which the key's maker writes); a name bound to
   * two different keys by the two sources is refused and logged.
   */
  services?: Record<string, string>;
  /** A service replica not heard from for this long leaves the directory, ms. Default 3,000. */
  replicaTtl?: number;
  /**
   * Topic patterns held in the subscription directory, all keys together (each key at most
   * 256, each pattern at most 128 characters: docs/EVENTS.md); a heartbeat that would go past
   * it is refused `busy`. Default 100,000.
   */
  maxSubscriptions?: number;
  /**
   * The `hb` interval agents are expected to keep, ms; only used for the default of
   * `heartbeatTimeout`, and 0 turns liveness refusals off. ZMTP heartbeats stay off: with them
   * libzmq 4.3.5 can abort the process on a peer's failed connection (support/liveness.ts). Default 2,000.
   */
  heartbeatInterval?: number;
  /**
   * A peer that sends `hb` messages (every zmcp agent does) and then is silent this long (a
   * frozen process, a dead host) is refused `no_route` instead of filling its queue, ms.
   * Default 3 × `heartbeatInterval`.
   */
  heartbeatTimeout?: number;
  /**
   * Clock difference allowed with senders on a header's `exp`, ms: a message is refused
   * `expired` once `exp + clockSkew` is past. The broker cannot read the sealed timestamp, so
   * it cannot tell a late message from a sender whose clock lags; the recipient judges deadlines
   * precisely. Default 60,000 (the agents' default replay window).
   */
  clockSkew?: number;
  /**
   * Lines a peer can cause (refused handshakes, refusals such as `busy`, undeliverable nacks)
   * are logged at most once per this interval per event and key, with a count of those skipped
   * (log-throttle.ts), ms. Default 10,000.
   */
  logInterval?: number;
  log?: Logger;
  /**
   * A durable store (`redis://host:port`, or an engine object): messages whose header says
   * `dur` wait there for a recipient that is offline or full (docs/DURABLE.md). Without it,
   * `dur` changes nothing. Bounds: `storeLimits` (defaults: store/store.ts DEFAULT_STORE_LIMITS).
   */
  store?: string | DurableStore;
  storeLimits?: Partial<StoreLimits>;
  /** Longest time a message is stored whatever its `exp`, ms. Default a day. */
  storeRetention?: number;
  /** Visibility timeout of durable service requests: handed to another replica when unanswered this long, ms. Default 30,000. */
  storeVisibility?: number;
}

/** Every default of BrokerOptions (bytes, ms); the high-water marks derive from `queueBytes`, `heartbeatTimeout` from `heartbeatInterval`. */
export const BROKER_DEFAULTS = Object.freeze({
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
  queueBytes: 256 * 1024 * 1024,
  denyListInterval: DEFAULT_RELOAD_INTERVAL_MS,
  replicaTtl: DEFAULT_REPLICA_TTL_MS,
  maxSubscriptions: 100_000,
  heartbeatInterval: 2000,
  /** The agents' default replay window: the broker allows the same clock difference. */
  clockSkew: DEFAULT_REPLAY_WINDOW_MS,
  logInterval: DEFAULT_LOG_INTERVAL_MS,
  storeLimits: DEFAULT_STORE_LIMITS,
  storeRetention: DEFAULT_MAX_RETENTION_MS,
  storeVisibility: DEFAULT_VISIBILITY_MS,
});

/** Default byte budget of one peer's queue (see BrokerOptions.queueBytes). */
export const DEFAULT_QUEUE_BYTES = BROKER_DEFAULTS.queueBytes;

/** BrokerOptions with every default applied and every value checked. */
export interface ResolvedBrokerOptions {
  bind: string;
  publicKey: string;
  secretKey: string;
  allow: string | Iterable<string>;
  maxMessageBytes: number;
  queueBytes: number;
  sendHighWaterMark: number;
  receiveHighWaterMark: number;
  denyList: string | undefined;
  denyListInterval: number;
  rateLimit: RateLimitOptions | undefined;
  services: Record<string, string>;
  replicaTtl: number;
  maxSubscriptions: number;
  heartbeatInterval: number;
  /** 0 when liveness refusals are off. */
  heartbeatTimeout: number;
  clockSkew: number;
  logInterval: number;
  log: Logger;
  store: string | DurableStore | undefined;
  storeLimits: Partial<StoreLimits>;
  storeRetention: number;
  storeVisibility: number;
}

/** Applies BROKER_DEFAULTS and validates every option. Throws ConfigError naming the option. */
export function resolveBrokerOptions(options: BrokerOptions): ResolvedBrokerOptions {
  const d = BROKER_DEFAULTS;
  if (!isZ85Key(options.publicKey) || !isZ85Key(options.secretKey)) throw new ConfigError("broker keys must be 40-character Z85");
  const maxMessageBytes = options.maxMessageBytes ?? d.maxMessageBytes;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024) throw new ConfigError("maxMessageBytes must be an integer >= 1024");
  const queueBytes = options.queueBytes ?? d.queueBytes;
  if (!Number.isInteger(queueBytes) || queueBytes < maxMessageBytes) throw new ConfigError("queueBytes must be an integer >= maxMessageBytes");
  // libzmq counts its high-water marks in messages: derived from the byte budget.
  const highWaterMark = Math.min(1000, Math.max(16, Math.floor(queueBytes / maxMessageBytes)));
  const heartbeatInterval = options.heartbeatInterval ?? d.heartbeatInterval;
  const heartbeatTimeout = options.heartbeatTimeout ?? 3 * heartbeatInterval;
  if (!(heartbeatInterval >= 0) || !(heartbeatTimeout >= 0)) throw new ConfigError("heartbeatInterval and heartbeatTimeout must be >= 0 ms");
  const maxSubscriptions = options.maxSubscriptions ?? d.maxSubscriptions;
  if (!Number.isInteger(maxSubscriptions) || maxSubscriptions < 0) throw new ConfigError("maxSubscriptions must be an integer >= 0");
  const clockSkew = options.clockSkew ?? d.clockSkew;
  if (!(clockSkew >= 0)) throw new ConfigError("clockSkew must be >= 0 ms");
  const logInterval = options.logInterval ?? d.logInterval;
  if (!(logInterval >= 0)) throw new ConfigError("logInterval must be >= 0 ms");
  const storeRetention = options.storeRetention ?? d.storeRetention;
  const storeVisibility = options.storeVisibility ?? d.storeVisibility;
  if (!(storeRetention > 0) || !(storeVisibility > 0)) throw new ConfigError("storeRetention and storeVisibility must be > 0 ms");
  return {
    bind: options.bind,
    publicKey: options.publicKey,
    secretKey: options.secretKey,
    allow: options.allow,
    maxMessageBytes,
    queueBytes,
    sendHighWaterMark: options.sendHighWaterMark ?? highWaterMark,
    receiveHighWaterMark: options.receiveHighWaterMark ?? highWaterMark,
    denyList: options.denyList,
    denyListInterval: options.denyListInterval ?? d.denyListInterval,
    rateLimit: options.rateLimit,
    services: options.services ?? {},
    replicaTtl: options.replicaTtl ?? d.replicaTtl,
    maxSubscriptions,
    heartbeatInterval,
    heartbeatTimeout: heartbeatInterval === 0 ? 0 : heartbeatTimeout,
    clockSkew,
    logInterval,
    log: options.log ?? silentLogger,
    store: options.store,
    storeLimits: options.storeLimits ?? {},
    storeRetention,
    storeVisibility,
  };
}
