/**
 * The NaCl primitives behind seal.ts, in two implementations that give identical bytes:
 * libsodium through sodium-native (prebuilt binaries shipped in its npm package), and
 * tweetnacl, the pure-JS reference that the tests compare it with (test/unit/seal-native.test.ts).
 *
 * Why native: at 256 B the pure-JS secretbox costs about 25 µs per seal or open, at 64 KiB
 * about 1 ms; libsodium does both in a few µs. The wire does not change (protocol v1): a
 * native peer and a pure-JS peer read each other's bytes.
 *
 * Which one runs: sodium-native when it loads, tweetnacl when it does not (a platform without
 * a prebuilt binary) or when `ZMCP_CRYPTO=js` asks for it (benchmarks, debugging).
 */
import { createRequire } from "node:module";
import nacl from "tweetnacl";

export const KEY_BYTES = 32;
export const TAG_BYTES = 16;
export const NONCE_BYTES = 24;
/** `[tag 16 B][nonce 24 B]` in front of the ciphertext. */
export const SEAL_OVERHEAD = TAG_BYTES + NONCE_BYTES;

/** One implementation of what seal.ts needs. */
export interface BoxBackend {
  readonly name: "sodium-native" | "tweetnacl";
  /**
   * NaCl `crypto_box_beforenm(peerPublic, secret)`: X25519 then HSalsa20, exactly as
   * tweetnacl computes it, also for a low-order peer key (see SECURITY.md, issue 12).
   */
  sharedKey(peerPublic: Uint8Array, secret: Uint8Array): Uint8Array;
  /** `[tag][nonce][XSalsa20-Poly1305 ciphertext]` of `plaintext` under `key` with `nonce`. */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** The plaintext of a body at least {@link SEAL_OVERHEAD} long, or undefined if it does not open. */
  open(key: Uint8Array, body: Uint8Array): Uint8Array | undefined;
  /**
   * As {@link open}, but the plaintext may be written over the body's own ciphertext and
   * returned as a view of it (libsodium checks the tag before it writes anything, so a body that
   * does not open is left as it was): no allocation proportional to the message. Only for a
   * body nothing else reads afterwards (a received frame, inbound.ts).
   */
  openInPlace(key: Uint8Array, body: Uint8Array): Uint8Array | undefined;
}

// --- helpers shared by both ---------------------------------------------------------------

const SIGMA = new TextEncoder().encode("expand 32-byte k");
const ZERO_NONCE16 = new Uint8Array(16);

/** tweetnacl's low-level functions (not in its typings). */
const lowlevel = (nacl as unknown as { lowlevel: NaclLowLevel }).lowlevel;
interface NaclLowLevel {
  crypto_secretbox(c: Uint8Array, m: Uint8Array, length: number, nonce: Uint8Array, key: Uint8Array): number;
  crypto_secretbox_open(m: Uint8Array, c: Uint8Array, length: number, nonce: Uint8Array, key: Uint8Array): number;
  crypto_core_hsalsa20(out: Uint8Array, input: Uint8Array, key: Uint8Array, sigma: Uint8Array): number;
}

/** HSalsa20 of an X25519 result with a zero input: the second half of `crypto_box_beforenm`. */
function hsalsa(shared: Uint8Array): Uint8Array {
  const key = new Uint8Array(KEY_BYTES);
  lowlevel.crypto_core_hsalsa20(key, ZERO_NONCE16, shared, SIGMA);
  return key;
}

/**
 * A byte array of `length` from Node's pooled allocator (no malloc for small sizes, no
 * zero fill), as a plain Uint8Array so that no caller gets Buffer's view-returning `slice`.
 */
function allocUnsafe(length: number): Uint8Array {
  const buf = Buffer.allocUnsafe(length);
  return new Uint8Array(buf.buffer, buf.byteOffset, length);
}

// --- tweetnacl ----------------------------------------------------------------------------

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

