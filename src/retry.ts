/**
 * Retries of idempotent calls: capped, jittered exponential backoff inside the caller's
 * deadline. Safe because a request keeps its id across attempts and the callee answers a
 * repeated id with its first answer (idempotency.ts).
 */
import { RemoteError, TimeoutError, ZmcpError } from "./errors.js";

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

/** Waits `ms`, or rejects with `aborted` when `signal` fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ZmcpError("aborted", "call aborted", { cause: signal.reason }));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ZmcpError("aborted", "call aborted", { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
