/**
 * Retries of idempotent calls: capped, jittered exponential backoff inside the caller's
 * deadline. Safe because a request keeps its id across attempts and the callee answers a
 * repeated id with its first answer (idempotency.ts).
 *
 * That holds only when the retry reaches the agent that saw the first attempt. A service
 * (`svc:NAME`) is many replicas, each with its own answer cache, and the broker picks one per
 * message: a retry after a timed-out attempt would run the tool again on another replica while
 * the first still runs it. So a request to a service is retried only after a refusal that
 * proves no replica took it (the broker's `busy` / `no_route` / `rate_limited`, a replica's
 * `busy`); a timed-out attempt to a service is not resent (see {@link attemptTimeout}), and
 * the call fails `timeout` at its deadline. A request runs at most once per service.
 */
import { RemoteError, TimeoutError, ZmcpError } from "../errors.js";
import { parseServiceAddress } from "../wire/services.js";

export interface RetryOptions {
  /** Attempts at most, the first included. Default 8. */
  attempts?: number;
  /** How long one attempt waits for its answer before the next is sent, ms. Default: a quarter of the deadline, between 500 and 2,000. */
  attemptTimeout?: number;
  /** First backoff, ms (doubled per attempt, ±50% jitter). Default 50. */
  minDelay?: number;
  /** Largest backoff, ms. Default 1,000. */
  maxDelay?: number;
}

export interface RetryPolicy {
  attempts: number;
  attemptTimeout: number;
  minDelay: number;
  maxDelay: number;
}

export function retryPolicy(options: RetryOptions | false | undefined, timeout: number): RetryPolicy {
  if (options === false) return { attempts: 1, attemptTimeout: timeout, minDelay: 0, maxDelay: 0 };
  return {
    attempts: options?.attempts ?? 8,
    attemptTimeout: options?.attemptTimeout ?? Math.min(2000, Math.max(500, timeout / 4)),
    minDelay: options?.minDelay ?? 50,
    maxDelay: options?.maxDelay ?? 1000,
  };
}

/**
 * How long attempt number n waits for its answer, ms. The policy's `attemptTimeout` where a
 * retry comes back to the same agent (an agent's key, a replica `svc:NAME@KEY`); the whole
 * remaining deadline for a service, whose retry could land on another replica.
 */
export function attemptTimeout(policy: RetryPolicy, to: string, remaining: number, last: boolean): number {
  const service = parseServiceAddress(to);
  if (last || (service && service.replica === undefined)) return remaining;
  return Math.min(policy.attemptTimeout, remaining);
}

/** Errors worth another attempt: nothing ran, or the answer may have been lost. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof TimeoutError) return true;
  return err instanceof RemoteError && (err.code === "busy" || err.code === "no_route");
}

/** Backoff before attempt `n` (1-based count of attempts made so far). */
export function backoff(policy: RetryPolicy, n: number): number {
  const base = Math.min(policy.maxDelay, policy.minDelay * 2 ** (n - 1));
  return base * (0.5 + Math.random() / 2);
}
