/**
 * Store-and-forward in the broker (docs/DURABLE.md): a message whose header carries `dur: true`
 * goes to its recipient at once when it can, and is stored (sealed, as received) when the
 * recipient is not connected or its queue is full; the sender is told `ack {code: "stored"}`.
 * When the recipient is heard (its liveness `hb`, or any message), on any broker sharing the
 * store, its stored messages are delivered oldest first, under a lease so that one broker at a
 * time delivers to it.
 *
 * Order per recipient: a durable message is stored, not sent, while anything is stored for its
 * recipient, so it cannot overtake them. Delivery is at least once: a broker that dies between
 * sending a batch and deleting it lets the next one send it again; recipients drop the copy
 * (replay cache, then the request id's idempotency).
 *
 * The broker is handed in as a few functions (its own forward, refusal and send), so this module
 * holds no socket and broker/broker.ts only calls in (its routing path, start and close).
 */
import { encodeHeader, newId, PROTOCOL_VERSION, decodeHeader, type Header } from "../wire/envelope.js";
import type { WireCode } from "../errors.js";
import type { Logger } from "../support/log.js";
import { StoreUnavailableError } from "./redis.js";
import type { DurableStore, StoredMessage } from "./store.js";
import { DURABLE_SUBS_RELOAD_MS, DurableSubscriptions } from "./durable-subscriptions.js";

export interface BrokerPort {
  /** Admitted (in the allowlist, not revoked): nothing is stored for anyone else. */
  admitted(key: string): boolean;
  /** The broker's forward: undefined once sent, else the refusal (`no_route`, `busy`, ...). */
  forward(to: string, from: Buffer, headerBytes: Buffer, body: Buffer, header: Header): Promise<[WireCode, string] | undefined>;
  /** The broker's refusal (a counted, logged `nack`). */
  refuse(to: Buffer, re: Uint8Array, code: WireCode, msg: string): Promise<void>;
  /** Live replicas of service `name` in this broker's directory. */
  replicas(name: string): string[];
  /** Services with a live replica in this broker's directory. */
  replicasByService(): string[];
  /** A raw send on the broker's socket (for the `stored` ack). */
  send(frames: Array<Buffer | Uint8Array | string>): Promise<void>;
}

export interface DurableStats {
  /** Durable messages stored (acked `stored`). */
  stored: number;
  /** Stored messages delivered to their recipient. */
  delivered: number;
  /** Stored messages deleted unsent because their exp passed. */
  expired: number;
  /** Durable sends refused: `busy` (a bound reached; `quota`: the sender's own share), `unavailable` (store unreachable). */
  full: number;
  quota: number;
  unavailable: number;
  /** Durable service requests handed to a replica (a request handed out again counts again). */
  dispatched: number;
  /** Durable service requests retired because a replica's answer passed through this broker. */
  served: number;
  /** Publications stored for a durable subscriber (one copy per subscriber; also counted in `stored`). */
  publicationsStored: number;
}

/** What became of one durable subscriber's copy of a publication (fanOut). */
export type DurableCopy = "sent" | "stored" | "quota" | "full" | "unavailable" | "revoked" | "no_route";

/** Stored messages sent per lease round trip. */
const BATCH = 64;
/** A recipient's store is looked at most this often on its messages, ms (its `hb`s are 2 s apart). */
const CHECK_EVERY_MS = 1000;
/** Durable service queues are looked at this often (for requests whose visibility timeout passed), ms. */
const SERVE_EVERY_MS = 500;
/** The store's list of durable queues is re-read this often, ms. */
const QUEUES_EVERY_MS = 5000;
/** Default visibility timeout of a durable service request: handed to another replica after it, ms. */
export const DEFAULT_VISIBILITY_MS = 30_000;
/** A declaration is written to the store at most this often per service, ms. */
const DECLARE_EVERY_MS = 60_000;
/** Declared-durable services remembered at most (as the broker's replica directory, bounded). */
const MAX_DECLARED = 10_000;
/** Expired messages are swept this often, ms. */
const SWEEP_EVERY_MS = 10_000;

