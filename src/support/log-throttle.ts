/**
 * Log lines a peer can cause, bounded (the broker's and the agent's). A refused handshake, an
 * undeliverable nack, a `busy` refusal, a dropped answer or a failed request is logged at most
 * once per interval per (event, key); the lines skipped meanwhile are counted and summarised in
 * the next line of that pair (`suppressed: N`), and counted in total for the metrics. So one peer cannot turn its traffic into log volume, and no event goes
 * unseen: the count says how many.
 *
 * Soft state, bounded: at most `maxKeys` (event, key) pairs (least recent dropped first; a
 * dropped pair only logs its next event at once).
 */
import type { Logger, LogLevel } from "./log.js";
import { RecencyMap } from "./recency-map.js";

export const DEFAULT_LOG_INTERVAL_MS = 10_000;

interface Slot {
  /** When the last line of this pair was written, ms (monotonic). */
  at: number;
  suppressed: number;
}

export class LogThrottle {
  readonly #slots: RecencyMap<string, Slot>;
  /** Lines not written (summarised later), since start. */
  suppressedTotal = 0;

  constructor(
    private readonly log: Logger,
    readonly intervalMs = DEFAULT_LOG_INTERVAL_MS,
    readonly maxKeys = 10_000,
  ) {
    this.#slots = new RecencyMap(maxKeys);
  }

  /** Logs `msg` for `key`, unless a line for the same pair was written less than an interval ago. */
  write(level: Exclude<LogLevel, "silent">, msg: string, key: string, fields: Record<string, unknown> = {}, now = performance.now()): void {
    if (!this.log.enabled(level)) return;
    const id = `${msg}\u0000${key}`;
    const slot = this.#slots.peek(id);
    if (slot && now - slot.at < this.intervalMs) {
      slot.suppressed++;
      this.suppressedTotal++;
      return;
    }
    const suppressed = slot?.suppressed ?? 0;
    this.#slots.set(id, { at: now, suppressed: 0 });
    this.log[level](msg, suppressed > 0 ? { ...fields, suppressed, intervalMs: this.intervalMs } : fields);
  }
}
