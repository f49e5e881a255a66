/**
 * CURVE certificates in the czmq/pyzmq text format (zconfig), byte-compatible both ways:
 *
 * ```
 * #   ****  Generated on ... by zmcp  ****
 * #   ZeroMQ CURVE **Secret** Certificate
 * #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.
 *
 * metadata
 *     name = "agent-7"
 * curve
 *     public-key = "<40 Z85 chars>"
 *     secret-key = "<40 Z85 chars>"
 * ```
 *
 * `NAME.key` is the public certificate (no secret-key line), `NAME.key_secret` the secret one.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { basename, join } from "node:path";
import nacl from "tweetnacl";
import { CertError } from "../errors.js";
import { isZ85Key, z85Decode, z85Encode } from "../wire/z85.js";

export interface Certificate {
  /** Z85 text of the 32-byte Curve25519 public key: the agent's address on the mesh. */
  publicKey: string;
  /** Z85 text of the secret key; absent in a public certificate. */
  secretKey?: string;
  /** The `metadata` section, as written (czmq allows any key = value pairs). */
  metadata: Record<string, string>;
}

/** A fresh Curve25519 key pair, usable both by CurveZMQ and by `nacl.box`. */
export function generateCertificate(metadata: Record<string, string> = {}): Required<Certificate> {
  const kp = nacl.box.keyPair();
  return { publicKey: z85Encode(kp.publicKey), secretKey: z85Encode(kp.secretKey), metadata: { ...metadata } };
}

/** The public key that belongs to a Z85 secret key. */
export function publicKeyOf(secretKey: string): string {
  return z85Encode(nacl.box.keyPair.fromSecretKey(z85Decode(secretKey)).publicKey);
}