export class DurableDelivery {
  readonly stats: DurableStats = { stored: 0, delivered: 0, expired: 0, full: 0, quota: 0, unavailable: 0, dispatched: 0, served: 0, publicationsStored: 0 };
  /** Durable subscriptions declared in heartbeats, here or through the store (durable-subscriptions.ts). */
  readonly subscriptions: DurableSubscriptions;
  #subsRead = 0;
  readonly #store: DurableStore;
  readonly #port: BrokerPort;
  readonly #log: Logger;
  readonly #maxRetention: number;
  readonly #checked = new Map<string, number>();
  readonly #draining = new Map<string, Promise<void>>();
  readonly #sweeper: NodeJS.Timeout;
  readonly #server: NodeJS.Timeout;
  readonly #visibility: number;
  /** Services whose queue is being served now (one pass at a time per service), and the round-robin cursor. */
  readonly #serving = new Map<string, Promise<void>>();
  #cursor = 0;
  /** Services known to have a durable queue (from the store, re-read every QUEUES_EVERY_MS, and from this broker's own enqueues). */
  readonly #queues = new Set<string>();
  #queuesRead = 0;
  /** Services declared durable (a replica's heartbeat `dur: true`, here or through the store) → until when, ms. */
  readonly #declared = new Map<string, number>();
  /** When this broker last wrote each declaration to the store (heartbeats come every second; one write a minute is plenty). */
  readonly #declaredWritten = new Map<string, number>();
  #closed = false;

  /** @param maxRetention a message is kept at most this long, whatever its exp says, ms */
  constructor(store: DurableStore, port: BrokerPort, log: Logger, maxRetention: number, visibilityMs = DEFAULT_VISIBILITY_MS) {
    this.#visibility = visibilityMs;
    this.#server = setInterval(() => {
      if (!this.#store.available || this.#closed) return;
      if (Date.now() - this.#queuesRead > QUEUES_EVERY_MS) {
        this.#queuesRead = Date.now();
        this.#store.queues().then(
          (names) => names.forEach((n) => this.#queues.add(n)),
          () => undefined,
        );
        // Declarations made through other brokers of the store (or before this one restarted).
        const until = Date.now() + QUEUES_EVERY_MS * 2;
        this.#store.declared().then(
          (names) => names.forEach((n) => this.#declared.set(n, Math.max(this.#declared.get(n) ?? 0, until))),
          () => undefined,
        );
      }
      if (Date.now() - this.#subsRead > DURABLE_SUBS_RELOAD_MS) this.reloadSubscriptions().catch(() => undefined);
      // Only services with a durable queue and a replica here: one look each per tick.
      for (const name of this.#port.replicasByService()) if (this.#queues.has(name)) this.#serve(name);
    }, SERVE_EVERY_MS).unref();
    this.#store = store;
    this.subscriptions = new DurableSubscriptions(store, maxRetention);
    this.#port = port;
    this.#log = log;
    this.#maxRetention = maxRetention;
    this.#sweeper = setInterval(() => {
      if (!this.#store.available) return;
      this.#store.sweep().catch(() => undefined); // an outage is logged once by the store
    }, SWEEP_EVERY_MS).unref();
  }

  get store(): DurableStore {
    return this.#store;
  }

