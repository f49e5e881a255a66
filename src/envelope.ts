/**
 * The envelope: what travels in frames, and the one function on each side that turns frames
 * into typed values (size caps first, then msgpack, then a strict zod parse).
 *
 * Agent → broker: `[header, body]`. Broker → agent: `[from, header, body]`, where `from` is
 * the Z85 key of the sender as authenticated by CURVE, or empty for the broker's own answers.
 *
 * The header is the only part the broker reads. The body is a sealed box (see seal.ts) whose
 * plaintext holds the SHA-256 of the header bytes, so nobody on the path can change the
 * header unseen.
 */
import * as nodeCrypto from "node:crypto";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { z } from "zod";
import { ProtocolError } from "./errors.js";
import { randomBytesPooled } from "./random.js";

export const PROTOCOL_VERSION = 1;

/** Hard cap on the header frame; a real header is under 150 bytes. */
export const MAX_HEADER_BYTES = 512;
/** Default cap on a whole message (header + body), bytes. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
/** Deepest nesting accepted inside a decoded message. */
export const MAX_DEPTH = 32;

const bytes = (n: number) =>
  z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.length === n, { message: `expected ${n} bytes` });

export const MessageKindSchema = z.enum(["req", "res", "nack"]);
export type MessageKind = z.infer<typeof MessageKindSchema>;

/** The header, readable by the broker. */
export const HeaderSchema = z.strictObject({
  /** Protocol version. */
  v: z.number(),
  /** Kind: request, response, or the broker's negative acknowledgement. */
  k: MessageKindSchema,
  /** Message id, 16 random bytes, fresh for every transmission. */
  id: bytes(16),
  /** Destination: the Z85 key of the recipient (40 characters). */
  to: z.string().max(128),
  /** Deadline, ms since the epoch: past it the message is not forwarded or processed. */
  exp: z.number().int().nonnegative(),
  /** For responses and nacks: the id of the message answered. */
  re: bytes(16).optional(),
  /** For nacks: the error code and text. */
  code: z.string().max(64).optional(),
  msg: z.string().max(1024).optional(),
});
export type Header = z.infer<typeof HeaderSchema>;

export const ErrorBodySchema = z.strictObject({ code: z.string().max(64), message: z.string().max(4096) });
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** The sealed inner message of a request. */
export const RequestSchema = z.strictObject({
  t: z.literal("req"),
  /** SHA-256 of the header frame. */
  h: bytes(32),
  /** Sender's clock, ms since the epoch (replay window). */
  ts: z.number(),
  /** Request id, 16 random bytes, stable across retries (idempotency key). */
  rid: bytes(16),
  tool: z.string().min(1).max(256),
  args: z.unknown(),
});
export type Request = z.infer<typeof RequestSchema>;

export const ResponseStatusSchema = z.enum(["ok", "accepted", "running", "done", "error", "cancelled"]);
export type ResponseStatus = z.infer<typeof ResponseStatusSchema>;

/** The sealed inner message of a response. */
export const ResponseSchema = z.strictObject({
  t: z.literal("res"),
  h: bytes(32),
  ts: z.number(),
  st: ResponseStatusSchema,
  result: z.unknown().optional(),
  error: ErrorBodySchema.optional(),
});
export type Response = z.infer<typeof ResponseSchema>;

export const InnerSchema = z.discriminatedUnion("t", [RequestSchema, ResponseSchema]);
export type Inner = z.infer<typeof InnerSchema>;
/** An inner message before sealing: the header digest is added by {@link encodeInner}. */
export type InnerDraft = Omit<Request, "h"> | Omit<Response, "h">;

const encoder = new Encoder({ ignoreUndefined: true });

function decoderFor(maxBytes: number): Decoder {
  return new Decoder({
    maxStrLength: maxBytes,
    maxBinLength: maxBytes,
    maxArrayLength: maxBytes,
    maxMapLength: maxBytes,
    maxExtLength: 0,
  });
}
const headerDecoder = decoderFor(MAX_HEADER_BYTES);
const innerDecoders = new Map<number, Decoder>();

export function newId(): Uint8Array {
  return randomBytesPooled(16);
}

export function idKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
}

// crypto.hash (Node >= 20.12) skips a Hash object per message: 0.8 µs instead of 1.1 µs
// for a header. Looked up, not imported, so that older Node 20 releases still load this.
const oneShotHash = (nodeCrypto as { hash?: (algorithm: string, data: Uint8Array, encoding: "buffer") => Buffer }).hash;

export function digest(data: Uint8Array): Uint8Array {
  return oneShotHash ? oneShotHash("sha256", data, "buffer") : nodeCrypto.createHash("sha256").update(data).digest();
}

export function encodeHeader(header: Header): Uint8Array {
  return encoder.encode(header);
}

