/**
 * Structured logs: one JSON object per line, with a level, on stderr by default. An
 * application's own pino (or any logger with pino's `(fields, msg)` argument order) is taken
 * as it is: see {@link toLogger}.
 */
import { ConfigError } from "../errors.js";

export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** True when `level` would be written (lets hot paths skip building fields). */
  enabled(level: LogLevel): boolean;
}

export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (line) => process.stderr.write(line + "\n"),
  base: Record<string, unknown> = {},
): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const enabled = (l: LogLevel) => LOG_LEVELS.indexOf(l) >= min && l !== "silent";
  const emit = (l: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (enabled(l)) write(JSON.stringify({ time: new Date().toISOString(), level: l, ...base, msg, ...fields }));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error"), enabled };
}

export const silentLogger: Logger = createLogger("silent");

/**
 * A pino-style logger: `log.warn({ tool }, "tool failed")`, fields first. `pino()` is one, and so
 * are its children; bunyan's and many others share the order.
 */
export interface PinoStyleLogger {
  debug(fields: object, msg?: string): void;
  info(fields: object, msg?: string): void;
  warn(fields: object, msg?: string): void;
  error(fields: object, msg?: string): void;
  isLevelEnabled?(level: string): boolean;
}

/** What the `log` options accept: a zmcp {@link Logger}, or a pino-style one. */
export type LoggerInput = Logger | PinoStyleLogger;

/**
 * `log` as a zmcp Logger: itself when it is one (it has `enabled`), otherwise a pino-style
 * logger wrapped so that zmcp's `(msg, fields)` calls become its `(fields, msg)` ones.
 * Undefined gives `fallback`. Throws ConfigError for anything else.
 */
export function toLogger(log: LoggerInput | undefined, fallback: Logger): Logger {
  if (log === undefined) return fallback;
  if (typeof log !== "object" || log === null) throw new ConfigError(`log: not a logger (got ${log === null ? "null" : typeof log}): give a zmcp Logger or a pino-style one`);
  if (typeof (log as Partial<Logger>).enabled === "function") return log as Logger;
  const pino = log as PinoStyleLogger;
  for (const level of ["debug", "info", "warn", "error"] as const) {
    if (typeof pino[level] !== "function") throw new ConfigError(`log: not a logger (no ${level} method): give a zmcp Logger or a pino-style one`);
  }
  const enabled = (level: LogLevel) => level !== "silent" && (typeof pino.isLevelEnabled !== "function" || pino.isLevelEnabled(level));
  return {
    debug: (msg, fields) => pino.debug(fields ?? {}, msg),
    info: (msg, fields) => pino.info(fields ?? {}, msg),
    warn: (msg, fields) => pino.warn(fields ?? {}, msg),
    error: (msg, fields) => pino.error(fields ?? {}, msg),
    enabled,
  };
}

/** An agent's logger when none is given: warnings and errors, as JSON lines on stderr. */
export const defaultAgentLogger = (): Logger => createLogger("warn");
