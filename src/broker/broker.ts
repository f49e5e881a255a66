/**
 * The broker: a CURVE ROUTER that forwards sealed messages by `header.to`, reading only the
 * header. It keeps no per-connection table: peers are known to the ROUTER by their
 * authenticated keys (see zap.ts), so forwarding is one send to `header.to`.
 *
 * Every message that cannot be forwarded comes back to its sender at once as a `nack`
 * (`[empty from, header{k: "nack", re, code, msg}, empty body]`); nothing is dropped in silence.
 *
 * About 400 lines: the routing path (#route → #forward / #toService → #refuse) and the admission
 * hooks ZAP calls are kept in one file so that one read shows every way a message can go.
 * Options, the allowlist, the replica directory and the metrics live beside it.
 */
import { SOCKET_MESSAGE_SIZE_FACTOR } from "../wire/limits.js";
import { ackHeader, brokerFrames, nackHeader } from "../wire/broker-replies.js";
import * as zmq from "zeromq";
import { DenyList } from "../auth/denylist.js";
import { RateLimiter } from "../auth/ratelimit.js";
import { ConfigError, ProtocolError, type WireCode } from "../errors.js";
import { sleep } from "../support/deadline.js";
import { PeerLiveness } from "../support/liveness.js";
import { RecencyMap } from "../support/recency-map.js";
import type { Logger } from "../support/log.js";
import { newRegistry, type Registry } from "../support/metrics.js";
import { receiveLoop } from "../support/receive-loop.js";
import { checkMsgpack } from "../wire/msgpack-guard.js";
import { decodeHeader, type Header } from "../wire/envelope.js";
import { Sealer } from "../wire/seal.js";
import { heartbeatDecoder, HeartbeatSchema, parseServiceAddress, verifyServiceProof } from "../wire/services.js";
import { isZ85Key } from "../wire/z85.js";
import { readAllowlist, type Allowlist } from "../auth/allowlist.js";
import { LivenessAllowance } from "./liveness-allowance.js";
import { LogThrottle } from "../support/log-throttle.js";
import { resolveBrokerOptions, type BrokerOptions, type ResolvedBrokerOptions } from "./options.js";
import { ServiceDirectory } from "./replicas.js";
import { SubscriptionDirectory } from "./subscriptions.js";
import { topicProblem } from "../events/topics.js";
import { ResponseBudget } from "./response-budget.js";
import { DurableDelivery } from "../store/durable.js";
import { openStore } from "../store/index.js";
import { connectedPeers, type PeerInfo } from "./peers.js";
import { newBrokerStats, registerBrokerMetrics, type BrokerStats } from "./stats.js";
import { ZAP_DOMAIN, ZapHandler } from "../auth/zap.js";

export type { BrokerOptions } from "./options.js";
export { BROKER_DEFAULTS, DEFAULT_QUEUE_BYTES, resolveBrokerOptions } from "./options.js";
export type { BrokerStats } from "./stats.js";

export class Broker {
  readonly #router: zmq.Router;
  readonly #zap: ZapHandler;
  readonly #options: ResolvedBrokerOptions;
  readonly #maxMessageBytes: number;
  #allowed: Set<string>;
  #serviceKeys: Map<string, string>;
  readonly #services: ServiceDirectory;
  /** Who subscribes to which topic patterns: soft state from heartbeats (docs/EVENTS.md). */
  readonly #subscriptions: SubscriptionDirectory;
  readonly #sealer: Sealer;
  readonly #denyList: DenyList | undefined;
  readonly #limiter: RateLimiter | undefined;
  readonly #responses = new ResponseBudget();
  readonly #livenessAllowance: LivenessAllowance;
  readonly #throttle: LogThrottle;
  readonly #liveness: PeerLiveness;
  /** When each key was last approved by ZAP (monotonic ms): a connection on its way owns the route too. */
  readonly #approvedAt = new RecencyMap<string, number>(100_000);
  #names: Map<string, string>;
  /** Store-and-forward, when a store is configured (docs/DURABLE.md). */
  readonly durable: DurableDelivery | undefined;
  #closed = false;
  #loop: Promise<void> = Promise.resolve();
  readonly stats: BrokerStats = newBrokerStats();
  #metrics: Registry | undefined;
  readonly #clockSkew: number;
  readonly log: Logger;
  /** The endpoint actually bound (with the port resolved). */
  endpoint = "";

