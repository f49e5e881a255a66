/**
 * Durable job events that arrive before their job is re-attached (docs/DURABLE.md): a caller
 * process that restarted receives the events stored for it as soon as it connects, before it
 * can call `agent.job(to, id)`. They are kept here unopened (the frames as received), bounded,
 * and handed back to the receive path when a job of that runner is re-attached, which then
 * checks them like any event (seal, replay, binding to the runner).
 */

interface Kept {
  frames: Buffer[];
  bytes: number;
  until: number;
}

export class OrphanEvents {
  readonly #byRunner = new Map<string, Kept[]>();
  #bytes = 0;
  #count = 0;

  /**
   * @param maxBytes frames kept at most, bytes (a flood of unsolicited events costs no more)
   * @param maxCount events kept at most
   * @param keepMs each is kept this long at most, ms
   */
  constructor(
    readonly maxBytes = 4 * 1024 * 1024,
    readonly maxCount = 1024,
    readonly keepMs = 120_000,
  ) {}

  /** Keeps the frames of an event from `runner`; false (dropped) when a bound is reached. */
  keep(runner: string, frames: Buffer[], now = Date.now()): boolean {
    this.#prune(now);
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    if (this.#bytes + bytes > this.maxBytes || this.#count + 1 > this.maxCount) return false;
    const list = this.#byRunner.get(runner) ?? [];
    list.push({ frames, bytes, until: now + this.keepMs });
    this.#byRunner.set(runner, list);
    this.#bytes += bytes;
    this.#count++;
    return true;
  }

  /** The kept events of `runner`, oldest first, forgotten here. */
  take(runner: string, now = Date.now()): Buffer[][] {
    this.#prune(now);
    const list = this.#byRunner.get(runner) ?? [];
    this.#byRunner.delete(runner);
    for (const k of list) {
      this.#bytes -= k.bytes;
      this.#count--;
    }
    return list.map((k) => k.frames);
  }

  get size(): number {
    return this.#count;
  }

  #prune(now: number): void {
    for (const [runner, list] of this.#byRunner) {
      const live = list.filter((k) => k.until > now);
      for (const k of list) {
        if (k.until <= now) {
          this.#bytes -= k.bytes;
          this.#count--;
        }
      }
      if (live.length) this.#byRunner.set(runner, live);
      else this.#byRunner.delete(runner);
    }
  }
}
