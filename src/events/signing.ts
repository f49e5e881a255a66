/**
 * Ed25519 for event credentials and publisher signatures, in two implementations that give
 * identical bytes (Ed25519 is deterministic): libsodium through sodium-native, and node:crypto
 * (OpenSSL) where sodium-native does not load. Never tweetnacl: its verify costs ~8 ms, and a
 * subscriber verifies one signature per publication (docs/EVENTS.md).
 *
 * Which one runs follows src/wire/box.ts: sodium-native unless it does not load or
 * `ZMCP_CRYPTO=js` asks for the fallback (benchmarks, debugging).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto";
import { createRequire } from "node:module";
import { RecencyMap } from "../support/recency-map.js";

export const SIGN_PUBLIC_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** A signing key of this process: its public half, and signing with the secret half. */
export interface SigningKey {
  readonly publicKey: Uint8Array;
  sign(message: Uint8Array): Uint8Array;
}

export interface SignBackend {
  readonly name: "sodium-native" | "node:crypto";
  /** A fresh key pair. */
  generate(): SigningKey;
  /** The key pair of a 32-byte seed (tests compare the two backends with it). */
  fromSeed(seed: Uint8Array): SigningKey;
  /** False for a signature that does not verify, or a public key that is not one. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
}

// --- node:crypto ----------------------------------------------------------------------------

const b64u = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");

function nodeKey(privateKey: KeyObject): SigningKey {
  const jwk = privateKey.export({ format: "jwk" });
  const publicKey = new Uint8Array(Buffer.from(jwk.x!, "base64url"));
  return { publicKey, sign: (message) => new Uint8Array(nodeSign(null, message, privateKey)) };
}

/** Public KeyObjects of the keys verified lately: building one costs more than a verify's setup. */
const publicKeys = new RecencyMap<string, KeyObject | null>(1024);

function nodePublicKey(publicKey: Uint8Array): KeyObject | null {
  const id = b64u(publicKey);
  let key = publicKeys.get(id);
  if (key === undefined) {
    try {
      key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: id }, format: "jwk" });
    } catch {
      key = null; // not a point on the curve: nothing verifies with it
    }
    publicKeys.set(id, key);
  }
  return key;
}

export const nodeSigning: SignBackend = {
  name: "node:crypto",
  generate: () => nodeKey(generateKeyPairSync("ed25519").privateKey),
  fromSeed(seed) {
    // The public half is derived by OpenSSL from `d`; a JWK needs an `x`, so take it from a first import.
    const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
    return nodeKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }));
  },
  verify(publicKey, message, signature) {
    if (publicKey.length !== SIGN_PUBLIC_BYTES || signature.length !== SIGNATURE_BYTES) return false;
    const key = nodePublicKey(publicKey);
    if (key === null) return false;
    try {
      return nodeVerify(null, message, key, signature);
    } catch {
      return false;
    }
  },
};

// --- sodium-native --------------------------------------------------------------------------

/** The part of sodium-native used here (it ships no typings). */
interface Sodium {
  crypto_sign_keypair(pk: Uint8Array, sk: Uint8Array): void;
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void;
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
}

function loadSodium(): Sodium | undefined {
  try {
    return createRequire(import.meta.url)("sodium-native") as Sodium;
  } catch {
    return undefined;
  }
}

function sodiumKey(sodium: Sodium, publicKey: Uint8Array, secretKey: Uint8Array): SigningKey {
  return {
    publicKey,
    sign(message) {
      const signature = new Uint8Array(SIGNATURE_BYTES);
      sodium.crypto_sign_detached(signature, message, secretKey);
      return signature;
    },
  };
}

function sodiumBackend(sodium: Sodium): SignBackend {
  return {
    name: "sodium-native",
    generate() {
      const pk = new Uint8Array(SIGN_PUBLIC_BYTES);
      const sk = new Uint8Array(64);
      sodium.crypto_sign_keypair(pk, sk);
      return sodiumKey(sodium, pk, sk);
    },
    fromSeed(seed) {
      const pk = new Uint8Array(SIGN_PUBLIC_BYTES);
      const sk = new Uint8Array(64);
      sodium.crypto_sign_seed_keypair(pk, sk, seed);
      return sodiumKey(sodium, pk, sk);
    },
    verify(publicKey, message, signature) {
      if (publicKey.length !== SIGN_PUBLIC_BYTES || signature.length !== SIGNATURE_BYTES) return false;
      try {
        return sodium.crypto_sign_verify_detached(signature, message, publicKey);
      } catch {
        return false;
      }
    },
  };
}

const sodium = loadSodium();

/** libsodium's Ed25519, or undefined where sodium-native does not load. */
export const nativeSigning: SignBackend | undefined = sodium ? sodiumBackend(sodium) : undefined;

/** The implementation in use: native unless unavailable or `ZMCP_CRYPTO=js`. */
export const signing: SignBackend = process.env["ZMCP_CRYPTO"] === "js" || !nativeSigning ? nodeSigning : nativeSigning;
