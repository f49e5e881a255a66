/**
 * Rate limit per sender key: a token bucket each (refilled at `perSecond`, holding at most
 * `burst`). The buckets are soft state, bounded in number: past `maxKeys` the least recently
 * used bucket is dropped, which costs nothing when it was idle (an idle bucket is full, the
 * same as a new one).
 */
import { ConfigError } from "../errors.js";
import { RecencyMap } from "../support/recency-map.js";

export interface RateLimitOptions {
  /** Messages per second allowed per sender key, sustained. */
  perSecond: number;
  /** Messages a sender may send at once after being idle (bucket size). */
  burst: number;
  /** Buckets kept at most (least recently used dropped first). Default 100,000. */
  maxKeys?: number;
}

interface Bucket {
  tokens: number;
  /** Last refill, ms (monotonic clock). */
  at: number;
  /** Its last message was refused (for the metrics: a refusal streak counts once). */
  limited: boolean;
}

export class RateLimiter {
  readonly perSecond: number;
  readonly burst: number;
  readonly maxKeys: number;
  readonly #buckets: RecencyMap<string, Bucket>;
  /** Times a key went from accepted to refused (refusal streaks). */
  limitedEpisodes = 0;

  /** Throws ConfigError on a rate or burst that is not positive. */
  constructor(options: RateLimitOptions) {
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.maxKeys = options.maxKeys ?? 100_000;
    if (!(this.perSecond > 0) || !Number.isFinite(this.perSecond)) throw new ConfigError("rateLimit.perSecond must be a positive number");
    if (!(this.burst >= 1) || !Number.isFinite(this.burst)) throw new ConfigError("rateLimit.burst must be a number >= 1");
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) throw new ConfigError("rateLimit.maxKeys must be a positive integer");
    this.#buckets = new RecencyMap(this.maxKeys);
  }

  /** Takes one token from `key`'s bucket; false when it is empty (the message must be refused). */
  take(key: string, now = performance.now()): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) * this.perSecond) / 1000);
      bucket.at = now;
    } else {
      bucket = { tokens: this.burst, at: now, limited: false };
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) {
      if (!bucket.limited) this.limitedEpisodes++;
      bucket.limited = true;
      return false;
    }
    bucket.limited = false;
    bucket.tokens -= 1;
    return true;
  }

  /** Keys whose bucket holds less than one token now (their next message would be refused). */
  limitedNow(now = performance.now()): number {
    let n = 0;
    for (const b of this.#buckets.values()) if (b.tokens + ((now - b.at) * this.perSecond) / 1000 < 1) n++;
    return n;
  }

  /** Buckets held. */
  get size(): number {
    return this.#buckets.size;
  }
}
