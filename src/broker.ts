/**
 * The broker: a CURVE ROUTER that forwards sealed messages by `header.to`, reading only the
 * header. It keeps no per-connection table: peers are known to the ROUTER by their
 * authenticated keys (see zap.ts), so forwarding is one send to `header.to`.
 *
 * Every message that cannot be forwarded comes back to its sender at once as a `nack`
 * (`[empty from, header{k: "nack", re, code, msg}, empty body]`); nothing is dropped in silence.
 */
import * as zmq from "zeromq";
import { loadCertDirectory } from "./certs.js";
import { DenyList } from "./denylist.js";
import { Decoder } from "@msgpack/msgpack";
import { clipUtf8, DEFAULT_MAX_MESSAGE_BYTES, MAX_NACK_MSG_BYTES, decodeHeader, encodeHeader, newId, PROTOCOL_VERSION, type Header } from "./envelope.js";
import { ConfigError, ProtocolError, type WireCode } from "./errors.js";
import { silentLogger, type Logger } from "./log.js";
import { receiveLoop } from "./receive-loop.js";
import { RateLimiter, type RateLimitOptions } from "./ratelimit.js";
import { Sealer } from "./seal.js";
import { DEFAULT_REPLICA_TTL_MS, HeartbeatSchema, parseServiceAddress, ServiceDirectory, verifyServiceProof } from "./services.js";
import { DEFAULT_RELOAD_INTERVAL_MS } from "./watch.js";
import { ZAP_DOMAIN, ZapHandler } from "./zap.js";
import { isZ85Key } from "./z85.js";
import { checkMsgpack } from "./msgpack-guard.js";
import { readCounter, readGauge, readLabelledCounter, Registry } from "./metrics.js";
import { DEFAULT_REPLAY_WINDOW_MS } from "./replay.js";
import { ResponseBudget } from "./response-budget.js";
import { DEFAULT_LOG_INTERVAL_MS, LogThrottle } from "./log-throttle.js";
import { PeerLiveness } from "./liveness.js";
import { DurableDelivery } from "./store/durable.js"; // hook(durable): store-and-forward module
import { DEFAULT_MAX_RETENTION_MS, openStore, type DurableStore, type StoreLimits } from "./store/index.js"; // hook(durable)

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
   * Revoked keys: a deny list file (JSON `{"jti": [...], "keys": [...]}`, see denylist.ts),
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
   * The `hb` interval agents are expected to keep, ms; only used for the default of
   * `heartbeatTimeout`, and 0 turns liveness refusals off. ZMTP heartbeats stay off: with them
   * libzmq 4.3.5 can abort the process on a peer's failed connection (liveness.ts). Default 2,000.
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
   * hook(durable): a durable store (`redis://host:port`, or an engine object): messages whose
   * header says `dur` wait there for a recipient that is offline or full (docs/DURABLE.md).
   * Without it, `dur` changes nothing. Bounds: `storeLimits`; longest kept: `storeRetention` ms (default a day).
   */
  store?: string | DurableStore;
  storeLimits?: Partial<StoreLimits>;
  storeRetention?: number;
  /** Visibility timeout of durable service requests: handed to another replica when unanswered this long, ms. Default 30,000. */
  storeVisibility?: number;
}

