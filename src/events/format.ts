/**
 * The bytes of a sealed publication and of a publisher's credential (docs/EVENTS.md,
 * "Body layout", written so that another implementation can follow it). Pure functions: no
 * keys are fetched here, nothing is cached; group-keys.ts and distributor.ts use them.
 *
 * All integers are big-endian; epochs and expiry times are integers below 2^53 (ms).
 */
import { createHash } from "node:crypto";
import * as nodeCrypto from "node:crypto";
import { EventSealError } from "../errors.js";
import { SIGN_PUBLIC_BYTES, SIGNATURE_BYTES } from "./signing.js";

/** The first byte of a body and of a credential: the layout below. */
export const EVENT_FORMAT = 1;
export const CURVE_KEY_BYTES = 32;
export const DIGEST_BYTES = 32;
/** Longest credential a body may carry (a topic of 250 characters needs 397). */
export const MAX_CREDENTIAL_BYTES = 1024;

const utf8 = new TextEncoder();
const CONTEXT_DOMAIN = utf8.encode("zmcp-event/1");
const SIGNATURE_DOMAIN = utf8.encode("zmcp-event-signature/1");
const CREDENTIAL_DOMAIN = utf8.encode("zmcp-event-credential/1");

const oneShotHash = (nodeCrypto as { hash?: (algorithm: string, data: Uint8Array, encoding: "buffer") => Buffer }).hash;
export function sha256(data: Uint8Array): Uint8Array {
  return oneShotHash ? oneShotHash("sha256", data, "buffer") : createHash("sha256").update(data).digest();
}

