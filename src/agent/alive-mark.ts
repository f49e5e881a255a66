/**
 * The "alive until" mark: what a restarted agent needs to refuse replays of requests its
 * previous process may have run (replay.ts keeps seen ids in memory only).
 *
 * With a `stateDir`, a running agent writes a small file per key every {@link MARK_PERIOD_MS}
 * holding a time it promises not to outlive without writing again (now + the period; at close,
 * now). A new process with that key reads it at start and refuses, with `busy`, every request
 * stamped before `mark + startGrace`: the previous process may have accepted anything stamped
 * up to then by a caller whose clock runs at most `startGrace` ahead. So a restart of any length
 * refuses the replays, at the cost of `busy` (retried by callers) for at most `startGrace` past
 * the old process's end. Without a `stateDir` there is no mark and only `start − startGrace`
 * holds (a restart quicker than the grace leaves that much replayable; docs/SECURITY.md).
 *
 * The file is one number, written to a temporary name and renamed (never half-written); an
 * unreadable or malformed mark counts as "alive until now" (fail closed, briefly).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** How often the mark is pushed forward, ms. */
export const MARK_PERIOD_MS = 1000;

/** The mark's file for `publicKey` in `dir` (hex: a Z85 key may hold `/`). */
export function markPath(dir: string, publicKey: string): string {
  return join(dir, `${Buffer.from(publicKey, "latin1").toString("hex")}.alive`);
}

/**
 * Messages stamped before this are refused `busy` by a guard starting `now`: `now − grace`, or
 * the previous process's mark + grace when later (capped at now + period + grace: a mark in the
 * future, after a clock step back, must not shut the agent for longer than a restart would).
 */
export function replayNotBefore(file: string | undefined, grace: number, now = Date.now()): number {
  const fromStart = now - grace;
  if (file === undefined) return fromStart;
  let mark: number;
  try {
    const text = readFileSync(file, "utf8").trim();
    mark = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(mark)) mark = now;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return fromStart;
    mark = now;
  }
  return Math.max(fromStart, Math.min(mark, now + MARK_PERIOD_MS) + grace);
}

/** Keeps the mark of one running agent. Throws at start when the directory cannot be written. */
export class AliveMark {
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly file: string) {}

  start(): void {
    mkdirSync(join(this.file, ".."), { recursive: true, mode: 0o700 });
    this.#write(Date.now() + MARK_PERIOD_MS);
    this.#timer = setInterval(() => {
      try {
        this.#write(Date.now() + MARK_PERIOD_MS);
      } catch {
        // a full disk: the last mark stands, and is older than this process's real end
      }
    }, MARK_PERIOD_MS / 2).unref();
  }

  /** A clean stop: the process accepts nothing from now on. */
  stop(): void {
    clearInterval(this.#timer);
    try {
      this.#write(Date.now());
    } catch {
      // the previous mark (at most a period ahead) stands
    }
  }

  #write(until: number): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, String(until), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}

/**
 * The floor for durable messages (ms, sender's clock): a message a broker's store held while
 * this key was away was stamped before this process started by design, so the start grace
 * cannot apply to it (durable delivery would never deliver). With a mark, what the previous
 * process may have run is still refused (stamped before its "alive until" + grace); without
 * one, nothing is known and the store is trusted within the replay window (docs/DURABLE.md).
 * An unreadable mark refuses everything stamped before now (fail closed).
 */
export function durableNotBefore(file: string | undefined, grace: number, now = Date.now()): number {
  if (file === undefined) return -Infinity;
  try {
    const text = readFileSync(file, "utf8").trim();
    const mark = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(mark)) return now;
    return Math.min(mark, now + MARK_PERIOD_MS) + grace;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? -Infinity : now;
  }
}
