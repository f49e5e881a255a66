/**
 * The free part of an agent's sign of life. An agent sends the broker a `hb` every heartbeat
 * interval (support/liveness.ts); that must not be refused for the agent's other traffic, nor
 * eat into it, so a liveness `hb` may skip the rate limit. But only a little: a free pass per
 * message label is a bypass (20,000 `hb` in 5.6 s at 5 messages/s, each answered, before this).
 *
 * So the free allowance is a bucket of its own per key, sized for one honest agent: 2 per
 * heartbeat interval, burst 2 (the tick, plus the one sent after each handshake), and only for
 * the canonical body `{svc: []}` (what a zmcp agent without services sends, byte for byte). A
 * `hb` with service proofs, any other body, and every `hb` past the allowance draw on the main
 * bucket like any other message, and past it are refused `rate_limited` like any other message.
 *
 * A subscriber's sign of life carries its topic patterns (`{svc: [], sub: [...]}`, what a zmcp
 * agent without services but with subscriptions sends, keys in that order): it is free within
 * the same allowance, so a publisher that spends its bucket does not lose its subscriptions.
 */
import { RateLimiter } from "../auth/ratelimit.js";

/** msgpack of `{svc: []}`: fixmap(1), fixstr(3) "svc", fixarray(0). */
export const LIVENESS_HB_BODY = Buffer.from([0x81, 0xa3, 0x73, 0x76, 0x63, 0x90]);
/** The start of msgpack `{svc: [], sub: ...}`: fixmap(2), "svc", fixarray(0), fixstr(3) "sub". */
export const SUBSCRIBER_HB_PREFIX = Buffer.from([0x82, 0xa3, 0x73, 0x76, 0x63, 0x90, 0xa3, 0x73, 0x75, 0x62]);

/** Free liveness `hb` per heartbeat interval per key, and at once (burst). */
/** `{svc: [], sub: [...], dsub: [...]}`: a subscriber with durable subscriptions (docs/EVENTS.md), free alike. */
export const DURABLE_SUBSCRIBER_HB_PREFIX = Buffer.from([0x83, 0xa3, 0x73, 0x76, 0x63, 0x90, 0xa3, 0x73, 0x75, 0x62]);

/** `{svc: [], dsub: []}`: an agent whose durable subscriptions all closed says so in every heartbeat; free alike. */
export const NO_DURABLE_HB_BODY = Buffer.from([0x82, 0xa3, 0x73, 0x76, 0x63, 0x90, 0xa4, 0x64, 0x73, 0x75, 0x62, 0x90]);

export const LIVENESS_FREE_PER_INTERVAL = 2;

export class LivenessAllowance {
  readonly #bucket: RateLimiter;

  /** `intervalMs`: the agents' heartbeat interval (0, liveness off: the reference 2,000 ms). */
  constructor(intervalMs: number, maxKeys = 100_000) {
    const interval = intervalMs > 0 ? intervalMs : 2000;
    this.#bucket = new RateLimiter({ perSecond: (LIVENESS_FREE_PER_INTERVAL * 1000) / interval, burst: LIVENESS_FREE_PER_INTERVAL, maxKeys });
  }

  /** True when this `hb` body is a plain sign of life and `key` has allowance left (it is spent). */
  take(key: string, body: Uint8Array, now = performance.now()): boolean {
    const prefix = body.length > SUBSCRIBER_HB_PREFIX.length ? body.subarray(0, SUBSCRIBER_HB_PREFIX.length) : undefined;
    const plain = LIVENESS_HB_BODY.equals(body) || NO_DURABLE_HB_BODY.equals(body) || (prefix !== undefined && (SUBSCRIBER_HB_PREFIX.equals(prefix) || DURABLE_SUBSCRIBER_HB_PREFIX.equals(prefix)));
    return plain && this.#bucket.take(key, now);
  }
}
