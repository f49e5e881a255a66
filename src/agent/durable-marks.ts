/**
 * High-water marks for durable subscriptions (docs/EVENTS.md "Durable subscriptions", PROTOCOL
 * §19.4): what lets a subscriber accept a publication older than the replay window, which a
 * broker's store kept for it while it was away, without accepting one twice.
 *
 * The broker cannot mark a stored copy (the header is sealed as the publisher sent it), and
 * the replay cache cannot judge it (its id may be older than what the cache remembers, or than
 * this process). So per (publisher, topic) the subscriber keeps the newest publication it
 * accepted, as (time, sq) with time = exp − 60,000, and accepts a publication the replay guard
 * cannot judge only when it is strictly newer in that order: the store delivers a subscriber's
 * copies oldest first, so each accepted one moves the mark forward and a copy delivered again
 * (a broker that died between sending and deleting, or one replaying what it kept) is not newer.
 * Time first, then sq: a publisher that restarted counts sq from 1 again, but later.
 *
 * Bounded (MAX_MARKS, least recently used forgotten) and in memory: a forgotten mark, or a new
 * process, accepts what it is handed once more (see docs/EVENTS.md for that limit).
 */
import { RecencyMap } from "../support/recency-map.js";

/** (publisher, topic) marks kept at most. */
export const MAX_MARKS = 10_000;

export class DurableMarks {
  readonly #marks = new RecencyMap<string, { time: number; sq: number }>(MAX_MARKS);

  /** A publication the replay guard could not judge: true (and the mark moves) only if newer than the mark. */
  admit(publisher: string, topic: string, time: number, sq: number): boolean {
    const key = `${publisher}\u0000${topic}`;
    const mark = this.#marks.get(key);
    if (mark && !(time > mark.time || (time === mark.time && sq > mark.sq))) return false;
    this.#marks.set(key, { time, sq });
    return true;
  }

  /** A publication accepted through the replay guard: the mark moves forward to it if newer. */
  note(publisher: string, topic: string, time: number, sq: number): void {
    const key = `${publisher}\u0000${topic}`;
    const mark = this.#marks.get(key);
    if (!mark || time > mark.time || (time === mark.time && sq > mark.sq)) this.#marks.set(key, { time, sq });
  }

  get size(): number {
    return this.#marks.size;
  }
}