/** Counters, for tests and operators. */
export interface BrokerStats {
  /**
   * Messages received; each is then routed, refused, or (a service heartbeat) acknowledged:
   * received = routed + Σ refused + heartbeats + internalErrors.
   * hook(durable): with a store, received + durable.delivered = that sum + durable.stored (a
   * stored message counts as routed when it is delivered).
   */
  received: number;
  routed: number;
  bytes: number;
  refused: Partial<Record<WireCode | "forbidden", number>>;
  /** Nacks that could not be delivered either (sender gone or full). */
  nacksLost: number;
  /** Service heartbeats acknowledged. */
  heartbeats: number;
  /** Messages that hit a bug in the broker (logged); expected to stay 0. */
  internalErrors: number;
  /**
   * Handshakes of a key that was connected already: the older connection was told `displaced`
   * (broker-notices.ts) before the new one took its route.
   */
  takeovers: number;
  /** Connections told their key was revoked or removed (`revoked` notice). */
  revocationNotices: number;
  /** Connections accepted (TCP), CURVE handshakes completed, connections closed. */
  accepted: number;
  handshakes: number;
  disconnected: number;
  /** Failed handshakes by reason (`auth`: key refused; `protocol`: not ZMTP/CURVE, or garbage; `other`). */
  handshakeFailures: Partial<Record<"auth" | "protocol" | "other", number>>;
}

export class Broker {
  readonly #router: zmq.Router;
  readonly #zap: ZapHandler;
  readonly #options: BrokerOptions;
  readonly #maxMessageBytes: number;
  #allowed: Set<string>;
  #serviceKeys: Map<string, string>;
  readonly #services: ServiceDirectory;
  readonly #sealer: Sealer;
  readonly #denyList: DenyList | undefined;
  readonly #limiter: RateLimiter | undefined;
  readonly #responses = new ResponseBudget();
  readonly #throttle: LogThrottle;
  readonly #liveness: PeerLiveness;
  #names: Map<string, string>;
  /** hook(durable): store-and-forward, when a store is configured. */
  readonly durable: DurableDelivery | undefined;
  #closed = false;
  #loop: Promise<void> = Promise.resolve();
  readonly stats: BrokerStats = {
    received: 0,
    routed: 0,
    bytes: 0,
    refused: {},
    nacksLost: 0,
    heartbeats: 0,
    internalErrors: 0,
    takeovers: 0,
    revocationNotices: 0,
    accepted: 0,
    handshakes: 0,
    disconnected: 0,
    handshakeFailures: {},
  };
  /** Prometheus metrics of this broker (a registry of its own; see metrics.ts). */
  readonly metrics = new Registry();
  readonly #clockSkew: number;
  readonly log: Logger;
  /** The endpoint actually bound (with the port resolved). */
  endpoint = "";

