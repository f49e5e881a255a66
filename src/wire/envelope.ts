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
import { DEFAULT_MAX_MESSAGE_BYTES, MAX_DEPTH, MAX_ERROR_CODE_CHARS, MAX_ERROR_MESSAGE_CHARS, MAX_HEADER_BYTES, MAX_JOB_ID_CHARS, MAX_NACK_MSG_BYTES, MAX_TOKEN_CHARS, MAX_TRACEPARENT_CHARS, MAX_TRACESTATE_CHARS, MAX_ADDRESS_CHARS, MAX_TOOL_NAME_CHARS, MAX_PROGRESS_MESSAGE_CHARS } from "./limits.js";
import * as nodeCrypto from "node:crypto";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { z } from "zod";
import { ProtocolError } from "../errors.js";
import { checkMsgpack, skipValue } from "./msgpack-guard.js";
import { decodeHeaderFast, encodeHeaderFast } from "./header-codec.js";
import { sha256Into } from "./box.js";
import { randomBytesPooled } from "./random.js";

export const PROTOCOL_VERSION = 1;

export { DEFAULT_MAX_MESSAGE_BYTES, MAX_DEPTH, MAX_HEADER_BYTES, MAX_NACK_MSG_BYTES } from "./limits.js";

/** `text` cut to at most `maxBytes` of UTF-8, on a character boundary. */
export function clipUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text;
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes - 3; // room for the ellipsis
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  return bytes.subarray(0, end).toString("utf8") + "…";
}


const bytes = (n: number) =>
  z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.length === n, { message: `expected ${n} bytes` });

/**
 * Kinds: a request, its response, an event pushed by a job (progress, completion), an agent's
 * heartbeat to the broker (services it serves, topics it subscribes to), the broker's own ack
 * and nack, and a publication on a topic (`pub`, fanned out by the broker: docs/EVENTS.md).
 */
export const MessageKindSchema = z.enum(["req", "res", "evt", "hb", "ack", "nack", "pub"]);
export type MessageKind = z.infer<typeof MessageKindSchema>;

/** The header, readable by the broker. */
export const HeaderSchema = z.strictObject({
  /** Protocol version. */
  v: z.number(),
  /** Kind: request, response, or the broker's negative acknowledgement. */
  k: MessageKindSchema,
  /** Message id, 16 random bytes, fresh for every transmission. */
  id: bytes(16),
  /**
   * Destination: the Z85 key of the recipient (40 characters), a service (`svc:NAME`), a
   * service replica (`svc:NAME@KEY`), or empty for the broker itself (heartbeats).
   */
  to: z.string().max(MAX_ADDRESS_CHARS),
  /**
   * Deadline, ms since the epoch: past it the message is not forwarded or processed. Senders
   * write integers; a fraction from another implementation is accepted and floored (clock.ts).
   */
  exp: z.number().nonnegative().transform(Math.floor),
  /** For responses and nacks: the id of the message answered. */
  re: bytes(16).optional(),
  /** Set on messages sealed with a service's key rather than the sender's own: `svc:NAME`. */
  as: z.string().max(MAX_ADDRESS_CHARS).optional(),
  /**
   * Durable (`true`): a broker with a durable store keeps the message for its recipient when it
   * cannot take it now, and answers the sender `ack {code: "stored"}` (docs/DURABLE.md). Absent
   * on every other message, so those stay byte-identical to what older peers send and read.
   */
  dur: z.literal(true).optional(),
  /**
   * For publications (`k: "pub"`, where `to` is the topic): the publisher's sequence number on
   * that topic, 1, 2, 3, ... from the publisher's start, so subscribers count what they missed
   * end to end (docs/EVENTS.md). Inside the bytes the seal binds: the broker cannot change it.
   */
  sq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  /** For nacks: the error code and text; on a broker `ack`, `stored` for a message kept for later. */
  code: z.string().max(64).optional(),
  msg: z.string().max(1024).optional(),
});
export type Header = z.infer<typeof HeaderSchema>;

