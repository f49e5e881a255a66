/**
 * A structural check of msgpack bytes before they are decoded.
 *
 * The decoder allocates an array of the declared size as soon as it reads an array header, so
 * five bytes (`dd 00 0f ff ff`) make it allocate a million slots (8 MB) before it has read a
 * single element; a few hundred such headers nested in a sealed body exhausted an agent's heap
 * and killed the process (found by test/fuzz.test.ts). This walk allocates nothing: it rejects
 * a container that declares more elements than bytes remain (each element takes at least one),
 * a string or binary longer than the data, nesting deeper than `maxDepth`, extension types
 * (which zmcp never sends), a map key `__proto__` (which the decoder refuses), and strings
 * (map keys included) that are not valid UTF-8, all in
 * one pass over the bytes. The UTF-8 check makes decoding strict: the decoder would otherwise
 * turn bad bytes into U+FFFD or lone surrogates, and a peer that decodes strictly (Python)
 * would refuse the same message, so both sides refuse it alike. Senders run this check too
 * (message.ts), so what a receiver would refuse is never sent.
 */
import { isUtf8 } from "node:buffer";
import { ProtocolError } from "../errors.js";

/**
 * Default cap on the values in one message, all containers together (a map entry counts two):
 * decoding cost grows with it, and the inner message is decoded before its token is checked.
 */
export const MAX_ELEMENTS = 100_000;

/**
 * Throws ProtocolError(bad_frame) unless `data` is structurally sound msgpack (see above) with
 * at most `maxElements` values in its containers, all together.
 */
export function checkMsgpack(data: Uint8Array, maxDepth: number, maxElements = MAX_ELEMENTS): void {
  // Written without closures or views: this runs on every message, twice (sender and receiver),
  // and helper closures and a view per string to check were most of its garbage (issue 12).
  let elements = 0;
  const end = data.length;
  let p = 0;
  // Values still to read in each open container; the bottom entry is the one top-level value.
  const open: number[] = [1];
  /** Whether each open container is a map (whose values at odd counts left are keys). */
  const maps: boolean[] = [false];
  while (open.length > 0) {
    const top = open.length - 1;
    if (open[top] === 0) {
      open.pop();
      maps.pop();
      continue;
    }
    open[top]!--;
    if (p >= end) throw bad("truncated", p);
    const b = data[p++]!;
    let skip = 0;
    let count = 0;
    /** The value is a str (not bin): its bytes must be UTF-8. */
    let text = false;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true
    } else if (b <= 0x8f) count = (b & 0x0f) * 2;
    else if (b <= 0x9f) count = b & 0x0f;
    else if (b <= 0xbf) {
      skip = b & 0x1f;
      text = true;
    } else {
      // The length or count that follows `b`: 1, 2 or 4 bytes, big-endian.
      const width = b === 0xc4 || b === 0xd9 ? 1 : b === 0xc5 || b === 0xda || b === 0xdc || b === 0xde ? 2 : b === 0xc6 || b === 0xdb || b === 0xdd || b === 0xdf ? 4 : 0;
      let n = 0;
      if (width > 0) {
        if (p + width > end) throw bad("truncated", p);
        n = width === 1 ? data[p]! : width === 2 ? (data[p]! << 8) | data[p + 1]! : data[p]! * 0x1000000 + ((data[p + 1]! << 16) | (data[p + 2]! << 8) | data[p + 3]!);
        p += width;
      }
      switch (b) {
        case 0xc4:
        case 0xc5:
        case 0xc6:
          skip = n;
          break;
        case 0xd9:
        case 0xda:
        case 0xdb:
          skip = n;
          text = true;
          break;
        case 0xcc:
        case 0xd0:
          skip = 1;
          break;
        case 0xcd:
        case 0xd1:
          skip = 2;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xdc:
        case 0xdd:
          count = n;
          break;
        case 0xde:
        case 0xdf:
          count = n * 2;
          break;
        default:
          throw bad(b === 0xc1 ? "the never-used byte 0xc1" : "extension types are not accepted", p);
      }
    }
    if (skip > 0) {
      if (p + skip > end) throw bad("truncated", p);
      if (text && !isUtf8At(data, p, skip)) throw bad("a string that is not valid UTF-8", p);
      // A map key `__proto__`: the decoder refuses the whole message (it would set a prototype).
      if (text && skip === 9 && maps[top] && (open[top]! & 1) === 1 && isProtoAt(data, p)) throw bad("a map key __proto__", p);
      p += skip;
    }
    if (count > 0) {
      if (count > end - p) throw bad(`a container declares ${count} values but ${end - p} bytes remain`, p);
      elements += count;
      if (elements > maxElements) throw bad(`more than ${maxElements} values in one message`, p);
      if (open.length > maxDepth) throw bad(`nested deeper than ${maxDepth}`, p);
      open.push(count);
      maps.push(b <= 0x8f || b === 0xde || b === 0xdf);
    }
  }
  if (p !== end) throw bad(`${end - p} bytes after the value`, p);
}

const PROTO = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]; // "__proto__"

function isProtoAt(data: Uint8Array, p: number): boolean {
  for (let i = 0; i < 9; i++) if (data[p + i] !== PROTO[i]) return false;
  return true;
}

function bad(why: string, p: number): ProtocolError {
  return new ProtocolError("bad_frame", `message is not acceptable msgpack: ${why} (at byte ${p})`);
}

/** Whether the `n` bytes at `p` are UTF-8: ASCII (map keys, names) by a plain loop, the rest by node's check. */
function isUtf8At(data: Uint8Array, p: number, n: number): boolean {
  const stop = p + n;
  for (let i = p; i < stop; i++) if (data[i]! > 0x7f) return isUtf8(data.subarray(i, stop));
  return true;
}

const u16At = (data: Uint8Array, at: number) => (data[at]! << 8) | data[at + 1]!;
const u32At = (data: Uint8Array, at: number) => data[at]! * 0x1000000 + ((data[at + 1]! << 16) | (data[at + 2]! << 8) | data[at + 3]!);

/**
 * The offset just past the value starting at `p`, in msgpack that {@link checkMsgpack} has
 * accepted (so every length is in range): lets a decoder set one value aside undecoded.
 */
export function skipValue(data: Uint8Array, p: number): number {
  let pending = 1;
  while (pending > 0) {
    pending--;
    const b = data[p++]!;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) continue;
    if (b <= 0x8f) pending += (b & 0x0f) * 2;
    else if (b <= 0x9f) pending += b & 0x0f;
    else if (b <= 0xbf) p += b & 0x1f;
    else {
      switch (b) {
        case 0xc4: case 0xd9: p += 1 + data[p]!; break;
        case 0xc5: case 0xda: p += 2 + u16At(data, p); break;
        case 0xc6: case 0xdb: p += 4 + u32At(data, p); break;
        case 0xcc: case 0xd0: p += 1; break;
        case 0xcd: case 0xd1: p += 2; break;
        case 0xca: case 0xce: case 0xd2: p += 4; break;
        case 0xcb: case 0xcf: case 0xd3: p += 8; break;
        case 0xdc: pending += u16At(data, p); p += 2; break;
        case 0xdd: pending += u32At(data, p); p += 4; break;
        case 0xde: pending += u16At(data, p) * 2; p += 2; break;
        case 0xdf: pending += u32At(data, p) * 2; p += 4; break;
        default: throw new ProtocolError("bad_frame", `message is not acceptable msgpack (at byte ${p - 1})`);
      }
    }
  }
  return p;
}
