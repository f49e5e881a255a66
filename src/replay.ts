/**
 * Replay protection: a message is accepted once, and only while its timestamp is inside a
 * window around the receiver's clock.
 *
 * A message stamped `ts` is accepted only while |now - ts| <= window, and its first arrival
 * was at or after ts - window, so a replay can succeed no later than first arrival + 2 windows.
 * Keeping each seen id that long is enough, and makes the cache bounded by the window.
 */
import { ProtocolError } from "./errors.js";

export const DEFAULT_REPLAY_WINDOW_MS = 60_000;
export const DEFAULT_MAX_SEEN = 1_000_000;

export class ReplayGuard {
  /** key → time after which it may be forgotten; insertion order is arrival order. */
  readonly #seen = new Map<string, number>();

  /**
   * @param windowMs accepted clock difference, ms; default 60,000
   * @param maxSeen ids remembered at most; past it new messages are refused with `busy`
   *   (failing closed rather than forgetting ids that could then be replayed); default 1,000,000
   */
  constructor(
    readonly windowMs = DEFAULT_REPLAY_WINDOW_MS,
    readonly maxSeen = DEFAULT_MAX_SEEN,
  ) {}

  /** Throws ProtocolError(replay | busy) if the message must be refused; records it otherwise. */
  check(key: string, ts: number, now = Date.now()): void {
    if (!Number.isFinite(ts) || Math.abs(now - ts) > this.windowMs) {
      throw new ProtocolError("replay", `timestamp ${ts} is outside the ${this.windowMs} ms replay window (clock ${now})`);
    }
    this.#prune(now);
    if (this.#seen.has(key)) throw new ProtocolError("replay", "message id seen before (replayed)");
    if (this.#seen.size >= this.maxSeen) throw new ProtocolError("busy", "replay cache full");
    this.#seen.set(key, now + 2 * this.windowMs);
  }

  get size(): number {
    return this.#seen.size;
  }

  #prune(now: number): void {
    for (const [key, forgetAt] of this.#seen) {
      if (forgetAt > now) break;
      this.#seen.delete(key);
    }
  }
}
