/**
 * Liveness at the application level, instead of ZMTP heartbeats.
 *
 * libzmq 4.3.5 aborts the whole process (`Assertion failed: !_io_error`, stream_engine_base.cpp,
 * upstream #4364/#4767) when a ZMTP heartbeat timer fires on a connection that failed while its
 * input was stopped (a full queue, a ROUTER handover in progress). Any admitted peer can cause
 * that on the broker, and a dying broker can cause it on an agent with a backlog. With ZMTP
 * heartbeats off it cannot happen, so both sides turn them off and keep liveness here:
 *
 * - agents send the broker a `hb` message every `heartbeatInterval` (with their services, or an
 *   empty list) and redial when its acks stop (agent side: {@link AckWatch});
 * - the broker keeps "last heard" per key ({@link PeerLiveness}) and refuses to route to a key
 *   that announced liveness but has been silent longer than `heartbeatTimeout`, with `no_route`,
 *   so a frozen peer is cut off in bounded time exactly as the ZMTP timeout did.
 *
 * A peer that never sends `hb` (an older or minimal implementation) is routed as before: it is
 * held to no promise it did not make.
 */
import { RecencyMap } from "./recency-map.js";

interface Heard {
  /** Last message from the key, ms (monotonic). */
  at: number;
  /** The key has sent a `hb`: it promised to be heard at least every heartbeat interval. */
  announces: boolean;
}

/** The broker's soft state: when each key was last heard. Bounded (least recent dropped first). */
export class PeerLiveness {
  readonly #heard: RecencyMap<string, Heard>;

  constructor(
    /** Silence after which an announcing key is refused `no_route`, ms; 0 disables. */
    readonly timeoutMs: number,
    readonly maxKeys = 100_000,
  ) {
    this.#heard = new RecencyMap(maxKeys);
  }

  /** A message from `key` arrived (`announce`: it was a `hb`). */
  heard(key: string, announce: boolean, now = performance.now()): void {
    const entry = this.#heard.peek(key);
    if (entry) {
      entry.at = now;
      entry.announces ||= announce;
      this.#heard.set(key, entry);
      return;
    }
    this.#heard.set(key, { at: now, announces: announce });
  }

  /** Ms since `key` was last heard, if it announced liveness and is silent past the timeout. */
  silentFor(key: string, now = performance.now()): number | undefined {
    if (this.timeoutMs === 0) return undefined;
    const entry = this.#heard.get(key);
    if (!entry?.announces) return undefined;
    const silence = now - entry.at;
    return silence > this.timeoutMs ? silence : undefined;
  }

  /** Heard within the timeout (or heard at all when the timeout is off): probably connected now. */
  recentlyHeard(key: string, now = performance.now()): boolean {
    const entry = this.#heard.get(key);
    return entry !== undefined && (this.timeoutMs === 0 || now - entry.at <= this.timeoutMs);
  }

  /** Keys heard within the timeout (all heard keys when it is off), with their silence, ms. */
  *recent(now = performance.now()): IterableIterator<[string, { silenceMs: number; announces: boolean }]> {
    for (const [key, entry] of this.#heard.entries()) {
      const silenceMs = now - entry.at;
      if (this.timeoutMs === 0 || silenceMs <= this.timeoutMs) yield [key, { silenceMs, announces: entry.announces }];
    }
  }

  /** Ms since `key` was last heard (any message), if it was heard at all. */
  heardAgo(key: string, now = performance.now()): number | undefined {
    const entry = this.#heard.peek(key);
    return entry === undefined ? undefined : now - entry.at;
  }

  forget(key: string): void {
    this.#heard.delete(key);
  }

  /** Keys heard (all of them, announcing or not). */
  keys(): IterableIterator<string> {
    return this.#heard.keys();
  }

  get size(): number {
    return this.#heard.size;
  }
}

/**
 * The agent's side: the broker's acks to its `hb` messages. When none came for `timeoutMs`
 * the connection is presumed dead (a frozen broker, a half-open TCP) and the agent redials.
 */
export class AckWatch {
  #lastAck: number;

  constructor(
    readonly timeoutMs: number,
    now = performance.now(),
  ) {
    this.#lastAck = now;
  }

  acked(now = performance.now()): void {
    this.#lastAck = now;
  }

  /** True when no ack came for the timeout; restarts the wait (one redial per timeout). */
  expired(now = performance.now()): boolean {
    if (now - this.#lastAck <= this.timeoutMs) return false;
    this.#lastAck = now;
    return true;
  }
}
