/**
 * Z85 (ZeroMQ RFC 32): the text form of CURVE keys. zeromq.js exports no codec, so this is
 * ours; it is checked against the RFC's test vector in test/z85.test.ts.
 */
const ALPHABET =
  "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/** Encodes bytes whose length is a multiple of 4. */
export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new RangeError(`z85: length ${data.length} is not a multiple of 4`);
  let out = "";
  for (let i = 0; i < data.length; i += 4) {
    // `>>> 0` keeps the 32-bit word unsigned.
    let value = ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
    let chunk = "";
    for (let j = 0; j < 5; j++) {
      chunk = ALPHABET[value % 85]! + chunk;
      value = Math.floor(value / 85);
    }
    out += chunk;
  }
  return out;
}

/** Decodes Z85 text whose length is a multiple of 5. Throws RangeError on invalid input. */
export function z85Decode(text: string): Uint8Array {
  if (text.length % 5 !== 0) throw new RangeError(`z85: length ${text.length} is not a multiple of 5`);
  const out = new Uint8Array((text.length / 5) * 4);
  for (let i = 0, o = 0; i < text.length; i += 5, o += 4) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const code = text.charCodeAt(i + j);
      const digit = code < 128 ? DECODE[code]! : -1;
      if (digit < 0) throw new RangeError(`z85: invalid character at ${i + j}`);
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) throw new RangeError(`z85: group at ${i} overflows 32 bits`);
    out[o] = value >>> 24;
    out[o + 1] = (value >>> 16) & 0xff;
    out[o + 2] = (value >>> 8) & 0xff;
    out[o + 3] = value & 0xff;
  }
  return out;
}

/**
 * True when `text` is the Z85 form of a 32-byte key (40 valid characters, no group above 32
 * bits). Allocates nothing: the broker asks this of every message's destination.
 */
export function isZ85Key(text: string): boolean {
  if (text.length !== 40) return false;
  for (let i = 0; i < 40; i += 5) {
    let value = 0;
    for (let j = i; j < i + 5; j++) {
      const code = text.charCodeAt(j);
      const digit = code < 128 ? DECODE[code]! : -1;
      if (digit < 0) return false;
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) return false;
  }
  return true;
}
