/**
 * Pieces of the callee's guarded pipeline (handler.ts): whatever a handler, a
 * schema or a result throws is turned into an answer (and a log line) here, and nothing here
 * throws itself.
 */
import { describeThrown, isWireCode, ZmcpError } from "../errors.js";
import type { LogThrottle } from "../support/log-throttle.js";
import { ErrorBodySchema } from "../wire/envelope.js";
import { wellFormed } from "../wire/sendable.js";
import type { Answer } from "./idempotency.js";

export { describeThrown } from "../errors.js";

const MAX_CODE = ErrorBodySchema.shape.code.maxLength ?? 64;
const MAX_MESSAGE = ErrorBodySchema.shape.message.maxLength ?? 4096;

/** An error answer, clipped to what a receiver accepts (ErrorBodySchema's limits). */
export function failure(code: string, text: string): Answer & { st: "error"; error: { code: string; message: string } } {
  // A thrown message may hold a lone surrogate, which no receiver can decode (sendable.ts).
  const message = wellFormed(text);
  return { st: "error", error: { code: wellFormed(code).slice(0, MAX_CODE), message: message.length > MAX_MESSAGE ? message.slice(0, MAX_MESSAGE - 1) + "…" : message } };
}

/**
 * Logs a tool that threw. A ZmcpError with a wire code (`busy`, `invalid_args`, ...) is the
 * tool's deliberate answer: debug. Anything else is a bug or an outage in the tool: warn, with
 * its stack, so that the operator sees where (the caller only gets `tool_failed` and a message).
 */
export function logToolFailure(throttle: LogThrottle, tool: string, err: unknown, code: string): void {
  const deliberate = err instanceof ZmcpError && isWireCode(err.code);
  const level = deliberate ? "debug" : "warn";
  let stack: string | undefined;
  try {
    stack = err instanceof Error && typeof err.stack === "string" ? err.stack : undefined;
  } catch {
    stack = undefined; // a hostile getter: the message is enough
  }
  // Through the throttle: a peer can make a tool fail at will (one line per tool and code per interval).
  throttle.write(level, "tool failed", `${tool} ${code}`, { tool, code, error: describeThrown(err), ...(stack === undefined ? {} : { stack }) });
}
