/**
 * A handler's abort signal, made only when the handler reads it. Every plain call used to
 * build an AbortController and an `AbortSignal.any` (about 7% of a callee's CPU at 16 calls
 * in flight in a profile of issue 12) for handlers that mostly never look at the signal. The
 * deadline's timer still runs either way: it is what gives the concurrency slot back.
 */
export class LazySignal {
  #signal: AbortSignal | undefined;
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  /** @param parent aborts this signal too (the agent closing) */
  constructor(private readonly parent: AbortSignal) {}

  /** The signal: aborted when `parent` is, or when {@link abort} was or will be called. */
  get signal(): AbortSignal {
    if (!this.#signal) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
      this.#signal = AbortSignal.any([this.parent, this.#controller.signal]);
    }
    return this.#signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}
