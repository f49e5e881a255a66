/**
 * The header's hot path: every message is a header encoded by its sender and decoded by the
 * broker and by its recipient, so this writes and reads the one map the broker reads by hand
 * instead of through the generic msgpack codec, its structure guard and the schema (issue 12:
 * about 4.7 µs per message in the broker, most of its own JavaScript).
 *
 * Both directions are fast paths only, never a second definition of the format:
 * - {@link encodeHeaderFast} writes exactly the bytes `@msgpack/msgpack` writes for the same
 *   object (fixmap, keys in insertion order, smallest integer form, str8 for 32–255 bytes),
 *   or returns undefined for anything outside the common shapes (non-ASCII text, floats,
 *   16 keys or more) so that the generic encoder writes it;
 * - {@link decodeHeaderFast} returns a header only for bytes it can vouch for completely
 *   (known keys once each, the expected types in their plain forms, nothing after the map) and
 *   undefined for everything else, which then goes through the generic decoder and the
 *   schema, which accept it or word the refusal. So both paths give the same result
 *   (test/unit/envelope-fastpath.test.ts and test/security/hotpath-attack-header-codec.test.ts
 *   compare them on probed, random and hostile input).
 */
import type { Header } from "./envelope.js";
import { MAX_ADDRESS_CHARS } from "./limits.js";

const KEY_NAMES = ["v", "k", "id", "to", "exp", "re", "as", "dur", "sq", "code", "msg"] as const;
type Key = (typeof KEY_NAMES)[number];
const KINDS: ReadonlySet<string> = new Set(["req", "res", "evt", "hb", "ack", "nack", "pub"]);
/** Longest `code` and `msg` the schema admits, characters (ASCII here: bytes). */
const MAX_CODE = 64;
const MAX_MSG = 1024;

/** The key at `p` of `frame` (a fixstr of 1–4 bytes), or undefined. */
function readKey(frame: Uint8Array, p: number): Key | undefined {
  const b = frame[p]!;
  const n = b - 0xa0;
  switch (n) {
    case 1: {
      const c = frame[p + 1];
      return c === 0x76 ? "v" : c === 0x6b ? "k" : undefined;
    }
    case 2: {
      const c = frame[p + 1];
      const d = frame[p + 2];
      if (c === 0x69 && d === 0x64) return "id";
      if (c === 0x74 && d === 0x6f) return "to";
      if (c === 0x72 && d === 0x65) return "re";
      if (c === 0x61 && d === 0x73) return "as";
      if (c === 0x73 && d === 0x71) return "sq";
      return undefined;
    }
    case 3: {
      const c = frame[p + 1];
      const d = frame[p + 2];
      const e = frame[p + 3];
      if (c === 0x65 && d === 0x78 && e === 0x70) return "exp";
      if (c === 0x64 && d === 0x75 && e === 0x72) return "dur";
      if (c === 0x6d && d === 0x73 && e === 0x67) return "msg";
      return undefined;
    }
    case 4:
      return frame[p + 1] === 0x63 && frame[p + 2] === 0x6f && frame[p + 3] === 0x64 && frame[p + 4] === 0x65 ? "code" : undefined;
    default:
      return undefined;
  }
}

const latin1Slice = Buffer.prototype.latin1Slice as (this: Uint8Array, start: number, end: number) => string;

/**
 * An ASCII string of `n` bytes at `p`, or undefined if any byte is not ASCII. Checked byte by
 * byte, then made in one native step: built a character at a time, a 40-character key left 40
 * intermediate strings behind (1.5 KB of garbage per header, the most of any function per call).
 */
function ascii(frame: Uint8Array, p: number, n: number): string | undefined {
  for (let i = p; i < p + n; i++) if (frame[i]! > 0x7f) return undefined;
  return latin1Slice.call(frame, p, p + n);
}

/**
 * The header in `frame` when it is in the plain form every implementation writes, else
 * undefined (the caller then decodes it the general way). Never throws on any input.
 */
