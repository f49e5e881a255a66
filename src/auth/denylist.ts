/**
 * Revocation: a deny list of token ids (`jti`) and curve keys (Z85), kept in a JSON file that
 * the operator edits and agents and brokers re-read without restart:
 *
 * ```json
 * { "jti": ["q3R8...", "..."], "keys": ["rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"] }
 * ```
 *
 * Both members are optional. JSON rather than one id per line because Z85 keys may hold `#`
 * and other characters that a line format would have to escape.
 *
 * A file that becomes unreadable or invalid is reported and the previous list is kept: a
 * half-written edit never silently lifts a revocation.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { silentLogger, type Logger } from "../support/log.js";
import { DEFAULT_RELOAD_INTERVAL_MS, watchPath } from "../support/watch.js";
import { isZ85Key } from "../wire/z85.js";

export const DenyListFileSchema = z.strictObject({
  /** Revoked token ids. */
  jti: z.array(z.string().min(1).max(256)).optional(),
  /** Revoked curve public keys, Z85 (40 characters). */
  keys: z.array(z.string().refine(isZ85Key, { message: "not a 40-character Z85 key" })).optional(),
});
export type DenyListFile = z.infer<typeof DenyListFileSchema>;

export interface DenyListOptions {
  /** Re-read the file when it changes, polling every `reloadInterval` ms. Default true. */
  watch?: boolean;
  /** Polling interval of the file, ms. Default 1,000. */
  reloadInterval?: number;
  /** Reload results and errors are logged here. */
  log?: Logger;
  /** Called after each successful reload (the broker tells newly revoked keys at once). */
  onReload?: () => void;
}

/** Parses deny list text. Throws ConfigError naming `source` when it is not a valid list. */
export function parseDenyList(text: string, source = "deny list"): { jti: Set<string>; keys: Set<string> } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${source}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = DenyListFileSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`${source}: ${z.prettifyError(parsed.error)}`);
  return { jti: new Set(parsed.data.jti ?? []), keys: new Set(parsed.data.keys ?? []) };
}

export class DenyList {
  #jti: Set<string>;
  #keys: Set<string>;
  readonly #path: string | undefined;
  readonly #log: Logger;
  #stop: (() => void) | undefined;
  onReload: (() => void) | undefined;

  private constructor(entries: { jti: Set<string>; keys: Set<string> }, path: string | undefined, log: Logger) {
    this.#jti = entries.jti;
    this.#keys = entries.keys;
    this.#path = path;
    this.#log = log;
  }

  /**
   * Reads `path` (throws ConfigError if it is missing or invalid: a mistyped path must not
   * mean "nothing revoked") and, unless `watch` is false, re-reads it whenever it changes.
   */
  static open(path: string, options: DenyListOptions = {}): DenyList {
    const list = new DenyList(readDenyList(path), path, options.log ?? silentLogger);
    list.onReload = options.onReload;
    if (options.watch ?? true) list.#stop = watchPath(path, options.reloadInterval ?? DEFAULT_RELOAD_INTERVAL_MS, () => list.reload());
    return list;
  }

  /** An in-memory list (not backed by a file). */
  static of(entries: DenyListFile = {}): DenyList {
    const parsed = DenyListFileSchema.safeParse(entries);
    if (!parsed.success) throw new ConfigError(`deny list: ${z.prettifyError(parsed.error)}`);
    return new DenyList({ jti: new Set(parsed.data.jti ?? []), keys: new Set(parsed.data.keys ?? []) }, undefined, silentLogger);
  }

  get path(): string | undefined {
    return this.#path;
  }

  hasJti(jti: string): boolean {
    return this.#jti.has(jti);
  }

  hasKey(key: string): boolean {
    return this.#keys.has(key);
  }

  get size(): { jti: number; keys: number } {
    return { jti: this.#jti.size, keys: this.#keys.size };
  }

  /** Re-reads the file now. Returns false (keeping the previous list) if it cannot be read. */
  reload(): boolean {
    if (!this.#path) return true;
    try {
      const entries = readDenyList(this.#path);
      this.#jti = entries.jti;
      this.#keys = entries.keys;
      this.#log.info("deny list reloaded", { path: this.#path, jti: entries.jti.size, keys: entries.keys.size });
      this.onReload?.();
      return true;
    } catch (err) {
      this.#log.error("deny list reload failed; keeping the previous one", { path: this.#path, error: (err as Error).message });
      return false;
    }
  }

  /** Stops watching the file. */
  close(): void {
    this.#stop?.();
    this.#stop = undefined;
  }
}

function readDenyList(path: string): { jti: Set<string>; keys: Set<string> } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read deny list ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseDenyList(text, path);
}
