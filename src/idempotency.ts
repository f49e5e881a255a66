/**
 * Idempotency on the callee's side: a request retried with the same request id (after a
 * timeout, a lost answer, a broker restart) gets the first answer; the tool runs once.
 * A retry that arrives while the first run is still going waits for that run.
 *
 * Entries are kept `ttlMs` after they finish and at most `maxEntries` (oldest dropped first),
 * so memory is bounded whatever callers send.
 */
import type { Response } from "./envelope.js";

/** What is sent back: a response without its header digest and timestamp. */
export type Answer = Pick<Response, "st" | "result" | "error">;

interface Entry {
  answer: Answer | undefined;
  waiters: Array<(answer: Answer) => void>;
  forgetAt: number;
}

export class AnswerCache {
  readonly #entries = new Map<string, Entry>();

  /**
   * @param ttlMs how long a finished answer is kept, ms; default 120,000
   * @param maxEntries entries kept at most; default 10,000
   */
  constructor(
    readonly ttlMs = 120_000,
    readonly maxEntries = 10_000,
  ) {}

  /**
   * For a new key: records it as running and returns undefined (the caller runs the tool and
   * then calls {@link finish}). For a known key: returns a promise of the first answer.
   */
  begin(key: string, now = Date.now()): Promise<Answer> | undefined {
    this.#prune(now);
    const entry = this.#entries.get(key);
    if (!entry) {
      this.#entries.set(key, { answer: undefined, waiters: [], forgetAt: Infinity });
      if (this.#entries.size > this.maxEntries) this.#dropOldestFinished();
      return undefined;
    }
    if (entry.answer) return Promise.resolve(entry.answer);
    return new Promise((resolve) => entry.waiters.push(resolve));
  }

  /** Stores the answer (or forgets the key when `keep` is false, e.g. for `busy`) and wakes waiters. */
  finish(key: string, answer: Answer, keep = true, now = Date.now()): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    if (keep) {
      entry.answer = answer;
      entry.forgetAt = now + this.ttlMs;
      // Re-insert so that insertion order follows finish time (pruning walks from the front).
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    } else this.#entries.delete(key);
    for (const wake of entry.waiters.splice(0)) wake(answer);
  }

  get size(): number {
    return this.#entries.size;
  }

  #prune(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (entry.forgetAt > now) {
        if (entry.answer) break; // finished entries are in finish order: the rest are younger
        continue; // a running entry: skip it
      }
      this.#entries.delete(key);
    }
  }

  #dropOldestFinished(): void {
    for (const [key, entry] of this.#entries) {
      if (entry.answer) {
        this.#entries.delete(key);
        return;
      }
    }
  }
}