export const ErrorBodySchema = z.strictObject({ code: z.string().max(MAX_ERROR_CODE_CHARS), message: z.string().max(MAX_ERROR_MESSAGE_CHARS) });
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
  tool: z.string().min(1).max(MAX_TOOL_NAME_CHARS),
  args: z.unknown(),
  /** The caller's capability token, a compact JWT (see tokens.ts); inside the seal, so the broker never sees it. */
  tok: z.string().max(MAX_TOKEN_CHARS).optional(),
  /** W3C trace context of the caller's span (agent/tracing.ts); inside the seal, so the broker never sees it. */
  tc: z.strictObject({ traceparent: z.string().max(MAX_TRACEPARENT_CHARS), tracestate: z.string().max(MAX_TRACESTATE_CHARS).optional() }).optional(),
});
export type Request = z.infer<typeof RequestSchema>;

/** What a response says: answered, accepted as a job, or refused. Job statuses travel in events and poll answers only. */
export const ResponseStatusSchema = z.enum(["ok", "accepted", "error"]);
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

export const JobStatusSchema = z.enum(["running", "done", "error", "cancelled"]);
export type JobStatus = z.infer<typeof JobStatusSchema>;

export const ProgressSchema = z.strictObject({
  progress: z.number(),
  total: z.number().optional(),
  message: z.string().max(MAX_PROGRESS_MESSAGE_CHARS).optional(),
});
export type Progress = z.infer<typeof ProgressSchema>;

/** A job's state as `jobs/poll` and `jobs/cancel` answer it (inside a response's `result`). */
export const JobStateSchema = z.object({
  job_id: z.string().max(MAX_JOB_ID_CHARS),
  status: JobStatusSchema,
  progress: ProgressSchema.optional(),
  result: z.unknown().optional(),
  error: ErrorBodySchema.optional(),
});

/** The sealed inner message of an event a job pushes to the caller that started it. */
export const EventSchema = z.strictObject({
  t: z.literal("evt"),
  h: bytes(32),
  ts: z.number(),
  job: z.string().max(MAX_JOB_ID_CHARS),
  st: JobStatusSchema,
  progress: ProgressSchema.optional(),
  result: z.unknown().optional(),
  error: ErrorBodySchema.optional(),
});
export type Event = z.infer<typeof EventSchema>;

export const InnerSchema = z.discriminatedUnion("t", [RequestSchema, ResponseSchema, EventSchema]);
export type Inner = z.infer<typeof InnerSchema>;
/** An inner message before sealing: the header digest is added by {@link encodeInner}. */
export type InnerDraft = Omit<Request, "h"> | Omit<Response, "h"> | Omit<Event, "h">;

const encoder = new Encoder({ ignoreUndefined: true });
const keptDecoder = new Decoder();

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
  // libsodium writes into Node's buffer pool: no allocation of its own per message (issue 12).
  if (sha256Into) return sha256Into(data);
  return oneShotHash ? oneShotHash("sha256", data, "buffer") : nodeCrypto.createHash("sha256").update(data).digest();
}

const DIGEST_SCRATCH = new Uint8Array(32);

/**
 * The digest of `data` in one buffer shared by every call (overwritten by the next): for a
 * digest compared at once with the sealed one, no allocation. Not for encoding: the encoder
 * reads `args` (getters: user code, which may seal another message) before it writes `h`
 * (test/security/hotpath-attack-shared-encoder.test.ts).
 */
function digestScratch(data: Uint8Array): Uint8Array {
  if (sha256Into) return sha256Into(data, DIGEST_SCRATCH);
  return digest(data);
}

export function encodeHeader(header: Header): Uint8Array {
  return encodeHeaderFast(header) ?? encoder.encode(header);
}

/**
 * `value` encoded into a buffer of exactly its size, for a table that keeps it (the answer
 * cache): a copy, so it holds none of the buffers the value's binary parts were views of.
 */
export function encodeKept(value: unknown): Uint8Array {
  return encoder.encode(value);
}