function quote(value: string): string {
  // zconfig has no escapes; a double quote inside a value cannot be written.
  if (/["\n\r]/.test(value)) throw new CertError(`metadata value ${JSON.stringify(value)} may not hold quotes or newlines`);
  return `"${value}"`;
}

/** Serialises a certificate exactly as czmq's `zcert_save` lays it out. */
export function formatCertificate(cert: Certificate, kind: "public" | "secret", now = new Date()): string {
  const stamp = now.toISOString().replace("T", " ").replace("Z", "");
  const banner =
    kind === "secret"
      ? ["#   ZeroMQ CURVE **Secret** Certificate", "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."]
      : [
          "#   ZeroMQ CURVE Public Certificate",
          "#   Exchange securely, or use a secure mechanism to verify the contents",
          "#   of this file after exchange. Store public certificates in your home",
          "#   directory, in the .curve subdirectory.",
        ];
  const lines = [`#   ****  Generated on ${stamp} by zmcp  ****`, ...banner, ""];
  lines.push("metadata");
  for (const [key, value] of Object.entries(cert.metadata)) {
    if (!/^[A-Za-z0-9_.$-][A-Za-z0-9_.$/-]*$/.test(key)) throw new CertError(`invalid metadata name ${JSON.stringify(key)}`);
    lines.push(`    ${key} = ${quote(value)}`);
  }
  lines.push("curve", `    public-key = ${quote(cert.publicKey)}`);
  if (kind === "secret") {
    if (!cert.secretKey) throw new CertError("a secret certificate needs a secret key");
    lines.push(`    secret-key = ${quote(cert.secretKey)}`);
  }
  return lines.join("\n") + "\n";
}

function unquote(raw: string): string {
  const v = raw.trim();
  if ((v.startsWith('"') && v.endsWith('"') && v.length >= 2) || (v.startsWith("'") && v.endsWith("'") && v.length >= 2)) {
    return v.slice(1, -1);
  }
  // A bare value may carry a trailing comment.
  const hash = v.indexOf("#");
  return (hash >= 0 ? v.slice(0, hash) : v).trim();
}

/**
 * Parses a certificate written by zmcp, czmq (`zcert_save`) or pyzmq
 * (`zmq.auth.create_certificates`). `source` names the file in error messages.
 */
export function parseCertificate(text: string, source = "certificate"): Certificate {
  const sections: Record<string, Record<string, string>> = Object.create(null);
  let current: Record<string, string> | undefined;
  for (const rawLine of text.split(/\r?\n/)) {
    const trimmed = rawLine.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const indented = /^\s/.test(rawLine);
    const eq = trimmed.indexOf("=");
    if (!indented) {
      // A top-level line opens a section ("metadata", "curve"); zconfig also allows "name = value" there.
      const name = (eq >= 0 ? trimmed.slice(0, eq) : trimmed).trim();
      current = sections[name] ??= Object.create(null);
      continue;
    }
    if (!current || eq < 0) continue;
    current[trimmed.slice(0, eq).trim()] = unquote(trimmed.slice(eq + 1));
  }
  const curve = sections["curve"];
  const publicKey = curve?.["public-key"];
  if (!publicKey) throw new CertError(`${source}: no curve public-key`);
  if (!isZ85Key(publicKey)) throw new CertError(`${source}: public-key is not 40 Z85 characters`);
  const cert: Certificate = { publicKey, metadata: { ...(sections["metadata"] ?? {}) } };
  const secretKey = curve["secret-key"];
  if (secretKey !== undefined && secretKey !== "") {
    if (!isZ85Key(secretKey)) throw new CertError(`${source}: secret-key is not 40 Z85 characters`);
    if (publicKeyOf(secretKey) !== publicKey) throw new CertError(`${source}: secret-key does not match public-key`);
    cert.secretKey = secretKey;
  }
  return cert;
}

/** Reads a certificate file (public or secret). */
export function loadCertificate(path: string): Certificate {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CertError(`cannot read certificate ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseCertificate(text, path);
}

/** Reads a secret certificate; throws CertError if it holds no secret key. */
export function loadSecretCertificate(path: string): Required<Certificate> {
  const cert = loadCertificate(path);
  if (!cert.secretKey) throw new CertError(`${path} is a public certificate; a .key_secret file is needed`);
  return cert as Required<Certificate>;
}

/**
 * Writes `<dir>/<name>.key` (0644) and `<dir>/<name>.key_secret` (0600).
 * Refuses to overwrite unless `force` is set.
 */
export function saveCertificate(
  cert: Required<Certificate>,
  dir: string,
  name: string,
  options: { force?: boolean } = {},
): { publicPath: string; secretPath: string } {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith(".")) throw new CertError(`invalid certificate name ${JSON.stringify(name)}`);
  const publicPath = join(dir, `${name}.key`);
  const secretPath = join(dir, `${name}.key_secret`);
  if (!options.force) {
    for (const p of [publicPath, secretPath]) {
      if (existsSync(p)) throw new CertError(`${p} exists; use --force to overwrite`);
    }
  }
  mkdirSync(dir, { recursive: true });
  const now = new Date();
  writeFileSync(publicPath, formatCertificate(cert, "public", now), { mode: 0o644 });
  writeFileSync(secretPath, formatCertificate(cert, "secret", now), { mode: 0o600 });
  chmodSync(secretPath, 0o600); // mode in writeFileSync does not apply to an existing file
  return { publicPath, secretPath };
}

/**
 * A name → public key directory built from the public certificates (`*.key`) of a folder.
 *
 * Names and service bindings come from the operator, never from a certificate's metadata
 * (which is self-declared by whoever made the key pair): a certificate's name is its file name,
 * and a service's key is the certificate named `svc-NAME.key`. Metadata `name` or `service`
 * that disagrees with the file name is ignored and reported; one key filed under two names is
 * refused under both (reported), so no lookup depends on the order files sort in.
 */
export interface CertDirectory {
  /** Public keys by certificate name (the file name without `.key`). */
  byName: Map<string, string>;
  /** Names by public key. */
  byKey: Map<string, string>;
  /** Service public keys by service name: the certificates named `svc-NAME.key`. */
  services: Map<string, string>;
}

/** The service a certificate file name binds (`svc-pay.key` → `pay`), if any. */
export function serviceOfFileName(name: string): string | undefined {
  return name.startsWith("svc-") && name.length > 4 ? name.slice(4) : undefined;
}

/**
 * Loads every `*.key` file of `dir`. Unreadable or invalid files, and conflicting claims, are
 * reported through `onError` and skipped, so one bad file does not lock everyone out.
 */
export function loadCertDirectory(dir: string, onError?: (err: CertError) => void): CertDirectory {
  const byName = new Map<string, string>();
  const byKey = new Map<string, string>();
  const services = new Map<string, string>();
  const duplicateKeys = new Set<string>();
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".key")).sort();
  } catch (err) {
    throw new CertError(`cannot read certificate directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  for (const file of files) {
    try {
      const cert = loadCertificate(join(dir, file));
      const name = basename(file, ".key");
      const service = serviceOfFileName(name);
      const metaName = cert.metadata["name"];
      const metaService = cert.metadata["service"];
      if (metaName !== undefined && metaName !== name) {
        onError?.(new CertError(`${file}: metadata name = "${metaName}" ignored; a certificate's name is its file name (${name})`));
      }
      if (metaService !== undefined && metaService !== service) {
        onError?.(new CertError(`${file}: metadata service = "${metaService}" ignored; a service's key is the certificate svc-NAME.key`));
      }
      const other = byKey.get(cert.publicKey);
      if (other !== undefined || duplicateKeys.has(cert.publicKey)) {
        duplicateKeys.add(cert.publicKey);
        onError?.(new CertError(`${file}: key ${cert.publicKey} is also filed as ${other ?? "another certificate"}; refused under both names`));
        continue;
      }
      byName.set(name, cert.publicKey);
      byKey.set(cert.publicKey, name);
      if (service) services.set(service, cert.publicKey);
    } catch (err) {
      onError?.(err instanceof CertError ? err : new CertError(String(err), { cause: err }));
    }
  }
  for (const key of duplicateKeys) {
    const name = byKey.get(key);
    if (name === undefined) continue;
    byKey.delete(key);
    byName.delete(name);
    const service = serviceOfFileName(name);
    if (service) services.delete(service);
  }
  return { byName, byKey, services };
}
