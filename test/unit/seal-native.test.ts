/**
 * libsodium (sodium-native) against tweetnacl, the pure-JS reference, on random inputs: the
 * same bytes out, each opens the other's, both refuse the same tampering. The wire is v1
 * either way, so a native peer and a pure-JS peer (or the Python one) interoperate.
 */
import fc from "fast-check";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { jsBox, nativeBox, NONCE_BYTES, SEAL_OVERHEAD, TAG_BYTES, type BoxBackend } from "../../src/wire/box.js";
import { SEAL_BACKEND, Sealer } from "../../src/wire/seal.js";
import { generateCertificate } from "../../src/auth/certs.js";

const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
// Sizes from empty through several KiB, plus a few past the pure-JS scratch buffers (64 KiB + 32).
const plaintexts = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 4096 }) },
  { weight: 1, arbitrary: fc.integer({ min: 65_500, max: 70_000 }).map((n) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff)) },
);
const eq = (a: Uint8Array | undefined, b: Uint8Array | undefined) => a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));

describe("native crypto against the pure-JS reference", () => {
  it("sodium-native loads here and is the backend in use", () => {
    // The npm package ships a prebuilt binary for linux-x64; if it stops loading, the
    // comparisons below would compare nothing, so that is a failure here, not a skip.
    expect(nativeBox?.name).toBe("sodium-native");
    expect(SEAL_BACKEND).toBe(process.env["ZMCP_CRYPTO"] === "js" ? "tweetnacl" : "sodium-native");
  });

  const native = nativeBox as BoxBackend;

  it("seal gives the same bytes as tweetnacl, and as tweetnacl's high-level secretbox", () => {
    fc.assert(
      fc.property(bytes(32), bytes(NONCE_BYTES), plaintexts, (key, nonce, plaintext) => {
        const a = native.seal(key, nonce, plaintext);
        const b = jsBox.seal(key, nonce, plaintext);
        const boxed = nacl.secretbox(plaintext, nonce, key); // [tag][ciphertext]
        const reference = Buffer.concat([boxed.subarray(0, TAG_BYTES), nonce, boxed.subarray(TAG_BYTES)]);
        return a.length === SEAL_OVERHEAD + plaintext.length && eq(a, b) && eq(a, reference);
      }),
      { numRuns: 300 },
    );
  });

  it("each opens what the other sealed", () => {
    fc.assert(
      fc.property(bytes(32), bytes(NONCE_BYTES), plaintexts, (key, nonce, plaintext) => {
        return eq(native.open(key, jsBox.seal(key, nonce, plaintext)), plaintext) && eq(jsBox.open(key, native.seal(key, nonce, plaintext)), plaintext);
      }),
      { numRuns: 200 },
    );
  });

  it("both refuse the same tampered bodies and wrong keys", () => {
    fc.assert(
      fc.property(bytes(32), bytes(NONCE_BYTES), fc.uint8Array({ maxLength: 512 }), fc.nat(), fc.integer({ min: 1, max: 255 }), bytes(32), (key, nonce, plaintext, at, flip, otherKey) => {
        const body = native.seal(key, nonce, plaintext);
        const bad = Uint8Array.from(body);
        const i = at % bad.length;
        bad[i] = bad[i]! ^ flip;
        const wrongKey = eq(otherKey, key) ? undefined : otherKey;
        return (
          native.open(key, bad) === undefined &&
          jsBox.open(key, bad) === undefined &&
          (wrongKey === undefined || (native.open(wrongKey, body) === undefined && jsBox.open(wrongKey, body) === undefined))
        );
      }),
      { numRuns: 300 },
    );
  });

  it("the shared key (crypto_box_beforenm) is the same, and tweetnacl's box.before", () => {
    fc.assert(
      fc.property(bytes(32), bytes(32), (secret, peerSecret) => {
        const peerPublic = nacl.scalarMult.base(peerSecret);
        const a = native.sharedKey(peerPublic, secret);
        return eq(a, jsBox.sharedKey(peerPublic, secret)) && eq(a, nacl.box.before(peerPublic, secret));
      }),
      { numRuns: 100 },
    );
  });

  it("a low-order peer key gives tweetnacl's key on both (libsodium alone would refuse it)", () => {
    const secret = nacl.randomBytes(32);
    // The all-zero point and the point of order 2 (u = 1): X25519 with them is all zero.
    const one = new Uint8Array(32);
    one[0] = 1;
    for (const point of [new Uint8Array(32), one]) {
      const reference = nacl.box.before(point, secret);
      expect(eq(native.sharedKey(point, secret), reference)).toBe(true);
      expect(eq(jsBox.sharedKey(point, secret), reference)).toBe(true);
    }
  });

  it("a Sealer's output opens with the other backend's shared key and open", () => {
    const alice = generateCertificate();
    const bob = generateCertificate();
    const fromAlice = new Sealer(alice.secretKey);
    const body = fromAlice.seal(bob.publicKey, Buffer.from("hello bob"));
    const bobSecret = new Sealer(bob.secretKey);
    const key = bobSecret.sharedKey(alice.publicKey);
    expect(Buffer.from(jsBox.open(key, body)!).toString()).toBe("hello bob");
    expect(Buffer.from(native.open(key, body)!).toString()).toBe("hello bob");
  });

  it("openInPlace gives what open gives, over the body itself, and leaves a body that does not open as it was", () => {
    fc.assert(
      fc.property(bytes(32), bytes(NONCE_BYTES), plaintexts, fc.nat(), (key, nonce, plaintext, flip) => {
        for (const backend of [native, jsBox]) {
          const sealed = backend.seal(key, nonce, plaintext);
          const expected = backend.open(key, sealed);
          const body = Uint8Array.from(sealed);
          const opened = backend.openInPlace(key, body);
          if (!eq(opened, expected) && !(plaintext.length === 0 && opened?.length === 0)) return false;
          // libsodium's is the body's own memory (no allocation per open); a plain Uint8Array.
          if (backend === native && (opened?.buffer !== body.buffer || opened.constructor !== Uint8Array)) return false;
          // Tampered: refused, and the body is untouched (the tag is checked before anything is written).
          const tampered = Uint8Array.from(sealed);
          const at = flip % tampered.length;
          tampered[at] = tampered[at]! ^ 1;
          const before = Uint8Array.from(tampered);
          if (backend.openInPlace(key, tampered) !== undefined) return false;
          if (!Buffer.from(tampered).equals(Buffer.from(before))) return false;
        }
        return true;
      }),
      { numRuns: 200 },
    );
  });
});
