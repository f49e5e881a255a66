/**
 * Pieces of the callee's guarded pipeline (handler.ts): whatever a handler, a
 * schema or a result throws is turned into an answer here, and nothing here throws itself.
 */
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
