/**
 * End-to-end sealing: a NaCl box (X25519 + XSalsa20-Poly1305) from the sender's curve key
 * to the recipient's, laid out as `[Poly1305 tag 16 B][nonce 24 B][ciphertext]`.
 *
 * The X25519 step is computed once per peer and cached; each message then costs one
 * secretbox. The primitives come from wire/box.ts: libsodium (sodium-native) when it loads,
 * else tweetnacl; both give the same bytes.
 */
import { box, NONCE_BYTES, SEAL_OVERHEAD, TAG_BYTES } from "./box.js";
import { ProtocolError } from "../errors.js";
import { randomBytesPooled } from "./random.js";
import { z85Decode } from "./z85.js";
import { RecencyMap } from "../support/recency-map.js";

export { NONCE_BYTES, SEAL_OVERHEAD, TAG_BYTES };

/** Which implementation seals here: "sodium-native" or "tweetnacl" (see wire/box.ts). */
export const SEAL_BACKEND = box.name;

/** Seals with a precomputed shared key. */
export function sealWith(sharedKey: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return box.seal(sharedKey, randomBytesPooled(NONCE_BYTES), plaintext);
}

/** Opens with a precomputed shared key. Throws ProtocolError(bad_seal). */
export function openWith(sharedKey: Uint8Array, body: Uint8Array): Uint8Array {
  if (body.length < SEAL_OVERHEAD) throw new ProtocolError("bad_seal", `sealed body of ${body.length} bytes is shorter than ${SEAL_OVERHEAD}`);
  const plaintext = box.open(sharedKey, body);
  if (!plaintext) throw new ProtocolError("bad_seal", "sealed body did not open (wrong key or tampered)");
  return plaintext;
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
    key = box.sharedKey(peerKey, this.#secretKey);
    this.#cache.set(peer, key);
    return key;
  }

  seal(peer: string, plaintext: Uint8Array): Uint8Array {
    return sealWith(this.sharedKey(peer), plaintext);
  }

  open(peer: string, body: Uint8Array): Uint8Array {
    return openWith(this.sharedKey(peer), body);
  }

  /** As {@link open}, decrypting over the body itself (box.ts openInPlace): for a received frame read once. */
  openInPlace(peer: string, body: Uint8Array): Uint8Array {
    const sharedKey = this.sharedKey(peer);
    if (body.length < SEAL_OVERHEAD) throw new ProtocolError("bad_seal", `sealed body of ${body.length} bytes is shorter than ${SEAL_OVERHEAD}`);
    const plaintext = box.openInPlace(sharedKey, body);
    if (!plaintext) throw new ProtocolError("bad_seal", "sealed body did not open (wrong key or tampered)");
    return plaintext;
  }
}
