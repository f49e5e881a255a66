/**
 * End-to-end sealing: a NaCl box (X25519 + XSalsa20-Poly1305) from the sender's curve key
 * to the recipient's, laid out as `[Poly1305 tag 16 B][nonce 24 B][ciphertext]`.
 *
 * The X25519 step costs ~0.7 ms in tweetnacl, so the shared key is computed once per peer
 * and cached; each message then costs one secretbox.
 */
import nacl from "tweetnacl";
import { ProtocolError } from "../errors.js";
import { randomBytesPooled } from "./random.js";
import { z85Decode } from "./z85.js";
import { RecencyMap } from "../support/recency-map.js";

export const TAG_BYTES = 16;
export const NONCE_BYTES = 24;
export const SEAL_OVERHEAD = TAG_BYTES + NONCE_BYTES;

/** tweetnacl's low-level secretbox (not in its typings): buffers led by 32 (plaintext) or 16 (box) zero bytes. */
const lowlevel = (nacl as unknown as { lowlevel: NaclLowLevel }).lowlevel;
interface NaclLowLevel {
  crypto_secretbox(c: Uint8Array, m: Uint8Array, length: number, nonce: Uint8Array, key: Uint8Array): number;
  crypto_secretbox_open(m: Uint8Array, c: Uint8Array, length: number, nonce: Uint8Array, key: Uint8Array): number;
}
const ZERO_BYTES = 32;
const BOX_ZERO_BYTES = 16;
/** Scratch buffers are kept for messages up to this size; larger ones get their own. */
const SCRATCH_MAX = 64 * 1024 + ZERO_BYTES;
let scratchA = new Uint8Array(0);
let scratchB = new Uint8Array(0);

/**
 * Two work buffers of at least `length` bytes, reused between calls: seal and open are
 * synchronous and nothing they return points into them. Saves two allocations per message.
 */
function scratch(length: number): [Uint8Array, Uint8Array] {
  if (length > SCRATCH_MAX) return [new Uint8Array(length), new Uint8Array(length)];
  if (scratchA.length < length) {
    scratchA = new Uint8Array(Math.max(length, 1024));
    scratchB = new Uint8Array(Math.max(length, 1024));
  }
  return [scratchA, scratchB];
}

/** Seals with a precomputed shared key. */
export function sealWith(sharedKey: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const nonce = randomBytesPooled(NONCE_BYTES);
  const length = ZERO_BYTES + plaintext.length;
  const [m, c] = scratch(length);
  m.fill(0, 0, ZERO_BYTES);
  m.set(plaintext, ZERO_BYTES);
  lowlevel.crypto_secretbox(c, m, length, nonce, sharedKey); // c: [16 zero][tag][ciphertext]
  const out = new Uint8Array(SEAL_OVERHEAD + plaintext.length);
  out.set(c.subarray(BOX_ZERO_BYTES, ZERO_BYTES), 0);
  out.set(nonce, TAG_BYTES);
  out.set(c.subarray(ZERO_BYTES, length), SEAL_OVERHEAD);
  return out;
}

/** Opens with a precomputed shared key. Throws ProtocolError(bad_seal). */
export function openWith(sharedKey: Uint8Array, body: Uint8Array): Uint8Array {
  if (body.length < SEAL_OVERHEAD) throw new ProtocolError("bad_seal", `sealed body of ${body.length} bytes is shorter than ${SEAL_OVERHEAD}`);
  const length = ZERO_BYTES + body.length - SEAL_OVERHEAD;
  const [c, m] = scratch(length);
  c.fill(0, 0, BOX_ZERO_BYTES);
  c.set(body.subarray(0, TAG_BYTES), BOX_ZERO_BYTES);
  c.set(body.subarray(SEAL_OVERHEAD), ZERO_BYTES);
  if (lowlevel.crypto_secretbox_open(m, c, length, body.subarray(TAG_BYTES, SEAL_OVERHEAD), sharedKey) !== 0) {
    throw new ProtocolError("bad_seal", "sealed body did not open (wrong key or tampered)");
  }
  // A copy: decoded values (msgpack bin) are views into what this returns.
  return m.slice(ZERO_BYTES, length);
}

/**
 * One agent's sealing keys: its secret key and a bounded cache of shared keys per peer
 * (Z85 public key → X25519 shared key).
 */
export class Sealer {
  readonly #secretKey: Uint8Array;
  readonly #cache: RecencyMap<string, Uint8Array>;

  /**
   * @param secretKeyZ85 the agent's Z85 secret key
   * @param maxPeers shared keys kept (least recently used dropped first); default 10,000
   */
  constructor(
    secretKeyZ85: string,
    private readonly maxPeers = 10_000,
  ) {
    this.#secretKey = z85Decode(secretKeyZ85);
    this.#cache = new RecencyMap(maxPeers);
  }

  /** The shared key with `peer` (Z85 public key), computed once and cached. */
  sharedKey(peer: string): Uint8Array {
    let key = this.#cache.get(peer);
    if (key) {
      return key;
    }
    let peerKey: Uint8Array;
    try {
      peerKey = z85Decode(peer);
    } catch (err) {
      throw new ProtocolError("bad_seal", `peer key is not Z85`, { cause: err });
    }
    if (peerKey.length !== 32) throw new ProtocolError("bad_seal", `peer key is ${peerKey.length} bytes, not 32`);
    key = nacl.box.before(peerKey, this.#secretKey);
    this.#cache.set(peer, key);
    return key;
  }

  seal(peer: string, plaintext: Uint8Array): Uint8Array {
    return sealWith(this.sharedKey(peer), plaintext);
  }

  open(peer: string, body: Uint8Array): Uint8Array {
    return openWith(this.sharedKey(peer), body);
  }
}