  /** A durable message to the agent `to`: forwarded, stored, or refused; the sender is answered. */
  async route(from: Buffer, header: Header, headerBytes: Buffer, body: Buffer): Promise<void> {
    const to = header.to;
    if (header.k !== "req") this.answered(header);
    const now = Date.now();
    if (!this.#port.admitted(to)) {
      const failure = await this.#port.forward(to, from, headerBytes, body, header); // the broker's own words for why
      return this.#port.refuse(from, header.id, ...(failure ?? ["no_route", `${to} is not admitted`]));
    }
    if (header.exp <= now) return this.#port.refuse(from, header.id, "expired", "a durable message is stored only until its exp, which has passed");
    const message: StoredMessage = { from: from.toString("latin1"), header: headerBytes, body, exp: Math.min(header.exp, now + this.#maxRetention) };
    try {
      let outcome = await this.#store.put(to, message, true);
      if (outcome === "live") {
        const failure = await this.#port.forward(to, from, headerBytes, body, header);
        if (!failure) return;
        if (failure[0] !== "no_route" && failure[0] !== "busy") return this.#port.refuse(from, header.id, ...failure);
        outcome = await this.#store.put(to, message, false);
      }
      if (outcome === "quota") {
        this.stats.quota++;
        return this.#port.refuse(from, header.id, "busy", `your share of the durable store is used up (messages or bytes stored from your key for ${to}, or in all); they leave as they are delivered or expire`);
      }
      if (outcome === "full") {
        this.stats.full++;
        return this.#port.refuse(from, header.id, "busy", `the durable store is full for ${to} (or in all)`);
      }
      this.stats.stored++;
      const ack: Header = { v: PROTOCOL_VERSION, k: "ack", id: newId(), to: message.from, exp: now + 60_000, re: header.id, code: "stored" };
      await this.#port.send([from, "", encodeHeader(ack), ""]).catch(() => undefined); // the sender left: its message is stored all the same
      // Stored while the recipient is connected (its queue was full, or a backlog is draining):
      // its next hb (at most ~2 s) delivers it; a drain in progress picks it up in its next batch.
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.stats.unavailable++;
      return this.#port.refuse(from, header.id, "unavailable", "the durable store is unreachable; durable messages cannot be accepted now");
    }
  }

  /** Re-reads the durable subscriptions declared in the store (at start, then every few seconds). */
  async reloadSubscriptions(): Promise<void> {
    this.#subsRead = Date.now();
    await this.subscriptions.reload();
  }

  /**
   * One durable subscriber's copy of a publication (docs/EVENTS.md "Durable subscriptions"):
   * sent at once when `connected` and nothing is stored for `to` (so it cannot overtake its
   * backlog, as for `dur`, §3.5), else stored for it after what is already stored, under the
   * same bounds and the publisher's per-sender share. One stored copy per subscriber: the
   * per-recipient streams then keep each subscriber's order, bounds, lease and deletion on
   * delivery as they are, at the price of the bytes of one copy per offline subscriber (a
   * shared per-topic stream with a cursor per subscriber would store less, but needs its own
   * bounds, expiry and fairness: not worth it while durable subscribers per topic are few).
   * Stored until the retention, not the publication's `exp` (a minute): keeping it while the
   * subscriber is away is the point. Nothing is answered to the publisher (publications are
   * unacknowledged); the outcome is counted by the caller.
   */
  async fanOut(to: string, from: Buffer, header: Header, headerBytes: Buffer, body: Buffer, connected: boolean): Promise<DurableCopy> {
    const message: StoredMessage = { from: from.toString("latin1"), header: headerBytes, body, exp: Date.now() + this.#maxRetention };
    try {
      let outcome = await this.#store.put(to, message, connected);
      if (outcome === "live") {
        const failure = await this.#port.forward(to, from, headerBytes, body, header);
        if (!failure) return "sent";
        if (failure[0] !== "no_route" && failure[0] !== "busy") return failure[0] === "revoked" ? "revoked" : "no_route";
        outcome = await this.#store.put(to, message, false);
      }
      if (outcome === "stored") {
        this.stats.stored++;
        this.stats.publicationsStored++;
        // Stored while connected (its queue was full, or a backlog is draining): its next hb delivers it.
        return "stored";
      }
      if (outcome === "quota") {
        this.stats.quota++;
        return "quota";
      }
      this.stats.full++; // ("live" is not an answer to a put without onlyIfBacklog)
      return "full";
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.stats.unavailable++;
      if (!connected) return "unavailable";
      // The store is down: at most once, like any publication, rather than nothing.
      return (await this.#port.forward(to, from, headerBytes, body, header)) ? "unavailable" : "sent";
    }
  }

  /**
   * A durable request to `svc:NAME`: into the service's work queue (a consumer group), acked
   * `stored`, then handed to a live replica; re-handed to another after the visibility timeout
   * unless a replica's answer to it has passed through a broker by then ({@link answered}).
   */
  async routeService(from: Buffer, header: Header, headerBytes: Buffer, body: Buffer, name: string): Promise<void> {
    const now = Date.now();
    if (header.exp <= now) return this.#port.refuse(from, header.id, "expired", "a durable message is stored only until its exp, which has passed");
    const requestId = Buffer.from(header.id).toString("hex");
    try {
      const outcome = await this.#store.enqueue(name, { from: from.toString("latin1"), header: headerBytes, body, exp: Math.min(header.exp, now + this.#maxRetention), requestId });
      if (outcome === "quota") {
        this.stats.quota++;
        return this.#port.refuse(from, header.id, "busy", `your share of the durable store is used up (requests stored from your key for service ${name}, or in all)`);
      }
      if (outcome === "full") {
        this.stats.full++;
        return this.#port.refuse(from, header.id, "busy", `the durable queue of service ${name} is full (or the store is)`);
      }
      this.stats.stored++;
      this.#queues.add(name);
      const ack: Header = { v: PROTOCOL_VERSION, k: "ack", id: newId(), to: from.toString("latin1"), exp: now + 60_000, re: header.id, code: "stored" };
      await this.#port.send([from, "", encodeHeader(ack), ""]).catch(() => undefined);
      this.#serve(name);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.stats.unavailable++;
      return this.#port.refuse(from, header.id, "unavailable", "the durable store is unreachable; durable messages cannot be accepted now");
    }
  }

  /**
   * A replica of `name` declared it durable in a verified heartbeat: requests to it are queued
   * from now on, by this broker at once and by the others of the store within QUEUES_EVERY_MS.
   * The declaration lasts the store's retention after the last heartbeat that made it (a
   * replica down for less than that still finds its requests waiting).
   */
  declare(name: string): void {
    const now = Date.now();
    if (!this.#declared.has(name) && this.#declared.size >= MAX_DECLARED) return; // bounded (names come from verified heartbeats only)
    this.#declared.set(name, now + this.#maxRetention);
    this.#queues.add(name);
    if ((this.#declaredWritten.get(name) ?? 0) + DECLARE_EVERY_MS > now || !this.#store.available) return;
    this.#declaredWritten.set(name, now);
    this.#store.declare(name, now + this.#maxRetention).catch(() => this.#declaredWritten.delete(name)); // tried again on the next heartbeat
  }

  /**
   * True when a request to `svc:NAME` without `dur` goes to the service's queue all the same: the
   * service is declared durable and the store is reachable (while it is not, the request is
   * dispatched live, as without a store: plain traffic keeps flowing).
   */
  isDeclared(name: string): boolean {
    const until = this.#declared.get(name);
    if (until === undefined) return false;
    if (until < Date.now()) {
      this.#declared.delete(name);
      return false;
    }
    return this.#store.available;
  }

  /**
   * A plain answer sealed as `svc:NAME` passes: when the service is declared durable, its
   * request (queued although its caller did not mark it `dur`) leaves the queue. Plain answers
   * of other services answer plain requests, which were never queued: no store call for them.
   */
  answeredPlain(header: Header): void {
    const name = header.as?.startsWith("svc:") ? header.as.slice(4) : undefined;
    if (name !== undefined && header.k === "res" && this.#declared.has(name)) this.answered(header);
  }

  /** A durable answer sealed as `svc:NAME` passes: its request leaves the service's queue. */
  answered(header: Header): void {
    const name = header.as?.startsWith("svc:") ? header.as.slice(4) : undefined;
    if (!name || !header.re || !this.#store.available) return;
    this.#store.done(name, Buffer.from(header.re).toString("hex")).then(
      (found) => {
        if (found) this.stats.served++;
      },
      () => undefined, // unreachable: the request is handed out again after its visibility timeout (at least once)
    );
  }

  #serve(name: string): void {
    if (this.#serving.has(name) || this.#closed) return;
    const run = this.#servePass(name).finally(() => this.#serving.delete(name));
    this.#serving.set(name, run);
  }

  async #servePass(name: string): Promise<void> {
    try {
      for (let round = 0; round < 16; round++) {
        const replicas = this.#port.replicas(name);
        if (replicas.length === 0) return; // kept in the queue; handed out when a replica heartbeats
        const batch = await this.#store.take(name, BATCH, this.#visibility);
        this.stats.expired = this.#store.expired;
        if (batch.length === 0) return;
        for (const m of batch) {
          let decoded: Header;
          try {
            decoded = decodeHeader(m.header);
          } catch {
            continue; // cannot happen (it was read before it was stored); it expires in the queue
          }
          const from = Buffer.from(m.from, "latin1");
          // Round robin over the live replicas; one that fails is skipped, and a request no
          // replica took stays pending: it is handed out again after the visibility timeout.
          for (let i = 0; i < replicas.length; i++) {
            const replica = replicas[this.#cursor++ % replicas.length]!;
            if (!(await this.#port.forward(replica, from, m.header, m.body, decoded))) {
              this.stats.dispatched++;
              break;
            }
          }
        }
        if (batch.length < BATCH) return;
      }
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) this.#log.error("durable service dispatch failed", { service: name, error: String(err) });
    }
  }

  /** `key` was heard: deliver what is stored for it (at most one look per CHECK_EVERY_MS). */
  heard(key: string): void {
    if (this.#closed || this.#draining.has(key) || !this.#store.available) return;
    if (this.subscriptions.awaitingDeclaration(key)) return; // its backlog waits for its subscriptions (durable-subscriptions.ts)
    const now = Date.now();
    if ((this.#checked.get(key) ?? 0) + CHECK_EVERY_MS > now) return;
    this.#checked.set(key, now);
    if (this.#checked.size > 100_000) this.#checked.clear(); // bounded: forgetting only means one more look
    const run = this.#drain(key).finally(() => this.#draining.delete(key));
    this.#draining.set(key, run);
  }

  async #drain(key: string): Promise<void> {
    let leased = false;
    try {
      for (;;) {
        const batch = await this.#store.claim(key, BATCH);
        if (batch === undefined) return; // nothing stored, or another broker is delivering
        leased = true;
        const sent: typeof batch = [];
        let stopped = false;
        for (const m of batch) {
          let decoded: Header;
          try {
            decoded = decodeHeader(m.header);
          } catch {
            sent.push(m); // cannot happen (it was read before it was stored): dropped, not retried forever
            continue;
          }
          const failure = await this.#port.forward(key, Buffer.from(m.from, "latin1"), m.header, m.body, decoded);
          if (failure) {
            stopped = true; // gone again, or full: the rest waits for its next hb, in order
            break;
          }
          sent.push(m);
        }
        await this.#store.delivered(key, sent);
        this.stats.delivered += sent.length;
        if (stopped || batch.length === 0 || this.#closed) return;
      }
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) this.#log.error("durable delivery failed", { to: key, error: String(err) });
    } finally {
      this.stats.expired = this.#store.expired;
      if (leased) await this.#store.release(key).catch(() => undefined); // else the lease lapses by itself
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    clearInterval(this.#server);
    await Promise.allSettled([...this.#draining.values(), ...this.#serving.values()]);
    await this.#store.close();
  }
}
