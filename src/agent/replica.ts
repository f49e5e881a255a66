/**
 * Serving as a replica of named services: the service keys held, the heartbeats that
 * announce them to every broker with a proof of each key (wire/services.ts) and the free
 * capacity, and the liveness `hb` sent when there is no service to announce.
 */
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import { loadSecretCertificate, type Certificate } from "../auth/certs.js";
import { ConfigError, describeThrown } from "../errors.js";
import { PendingCalls } from "../support/pending.js";
import { RecencyMap } from "../support/recency-map.js";
import { encodeHeader, idKey, newId, PROTOCOL_VERSION, type Header } from "../wire/envelope.js";
import { Sealer } from "../wire/seal.js";
import { isServiceName, makeServiceProof } from "../wire/services.js";
import type { AgentCore } from "./core.js";
import { AGENT_DEFAULTS } from "./options.js";

interface Served {
  sealer: Sealer;
  publicKey: string;
  /** Declared durable: announced with `dur: true` (docs/DURABLE.md). */
  durable: boolean;
}

export class Replica {
  readonly #served = new Map<string, Served>();
  /** The broker's acks of announcements that wait for one. */
  readonly #acks = new PendingCalls<void>();
  /** Ids of heartbeats sent without waiting (liveness): their acks are expected, not unsolicited. */
  readonly #unawaited = new RecencyMap<string, true>(64);
  #timer: NodeJS.Timeout | undefined;
  /** The topic patterns to announce (subscriber.ts); every heartbeat carries the whole set. */
  subscriptions: () => readonly string[] = () => [];
  /** The patterns declared durable (heartbeat `dsub`, docs/EVENTS.md); undefined while this agent never subscribed durably. */
  durableSubscriptions: () => readonly string[] | undefined = () => undefined;

  constructor(
    private readonly core: AgentCore,
    private readonly serverKey: string,
    /** Tool runs free now (announced so the broker picks replicas with room). */
    private readonly free: () => number,
  ) {}

  /** The sealer of service `name` when served here. */
  sealerOf(name: string): Sealer | undefined {
    return this.#served.get(name)?.sealer;
  }

  /**
   * True when service `name` is served here and declared durable: its requests may have waited
   * in a broker's store, so they are judged like `dur` messages (agent/replay.ts).
   */
  isDurable(name: string): boolean {
    return this.#served.get(name)?.durable === true;
  }

  /** See Agent.serve. */
  async serve(name: string, options: { cert?: string | Required<Certificate>; timeout?: number; durable?: boolean }): Promise<void> {
    const core = this.core;
    if (!isServiceName(name)) throw new ConfigError(`invalid service name ${JSON.stringify(name)}`);
    const source = options.cert ?? (core.options.certs ? join(core.options.certs, `svc-${name}.key_secret`) : undefined);
    if (!source) throw new ConfigError("serve() needs the service's secret certificate (cert) or a certs directory");
    const cert = typeof source === "string" ? loadSecretCertificate(source) : source;
    this.#served.set(name, { sealer: new Sealer(cert.secretKey), publicKey: cert.publicKey, durable: options.durable === true });
    this.#timer ??= setInterval(() => void this.heartbeat().catch(() => undefined), core.options.serviceHeartbeat).unref();
    try {
      await this.heartbeat(options.timeout ?? AGENT_DEFAULTS.serveTimeout);
    } catch (err) {
      this.#served.delete(name);
      throw err;
    }
  }

  /** Liveness: a `hb` when no service heartbeat goes out anyway; after a handshake, always. */
  livenessTick(handshake: boolean, keepsLiveness: boolean): void {
    if (handshake) void this.heartbeat(undefined, keepsLiveness).catch(() => undefined);
    else if (this.#served.size === 0) void this.heartbeat(undefined, true).catch(() => undefined);
  }

  /** A broker's ack; false when it acknowledges nothing pending. */
  acked(key: string): boolean {
    return this.#acks.resolve(key, undefined) || this.#unawaited.delete(key);
  }

  /** A broker's refusal of an announcement; false when it refuses nothing pending. */
  refused(key: string, err: Error): boolean {
    return this.#acks.reject(key, err);
  }

  close(err: Error): void {
    clearInterval(this.#timer);
    this.#acks.rejectAll(err);
  }

  /**
   * Announces the served services to every broker (DEALER spreads sends over its connections,
   * so one heartbeat per endpoint reaches each). Resolves on the first ack when `waitMs` is given.
   */
  async heartbeat(waitMs?: number, evenWithoutServices = false): Promise<void> {
    const core = this.core;
    const sub = this.subscriptions();
    if (core.isClosed() || (this.#served.size === 0 && !evenWithoutServices && sub.length === 0 && this.durableSubscriptions() === undefined)) return;
    const ts = Date.now();
    const svc = [...this.#served].map(([name, s]) => ({
      name,
      key: s.publicKey,
      ts,
      proof: makeServiceProof(s.sealer.sharedKey(this.serverKey), core.publicKey, ts),
      free: Math.max(0, this.free()),
      ...(s.durable ? { dur: true as const } : {}),
    }));
    // `sub` only when there is one: a heartbeat without stays byte for byte what it was.
    // `dsub` only once this agent subscribed durably (an older broker refuses it visibly); then
    // always, even empty: that is how the broker learns to stop keeping publications for it.
    const dsub = this.durableSubscriptions();
    const body = encode({ svc, ...(sub.length > 0 ? { sub } : {}), ...(dsub ? { dsub } : {}) });
    const acks: Array<Promise<void>> = [];
    for (let i = 0; i < core.options.endpoints.length; i++) {
      const header: Header = { v: PROTOCOL_VERSION, k: "hb", id: newId(), to: "", exp: ts + 2 * core.options.serviceHeartbeat };
      if (waitMs !== undefined) acks.push(this.#acks.add(idKey(header.id), waitMs, undefined, "service announcement"));
      else this.#unawaited.set(idKey(header.id), true);
      core.transport.send([encodeHeader(header), body]).catch((err) => core.log.warn("heartbeat not sent", { error: describeThrown(err) }));
    }
    if (waitMs !== undefined) await Promise.any(acks).catch((err: AggregateError) => Promise.reject(err.errors[0]));
  }
}
