/**
 * Sealing one message: header + inner draft → `[header, sealed body]`, the header's bytes
 * bound into the plaintext (envelope.ts), the receiver's structural limits checked before
 * sealing, and the whole message held to the size cap. The one place a message is sealed.
 */
import { describeThrown, ZmcpError } from "../errors.js";
import { encodeHeader, encodeInnerShared, encodeResponseShared, MAX_DEPTH, type Header, type InnerDraft } from "./envelope.js";
import { checkMsgpack } from "./msgpack-guard.js";
import type { Sealer } from "./seal.js";

/** Throws ZmcpError(invalid_args) for what cannot be encoded or read, ZmcpError(too_large) past `maxMessageBytes`. */
export function sealMessage(sealer: Sealer, to: string, header: Header, draft: InnerDraft, maxMessageBytes: number): [Uint8Array, Uint8Array] {
  const headerBytes = encodeHeader(header);
  let plaintext: Uint8Array;
  try {
    // The encoder's own buffer: checked and sealed right here, before anything encodes again.
    plaintext = encodeInnerShared(draft, headerBytes);
  } catch (err) {
    throw new ZmcpError("invalid_args", `cannot encode message: ${(err as Error).message}`, { cause: err });
  }
  return sealPlaintext(sealer, to, headerBytes, plaintext, maxMessageBytes);
}

/**
 * A response (`k: "res"`) whose answer is already encoded (envelope.ts encodeKept): the answer's
 * bytes spliced into the inner message, not encoded again. Throws as {@link sealMessage}.
 */
export function sealResponse(sealer: Sealer, to: string, header: Header, ts: number, answer: Uint8Array, maxMessageBytes: number): [Uint8Array, Uint8Array] {
  const headerBytes = encodeHeader(header);
  let plaintext: Uint8Array;
  try {
    plaintext = encodeResponseShared(ts, answer, headerBytes);
  } catch (err) {
    throw new ZmcpError("invalid_args", `cannot encode message: ${(err as Error).message}`, { cause: err });
  }
  return sealPlaintext(sealer, to, headerBytes, plaintext, maxMessageBytes);
}

function sealPlaintext(sealer: Sealer, to: string, headerBytes: Uint8Array, plaintext: Uint8Array, maxMessageBytes: number): [Uint8Array, Uint8Array] {
  // The receiver's own structural limits (depth, values per message, no extension types):
  // what it would drop is refused here, with the reason, instead of lost on the way.
  try {
    checkMsgpack(plaintext, MAX_DEPTH);
  } catch (err) {
    throw new ZmcpError("invalid_args", `message not readable by its receiver: ${describeThrown(err)}`, { cause: err });
  }
  const body = sealer.seal(to, plaintext);
  const size = headerBytes.length + body.length;
  if (size > maxMessageBytes) throw new ZmcpError("too_large", `message of ${size} bytes exceeds ${maxMessageBytes}`);
  return [headerBytes, body];
}
