/** The sealed body layout is the wire format: it must not change with how it is computed. */
import { randomBytes } from "node:crypto";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../../src/errors.js";
import { NONCE_BYTES, openWith, SEAL_OVERHEAD, sealWith, TAG_BYTES } from "../../src/wire/seal.js";

/** The layout as DESIGN.md states it, built with tweetnacl's high-level API. */
function referenceSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const boxed = nacl.secretbox(plaintext, nonce, key); // [tag][ciphertext]
  return Buffer.concat([boxed.subarray(0, TAG_BYTES), nonce, boxed.subarray(TAG_BYTES)]);
}
function referenceOpen(key: Uint8Array, body: Uint8Array): Uint8Array | null {
  const boxed = Buffer.concat([body.subarray(0, TAG_BYTES), body.subarray(SEAL_OVERHEAD)]);
  return nacl.secretbox.open(boxed, body.subarray(TAG_BYTES, SEAL_OVERHEAD), key);
}

// Sizes around the reused scratch buffers (1 KiB, then 64 KiB + 32), in an order that
// shrinks after growing, so stale scratch contents would show.
const SIZES = [0, 1, 300, 1023, 1024, 5000, 65_536, 65_537, 200_000, 10, 70_000, 64];

describe("sealWith / openWith", () => {
  it("produce and read [tag][nonce][ciphertext] exactly as tweetnacl's secretbox", () => {
    const key = randomBytes(32);
    for (const size of SIZES) {
      const plaintext = randomBytes(size);
      const body = sealWith(key, plaintext);
      expect(body.length).toBe(SEAL_OVERHEAD + size);
      const nonce = body.subarray(TAG_BYTES, TAG_BYTES + NONCE_BYTES);
      expect(Buffer.from(body).equals(Buffer.from(referenceSeal(key, nonce, plaintext)))).toBe(true);
      expect(Buffer.from(referenceOpen(key, body)!).equals(plaintext)).toBe(true);
      expect(Buffer.from(openWith(key, referenceSeal(key, randomBytes(24), plaintext))).equals(plaintext)).toBe(true);
    }
  });

  it("returns plaintexts that later calls do not overwrite", () => {
    const key = randomBytes(32);
    const a = randomBytes(500);
    const openedA = openWith(key, sealWith(key, a));
    openWith(key, sealWith(key, randomBytes(500)));
    sealWith(key, randomBytes(800));
    expect(Buffer.from(openedA).equals(a)).toBe(true);
  });

  it("refuses a tampered body, a wrong key and a short body with bad_seal", () => {
    const key = randomBytes(32);
    const body = sealWith(key, randomBytes(100));
    for (const at of [0, TAG_BYTES, SEAL_OVERHEAD, body.length - 1]) {
      const bad = Uint8Array.from(body);
      bad[at] = bad[at]! ^ 1;
      expect(() => openWith(key, bad)).toThrow(expect.objectContaining({ code: "bad_seal", message: "sealed body did not open (wrong key or tampered)" }));
    }
    expect(() => openWith(randomBytes(32), body)).toThrow(ProtocolError);
    expect(() => openWith(key, body.subarray(0, SEAL_OVERHEAD - 1))).toThrow(
      expect.objectContaining({ code: "bad_seal", message: `sealed body of ${SEAL_OVERHEAD - 1} bytes is shorter than ${SEAL_OVERHEAD}` }),
    );
  });
});
