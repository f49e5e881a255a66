/**
 * Rate limit per sender key: a token bucket each (refilled at `perSecond`, holding at most
 * `burst`). The buckets are soft state, bounded in number: past `maxKeys` the least recently
 * used bucket is dropped, which costs nothing when it was idle (an idle bucket is full, the
 * same as a new one).
 */
import { ConfigError } from "./errors.js";

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
}

export class RateLimiter {
  readonly perSecond: number;
  readonly burst: number;
  readonly maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();

  /** Throws ConfigError on a rate or burst that is not positive. */
  constructor(options: RateLimitOptions) {
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.maxKeys = options.maxKeys ?? 100_000;
    if (!(this.perSecond > 0) || !Number.isFinite(this.perSecond)) throw new ConfigError("rateLimit.perSecond must be a positive number");
    if (!(this.burst >= 1) || !Number.isFinite(this.burst)) throw new ConfigError("rateLimit.burst must be a number >= 1");
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) throw new ConfigError("rateLimit.maxKeys must be a positive integer");
  }

  /** Takes one token from `key`'s bucket; false when it is empty (the message must be refused). */
  take(key: string, now = performance.now()): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      // Map order is recency order: move to the back.
      this.#buckets.delete(key);
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) * this.perSecond) / 1000);
      bucket.at = now;
    } else {
      bucket = { tokens: this.burst, at: now };
      if (this.#buckets.size >= this.maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Buckets held. */
  get size(): number {
    return this.#buckets.size;
  }
}
