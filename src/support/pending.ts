/**
 * The one place that correlates requests with answers: a map of pending ids, each with its
 * deadline and abort listener, cleared on every path and all rejected on close.
 *
 * Deadlines share one timer (support/deadlines.ts), armed for the earliest of them, instead of a
 * `setTimeout` per call: creating and clearing a timer costs about as much as the rest of the
 * bookkeeping of a call, and with one default timeout the earliest deadline is that of the
 * oldest call, so the timer fires about once per timeout period rather than once per call.
 */
import { TimeoutError, ZmcpError } from "../errors.js";
import { Deadlines, type DeadlineEntry } from "./deadlines.js";

interface Entry<T, M> {
  resolve: (value: T) => void;
  reject: (err: Error) => void;
  timeoutMs: number;
  what: string;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  meta: M;
  /** Why an answer was refused; the entry fails with it, rather than a timeout, if no good answer comes. */
  refused: Error | undefined;
  /** Its deadline on the shared timer; undefined once fired. */
  timer: DeadlineEntry | undefined;
}

/** `M`: what the receiver needs to know about each pending request (e.g. who may answer it). */
export class PendingCalls<T, M = undefined> {
  readonly #entries = new Map<string, Entry<T, M>>();
  /** Every entry's deadline on one timer (support/deadlines.ts); it keeps the process up while calls wait. */
  readonly #deadlines = new Deadlines(true);

  /**
   * Registers `key` and returns the promise of its answer.
   * @param timeoutMs rejects with TimeoutError after this many ms
   * @param signal rejects with code `aborted` when it fires
   */
  add(key: string, timeoutMs: number, signal?: AbortSignal, what = "call", ...meta: M extends undefined ? [] : [M]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new ZmcpError("aborted", `${what} aborted`, { cause: signal.reason }));
      const deadline = performance.now() + timeoutMs;
      const onAbort = signal ? () => this.reject(key, new ZmcpError("aborted", `${what} aborted`, { cause: signal.reason })) : undefined;
      if (signal && onAbort) signal.addEventListener("abort", onAbort, { once: true });
      const entry: Entry<T, M> = { resolve, reject, timeoutMs, what, signal, onAbort, meta: meta[0] as M, refused: undefined, timer: undefined };
      entry.timer = this.#deadlines.add(deadline, () => this.#expire(key, entry));
      this.#entries.set(key, entry);
    });
  }

  /** `entry`'s deadline passed: it fails with the refusal noted for it, else a timeout. */
  #expire(key: string, entry: Entry<T, M>): void {
    if (this.#entries.get(key) !== entry) return;
    entry.timer = undefined; // fired: nothing to cancel
    this.reject(key, entry.refused ?? new TimeoutError(`${entry.what} got no answer within ${entry.timeoutMs} ms`));
  }

  /** What was registered with `key`, while it is pending. */
  meta(key: string): M | undefined {
    return this.#entries.get(key)?.meta;
  }

  /** The refusal noted for `key` (see {@link refuse}), while it is pending. */
  refusal(key: string): Error | undefined {
    return this.#entries.get(key)?.refused;
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
    entry.timeoutMs = Math.max(1, timeoutMs);
    entry.what = `${what} (stored for an offline recipient)`;
    this.#deadlines.cancel(entry.timer);
    entry.timer = this.#deadlines.add(performance.now() + entry.timeoutMs, () => this.#expire(key, entry));
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
    this.#deadlines.cancel(entry.timer); // the last one gone: no timer keeps the process alive or wakes it
    if (entry.signal && entry.onAbort) entry.signal.removeEventListener("abort", entry.onAbort);
    return entry;
  }
}