  private constructor(
    router: zmq.Router,
    zap: ZapHandler,
    options: ResolvedBrokerOptions,
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
    this.#services = new ServiceDirectory(options.replicaTtl);
    // A subscriber leaves the directory when it would be refused `no_route` for silence anyway.
    this.#subscriptions = new SubscriptionDirectory(options.heartbeatTimeout > 0 ? options.heartbeatTimeout : DEFAULT_OWNERSHIP_MS, options.maxSubscriptions);
    this.#sealer = new Sealer(options.secretKey);
    this.#denyList = denyList;
    this.#limiter = limiter;
    this.#livenessAllowance = new LivenessAllowance(options.heartbeatInterval);
    this.#maxMessageBytes = options.maxMessageBytes;
    this.#clockSkew = options.clockSkew;
    this.log = log;
    // Store-and-forward (docs/DURABLE.md), handed the broker's own forward, refusal and send.
    const store = typeof options.store === "string" ? openStore(options.store, log, options.storeLimits) : options.store;
    this.durable = store && new DurableDelivery(store, { admitted: (key) => this.isAllowed(key), forward: (...a) => this.#forward(...a), refuse: (...a) => this.#refuse(...a), send: (frames) => this.#router.send(frames), replicas: (name) => this.#services.snapshot()[name] ?? [], replicasByService: () => Object.keys(this.#services.snapshot()) }, log, options.storeRetention, options.storeVisibility);
  }

  /**
   * Prometheus metrics of this broker (a registry of its own, read from `stats` at scrape
   * time; serve it with `zmcp/metrics`). Created, and prom-client loaded, on first access.
   */
  get metrics(): Registry {
    if (this.#metrics) return this.#metrics;
    const registry = (this.#metrics = newRegistry());
    registerBrokerMetrics(registry, this.stats, {
      rateLimitedNow: () => this.#limiter?.limitedNow() ?? 0,
      rateLimitedEpisodes: () => this.#limiter?.limitedEpisodes ?? 0,
      logLinesSuppressed: () => this.#throttle.suppressedTotal,
      allowedKeys: () => this.#allowed.size,
      serviceReplicas: () => Object.values(this.#services.snapshot()).reduce((n, r) => n + r.length, 0),
      subscriptions: () => this.#subscriptions.size,
      subscribers: () => this.#subscriptions.keys,
      durableSubscriptions: () => this.durable?.subscriptions.size ?? 0,
      durable: () => this.durable?.stats,
      connectedPeers: () => this.peers(),
    });
    return registry;
  }

  get publicKey(): string {
    return this.#options.publicKey;
  }

  /** Starts a broker; resolves once it is bound and ready. */
  static async start(input: BrokerOptions): Promise<Broker> {
    const options = resolveBrokerOptions(input);
    const { log, maxMessageBytes } = options;
    const allowed = readAllowlist(options.allow, log, options.services);
    const limiter = options.rateLimit ? new RateLimiter(options.rateLimit) : undefined;
    const liveness = new PeerLiveness(options.heartbeatTimeout);
    const denyList = options.denyList ? DenyList.open(options.denyList, { reloadInterval: options.denyListInterval, log }) : undefined;
    // A context of its own: the ZAP endpoint is per context, so brokers in one process stay apart.
    const context = new zmq.Context();
    let broker: Broker | undefined;
    const throttle = new LogThrottle(log, options.logInterval);
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
      sendHighWaterMark: options.sendHighWaterMark,
      receiveHighWaterMark: options.receiveHighWaterMark,
      // No ZMTP heartbeats (heartbeatInterval stays 0): with them libzmq 4.3.5 aborts on a
      // connection that failed while its input was stopped. Liveness is kept with `hb` messages
      // instead, and a frozen peer is refused `no_route` all the same (liveness.ts).
      // Above this libzmq drops the connection; below it, an oversized message gets `too_large`.
      maxMessageSize: Math.max(SOCKET_MESSAGE_SIZE_FACTOR * maxMessageBytes, maxMessageBytes + 1024 * 1024),
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
    await broker.durable?.store.whenAvailable(STORE_CONNECT_WAIT_MS); // ready means ready to store, when Redis is up (a Redis down does not hold the start longer)
    // A restarted broker keeps publications for durable subscribers from its first one on.
    if (broker.durable?.store.available) await broker.durable.reloadSubscriptions().catch(() => undefined);
    broker.endpoint = router.lastEndpoint ?? options.bind;
    broker.#loop = broker.#receiveLoop();
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
   * much longer to hold the approval, ms. If the key was heard within the liveness timeout, or
   * approved within it (a connection still on its way: two processes started at once), its
   * current connection owns the routing id: it is told `displaced` now, before `handover` gives
   * the id to the new connection (after which it could never be reached again), and the
   * approval waits for that notice to be written. A connection approved but not yet through its
   * handshake has no route to send to yet, so the notice is retried for a moment.
   *
   * Counted and logged as a takeover only when the old connection was live: heard (or approved)
   * within one heartbeat interval. Silent longer, it is most likely this same process's own
   * dropped connection (a redial after a freeze or a blip the broker did not see): the notice
   * still goes to it (harmless if nobody reads it), but the broker logs and counts a reconnect.
   */
  async admitting(key: string): Promise<number> {
    const now = performance.now();
    this.durable?.subscriptions.connecting(key, now); // a durable subscriber's backlog waits for it to subscribe again
    const approvedAgo = this.#approvedAt.has(key) ? now - this.#approvedAt.peek(key)! : undefined;
    this.#approvedAt.set(key, now);
    const window = this.#liveness.timeoutMs > 0 ? this.#liveness.timeoutMs : DEFAULT_OWNERSHIP_MS;
    const heard = this.#liveness.recentlyHeard(key, now);
    const onItsWay = approvedAgo !== undefined && approvedAgo <= window;
    if (!heard && !onItsWay) return 0;
    const name = this.#names.get(key);
    const msg = `another connection with this key (${name ?? key}) was admitted; this one no longer receives anything`;
    // The new connection announces its own subscriptions in its first heartbeat.
    this.#subscriptions.forget(key);
    let sent = await this.#notice(key, "displaced", msg);
    for (let i = 0; !sent && !heard && i < NOTICE_RETRIES; i++) {
      await sleep(NOTICE_RETRY_MS);
      sent = await this.#notice(key, "displaced", msg);
    }
    if (!sent) return 0;
    const heardAgo = this.#liveness.heardAgo(key, now);
    const live = this.#options.heartbeatInterval;
    if (live === 0 || (heardAgo !== undefined && heardAgo <= live) || (approvedAgo !== undefined && approvedAgo <= live)) {
      this.stats.takeovers++;
      this.log.warn("key taken over by a new connection; the previous one was told it is displaced", { key, name });
    } else {
      this.stats.reconnects++;
      this.log.info("key reconnected; its previous connection, silent, was told it is displaced", { key, name, silentMs: Math.round(heardAgo ?? approvedAgo ?? 0) });
    }
    return TAKEOVER_NOTICE_MS;
  }

  /** Tells every recently heard key that is no longer admitted, once; it receives nothing more. */
  #noticeRevoked(): void {
    for (const key of [...this.#liveness.keys()]) {
      if (this.isAllowed(key)) continue;
      this.#liveness.forget(key);
      this.#subscriptions.forget(key);
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
   * (agent/connection.ts hands notices to the agent, which closes). False if it could not be queued.
   */
  async #notice(key: string, code: "displaced" | "revoked", msg: string): Promise<boolean> {
    if (this.#closed) return false;
    try {
      // sendTimeout is 0: this never waits, so it cannot collide with the route loop's sends.
      await this.#router.send(brokerFrames(key, nackHeader(key, code, msg)));
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
    await this.durable?.close(); // drains in progress end, the store connection closes
  }

  #receiveLoop(): Promise<void> {
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
        problem = [(err as ProtocolError).code, (err as Error).message];
      }
    }
    if (this.#denyList?.hasKey(fromKey)) return this.#refuse(from, header?.id, "revoked", "key is revoked");
    this.#liveness.heard(fromKey, header?.k === "hb");
    if (header) this.durable?.heard(fromKey); // deliver what was stored for this key (store/durable.ts)
    if (this.#limiter && !this.#freeOfLimit(fromKey, header, frames[2]) && !this.#limiter.take(fromKey)) {
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
    if (header.k === "pub") return this.#publish(from, header, headerBytes, body);
    const service = parseServiceAddress(header.to);
    // A durable service's work queue: a request marked `dur`, or any request to a service a
    // replica declared durable (its heartbeat's `dur`, docs/DURABLE.md).
    if (service && !service.replica && this.durable && (header.dur || (header.k === "req" && this.durable.isDeclared(service.name)))) return this.durable.routeService(from, header, headerBytes, body, service.name);
    if (!header.dur && header.k === "res") this.durable?.answeredPlain(header); // a plain answer retires its request from a declared service's queue
    if (service) return this.#toService(from, header, headerBytes, body, service.name, service.replica);
    if (!isZ85Key(header.to)) return this.#refuse(from, header.id, "no_route", `destination ${JSON.stringify(header.to)} is neither a Z85 key nor svc:NAME`);
    if (header.dur && this.durable) return this.durable.route(from, header, headerBytes, body); // forward or store (store/durable.ts)
    const failure = await this.#forward(header.to, from, headerBytes, body, header);
    if (failure) return this.#refuse(from, header.id, ...failure);
  }

  /**
   * Everything draws on the sender's bucket, except a response paid for by the request it
   * answers, forwarded to this sender by that requester (response-budget.ts): labelling a
   * message `res` skips nothing, and a credit pays for that one answer only. A liveness
   * heartbeat `{svc: []}` is free within a small allowance of its own (2 per heartbeat
   * interval): an agent's sign of life is not refused for its traffic, and a flood of `hb`
   * draws on the bucket like anything else (liveness-allowance.ts).
   */
  #freeOfLimit(fromKey: string, header: Header | undefined, body: Buffer | undefined): boolean {
    if (header?.k === "hb") return body !== undefined && this.#livenessAllowance.take(fromKey, body);
    return header?.k === "res" && this.#responses.spend(fromKey, header.to, header.re);
  }

  /** One send; resolves with the refusal to answer, or undefined once forwarded. */
  async #forward(to: string, from: Buffer, headerBytes: Buffer, body: Buffer, header: Header): Promise<[WireCode, string] | undefined> {
    // A revoked or removed key receives nothing either, whether or not it is still connected.
    if (!this.isAllowed(to)) return this.#denyList?.hasKey(to) ? ["revoked", `${to} is revoked`] : ["no_route", `${to} is not admitted`];
    const silence = this.#liveness.silentFor(to);
    if (silence !== undefined) return ["no_route", `${to} has not been heard for ${Math.round(silence)} ms`];
    try {
      await this.#router.send([to, from, headerBytes, body]);
      if (header.k === "req" && this.#limiter) this.#responses.credit(to, from.toString("latin1"), header.id, header.exp + this.#clockSkew);
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

  /**
   * A publication: one copy, byte for byte, to every admitted, live key whose subscriptions
   * match the topic (each key once, the publisher too if it subscribed). Nothing is answered
   * when it went out (at most once); a copy that cannot go out now is dropped and counted, never
   * waited for: sendTimeout is 0, so a full subscriber costs one failed send and slows nobody.
   */
  async #publish(from: Buffer, header: Header, headerBytes: Buffer, body: Buffer): Promise<void> {
    const problem = topicProblem(header.to);
    if (problem !== undefined) return this.#refuse(from, header.id, "bad_frame", `invalid topic: ${problem}`);
    if (header.sq === undefined) return this.#refuse(from, header.id, "bad_frame", "a publication carries its sequence number (sq)");
    if (header.dur || header.re || header.as !== undefined) return this.#refuse(from, header.id, "bad_frame", "a publication has no dur, re or as");
    this.stats.published++;
    const dropped = this.stats.fanoutDropped;
    const live = this.#subscriptions.match(header.to);
    // Durable subscribers (declared in the store, store/durable-subscriptions.ts) get their copy
    // through the store's per-recipient order instead: sent now or kept (store/durable.ts fanOut).
    const durable = this.durable?.subscriptions.match(header.to);
    if (durable && durable.size > 0) await this.#publishDurable(from, header, headerBytes, body, durable, new Set(live));
    for (const key of live) {
      if (durable?.has(key)) continue;
      if (!this.isAllowed(key)) {
        this.#subscriptions.forget(key);
        dropped.revoked = (dropped.revoked ?? 0) + 1;
        continue;
      }
      if (this.#liveness.silentFor(key) !== undefined) {
        dropped.silent = (dropped.silent ?? 0) + 1;
        continue;
      }
      try {
        await this.#router.send([key, from, headerBytes, body]);
        this.stats.fanout++;
        this.stats.bytes += headerBytes.length + body.length;
      } catch (err) {
        const reason = (err as { code?: string }).code === "EAGAIN" ? "busy" : "no_route";
        if (reason === "no_route") this.#subscriptions.forget(key);
        dropped[reason] = (dropped[reason] ?? 0) + 1;
        this.#throttle.write("info", "publication copy dropped", `${reason} ${key}`, { to: key, name: this.#names.get(key), topic: header.to, reason });
      }
    }
  }

  /** The copies for durable subscribers of a publication (`live`: the keys subscribed here now). */
  async #publishDurable(from: Buffer, header: Header, headerBytes: Buffer, body: Buffer, durable: Set<string>, live: Set<string>): Promise<void> {
    const dropped = this.stats.fanoutDropped;
    const admitted = [...durable].filter((key) => this.isAllowed(key));
    const refused = durable.size - admitted.length; // nothing is stored for a key not admitted
    if (refused > 0) dropped.revoked = (dropped.revoked ?? 0) + refused;
    // Side by side (one Redis round trip for all, pipelined on its connection); each key's order
    // holds because the next message is routed only once this publication is done (receive loop).
    const outcomes = await Promise.all(admitted.map((key) => this.durable!.fanOut(key, from, header, headerBytes, body, live.has(key) && this.#liveness.silentFor(key) === undefined)));
    for (const [i, outcome] of outcomes.entries()) {
      const key = admitted[i]!;
      if (outcome === "sent") {
        this.stats.fanout++;
        this.stats.bytes += headerBytes.length + body.length;
      } else if (outcome !== "stored") {
        dropped[outcome] = (dropped[outcome] ?? 0) + 1;
        this.#throttle.write("info", "publication copy dropped", `${outcome} ${key}`, { to: key, name: this.#names.get(key), topic: header.to, reason: outcome, durable: true });
      }
    }
  }

  /** Durable subscriptions this broker knows (its heartbeats' and the store's): key → patterns. */
  durableSubscriptions(): Record<string, string[]> {
    return this.durable?.subscriptions.snapshot() ?? {};
  }

  /** The subscription directory: key → its topic patterns (for tests and operators). */
  subscriptions(): Record<string, string[]> {
    return this.#subscriptions.snapshot();
  }

  /** A message for `svc:NAME` (or one replica of it): to a live replica, the next on failure. */
  async #toService(from: Buffer, header: Header, headerBytes: Buffer, body: Buffer, name: string, replica: string | undefined): Promise<void> {
    if (replica) {
      // Addressed to one replica (a job's polls): no choice to make, but it must still serve.
      const failure = await this.#forward(replica, from, headerBytes, body, header);
      if (failure?.[0] === "no_route") this.#services.evict(name, replica);
      return failure ? this.#refuse(from, header.id, ...failure) : undefined;
    }
    let sawBusy = false;
    for (let tries = 0; tries < 16; tries++) {
      const chosen = this.#services.pick(name);
      if (!chosen) break;
      const failure = await this.#forward(chosen, from, headerBytes, body, header);
      if (!failure) return;
      if (failure[0] === "no_route") this.#services.evict(name, chosen);
      else sawBusy = true;
    }
    return sawBusy
      ? this.#refuse(from, header.id, "busy", `every replica of service ${name} is busy`)
      : this.#refuse(from, header.id, "no_route", `no live replica of service ${name}`);
  }

  /** Peers connected now (heard within the heartbeat timeout), with certificate names. */
  peers(): PeerInfo[] {
    return connectedPeers(this.#liveness, this.#names);
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
    // The whole set each time: a heartbeat without `sub` clears the key's subscriptions.
    const dsub = parsed.data.dsub;
    // A durable subscription needs a store: refused visibly (subscribe() rejects), never kept live-only.
    if (dsub && dsub.length > 0 && !this.durable) return this.#refuse(from, header.id, "unavailable", "this broker has no durable store: durable subscriptions cannot be kept");
    const full = this.#subscriptions.announce(fromKey, parsed.data.sub ?? []);
    if (full !== undefined) return this.#refuse(from, header.id, "busy", full);
    // `dsub` absent changes nothing (an agent that has not subscribed again yet); present, it is the whole durable set.
    const durableFull = dsub && this.durable?.subscriptions.declare(fromKey, dsub);
    if (durableFull !== undefined) return this.#refuse(from, header.id, "busy", durableFull);
    for (const svc of parsed.data.svc) {
      this.#services.announce(svc.name, fromKey, svc.free, now);
      if (svc.dur) this.durable?.declare(svc.name); // without a store, the declaration changes nothing
    }
    this.stats.heartbeats++;
    try {
      await this.#router.send(brokerFrames(from, ackHeader(fromKey, header.id, now)));
    } catch {
      // the replica is gone; its entry will expire
    }
  }

  async #refuse(to: Buffer, re: Uint8Array | undefined, code: WireCode, msg: string): Promise<void> {
    this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1;
    // Refusals a peer can repeat at will are logged once per interval per sender, with a count.
    // Named by certificate where the allowlist knows one: operators read names, not Z85 keys.
    const name = this.#names.get(to.toString("latin1"));
    this.#throttle.write(code === "busy" || code === "rate_limited" ? "warn" : "debug", "refused", `${code} ${to.toString("latin1")}`, { from: to.toString("latin1"), ...(name === undefined ? {} : { name }), code, msg });
    try {
      await this.#router.send(brokerFrames(to, nackHeader(to.toString("latin1"), code, msg, re)));
    } catch (err) {
      this.stats.nacksLost++;
      this.#throttle.write("warn", "nack undeliverable", to.toString("latin1"), { to: to.toString("latin1"), code, error: String(err) });
    }
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


/** How long a start waits for the durable store to connect, ms. */
const STORE_CONNECT_WAIT_MS = 2000;

/** How long a takeover's ZAP approval waits for the `displaced` notice to the old connection to be written, ms. */
const TAKEOVER_NOTICE_MS = 50;
/** A notice to a connection approved but not yet routable is retried this often, this many times (0.5 s). */
const NOTICE_RETRY_MS = 20;
const NOTICE_RETRIES = 25;
/** With liveness off, how long an approval counts as owning the route, ms. */
const DEFAULT_OWNERSHIP_MS = 6000;

