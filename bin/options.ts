/** Option parsers shared by the command-line tools. */
import { InvalidArgumentError } from "commander";
import { LOG_LEVELS, type LogLevel } from "../src/support/log.js";

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be an integer >= 0");
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a positive number");
  return n;
}

export function logLevel(value: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${LOG_LEVELS.join(", ")}`);
  return value as LogLevel;
}

/** Prints a failure as `{code, message}` JSON on stderr and exits non-zero. */
export function fail(err: unknown, exitCode = 1): never {
  const e = err as { code?: unknown; message?: unknown };
  const body = { code: typeof e?.code === "string" ? e.code : "error", message: typeof e?.message === "string" ? e.message : String(err) };
  process.stderr.write(JSON.stringify(body) + "\n");
  process.exit(exitCode);
}
