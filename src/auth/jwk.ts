/**
 * Authority keys: Ed25519 key pairs as JWK (RFC 8037: `kty: "OKP"`, `crv: "Ed25519"`), each
 * named by a `kid`, the RFC 7638 thumbprint of its public part. The authority signs tokens
 * with the private JWK; agents trust the public one.
 *
 * A trusted-keys file holds one public JWK or a JWK Set (`{"keys": [...]}`, RFC 7517 §5),
 * so several authorities can be trusted at once while one is rotated out.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { CertError } from "../errors.js";

const b64u32 = z.string().regex(/^[A-Za-z0-9_-]{43}$/, { message: "expected 32 bytes in base64url (43 characters)" });

/** An Ed25519 JWK; `d` (the private key) only in the authority's own file. */
export const AuthorityJwkSchema = z.looseObject({
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: b64u32,
  d: b64u32.optional(),
  kid: z.string().min(1).max(256).optional(),
  alg: z.enum(["EdDSA", "Ed25519"]).optional(),
  use: z.literal("sig").optional(),
});

export interface AuthorityJwk {
  kty: "OKP";
  crv: "Ed25519";
  /** Public key, base64url. */
  x: string;
  /** Private key, base64url; absent in a public JWK. */
  d?: string;
  /** Key id: the RFC 7638 thumbprint unless set otherwise. */
  kid: string;
  alg?: "EdDSA" | "Ed25519";
  use?: "sig";
}

/** RFC 7638 thumbprint (SHA-256, base64url) of an Ed25519 JWK: depends on the public key only. */
export function jwkThumbprint(jwk: { crv: string; kty: string; x: string }): string {
  // Required members only, in lexicographic order, no whitespace (RFC 7638 §3.2, RFC 8037 §2).
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return createHash("sha256").update(canonical).digest("base64url");
}

/** A fresh authority key pair. */
export function generateAuthority(): { privateJwk: Required<Pick<AuthorityJwk, "d">> & AuthorityJwk; publicJwk: AuthorityJwk } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" }) as { x: string; d: string };
  const publicJwk: AuthorityJwk = { kty: "OKP", crv: "Ed25519", x: jwk.x, kid: "", alg: "EdDSA", use: "sig" };
  publicJwk.kid = jwkThumbprint(publicJwk);
  return { privateJwk: { ...publicJwk, d: jwk.d }, publicJwk };
}

/** Checks a JWK value (from a file or a caller) and fills in `kid`. Throws CertError. */
export function parseAuthorityJwk(value: unknown, source = "JWK"): AuthorityJwk {
  const parsed = AuthorityJwkSchema.safeParse(value);
  if (!parsed.success) throw new CertError(`${source}: not an Ed25519 JWK: ${z.prettifyError(parsed.error)}`);
  const { kty, crv, x, d, kid, alg, use } = parsed.data;
  const jwk: AuthorityJwk = { kty, crv, x, kid: kid ?? jwkThumbprint({ kty, crv, x }) };
  if (d !== undefined) jwk.d = d;
  if (alg !== undefined) jwk.alg = alg;
  if (use !== undefined) jwk.use = use;
  if (d !== undefined) {
    // A private JWK whose x does not belong to d would sign tokens nobody can verify.
    let derived: string;
    try {
      derived = (createPublicKey(createPrivateKey({ key: { kty, crv, x, d }, format: "jwk" })).export({ format: "jwk" }) as { x: string }).x;
    } catch (err) {
      throw new CertError(`${source}: invalid Ed25519 private key: ${(err as Error).message}`, { cause: err });
    }
    if (derived !== x) throw new CertError(`${source}: private key d does not match public key x`);
  }
  return jwk;
}

/** The public part of a JWK (drops `d`). */
export function publicJwkOf(jwk: AuthorityJwk): AuthorityJwk {
  const { d: _d, ...pub } = jwk;
  return pub;
}

/** node:crypto key objects for verifying (public) and signing (private). */
export function publicKeyObject(jwk: AuthorityJwk): KeyObject {
  return createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: "jwk" });
}

export function privateKeyObject(jwk: AuthorityJwk): KeyObject {
  if (!jwk.d) throw new CertError(`JWK ${jwk.kid} has no private key (d); the authority's private .jwk file is needed`);
  return createPrivateKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d }, format: "jwk" });
}

/** Reads a JWK file or a JWK Set file (`{"keys": [...]}`). Throws CertError. */
export function loadJwkFile(path: string): AuthorityJwk[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new CertError(`cannot read JWK file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (raw !== null && typeof raw === "object" && "keys" in raw) {
    const keys = (raw as { keys: unknown }).keys;
    if (!Array.isArray(keys) || keys.length === 0) throw new CertError(`${path}: "keys" must be a non-empty array of JWKs`);
    return keys.map((k, i) => parseAuthorityJwk(k, `${path} keys[${i}]`));
  }
  return [parseAuthorityJwk(raw, path)];
}

/** Reads the authority's private JWK. Throws CertError if the file holds no private key. */
export function loadAuthorityPrivateKey(path: string): AuthorityJwk {
  const keys = loadJwkFile(path);
  const jwk = keys.length === 1 ? keys[0] : undefined;
  if (!jwk?.d) throw new CertError(`${path} holds no private authority key (a single JWK with "d" is expected)`);
  return jwk;
}

/**
 * Writes `<dir>/<name>.jwk` (private, mode 0600) and `<dir>/<name>.pub.jwk` (public, 0644).
 * Refuses to overwrite unless `force` is set.
 */
export function saveAuthority(
  privateJwk: AuthorityJwk,
  dir: string,
  name: string,
  options: { force?: boolean } = {},
): { privatePath: string; publicPath: string } {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith(".")) throw new CertError(`invalid authority name ${JSON.stringify(name)}`);
  if (!privateJwk.d) throw new CertError("saveAuthority needs the private JWK");
  const privatePath = join(dir, `${name}.jwk`);
  const publicPath = join(dir, `${name}.pub.jwk`);
  if (!options.force) {
    for (const p of [privatePath, publicPath]) {
      if (existsSync(p)) throw new CertError(`${p} exists; use --force to overwrite`);
    }
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(privatePath, JSON.stringify(privateJwk, null, 2) + "\n", { mode: 0o600 });
  chmodSync(privatePath, 0o600); // mode in writeFileSync does not apply to an existing file
  writeFileSync(publicPath, JSON.stringify(publicJwkOf(privateJwk), null, 2) + "\n", { mode: 0o644 });
  return { privatePath, publicPath };
}
