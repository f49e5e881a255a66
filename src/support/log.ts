/** Structured logs: one JSON object per line, with a level, on stderr by default. */
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
