/**
 * Random bytes for ids and nonces, read from the CSPRNG 4 KiB at a time: one
 * `randomFillSync` call costs about as much for 4 KiB as for 16 bytes (2 to 8 µs, most of it
 * crossing into C++), and a call needs three or four of them. Each result is a view of a
 * range that no other call is given.
 */
import { randomFillSync } from "node:crypto";

const POOL_BYTES = 4096;
let pool = new Uint8Array(0);
let offset = 0;

/** `n` fresh random bytes (n <= 4096). */
export function randomBytesPooled(n: number): Uint8Array {
  if (offset + n > pool.length) {
    pool = randomFillSync(new Uint8Array(POOL_BYTES));
    offset = 0;
  }
  const out = pool.subarray(offset, offset + n);
  offset += n;
  return out;
}
