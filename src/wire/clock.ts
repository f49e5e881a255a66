/**
 * Time on the wire: the rules every sender and receiver of zmcp follows, in one place.
 *
 * 1. Integer milliseconds since the epoch everywhere. A sender stamps `ts` (sealed) and `exp`
 *    (header) with {@link wireNow}-based integers. A receiver accepts any finite non-negative
 *    `exp` and any finite `ts` and reads both floored ({@link wireMs}): peers written in other
 *    languages send `time.time() * 1000`, and a fraction must never flow into a deadline this
 *    agent later writes into a header (headers carry integer `exp`; a fractional one is refused
 *    by the broker, which for up to two offset periods left a callee unable to answer that caller).
 * 2. `ts` must be within the replay window of the receiver's clock (replay.ts), else `replay`.
 * 3. A peer's deadline is read on the receiver's clock as `exp + offset` ({@link ClockOffsets}):
 *    offset = the smallest (arrival − ts) seen from that peer lately, so skewed clocks are
 *    tolerated and a message that waited in a queue still expires. The estimate restarts when
 *    either clock steps: the peer's `ts` going back by more than {@link CLOCK_STEP_MS} from its
 *    previous one (a peer's clock stepped back: otherwise every call with a timeout shorter than
 *    the step would be refused `expired`), or this process's wall clock moving against its
 *    monotonic clock by more than that (this clock stepped).
 * 4. What a message this agent sends carries as `exp`: a response, the caller's deadline on this
 *    clock but at least {@link MIN_ANSWER_LIFETIME_MS} ahead ({@link answerExp}); a refusal
 *    (answered before the deadline could be read), at least {@link REFUSAL_LIFETIME_MS} ahead,
 *    so that it is not refused as expired on the way back when clocks differ; a job event,
 *    {@link EVENT_LIFETIME_MS} ahead.
 */
import { RecencyMap } from "../support/recency-map.js";

export const DEFAULT_MAX_PEERS = 10_000;
/** Offsets follow clock drift: the minimum is taken over the current and the previous period. */
export const OFFSET_PERIOD_MS = 60_000;
/** A clock that moves by more than this against the expected has stepped. */
export const CLOCK_STEP_MS = 1000;
export const MIN_ANSWER_LIFETIME_MS = 1000;
export const REFUSAL_LIFETIME_MS = 30_000;
export const EVENT_LIFETIME_MS = 60_000;

/** A peer's timestamp or deadline as integer ms (rule 1); NaN stays NaN (refused later). */
export function wireMs(t: number): number {
  return Math.floor(t);
}

/** Now, integer ms since the epoch (Date.now() already is; named for the rule). */
export function wireNow(): number {
  return Date.now();
}

/** `exp` of a response to a request whose deadline on this clock is `deadline` (rule 4). */
export function answerExp(deadline: number, now = wireNow()): number {
  return Math.max(wireMs(deadline), now + MIN_ANSWER_LIFETIME_MS);
}

/** `exp` of a refusal of a request whose header said `exp` (rule 4). */
export function refusalExp(exp: number, now = wireNow()): number {
  return Math.max(wireMs(exp), now + REFUSAL_LIFETIME_MS);
}

/** `exp` of a job event (rule 4). */
export function eventExp(now = wireNow()): number {
  return now + EVENT_LIFETIME_MS;
}

interface PeerClock {
  min: number;
  previousMin: number;
  since: number;
  lastTs: number;
}

/**
 * Per-peer clock offsets (rule 3). The estimate is the minimum filter of NTP: (arrival − ts) is
 * the offset plus the transit, its minimum the offset plus the fastest transit. The sealed `ts`
 * cannot be forged by anyone but the peer, which can only stretch its own deadlines, and the
 * replay window already bounds it (|offset| ≤ window).
 */
export class ClockOffsets {
  readonly #peers: RecencyMap<string, PeerClock>;
  #wallMinusMono: number | undefined;

  /**
   * @param maxPeers peers remembered (least recently seen dropped first); default 10,000
   * @param periodMs how long a minimum stands before it is renewed, ms; default 60,000
   */
  constructor(
    readonly maxPeers = DEFAULT_MAX_PEERS,
    readonly periodMs = OFFSET_PERIOD_MS,
  ) {
    this.#peers = new RecencyMap(maxPeers);
  }

  /**
   * Records a message that `peer` stamped `ts` (its clock) and that arrived at `now` (ours);
   * returns the estimated offset, integer ms: our clock minus the peer's. A deadline `exp` of
   * this peer is `exp + offset` on our clock. `mono` (performance.now() at `now`), when given,
   * lets a step of this process's own clock be noticed.
   */
  observe(peer: string, ts: number, now: number, mono?: number): number {
    ts = wireMs(ts);
    now = wireMs(now);
    if (mono !== undefined) {
      const drift = now - mono;
      if (this.#wallMinusMono !== undefined && Math.abs(drift - this.#wallMinusMono) > CLOCK_STEP_MS) this.#peers.clear();
      this.#wallMinusMono = drift;
    }
    const sample = now - ts;
    let clock = this.#peers.peek(peer);
    if (clock) {
      if (ts < clock.lastTs - CLOCK_STEP_MS) clock = { min: sample, previousMin: sample, since: now, lastTs: ts }; // the peer's clock stepped back
      else if (now - clock.since >= this.periodMs) {
        clock.previousMin = clock.min;
        clock.min = sample;
        clock.since = now;
      } else if (sample < clock.min) clock.min = sample;
      clock.lastTs = Math.max(clock.lastTs, ts);
    } else {
      clock = { min: sample, previousMin: sample, since: now, lastTs: ts };
    }
    this.#peers.set(peer, clock);
    return Math.min(clock.min, clock.previousMin);
  }

  get size(): number {
    return this.#peers.size;
  }
}