/** A value {@link encodeKept} made (trusted bytes: no limits to apply); binary parts are views of `bytes`. */
export function decodeKept(bytes: Uint8Array): unknown {
  return keptDecoder.decode(bytes);
}

/** Bytes of `value` encoded as it would be sent (what held answers count against budgets). */
export function encodedSize(value: unknown): number {
  return encoder.encodeSharedRef(value).length; // counted in the encoder's own buffer: nothing allocated
}

/** Encodes an inner message bound to `headerBytes`. */
export function encodeInner(draft: InnerDraft, headerBytes: Uint8Array): Uint8Array {
  return encoder.encode({ ...draft, h: digest(headerBytes) });
}

/** Reused for composing responses of up to 64 KiB (sealed at once: nothing runs in between). */
let responseScratch = new Uint8Array(4096);

/**
 * A response's inner message from its answer already encoded ({@link encodeKept}): exactly the
 * bytes the encoder writes for `{ t: "res", ts, ...answer, h }`, with the answer's entries
 * spliced in. So the answer is read (its getters run) and encoded once: what is sent and what the
 * answer cache keeps for retries are the same bytes, and a large result is not encoded twice.
 * The result is valid until the next call: seal it at once.
 */
export function encodeResponseShared(ts: number, answer: Uint8Array, headerBytes: Uint8Array): Uint8Array {
  const entries = answer[0]! - 0x80;
  // An answer is a map of st, result and error: a fixmap, whose one-byte header is replaced.
  if (answer.length < 1 || entries < 1 || entries > 3) throw new TypeError("an encoded answer is a map of one to three entries");
  const head = encoder.encodeSharedRef({ t: "res", ts }); // a fixmap of 2: the encoder's own bytes for them
  const size = head.length + answer.length - 1 + 36;
  const out = size <= 65_536 ? (responseScratch.length >= size ? responseScratch : (responseScratch = new Uint8Array(Math.max(size, 2 * responseScratch.length)))) : new Uint8Array(size);
  out[0] = 0x80 | (2 + entries + 1);
  out.set(head.subarray(1), 1);
  let p = head.length;
  out.set(answer.subarray(1), p);
  p += answer.length - 1;
  out[p++] = 0xa1; // "h": fixstr 1
  out[p++] = 0x68;
  out[p++] = 0xc4; // bin 8, 32 bytes
  out[p++] = 32;
  out.set(digestScratch(headerBytes), p);
  return out.subarray(0, size);
}

/**
 * As {@link encodeInner}, but the bytes are the encoder's own buffer, valid only until the next
 * encode: for a caller that uses them at once and synchronously (sealMessage seals them), it
 * saves a copy and an allocation per message.
 */