/** Encodes an inner message bound to `headerBytes`. */
export function encodeInner(draft: InnerDraft, headerBytes: Uint8Array): Uint8Array {
  return encoder.encode({ ...draft, h: digest(headerBytes) });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Rejects nesting deeper than {@link MAX_DEPTH} and msgpack extension values. */
function checkShape(value: unknown, depth = 0): void {
  if (depth > MAX_DEPTH) throw new ProtocolError("bad_frame", `message nested deeper than ${MAX_DEPTH}`);
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return;
  if (Array.isArray(value)) {
    for (const item of value) checkShape(item, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) throw new ProtocolError("bad_frame", "unsupported msgpack value");
  for (const key in value) checkShape((value as Record<string, unknown>)[key], depth + 1);
}

const isBytes = (v: unknown, n: number): v is Uint8Array => v instanceof Uint8Array && v.length === n;
const HEADER_KEYS: ReadonlySet<string> = new Set(Object.keys(HeaderSchema.shape));

/**
 * {@link HeaderSchema}'s checks written out, for the hot path (every message, in the broker
 * and the agents): true only for a value that the schema accepts as it is. Whatever this
 * cannot vouch for goes through the schema, which accepts it or words the error, so both
 * paths give the same result (test/envelope-fastpath.test.ts compares them).
 */
function isPlainHeader(raw: unknown): raw is Header {
  if (raw === null || typeof raw !== "object" || Object.getPrototypeOf(raw) !== Object.prototype) return false;
  const h = raw as Record<string, unknown>;
  for (const key in h) if (!HEADER_KEYS.has(key)) return false;
  return (
    typeof h["v"] === "number" &&
    Number.isFinite(h["v"]) &&
    (h["k"] === "req" || h["k"] === "res" || h["k"] === "nack") &&
    isBytes(h["id"], 16) &&
    typeof h["to"] === "string" &&
    h["to"].length <= 128 &&
    Number.isSafeInteger(h["exp"]) &&
    (h["exp"] as number) >= 0 &&
    (!("re" in h) || isBytes(h["re"], 16)) &&
    (!("code" in h) || (typeof h["code"] === "string" && h["code"].length <= 64)) &&
    (!("msg" in h) || (typeof h["msg"] === "string" && h["msg"].length <= 1024))
  );
}

/** Header frame → typed header. Throws ProtocolError(bad_frame | too_large | unsupported_version). */
export function decodeHeader(frame: Uint8Array): Header {
  if (frame.length > MAX_HEADER_BYTES) throw new ProtocolError("too_large", `header of ${frame.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  let raw: unknown;
  try {
    raw = headerDecoder.decode(frame);
  } catch (err) {
    throw new ProtocolError("bad_frame", `header is not msgpack: ${describe(err)}`, { cause: err });
  }
  let header: Header;
  if (isPlainHeader(raw)) header = raw;
  else {
    const parsed = HeaderSchema.safeParse(raw);
    if (!parsed.success) throw new ProtocolError("bad_frame", `invalid header: ${z.prettifyError(parsed.error)}`);
    header = parsed.data;
  }
  if (header.v !== PROTOCOL_VERSION) {
    throw new ProtocolError("unsupported_version", `protocol version ${header.v} is not ${PROTOCOL_VERSION}`);
  }
  return header;
}

/**
 * Opened plaintext → typed inner message, checking that it is bound to `headerBytes`.
 * Throws ProtocolError(bad_frame | bad_seal).
 */
export function decodeInner(plaintext: Uint8Array, headerBytes: Uint8Array, maxBytes: number): Inner {
  let decoder = innerDecoders.get(maxBytes);
  if (!decoder) innerDecoders.set(maxBytes, (decoder = decoderFor(maxBytes)));
  let raw: unknown;
  try {
    raw = decoder.decode(plaintext);
  } catch (err) {
    throw new ProtocolError("bad_frame", `message is not msgpack: ${describe(err)}`, { cause: err });
  }
  checkShape(raw);
  let inner: Inner;
  if (isPlainInner(raw)) inner = raw;
  else {
    const parsed = InnerSchema.safeParse(raw);
    if (!parsed.success) throw new ProtocolError("bad_frame", `invalid message: ${z.prettifyError(parsed.error)}`);
    inner = parsed.data;
  }
  if (!Buffer.from(inner.h).equals(digest(headerBytes))) {
    throw new ProtocolError("bad_seal", "header does not match the sealed digest (tampered in transit)");
  }
  return inner;
}

const REQUEST_KEYS: ReadonlySet<string> = new Set(Object.keys(RequestSchema.shape));
const RESPONSE_KEYS: ReadonlySet<string> = new Set(Object.keys(ResponseSchema.shape));
const STATUSES: ReadonlySet<unknown> = new Set(ResponseStatusSchema.options);
const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype;

/** {@link InnerSchema}'s checks written out, as {@link isPlainHeader} is for the header. */
function isPlainInner(raw: unknown): raw is Inner {
  if (!isPlainObject(raw) || !isBytes(raw["h"], 32) || typeof raw["ts"] !== "number" || !Number.isFinite(raw["ts"])) return false;
  if (raw["t"] === "req") {
    for (const key in raw) if (!REQUEST_KEYS.has(key)) return false;
    const tool = raw["tool"];
    return isBytes(raw["rid"], 16) && typeof tool === "string" && tool.length >= 1 && tool.length <= 256 && "args" in raw;
  }
  if (raw["t"] !== "res") return false;
  for (const key in raw) if (!RESPONSE_KEYS.has(key)) return false;
  if (!STATUSES.has(raw["st"])) return false;
  if (!("error" in raw)) return true;
  const error = raw["error"];
  if (!isPlainObject(error)) return false;
  for (const key in error) if (key !== "code" && key !== "message") return false;
  const { code, message } = error;
  return typeof code === "string" && code.length <= 64 && typeof message === "string" && message.length <= 4096;
}
