/**
 * The one place that correlates requests with answers: a map of pending ids, each with its
 * deadline and abort listener, cleared on every path and all rejected on close.
 *
 * Deadlines share one timer, armed for the earliest of them, instead of a `setTimeout` per
 * call: creating and clearing a timer costs about as much as the rest of the bookkeeping of a
 * call, and with one default timeout the earliest deadline is that of the oldest call, so the
 * timer fires about once per timeout period, scanning what is pending, rather than once per call.
 */
import { TimeoutError, ZmcpError } from "../errors.js";

interface Entry<T, M> {
  resolve: (value: T) => void;
  reject: (err: Error) => void;
  /** performance.now() past which the entry times out. */
  deadline: number;
  timeoutMs: number;
  what: string;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  meta: M;
  /** Why an answer was refused; the entry fails with it, rather than a timeout, if no good answer comes. */
  refused: Error | undefined;
}

/** `M`: what the receiver needs to know about each pending request (e.g. who may answer it). */
export class PendingCalls<T, M = undefined> {
  readonly #entries = new Map<string, Entry<T, M>>();
  #timer: NodeJS.Timeout | undefined;
  /** When #timer fires (performance.now()), or Infinity when none is armed. */
  #timerAt = Infinity;

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
      this.#entries.set(key, { resolve, reject, deadline, timeoutMs, what, signal, onAbort, meta: meta[0] as M, refused: undefined });
      if (deadline < this.#timerAt) this.#arm(deadline);
    });
  }

  /** (Re)arms the one timer for `at` (performance.now() time). */
  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    // setTimeout takes at most 2^31 - 1 ms; a later deadline is re-checked when it fires.
    this.#timer = setTimeout(() => this.#sweep(), Math.min(Math.max(0, Math.ceil(at - performance.now())), 2 ** 31 - 1));
  }

  /** Times out every entry past its deadline and arms the timer for the earliest that is left. */
  #sweep(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const expired: Array<[string, Entry<T, M>]> = [];
    for (const [key, entry] of this.#entries) {
      if (entry.deadline <= now) expired.push([key, entry]);
      else if (entry.deadline < next) next = entry.deadline;
    }
    // Rejected after the scan: a rejection's handlers may add or settle entries.
    for (const [key, entry] of expired) this.reject(key, entry.refused ?? new TimeoutError(`${entry.what} got no answer within ${entry.timeoutMs} ms`));
    if (next < this.#timerAt && this.#entries.size > 0) this.#arm(next);
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
    // A later deadline: the shared timer, when it fires for the old one, finds this entry not
    // yet due and re-arms for the earliest deadline left (#sweep).
    entry.deadline = performance.now() + Math.max(1, timeoutMs);
    entry.timeoutMs = Math.max(1, timeoutMs);
    entry.what = `${what} (stored for an offline recipient)`;
    if (entry.deadline < this.#timerAt) this.#arm(entry.deadline);
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
    if (this.#entries.size === 0 && this.#timer) {
      // Nothing left to time out: no timer keeps the process alive or wakes it.
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
    }
    if (entry.signal && entry.onAbort) entry.signal.removeEventListener("abort", entry.onAbort);
    return entry;
  }
}
