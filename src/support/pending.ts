/**
 * The one place that correlates requests with answers: a map of pending ids, each with its
 * timer and abort listener, cleared on every path and all rejected on close.
 */
import { TimeoutError, ZmcpError } from "../errors.js";

interface Entry<T, M> {
  resolve: (value: T) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  meta: M;
  /** Why an answer was refused; the entry fails with it, rather than a timeout, if no good answer comes. */
  refused: Error | undefined;
}

/** `M`: what the receiver needs to know about each pending request (e.g. who may answer it). */
export class PendingCalls<T, M = undefined> {
  readonly #entries = new Map<string, Entry<T, M>>();

  /**
   * Registers `key` and returns the promise of its answer.
   * @param timeoutMs rejects with TimeoutError after this many ms
   * @param signal rejects with code `aborted` when it fires
   */
  add(key: string, timeoutMs: number, signal?: AbortSignal, what = "call", ...meta: M extends undefined ? [] : [M]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new ZmcpError("aborted", `${what} aborted`, { cause: signal.reason }));
      const timer = setTimeout(() => this.reject(key, this.#entries.get(key)?.refused ?? new TimeoutError(`${what} got no answer within ${timeoutMs} ms`)), timeoutMs);
      const onAbort = signal ? () => this.reject(key, new ZmcpError("aborted", `${what} aborted`, { cause: signal.reason })) : undefined;
      if (signal && onAbort) signal.addEventListener("abort", onAbort, { once: true });
      this.#entries.set(key, { resolve, reject, timer, signal, onAbort, meta: meta[0] as M, refused: undefined });
    });
  }

  /** What was registered with `key`, while it is pending. */
  meta(key: string): M | undefined {
    return this.#entries.get(key)?.meta;
  }

  /**
   * Notes that an answer to `key` was refused (forged, say) without ending the wait: the real
   * answer may still come, and a refused one must not be able to cut it off. If none comes,
   * the entry fails with `err` instead of a timeout. Returns false if `key` is not pending.
   */
  refuse(key: string, err: Error): boolean {
    const entry = this.#entries.get(key);
    if (entry) entry.refused ??= err;
    return entry !== undefined;
  }

  /**
   * Waits for `key` until `timeoutMs` from now instead (a durable request the broker stored:
   * its answer comes when the recipient is back, within the call's deadline). False if not pending.
   */
  extend(key: string, timeoutMs: number, what = "call"): boolean {
    const entry = this.#entries.get(key);
    if (!entry) return false;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.reject(key, this.#entries.get(key)?.refused ?? new TimeoutError(`${what} was stored for an offline recipient and got no answer within its deadline`)), Math.max(1, timeoutMs));
    return true;
  }

  resolve(key: string, value: T): boolean {
    const entry = this.#take(key);
    entry?.resolve(value);
    return entry !== undefined;
  }

  reject(key: string, err: Error): boolean {
    const entry = this.#take(key);
    entry?.reject(err);
    return entry !== undefined;
  }

  rejectAll(err: Error): void {
    for (const key of [...this.#entries.keys()]) this.reject(key, err);
  }

  get size(): number {
    return this.#entries.size;
  }

  #take(key: string): Entry<T, M> | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#entries.delete(key);
    clearTimeout(entry.timer);
    if (entry.signal && entry.onAbort) entry.signal.removeEventListener("abort", entry.onAbort);
    return entry;
  }
}
