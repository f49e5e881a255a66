/**
 * Pieces of the callee's guarded pipeline (agent.ts `#onRequest`): whatever a handler, a
 * schema or a result throws is turned into an answer here, and nothing here throws itself.
 */
import { ErrorBodySchema } from "../wire/envelope.js";
import type { Answer } from "./idempotency.js";

const MAX_CODE = ErrorBodySchema.shape.code.maxLength ?? 64;
const MAX_MESSAGE = ErrorBodySchema.shape.message.maxLength ?? 4096;

/**
 * The text of anything thrown, without throwing: `String()` of a null-prototype object, a
 * Proxy or an object whose `toString` throws raises a TypeError of its own, which used to
 * escape the handler's catch and kill the agent.
 */
export function describeThrown(err: unknown): string {
  try {
    if (err instanceof Error) return String(err.message);
    return String(err);
  } catch {
    try {
      return `a thrown ${Object.prototype.toString.call(err)}`;
    } catch {
      return "an unprintable thrown value";
    }
  }
}

/** An error answer, clipped to what a receiver accepts (ErrorBodySchema's limits). */
export function failure(code: string, message: string): Answer & { st: "error"; error: { code: string; message: string } } {
  return { st: "error", error: { code: code.slice(0, MAX_CODE), message: message.length > MAX_MESSAGE ? message.slice(0, MAX_MESSAGE - 1) + "…" : message } };
}
