/**
 * Responses draw on a budget too. A `res` is free only against a credit, and a key earns one
 * credit each time the broker forwards a request to it; without a credit, a `res` draws on the
 * sender's ordinary rate-limit bucket like any other message. So labelling traffic `k: "res"`
 * skips nothing: an honest callee answers within the credits its callers' requests (already
 * rate limited on their side) gave it, and a flood of unsolicited "responses" hits the bucket.
 *
 * Soft state, bounded: at most `maxCredits` per key, at most `maxKeys` keys (least recently
 * credited dropped first; losing a key's credits only makes its answers draw on its bucket).
 */
import { RecencyMap } from "../support/recency-map.js";

export class ResponseBudget {
  readonly #credits: RecencyMap<string, number>;

  constructor(
    readonly maxCredits = 10_000,
    readonly maxKeys = 100_000,
  ) {
    this.#credits = new RecencyMap(maxKeys);
  }

  /** A request was forwarded to `key`: it may answer once for free. */
  credit(key: string): void {
    const n = this.#credits.peek(key) ?? 0;
    this.#credits.set(key, Math.min(this.maxCredits, n + 1));
  }

  /** Spends one of `key`'s credits; false when it has none. */
  spend(key: string): boolean {
    const n = this.#credits.peek(key);
    if (!n) return false;
    if (n === 1) this.#credits.delete(key);
    else this.#credits.set(key, n - 1);
    return true;
  }

  get size(): number {
    return this.#credits.size;
  }
}