export const jsBox: BoxBackend = {
  name: "tweetnacl",
  sharedKey(peerPublic, secret) {
    return hsalsa(nacl.scalarMult(secret, peerPublic));
  },
  seal(key, nonce, plaintext) {
    // tweetnacl's low-level secretbox wants 32 zero bytes before the plaintext and writes 16
    // zero bytes before the tag.
    const length = ZERO_BYTES + plaintext.length;
    const [m, c] = scratch(length);
    m.fill(0, 0, ZERO_BYTES);
    m.set(plaintext, ZERO_BYTES);
    lowlevel.crypto_secretbox(c, m, length, nonce, key); // c: [16 zero][tag][ciphertext]
    const out = new Uint8Array(SEAL_OVERHEAD + plaintext.length);
    out.set(c.subarray(BOX_ZERO_BYTES, ZERO_BYTES), 0);
    out.set(nonce, TAG_BYTES);
    out.set(c.subarray(ZERO_BYTES, length), SEAL_OVERHEAD);
    return out;
  },
  open(key, body) {
    const length = ZERO_BYTES + body.length - SEAL_OVERHEAD;
    const [c, m] = scratch(length);
    c.fill(0, 0, BOX_ZERO_BYTES);
    c.set(body.subarray(0, TAG_BYTES), BOX_ZERO_BYTES);
    c.set(body.subarray(SEAL_OVERHEAD), ZERO_BYTES);
    if (lowlevel.crypto_secretbox_open(m, c, length, body.subarray(TAG_BYTES, SEAL_OVERHEAD), key) !== 0) return undefined;
    // A copy: decoded values (msgpack bin) are views into what this returns.
    return m.slice(ZERO_BYTES, length);
  },
  openInPlace(key, body) {
    return jsBox.open(key, body);
  },
};

// --- sodium-native ------------------------------------------------------------------------

/** The part of sodium-native used here (it ships no typings). */
interface Sodium {
  crypto_hash_sha256(out: Uint8Array, input: Uint8Array): void;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_secretbox_detached(c: Uint8Array, mac: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_detached(m: Uint8Array, c: Uint8Array, mac: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
}

function loadSodium(): Sodium | undefined {
  try {
    return createRequire(import.meta.url)("sodium-native") as Sodium;
  } catch {
    return undefined; // no prebuilt binary for this platform: the pure-JS reference serves
  }
}

function nativeBackend(sodium: Sodium): BoxBackend {
  return {
    name: "sodium-native",
    sharedKey(peerPublic, secret) {
      const shared = new Uint8Array(KEY_BYTES);
      try {
        sodium.crypto_scalarmult(shared, secret, peerPublic);
      } catch {
        // libsodium refuses an all-zero result (a low-order peer key); protocol v1 as
        // tweetnacl speaks it does not, so the two give the same key here too.
        return jsBox.sharedKey(peerPublic, secret);
      }
      // HSalsa20 of 32 bytes is a few µs in JS and runs once per peer (the shared key is cached).
      return hsalsa(shared);
    },
    seal(key, nonce, plaintext) {
      // Written in place: tag and ciphertext straight into the output, no scratch, no copy.
      const out = allocUnsafe(SEAL_OVERHEAD + plaintext.length);
      out.set(nonce, TAG_BYTES);
      sodium.crypto_secretbox_detached(out.subarray(SEAL_OVERHEAD), out.subarray(0, TAG_BYTES), plaintext, nonce, key);
      return out;
    },
    open(key, body) {
      const plaintext = allocUnsafe(body.length - SEAL_OVERHEAD);
      const ok = sodium.crypto_secretbox_open_detached(plaintext, body.subarray(SEAL_OVERHEAD), body.subarray(0, TAG_BYTES), body.subarray(TAG_BYTES, SEAL_OVERHEAD), key);
      return ok ? plaintext : undefined;
    },
    openInPlace(key, body) {
      // A 1 MiB message allocated 1 MiB more per open, and the garbage collector, driven by
      // that external memory, took over a third of an agent's time at 1 MiB (issue 12).
      const text = new Uint8Array(body.buffer, body.byteOffset + SEAL_OVERHEAD, body.length - SEAL_OVERHEAD);
      const ok = sodium.crypto_secretbox_open_detached(text, text, body.subarray(0, TAG_BYTES), body.subarray(TAG_BYTES, SEAL_OVERHEAD), key);
      return ok ? text : undefined;
    },
  };
}

const sodium = loadSodium();

/** libsodium's implementation, or undefined where sodium-native does not load. */
export const nativeBox: BoxBackend | undefined = sodium ? nativeBackend(sodium) : undefined;

/**
 * SHA-256 of `data` by libsodium into `out` (default: a slice of Node's buffer pool), or undefined
 * where sodium-native does not load or `ZMCP_CRYPTO=js` asks for the pure-JS path (then
 * node:crypto hashes). The header digest of every message (envelope.ts).
 */
export const sha256Into: ((data: Uint8Array, out?: Uint8Array) => Uint8Array) | undefined =
  sodium && process.env["ZMCP_CRYPTO"] !== "js"
    ? (data, out = allocUnsafe(32)) => {
        sodium.crypto_hash_sha256(out, data);
        return out;
      }
    : undefined;

/** The implementation in use: native unless unavailable or `ZMCP_CRYPTO=js`. */
export const box: BoxBackend = process.env["ZMCP_CRYPTO"] === "js" || !nativeBox ? jsBox : nativeBox;