/** A growable byte writer for the small structures below. */
class Writer {
  #buf: Uint8Array;
  #view: DataView;
  length = 0;
  /** `capacity`: the bytes expected, so that a 64 KiB body is not copied as it grows. */
  constructor(capacity = 256) {
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
  }
  #room(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.length + n));
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u8(v: number): this {
    this.#room(1);
    this.#buf[this.length++] = v;
    return this;
  }
  u16(v: number): this {
    this.#room(2);
    this.#view.setUint16(this.length, v);
    this.length += 2;
    return this;
  }
  u32(v: number): this {
    this.#room(4);
    this.#view.setUint32(this.length, v);
    this.length += 4;
    return this;
  }
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${v} is not an integer in 0..2^53`);
    this.#room(8);
    this.#view.setUint32(this.length, Math.floor(v / 2 ** 32));
    this.#view.setUint32(this.length + 4, v >>> 0);
    this.length += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.#room(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  done(): Uint8Array {
    return this.length === this.#buf.length ? this.#buf : this.#buf.slice(0, this.length);
  }
}

/** Reads what Writer wrote; every read past the end throws EventSealError(`why`). */
class Reader {
  p = 0;
  readonly #view: DataView;
  constructor(
    readonly data: Uint8Array,
    readonly why: "malformed" | "credential",
  ) {
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }
  #need(n: number): void {
    if (this.p + n > this.data.length) throw new EventSealError(this.why, `${this.why === "credential" ? "credential" : "publication"} truncated at byte ${this.p}`);
  }
  u8(): number {
    this.#need(1);
    return this.data[this.p++]!;
  }
  u16(): number {
    this.#need(2);
    const v = this.#view.getUint16(this.p);
    this.p += 2;
    return v;
  }
  u64(): number {
    this.#need(8);
    const hi = this.#view.getUint32(this.p);
    const lo = this.#view.getUint32(this.p + 4);
    this.p += 8;
    if (hi >= 2 ** 21) throw new EventSealError(this.why, `integer at byte ${this.p - 8} is 2^53 or more`);
    return hi * 2 ** 32 + lo;
  }
  bytes(n: number): Uint8Array {
    this.#need(n);
    const b = this.data.subarray(this.p, this.p + n);
    this.p += n;
    return b;
  }
}

// --- credential -----------------------------------------------------------------------------

/** What a distributor vouches for: `member` may publish on `topic` in `epoch` until `expires`. */
export interface CredentialFields {
  epoch: number;
  /** ms since the epoch. */
  expires: number;
  /** The member's curve public key (32 bytes): the key the broker must say sent each publication. */
  member: Uint8Array;
  /** The member's Ed25519 public key (32 bytes): it signs each publication. */
  signer: Uint8Array;
  /** The exact topic (no wildcards). */
  topic: string;
}

export interface Credential extends CredentialFields {
  /** The distributor's signature. */
  signature: Uint8Array;
  /** What the distributor signed: the domain, then every byte before the signature. */
  signed: Uint8Array;
}

/**
 * `[1][epoch u64][expires u64][member 32][signer 32][topic length u16][topic][signature 64]`;
 * the signature covers `"zmcp-event-credential/1"` followed by every byte before it.
 */
export function encodeCredential(fields: CredentialFields, sign: (message: Uint8Array) => Uint8Array): Uint8Array {
  const topic = utf8.encode(fields.topic);
  const unsigned = new Writer().u8(EVENT_FORMAT).u64(fields.epoch).u64(fields.expires).bytes(fields.member).bytes(fields.signer).u16(topic.length).bytes(topic).done();
  const signature = sign(concat(CREDENTIAL_DOMAIN, unsigned));
  return concat(unsigned, signature);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Throws EventSealError(credential) for bytes that are not a credential (the signature is not checked here). */
export function parseCredential(bytes: Uint8Array): Credential {
  const r = new Reader(bytes, "credential");
  if (r.u8() !== EVENT_FORMAT) throw new EventSealError("credential", "credential of an unknown format");
  const epoch = r.u64();
  const expires = r.u64();
  const member = r.bytes(CURVE_KEY_BYTES);
  const signer = r.bytes(SIGN_PUBLIC_BYTES);
  const topicBytes = r.bytes(r.u16());
  const end = r.p;
  const signature = r.bytes(SIGNATURE_BYTES);
  if (r.p !== bytes.length) throw new EventSealError("credential", `${bytes.length - r.p} bytes after the credential`);
  let topic: string;
  try {
    topic = strictUtf8.decode(topicBytes);
  } catch {
    throw new EventSealError("credential", "credential topic is not UTF-8");
  }
  return { epoch, expires, member, signer, topic, signature, signed: concat(CREDENTIAL_DOMAIN, bytes.subarray(0, end)) };
}

// --- body -----------------------------------------------------------------------------------

export interface BodyParts {
  epoch: number;
  credential: Uint8Array;
  /** The publisher's Ed25519 signature. */
  signature: Uint8Array;
  /** `[tag 16][nonce 24][XSalsa20-Poly1305 ciphertext]` under the epoch key (src/wire/box.ts). */
  box: Uint8Array;
}

/** `[1][epoch u64][credential length u16][credential][signature 64][box]`. */
export function encodeBody(parts: BodyParts): Uint8Array {
  if (parts.credential.length > MAX_CREDENTIAL_BYTES) throw new RangeError(`credential of ${parts.credential.length} bytes`);
  const size = 1 + 8 + 2 + parts.credential.length + parts.signature.length + parts.box.length;
  return new Writer(size).u8(EVENT_FORMAT).u64(parts.epoch).u16(parts.credential.length).bytes(parts.credential).bytes(parts.signature).bytes(parts.box).done();
}

/** Throws EventSealError(malformed) for bytes that are not a body. The parts are views into `body`. */
export function parseBody(body: Uint8Array, minBox: number): BodyParts {
  const r = new Reader(body, "malformed");
  if (r.u8() !== EVENT_FORMAT) throw new EventSealError("malformed", "publication of an unknown format");
  const epoch = r.u64();
  const length = r.u16();
  if (length > MAX_CREDENTIAL_BYTES) throw new EventSealError("malformed", `credential of ${length} bytes`);
  const credential = r.bytes(length);
  const signature = r.bytes(SIGNATURE_BYTES);
  if (body.length - r.p < minBox) throw new EventSealError("malformed", "publication truncated before its box");
  return { epoch, credential, signature, box: body.subarray(r.p) };
}

/**
 * The digest of everything a publication is bound to besides its payload: the topic, the
 * exact header bytes the fan-out sends with it, the epoch and the credential. It opens the box
 * plaintext (so the group key alone binds the header) and is signed by the publisher.
 * `sha256("zmcp-event/1" ‖ epoch u64 ‖ topic length u16 ‖ topic ‖ credential length u16 ‖
 * credential ‖ header length u32 ‖ header)`.
 */
export function contextDigest(topic: string, header: Uint8Array, epoch: number, credential: Uint8Array): Uint8Array {
  const t = utf8.encode(topic);
  return sha256(new Writer().bytes(CONTEXT_DOMAIN).u64(epoch).u16(t.length).bytes(t).u16(credential.length).bytes(credential).u32(header.length).bytes(header).done());
}

/** What a publisher signs: `"zmcp-event-signature/1" ‖ context digest ‖ sha256(box)`. */
export function signedMessage(context: Uint8Array, box: Uint8Array): Uint8Array {
  return concat(SIGNATURE_DOMAIN, context, sha256(box));
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Constant-time equality of two byte strings of the same length (false otherwise). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && nodeCrypto.timingSafeEqual(a, b);
}
