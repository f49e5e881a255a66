/**
 * Timers raced against an AbortSignal, written once: waiting (`sleep`, `pause`) and bounding
 * a promise by a deadline (`withDeadline`). Every path clears its timer and its listener.
 */
import { TimeoutError, ZmcpError } from "../errors.js";

const aborted = (signal: AbortSignal | undefined) => new ZmcpError("aborted", "call aborted", { cause: signal?.reason });

/** Waits `ms`; rejects with ZmcpError(aborted) when `signal` fires (a caller gives up). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Waits `ms`, or less when `signal` fires; never rejects (a loop that stops on abort). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, signal).catch(() => undefined);
}

/**
 * `promise`, or a rejection: TimeoutError(`message`) after `ms`, ZmcpError(aborted) when
 * `signal` fires. The promise itself is not cancelled (the caller decides what to do with it).
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, message: string, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(message)), ms);
    const onAbort = () => reject(aborted(signal));
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    });
  });
}
