/**
 * Many deadlines on one timer: armed for the earliest, and when it fires every due entry runs
 * and it is re-armed for the earliest left. A `setTimeout` and `clearTimeout` per tool run
 * (the callee's deadline for every plain call) cost about as much as the rest of a call's
 * bookkeeping; with one default timeout the earliest deadline is that of the oldest run, so
 * the timer fires about once per timeout period rather than once per call. Used by the callee
 * (a tool run's deadline, handler.ts) and the caller (a pending call's, pending.ts).
 */
export interface DeadlineEntry {
  /** performance.now() at or after which `fire` runs. */
  readonly at: number;
  readonly fire: () => void;
}

export class Deadlines {
  readonly #entries = new Set<DeadlineEntry>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;

  /**
   * @param keepAlive whether a pending deadline keeps the process up (pending calls: yes, their
   *   callers await them; a tool run's deadline: no, its request's socket does)
   */
  constructor(private readonly keepAlive = false) {}

  /** Runs `fire` once `at` (performance.now() time) has passed, unless cancelled first. */
  add(at: number, fire: () => void): DeadlineEntry {
    const entry = { at, fire };
    this.#entries.add(entry);
    if (at < this.#timerAt) this.#arm(at);
    return entry;
  }

  /** Forgets `entry`; its `fire` will not run. The timer stays armed: it re-arms when it fires. */
  cancel(entry: DeadlineEntry | undefined): void {
    if (entry) this.#entries.delete(entry);
    if (this.#entries.size === 0 && this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    // setTimeout takes at most 2^31 - 1 ms; a later deadline is re-checked when it fires.
    this.#timer = setTimeout(() => this.#sweep(), Math.min(Math.max(0, Math.ceil(at - performance.now())), 2 ** 31 - 1));
    if (!this.keepAlive) this.#timer.unref?.();
  }

  #sweep(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const due: DeadlineEntry[] = [];
    for (const entry of this.#entries) {
      if (entry.at <= now) due.push(entry);
      else if (entry.at < next) next = entry.at;
    }
    // Fired after the scan: a callback may add or cancel entries (one cancelled by an earlier
    // callback of this sweep is no longer in the set, and does not fire: the adversarial review).
    // One that throws does not stop the others.
    for (const entry of due) {
      if (!this.#entries.delete(entry)) continue;
      try {
        entry.fire();
      } catch {
        // the callers' callbacks settle promises; nothing here can report it better
      }
    }
    if (next < this.#timerAt && this.#entries.size > 0) this.#arm(next);
  }
}