  private constructor(
    router: zmq.Router,
    zap: ZapHandler,
    options: BrokerOptions,
    allowed: Allowlist,
    log: Logger,
    denyList: DenyList | undefined,
    limiter: RateLimiter | undefined,
    throttle: LogThrottle,
    liveness: PeerLiveness,
  ) {
    this.#throttle = throttle;
    this.#liveness = liveness;
    this.#names = allowed.names;
    this.#router = router;
    this.#zap = zap;
    this.#options = options;
    this.#allowed = allowed.keys;
    this.#serviceKeys = allowed.services;
    this.#services = new ServiceDirectory(options.replicaTtl ?? DEFAULT_REPLICA_TTL_MS);
    this.#sealer = new Sealer(options.secretKey);
    this.#denyList = denyList;
    this.#limiter = limiter;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#clockSkew = options.clockSkew ?? DEFAULT_REPLAY_WINDOW_MS;
    this.log = log;
    // hook(durable): the store-and-forward module, handed the broker's own forward, refusal and send
    const store = typeof options.store === "string" ? openStore(options.store, log, options.storeLimits) : options.store;
    this.durable = store && new DurableDelivery(store, { admitted: (key) => this.isAllowed(key), forward: (...a) => this.#forward(...a), refuse: (...a) => this.#refuse(...a), send: (frames) => this.#router.send(frames), replicas: (name) => this.#services.snapshot()[name] ?? [], replicasByService: () => Object.keys(this.#services.snapshot()) }, log, options.storeRetention ?? DEFAULT_MAX_RETENTION_MS, options.storeVisibility);
    this.#registerMetrics();
  }

  get publicKey(): string {
    return this.#options.publicKey;
  }

  /** Starts a broker; resolves once it is bound and ready. */
  static async start(options: BrokerOptions): Promise<Broker> {
    const log = options.log ?? silentLogger;
    if (!isZ85Key(options.publicKey) || !isZ85Key(options.secretKey)) throw new ConfigError("broker keys must be 40-character Z85");
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024) throw new ConfigError("maxMessageBytes must be an integer >= 1024");
    const allowed = readAllowlist(options.allow, log, options.services);
    const queueBytes = options.queueBytes ?? DEFAULT_QUEUE_BYTES;
    if (!Number.isInteger(queueBytes) || queueBytes < maxMessageBytes) throw new ConfigError("queueBytes must be an integer >= maxMessageBytes");
    const highWaterMark = Math.min(1000, Math.max(16, Math.floor(queueBytes / maxMessageBytes)));
    const limiter = options.rateLimit ? new RateLimiter(options.rateLimit) : undefined;
    const heartbeatInterval = options.heartbeatInterval ?? 2000;
    const heartbeatTimeout = options.heartbeatTimeout ?? 3 * heartbeatInterval;
    if (!(heartbeatInterval >= 0) || !(heartbeatTimeout >= 0)) throw new ConfigError("heartbeatInterval and heartbeatTimeout must be >= 0 ms");
    const liveness = new PeerLiveness(heartbeatInterval === 0 ? 0 : heartbeatTimeout);
    if (options.clockSkew !== undefined && !(options.clockSkew >= 0)) throw new ConfigError("clockSkew must be >= 0 ms");
    const reloadInterval = options.denyListInterval ?? DEFAULT_RELOAD_INTERVAL_MS;
    const denyList = options.denyList ? DenyList.open(options.denyList, { reloadInterval, log }) : undefined;
    // A context of its own: the ZAP endpoint is per context, so brokers in one process stay apart.
    const context = new zmq.Context();
    let broker: Broker | undefined;
    const logInterval = options.logInterval ?? DEFAULT_LOG_INTERVAL_MS;
    if (!(logInterval >= 0)) throw new ConfigError("logInterval must be >= 0 ms");
    const throttle = new LogThrottle(log, logInterval);
    const zap = await ZapHandler.start(
      context,
      (key) => broker?.isAllowed(key) ?? (allowed.keys.has(key) && !denyList?.hasKey(key)),
      log,
      throttle,
      (key) => broker?.admitting(key) ?? Promise.resolve(0),
    );
    const router = new zmq.Router({
      context,
      curveServer: true,
      curvePublicKey: options.publicKey,
      curveSecretKey: options.secretKey,
      zapDomain: ZAP_DOMAIN,
      zapEnforceDomain: true, // fail closed: no handler or wrong domain means no entry
      handover: true, // a reconnecting agent takes over its key at once
      mandatory: true, // unknown destination: EHOSTUNREACH, not a silent drop
      sendTimeout: 0, // full destination queue: EAGAIN at once, answered `busy`
      sendHighWaterMark: options.sendHighWaterMark ?? highWaterMark,
      receiveHighWaterMark: options.receiveHighWaterMark ?? highWaterMark,
      // No ZMTP heartbeats (heartbeatInterval stays 0): with them libzmq 4.3.5 aborts on a
      // connection that failed while its input was stopped. Liveness is kept with `hb` messages
      // instead, and a frozen peer is refused `no_route` all the same (liveness.ts).
      // Above this libzmq drops the connection; below it, an oversized message gets `too_large`.
      maxMessageSize: Math.max(4 * maxMessageBytes, maxMessageBytes + 1024 * 1024),
      linger: 0,
    });
    try {
      await router.bind(options.bind);
    } catch (err) {
      zap.close();
      router.close();
      denyList?.close();
      throw new ConfigError(`cannot bind ${options.bind}: ${(err as Error).message}`, { cause: err });
    }
    broker = new Broker(router, zap, options, allowed, log, denyList, limiter, throttle, liveness);
    const started = broker;
    if (denyList) denyList.onReload = () => started.#noticeRevoked();
    await broker.durable?.store.whenAvailable(STORE_CONNECT_WAIT_MS); // hook(durable): ready means ready to store, when Redis is up (a Redis down does not hold the start longer)
    broker.endpoint = router.lastEndpoint ?? options.bind;
    broker.#loop = broker.#run();
    void broker.#watch();
    return broker;
  }

  /** Number of keys currently admitted. */
  get allowedCount(): number {
    return this.#allowed.size;
  }

  /** Admitted: in the allowlist and not revoked. */
  isAllowed(key: string): boolean {
    return this.#allowed.has(key) && !this.#denyList?.hasKey(key);
  }

  /**
   * Called by the ZAP handler for an admitted key before it approves the handshake; returns how
   * much longer to hold the approval, ms. If the key was heard within the liveness timeout, its
   * current connection still owns the routing id: it is told `displaced` now, before `handover`
   * gives the id to the new connection (after which it could never be reached again), and the
   * approval waits for that notice to be written. A process that redials after a network blip
   * is not hurt: its old connection, which gets the notice, is the one it has dropped already.
   */
  async admitting(key: string): Promise<number> {
    if (!this.#liveness.recentlyHeard(key)) return 0;
    const name = this.#names.get(key);
    if (!(await this.#notice(key, "displaced", `another connection with this key (${name ?? key}) was admitted; this one no longer receives anything`))) return 0;
    this.stats.takeovers++;
    this.log.warn("key taken over by a new connection; the previous one was told it is displaced", { key, name });
    return TAKEOVER_NOTICE_MS;
  }

  /** Tells every recently heard key that is no longer admitted, once; it receives nothing more. */
  #noticeRevoked(): void {
    for (const key of [...this.#liveness.keys()]) {
      if (this.isAllowed(key)) continue;
      this.#liveness.forget(key);
      const revoked = this.#denyList?.hasKey(key) ?? false;
      void this.#notice(key, "revoked", revoked ? "this key is revoked" : "this key is no longer in the broker's allowlist").then((sent) => {
        if (sent) this.stats.revocationNotices++;
      });
      this.log.warn(revoked ? "revoked key told and cut off" : "removed key told and cut off", { key, name: this.#names.get(key) });
    }
  }

  /**
   * A broker notice: a nack with no `re` (it answers no message) sent to whichever connection
   * owns `key`'s routing id now. Agents treat `displaced` and `revoked` notices as fatal
   * (broker-notices in agent.ts #onBroker). False if it could not be queued.
   */
  async #notice(key: string, code: "displaced" | "revoked", msg: string): Promise<boolean> {
    if (this.#closed) return false;
    const header: Header = { v: PROTOCOL_VERSION, k: "nack", id: newId(), to: key, exp: Date.now() + 60_000, code, msg: clipUtf8(msg, MAX_NACK_MSG_BYTES) };
    try {
      // sendTimeout is 0: this never waits, so it cannot collide with the route loop's sends.
      await this.#router.send([key, "", encodeHeader(header), ""]);
      return true;
    } catch {
      return false;
    }
  }

  /** Re-reads the deny list file now (it is also re-read when it changes). False if unreadable. */
  reloadDenyList(): boolean {
    return this.#denyList?.reload() ?? true;
  }

  /** Re-reads the allowlist. Connected agents stay connected; removed keys are refused per message. */
  reloadAllowlist(allow: string | Iterable<string> = this.#options.allow): number {
    const next = readAllowlist(allow, this.log, this.#options.services);
    this.#allowed = next.keys;
    this.#serviceKeys = next.services;
    this.#names = next.names;
    this.#noticeRevoked();
    this.log.info("allowlist reloaded", { keys: this.#allowed.size, services: next.services.size });
    return this.#allowed.size;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#router.close();
    this.#zap.close();
    this.#denyList?.close();
    await this.#loop;
    await this.durable?.close(); // hook(durable): drains in progress end, the store connection closes
  }

  #run(): Promise<void> {
    return receiveLoop(
      this.#router,
      () => this.#closed,
      (frames) => {
        this.stats.received++;
        return this.#route(frames);
      },
      (what, err) => {
        // #route answers every failure itself; a handler error is a bug, but the loop lives on.
        if (what === "handler") this.stats.internalErrors++;
        this.log.error(what === "receive" ? "receive failed" : "route failed", { error: String(err) });
      },
    );
  }

  async #route(frames: Buffer[]): Promise<void> {
    const from = frames[0]!;
    const fromKey = from.toString("latin1");
    if (!this.#allowed.has(fromKey)) return this.#refuse(from, undefined, "forbidden", "key is no longer admitted");
    let header: Header | undefined;
    let problem: [WireCode, string] | undefined;
    if (frames.length !== 3) problem = ["bad_frame", `expected 2 frames [header, body], got ${frames.length - 1}`];
    else {
      try {
        header = decodeHeader(frames[1]!);
      } catch (err) {
        problem = [(err as ProtocolError).code as WireCode, (err as Error).message];
      }
    }
    this.#liveness.heard(fromKey, header?.k === "hb");
    if (header && this.isAllowed(fromKey)) this.durable?.heard(fromKey); // hook(durable): deliver what was stored for this key
    if (this.#denyList?.hasKey(fromKey)) return this.#refuse(from, header?.id, "revoked", "key is revoked");
    // Everything draws on the sender's bucket, except a response paid for by a request that
    // was forwarded to this sender (response-budget.ts): labelling a message `res` skips nothing.
    // A liveness heartbeat (no service proofs, so cheap to answer) is free too: an agent's sign
    // of life must not be refused for its traffic, nor eat into it (liveness.ts).
    const liveness = header?.k === "hb" && frames[2]!.length <= LIVENESS_HB_MAX_BYTES;
    if (this.#limiter && !liveness && !(header?.k === "res" && this.#responses.spend(fromKey)) && !this.#limiter.take(fromKey)) {
      return this.#refuse(from, header?.id, "rate_limited", `above ${this.#limiter.perSecond} messages/s (burst ${this.#limiter.burst})`);
    }
    if (!header) return this.#refuse(from, undefined, ...(problem ?? ["bad_frame", "invalid message"]));
    const headerBytes = frames[1]!;
    const body = frames[2]!;
    const size = headerBytes.length + body.length;
    if (size > this.#maxMessageBytes) return this.#refuse(from, header.id, "too_large", `message of ${size} bytes exceeds ${this.#maxMessageBytes}`);
    if (header.k === "nack" || header.k === "ack") return this.#refuse(from, header.id, "bad_frame", "agents may not send acks or nacks");
    // A heartbeat is judged by its service proofs' own timestamps, not by `exp`: a liveness
    // `hb` from an agent whose clock lags is still a sign of life (liveness.ts).
    if (header.k === "hb") return this.#heartbeat(from, fromKey, header, body);
    if (header.exp + this.#clockSkew < Date.now()) return this.#refuse(from, header.id, "expired", "message is past its deadline");
    const service = parseServiceAddress(header.to);
    if (service && header.dur && !service.replica && this.durable) return this.durable.routeService(from, header, headerBytes, body, service.name); // hook(durable): a durable service's work queue
    if (service) return this.#dispatch(from, header, headerBytes, body, service.name, service.replica);
    if (!isZ85Key(header.to)) return this.#refuse(from, header.id, "no_route", `destination ${JSON.stringify(header.to)} is neither a Z85 key nor svc:NAME`);
    if (header.dur && this.durable) return this.durable.route(from, header, headerBytes, body); // hook(durable): forward or store
    const failure = await this.#forward(header.to, from, headerBytes, body, header.k);
    if (failure) return this.#refuse(from, header.id, ...failure);
  }

  /** One send; resolves with the refusal to answer, or undefined once forwarded. */
  async #forward(to: string, from: Buffer, headerBytes: Buffer, body: Buffer, kind: Header["k"]): Promise<[WireCode, string] | undefined> {
    // A revoked or removed key receives nothing either, whether or not it is still connected.
    if (!this.isAllowed(to)) return this.#denyList?.hasKey(to) ? ["revoked", `${to} is revoked`] : ["no_route", `${to} is not admitted`];
    const silence = this.#liveness.silentFor(to);
    if (silence !== undefined) return ["no_route", `${to} has not been heard for ${Math.round(silence)} ms`];
    try {
      await this.#router.send([to, from, headerBytes, body]);
      if (kind === "req" && this.#limiter) this.#responses.credit(to);
      this.stats.routed++;
      this.stats.bytes += headerBytes.length + body.length;
      return undefined;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "EHOSTUNREACH") return ["no_route", `${to} is not connected`];
      if (code === "EAGAIN") return ["busy", `${to}'s queue is full`];
      return ["no_route", `send to ${to} failed: ${(err as Error).message}`];
    }
  }

  /** A message for `svc:NAME` (or one replica of it): to a live replica, the next on failure. */
  async #dispatch(from: Buffer, header: Header, headerBytes: Buffer, body: Buffer, name: string, replica: string | undefined): Promise<void> {
    if (replica) {
      // Addressed to one replica (a job's polls): no choice to make, but it must still serve.
      const failure = await this.#forward(replica, from, headerBytes, body, header.k);
      if (failure?.[0] === "no_route") this.#services.evict(name, replica);
      return failure ? this.#refuse(from, header.id, ...failure) : undefined;
    }
    let sawBusy = false;
    for (let tries = 0; tries < 16; tries++) {
      const chosen = this.#services.pick(name);
      if (!chosen) break;
      const failure = await this.#forward(chosen, from, headerBytes, body, header.k);
      if (!failure) return;
      if (failure[0] === "no_route") this.#services.evict(name, chosen);
      else sawBusy = true;
    }
    return sawBusy
      ? this.#refuse(from, header.id, "busy", `every replica of service ${name} is busy`)
      : this.#refuse(from, header.id, "no_route", `no live replica of service ${name}`);
  }

  /** Directory of live services (service name → replica keys). */
  services(): Record<string, string[]> {
    return this.#services.snapshot();
  }

  /** A heartbeat: verifies each service proof, records the replica, answers ack or nack. */
  async #heartbeat(from: Buffer, fromKey: string, header: Header, body: Buffer): Promise<void> {
    let raw: unknown;
    try {
      checkMsgpack(body, 8);
      raw = heartbeatDecoder.decode(body);
    } catch (err) {
      return this.#refuse(from, header.id, "bad_frame", `heartbeat is not msgpack: ${(err as Error).message}`);
    }
    const parsed = HeartbeatSchema.safeParse(raw);
    if (!parsed.success) return this.#refuse(from, header.id, "bad_frame", "invalid heartbeat");
    const now = Date.now();
    for (const svc of parsed.data.svc) {
      const trusted = this.#serviceKeys.get(svc.name);
      if (!trusted || trusted !== svc.key) return this.#refuse(from, header.id, "forbidden", `service ${svc.name} has no trusted key ${svc.key}`);
      if (!verifyServiceProof(this.#sealer.sharedKey(trusted), svc.proof, fromKey, svc.ts, now)) {
        return this.#refuse(from, header.id, "forbidden", `proof of the key of service ${svc.name} does not hold`);
      }
    }
    for (const svc of parsed.data.svc) this.#services.announce(svc.name, fromKey, svc.free, now);
    this.stats.heartbeats++;
    const ack: Header = { v: PROTOCOL_VERSION, k: "ack", id: newId(), to: fromKey, exp: now + 60_000, re: header.id };
    try {
      await this.#router.send([from, "", encodeHeader(ack), ""]);
    } catch {
      // the replica is gone; its entry will expire
    }
  }

  async #refuse(to: Buffer, re: Uint8Array | undefined, code: WireCode | "forbidden", msg: string): Promise<void> {
    this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1;
    // Refusals a peer can repeat at will are logged once per interval per sender, with a count.
    this.#throttle.write(code === "busy" || code === "rate_limited" ? "warn" : "debug", "refused", `${code} ${to.toString("latin1")}`, { from: to.toString("latin1"), code, msg });
    const nack: Header = { v: PROTOCOL_VERSION, k: "nack", id: newId(), to: to.toString("latin1"), exp: Date.now() + 60_000, code, msg: clipUtf8(msg, MAX_NACK_MSG_BYTES) };
    if (re) nack.re = re;
    try {
      await this.#router.send([to, "", encodeHeader(nack), ""]);
    } catch (err) {
      this.stats.nacksLost++;
      this.#throttle.write("warn", "nack undeliverable", to.toString("latin1"), { to: to.toString("latin1"), code, error: String(err) });
    }
  }

  #registerMetrics(): void {
    const r = this.metrics;
    const s = this.stats;
    readCounter(r, "zmcp_broker_messages_received_total", "Messages received from peers", () => s.received);
    readCounter(r, "zmcp_broker_messages_routed_total", "Messages forwarded to their recipient", () => s.routed);
    readCounter(r, "zmcp_broker_routed_bytes_total", "Bytes (header + body) forwarded", () => s.bytes);
    readLabelledCounter(r, "zmcp_broker_messages_refused_total", "Messages refused with a nack, by error code", "code", () => Object.entries(s.refused) as Array<[string, number]>);
    readCounter(r, "zmcp_broker_nacks_lost_total", "Nacks that could not be delivered (sender gone or its queue full)", () => s.nacksLost);
    readCounter(r, "zmcp_broker_service_heartbeats_total", "Service heartbeats acknowledged", () => s.heartbeats);
    readCounter(r, "zmcp_broker_internal_errors_total", "Messages that hit a broker bug (logged)", () => s.internalErrors);
    readCounter(r, "zmcp_broker_connections_accepted_total", "TCP connections accepted", () => s.accepted);
    readCounter(r, "zmcp_broker_peers_connected_total", "CURVE handshakes completed (peers connected)", () => s.handshakes);
    readCounter(r, "zmcp_broker_peers_disconnected_total", "Connections closed (peers disconnected)", () => s.disconnected);
    readLabelledCounter(r, "zmcp_broker_handshake_failures_total", "Failed handshakes by reason (auth: key refused; protocol: not CURVE or garbage)", "reason", () => Object.entries(s.handshakeFailures) as Array<[string, number]>);
    readGauge(r, "zmcp_broker_rate_limited_senders", "Sender keys whose rate-limit bucket is empty now", () => this.#limiter?.limitedNow() ?? 0);
    readCounter(r, "zmcp_broker_rate_limited_senders_total", "Times a sender key started being refused rate_limited", () => this.#limiter?.limitedEpisodes ?? 0);
    readCounter(r, "zmcp_broker_takeovers_total", "Handshakes of a key already connected: the older connection was told it is displaced", () => s.takeovers);
    readCounter(r, "zmcp_broker_revocation_notices_total", "Connections told their key was revoked or removed", () => s.revocationNotices);
    readCounter(r, "zmcp_broker_log_lines_suppressed_total", "Log lines a peer caused that were skipped by the log rate limit (summarised with a count)", () => this.#throttle.suppressedTotal);
    // hook(durable): store-and-forward counters
    const d = () => this.durable?.stats;
    readCounter(r, "zmcp_broker_durable_stored_total", "Durable messages stored for a recipient that could not take them", () => d()?.stored ?? 0);
    readCounter(r, "zmcp_broker_durable_delivered_total", "Stored messages delivered", () => d()?.delivered ?? 0);
    readCounter(r, "zmcp_broker_durable_expired_total", "Stored messages deleted unsent at their exp", () => d()?.expired ?? 0);
    readCounter(r, "zmcp_broker_durable_unavailable_total", "Durable messages refused because the store was unreachable", () => d()?.unavailable ?? 0);
    readGauge(r, "zmcp_broker_allowed_keys", "Keys in the allowlist", () => this.#allowed.size);
    readGauge(r, "zmcp_broker_service_replicas", "Live service replicas in the directory", () => Object.values(this.#services.snapshot()).reduce((n, r) => n + r.length, 0));
  }

  async #watch(): Promise<void> {
    try {
      for await (const event of this.#router.events) {
        if (event.type === "accept") this.stats.accepted++;
        else if (event.type === "handshake") this.stats.handshakes++;
        else if (event.type === "disconnect") this.stats.disconnected++;
        if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol" || event.type === "handshake:error:other") {
          const reason = event.type.slice("handshake:error:".length) as "auth" | "protocol" | "other";
          this.stats.handshakeFailures[reason] = (this.stats.handshakeFailures[reason] ?? 0) + 1;
          // Any stranger can cause these: one line per interval, with a count (log-throttle.ts).
          this.#throttle.write("info", "handshake failed", event.type, { type: event.type, address: event.address });
        } else if (this.log.enabled("debug") && (event.type === "accept" || event.type === "disconnect" || event.type === "handshake")) {
          this.log.debug(event.type, { address: event.address });
        }
      }
    } catch {
      // the observer ends when the socket closes
    }
  }
}

const heartbeatDecoder = new Decoder({ maxStrLength: 1024, maxBinLength: 1024, maxArrayLength: 64, maxMapLength: 16, maxExtLength: 0 });

/** hook(durable): how long a start waits for the durable store to connect, ms. */
const STORE_CONNECT_WAIT_MS = 2000;

/** Default byte budget of one peer's queue (see BrokerOptions.queueBytes). */
export const DEFAULT_QUEUE_BYTES = 256 * 1024 * 1024;

/** A `hb` body this small holds no service proofs (`{svc: []}` is 5 bytes): a sign of life only. */
const LIVENESS_HB_MAX_BYTES = 16;

/** How long a takeover's ZAP approval waits for the `displaced` notice to the old connection to be written, ms. */
const TAKEOVER_NOTICE_MS = 50;

interface Allowlist {
  keys: Set<string>;
  /** Certificate names by key (directory allowlists only). */
  names: Map<string, string>;
  /** Trusted service keys by name. */
  services: Map<string, string>;
}

function readAllowlist(allow: string | Iterable<string>, log: Logger, services: Record<string, string> = {}): Allowlist {
  const serviceKeys = new Map(Object.entries(services));
  for (const [name, key] of serviceKeys) if (!isZ85Key(key)) throw new ConfigError(`service ${name}: key is not Z85`);
  if (typeof allow === "string") {
    const dir = loadCertDirectory(allow, (err) => log.warn("certificate skipped", { error: err.message }));
    for (const [name, key] of dir.services) {
      const configured = serviceKeys.get(name);
      if (configured === undefined) serviceKeys.set(name, key);
      else if (configured !== key) {
        // Two operator sources disagree: trusting either would be picking by accident.
        serviceKeys.delete(name);
        log.error("service refused: two keys claim it", { service: name, configured, file: `svc-${name}.key`, key });
      }
    }
    return { keys: new Set(dir.byKey.keys()), names: dir.byKey, services: serviceKeys };
  }
  const keys = new Set<string>();
  for (const key of allow) {
    if (!isZ85Key(key)) throw new ConfigError(`allowlist entry ${JSON.stringify(key)} is not a Z85 key`);
    keys.add(key);
  }
  return { keys, names: new Map(), services: serviceKeys };
}