export function decodeHeaderFast(frame: Uint8Array): Header | undefined {
  const len = frame.length;
  if (len < 1) return undefined;
  const first = frame[0]!;
  if (first < 0x80 || first > 0x8f) return undefined;
  const entries = first & 0x0f;
  const h: Record<string, unknown> = {};
  let seen = 0;
  let p = 1;
  for (let i = 0; i < entries; i++) {
    if (p >= len) return undefined;
    const key = readKey(frame, p);
    if (key === undefined) return undefined;
    const bit = 1 << KEY_NAMES.indexOf(key);
    if (seen & bit) return undefined; // a repeated key: the general path decides
    seen |= bit;
    p += 1 + key.length;
    if (p >= len) return undefined;
    const t = frame[p]!;
    switch (key) {
      case "v":
        if (t > 0x7f) return undefined;
        h["v"] = t;
        p += 1;
        break;
      case "k": {
        const n = t - 0xa0;
        if (n < 0 || n > 4 || p + 1 + n > len) return undefined;
        const kind = ascii(frame, p + 1, n);
        if (kind === undefined || !KINDS.has(kind)) return undefined;
        h["k"] = kind;
        p += 1 + n;
        break;
      }
      case "id":
      case "re":
        if (t !== 0xc4 || frame[p + 1] !== 16 || p + 18 > len) return undefined;
        h[key] = frame.subarray(p + 2, p + 18);
        p += 18;
        break;
      case "to":
      case "as":
      case "code":
      case "msg": {
        let n: number;
        let start: number;
        if (t >= 0xa0 && t <= 0xbf) [n, start] = [t - 0xa0, p + 1];
        else if (t === 0xd9 && p + 1 < len) [n, start] = [frame[p + 1]!, p + 2];
        else if (t === 0xda && p + 2 < len) [n, start] = [(frame[p + 1]! << 8) | frame[p + 2]!, p + 3];
        else return undefined;
        const max = key === "code" ? MAX_CODE : key === "msg" ? MAX_MSG : MAX_ADDRESS_CHARS;
        if (n > max || start + n > len) return undefined;
        const s = ascii(frame, start, n);
        if (s === undefined) return undefined;
        h[key] = s;
        p = start + n;
        break;
      }
      case "exp":
      case "sq": {
        let value: number;
        if (t <= 0x7f) [value, p] = [t, p + 1];
        else if (t === 0xcc && p + 1 < len) [value, p] = [frame[p + 1]!, p + 2];
        else if (t === 0xcd && p + 2 < len) [value, p] = [(frame[p + 1]! << 8) | frame[p + 2]!, p + 3];
        else if (t === 0xce && p + 4 < len) [value, p] = [readU32(frame, p + 1), p + 5];
        else if (t === 0xcf && p + 8 < len) {
          const hi = readU32(frame, p + 1);
          if (hi > 0x1fffff) return undefined; // above 2^53 - 1: the general path words it
          [value, p] = [hi * 0x100000000 + readU32(frame, p + 5), p + 9];
        } else return undefined;
        h[key] = value;
        break;
      }
      case "dur":
        if (t !== 0xc3) return undefined;
        h["dur"] = true;
        p += 1;
        break;
    }
  }
  // The five fields every header has (bits of v, k, id, to, exp), and nothing after the map.
  if ((seen & 0b11111) !== 0b11111 || p !== len) return undefined;
  return h as Header;
}

function readU32(frame: Uint8Array, p: number): number {
  return ((frame[p]! << 24) >>> 0) + ((frame[p + 1]! << 16) | (frame[p + 2]! << 8) | frame[p + 3]!);
}

/** Bytes written at most by the fast encoder: 11 keys and values well inside this. */
const SCRATCH = new Uint8Array(4096);
/** Room kept free before each value is written: a key (≤ 32 B) and a value's prefix (≤ 9 B). */
const SLACK = 64;

/**
 * The header's msgpack bytes, identical to what the generic encoder writes for the same
 * object, or undefined when a value is outside the plain forms (then the generic encoder runs).
 */
export function encodeHeaderFast(header: Header): Uint8Array | undefined {
  const out = SCRATCH;
  let p = 1;
  let entries = 0;
  for (const key of Object.keys(header)) {
    const value = (header as Record<string, unknown>)[key];
    if (value === undefined) continue; // ignoreUndefined, as the generic encoder is set up
    if (++entries > 15 || key.length > 31 || p + SLACK > out.length) return undefined;
    out[p++] = 0xa0 + key.length;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c > 0x7f) return undefined;
      out[p++] = c;
    }
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value) || value < 0) return undefined;
      if (value < 0x80) out[p++] = value;
      else if (value < 0x100) {
        out[p++] = 0xcc;
        out[p++] = value;
      } else if (value < 0x10000) {
        out[p++] = 0xcd;
        out[p++] = value >>> 8;
        out[p++] = value & 0xff;
      } else if (value < 0x100000000) {
        out[p++] = 0xce;
        p = writeU32(out, p, value);
      } else {
        out[p++] = 0xcf;
        p = writeU32(out, p, Math.floor(value / 0x100000000));
        p = writeU32(out, p, value >>> 0);
      }
    } else if (typeof value === "string") {
      const n = value.length;
      if (n < 32) out[p++] = 0xa0 + n;
      else if (n < 0x100) {
        out[p++] = 0xd9;
        out[p++] = n;
      } else if (n <= MAX_MSG) {
        out[p++] = 0xda;
        out[p++] = n >>> 8;
        out[p++] = n & 0xff;
      } else return undefined;
      if (p + n > out.length) return undefined;
      for (let i = 0; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) return undefined; // UTF-8 of more than one byte: the generic encoder
        out[p++] = c;
      }
    } else if (value instanceof Uint8Array) {
      if (value.length > 0xff || p + 2 + value.length > out.length) return undefined;
      out[p++] = 0xc4;
      out[p++] = value.length;
      out.set(value, p);
      p += value.length;
    } else if (value === true) out[p++] = 0xc3;
    else return undefined;
  }
  out[0] = 0x80 + entries;
  // From Node's pooled allocator: a small `new Uint8Array` is a malloc (issue 12's profile).
  const buf = Buffer.allocUnsafe(p);
  buf.set(out.subarray(0, p));
  return new Uint8Array(buf.buffer, buf.byteOffset, p);
}

function writeU32(out: Uint8Array, p: number, value: number): number {
  out[p] = value >>> 24;
  out[p + 1] = (value >>> 16) & 0xff;
  out[p + 2] = (value >>> 8) & 0xff;
  out[p + 3] = value & 0xff;
  return p + 4;
}