export function encodeInnerShared(draft: InnerDraft, headerBytes: Uint8Array): Uint8Array {
  return encoder.encodeSharedRef({ ...draft, h: digest(headerBytes) });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const isBytes = (v: unknown, n: number): v is Uint8Array => v instanceof Uint8Array && v.length === n;

/** Byte equality without copying either side (Buffer.from(uint8array) copies). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
const HEADER_KEYS: ReadonlySet<string> = new Set(Object.keys(HeaderSchema.shape));
const KINDS: ReadonlySet<unknown> = new Set(MessageKindSchema.options);

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
    KINDS.has(h["k"]) &&
    isBytes(h["id"], 16) &&
    typeof h["to"] === "string" &&
    h["to"].length <= MAX_ADDRESS_CHARS &&
    Number.isSafeInteger(h["exp"]) &&
    (h["exp"] as number) >= 0 &&
    (!("re" in h) || isBytes(h["re"], 16)) &&
    (!("as" in h) || (typeof h["as"] === "string" && h["as"].length <= MAX_ADDRESS_CHARS)) &&
    (!("dur" in h) || h["dur"] === true) &&
    (!("sq" in h) || (Number.isSafeInteger(h["sq"]) && (h["sq"] as number) >= 0)) &&
    (!("code" in h) || (typeof h["code"] === "string" && h["code"].length <= 64)) &&
    (!("msg" in h) || (typeof h["msg"] === "string" && h["msg"].length <= 1024))
  );
}

/** Header frame → typed header. Throws ProtocolError(bad_frame | too_large | unsupported_version). */
export function decodeHeader(frame: Uint8Array): Header {
  if (frame.length > MAX_HEADER_BYTES) throw new ProtocolError("too_large", `header of ${frame.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  const fast = decodeHeaderFast(frame);
  if (fast) {
    if (fast.v !== PROTOCOL_VERSION) throw new ProtocolError("unsupported_version", `protocol version ${fast.v} is not ${PROTOCOL_VERSION}`);
    return fast;
  }
  let raw: unknown;
  try {
    checkMsgpack(frame, MAX_DEPTH);
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
 * A request's arguments set aside undecoded (see {@link decodeInner}'s `deferArgs`): the
 * callee checks the caller's token first, so a peer without one cannot make it pay for
 * decoding large maps and arrays. {@link decodeArgs} decodes them.
 */
export class RawArgs {
  constructor(
    readonly bytes: Uint8Array,
    readonly maxBytes: number,
  ) {}
}

/** A request's `args`, decoded if they were set aside. Throws ProtocolError(bad_frame). */
export function decodeArgs(args: unknown): unknown {
  if (!(args instanceof RawArgs)) return args;
  try {
    return decoderOf(args.maxBytes).decode(args.bytes);
  } catch (err) {
    throw new ProtocolError("bad_frame", `arguments are not msgpack: ${describe(err)}`, { cause: err });
  }
}

function decoderOf(maxBytes: number): Decoder {
  let decoder = innerDecoders.get(maxBytes);
  if (!decoder) innerDecoders.set(maxBytes, (decoder = decoderFor(maxBytes)));
  return decoder;
}

const ARGS_KEY = Buffer.from([0xa4, 0x61, 0x72, 0x67, 0x73]); // fixstr "args"

/**
 * Where the top-level `args` value of a checked msgpack map lies, as [start, end), or
 * undefined. Only fixstr keys are compared: "args" is always encoded as one.
 */
function argsRange(data: Uint8Array): [number, number] | undefined {
  const b = data[0]!;
  let entries: number;
  let p: number;
  if (b >= 0x80 && b <= 0x8f) [entries, p] = [b & 0x0f, 1];
  else if (b === 0xde) [entries, p] = [(data[1]! << 8) | data[2]!, 3];
  else return undefined;
  for (let i = 0; i < entries; i++) {
    const keyEnd = skipValue(data, p);
    const isArgs = keyEnd - p === ARGS_KEY.length && ARGS_KEY.equals(data.subarray(p, keyEnd));
    const valueEnd = skipValue(data, keyEnd);
    if (isArgs) return [keyEnd, valueEnd];
    p = valueEnd;
  }
  return undefined;
}

/**
 * Opened plaintext → typed inner message, checking that it is bound to `headerBytes`.
 * With `deferArgs`, a request's `args` are left undecoded as {@link RawArgs}.
 * Throws ProtocolError(bad_frame | bad_seal).
 */
export function decodeInner(plaintext: Uint8Array, headerBytes: Uint8Array, maxBytes: number, options: { deferArgs?: boolean } = {}): Inner {
  const decoder = decoderOf(maxBytes);
  let raw: unknown;
  let rawArgs: RawArgs | undefined;
  try {
    // Depth, value count and extension types are refused here, before any allocation: the
    // decoded value needs no second walk.
    checkMsgpack(plaintext, MAX_DEPTH);
    let data = plaintext;
    const range = options.deferArgs ? argsRange(plaintext) : undefined;
    if (range) {
      // The same message with nil in place of the arguments: decoded without them.
      rawArgs = new RawArgs(plaintext.subarray(range[0], range[1]), maxBytes);
      data = Buffer.concat([plaintext.subarray(0, range[0]), Buffer.from([0xc0]), plaintext.subarray(range[1])]);
    }
    raw = decoder.decode(data);
  } catch (err) {
    throw new ProtocolError("bad_frame", `message is not msgpack: ${describe(err)}`, { cause: err });
  }
  let inner: Inner;
  if (isPlainInner(raw)) inner = raw;
  else {
    const parsed = InnerSchema.safeParse(raw);
    if (!parsed.success) throw new ProtocolError("bad_frame", `invalid message: ${z.prettifyError(parsed.error)}`);
    inner = parsed.data;
  }
  if (!sameBytes(inner.h, digestScratch(headerBytes))) {
    throw new ProtocolError("bad_seal", "header does not match the sealed digest (tampered in transit)");
  }
  if (rawArgs && inner.t === "req") inner.args = rawArgs;
  return inner;
}

const REQUEST_KEYS: ReadonlySet<string> = new Set(Object.keys(RequestSchema.shape));
const RESPONSE_KEYS: ReadonlySet<string> = new Set(Object.keys(ResponseSchema.shape));
const STATUSES: ReadonlySet<unknown> = new Set(ResponseStatusSchema.options);
const EVENT_KEYS: ReadonlySet<string> = new Set(Object.keys(EventSchema.shape));
const JOB_STATUSES: ReadonlySet<unknown> = new Set(JobStatusSchema.options);
const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype;

/** {@link InnerSchema}'s checks written out, as {@link isPlainHeader} is for the header. */
function isPlainInner(raw: unknown): raw is Inner {
  if (!isPlainObject(raw) || !isBytes(raw["h"], 32) || typeof raw["ts"] !== "number" || !Number.isFinite(raw["ts"])) return false;
  if (raw["t"] === "req") {
    for (const key in raw) if (!REQUEST_KEYS.has(key)) return false;
    const tool = raw["tool"];
    const tok = raw["tok"];
    return (
      isBytes(raw["rid"], 16) &&
      typeof tool === "string" &&
      tool.length >= 1 &&
      tool.length <= MAX_TOOL_NAME_CHARS &&
      "args" in raw &&
      (!("tok" in raw) || (typeof tok === "string" && tok.length <= MAX_TOKEN_CHARS)) &&
      !("tc" in raw) // trace context: checked by the schema (a nested map)
    );
  }
  if (raw["t"] === "evt") {
    for (const key in raw) if (!EVENT_KEYS.has(key)) return false;
    const job = raw["job"];
    if (typeof job !== "string" || job.length > MAX_JOB_ID_CHARS || !JOB_STATUSES.has(raw["st"])) return false;
    if ("progress" in raw && !isPlainProgress(raw["progress"])) return false;
    return !("error" in raw) || isPlainError(raw["error"]);
  }
  if (raw["t"] !== "res") return false;
  for (const key in raw) if (!RESPONSE_KEYS.has(key)) return false;
  if (!STATUSES.has(raw["st"])) return false;
  return !("error" in raw) || isPlainError(raw["error"]);
}

/** {@link ErrorBodySchema} written out. */
function isPlainError(error: unknown): boolean {
  if (!isPlainObject(error)) return false;
  for (const key in error) if (key !== "code" && key !== "message") return false;
  const { code, message } = error;
  return typeof code === "string" && code.length <= MAX_ERROR_CODE_CHARS && typeof message === "string" && message.length <= MAX_ERROR_MESSAGE_CHARS;
}

/** {@link ProgressSchema} written out (finite numbers only: anything else goes to the schema). */
function isPlainProgress(progress: unknown): boolean {
  if (!isPlainObject(progress)) return false;
  for (const key in progress) if (key !== "progress" && key !== "total" && key !== "message") return false;
  const { progress: done, total, message } = progress;
  return (
    typeof done === "number" &&
    Number.isFinite(done) &&
    (!("total" in progress) || (typeof total === "number" && Number.isFinite(total))) &&
    (!("message" in progress) || (typeof message === "string" && message.length <= MAX_PROGRESS_MESSAGE_CHARS))
  );
}
