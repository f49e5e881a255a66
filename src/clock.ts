/**
 * Deadlines across clocks. A header's `exp` is written by the sender's clock; read as is by a
 * receiver whose clock runs ahead, every call with a timeout shorter than the difference
 * would be refused `expired`. So each agent estimates, per peer, how far the peer's clock is
 * from its own, and reads that peer's deadlines shifted by it.
 *
 * The estimate is the smallest (arrival time − sealed `ts`) seen from the peer recently: that
 * difference is the clock offset plus the message's transit, and its minimum is the offset
 * plus the fastest transit (the minimum filter of NTP). A message that waited long in a queue
 * thus still expires, while one from a peer with a skewed clock does not. The sealed `ts`
 * cannot be forged by anyone but the peer, which can only stretch its own deadlines, and the
 * replay window already bounds it (|offset| ≤ window).
 */

export const DEFAULT_MAX_PEERS = 10_000;
/** Offsets follow clock drift: the minimum is taken over the current and the previous period. */
export const OFFSET_PERIOD_MS = 60_000;

interface PeerClock {
  min: number;
  previousMin: number;
  since: number;
}

export class ClockOffsets {
  readonly #peers = new Map<string, PeerClock>();

  /**
   * @param maxPeers peers remembered (least recently seen dropped first); default 10,000
   * @param periodMs how long a minimum stands before it is renewed, ms; default 60,000
   */
  constructor(
    readonly maxPeers = DEFAULT_MAX_PEERS,
    readonly periodMs = OFFSET_PERIOD_MS,
  ) {}

  /**
   * Records a message that `peer` stamped `ts` (its clock) and that arrived at `now` (ours);
   * returns the estimated offset, ms: our clock minus the peer's. A deadline `exp` of this
   * peer is `exp + offset` on our clock.
   */
  observe(peer: string, ts: number, now: number): number {
    const sample = now - ts;
    let clock = this.#peers.get(peer);
    if (clock) {
      this.#peers.delete(peer); // Map order is recency order: move to the back
      if (now - clock.since >= this.periodMs) {
        clock.previousMin = clock.min;
        clock.min = sample;
        clock.since = now;
      } else if (sample < clock.min) clock.min = sample;
    } else {
      clock = { min: sample, previousMin: sample, since: now };
      if (this.#peers.size >= this.maxPeers) this.#peers.delete(this.#peers.keys().next().value!);
    }
    this.#peers.set(peer, clock);
    return Math.min(clock.min, clock.previousMin);
  }

  get size(): number {
    return this.#peers.size;
  }
}
