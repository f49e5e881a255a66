/** The one certificate fixture of the test suite: a temporary allowlist directory of generated keys. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateCertificate, saveCertificate, type Certificate } from "../../src/auth/certs.js";

export interface CertFixture {
  dir: string;
  certs: Record<string, Required<Certificate>>;
  secretPath(name: string): string;
  key(name: string): string;
  /** Adds a certificate; `admitted: false` writes it outside the allowlist directory. */
  add(name: string, admitted?: boolean): Required<Certificate>;
  /** Adds a service key `svc-NAME` (metadata `service = NAME`), trusted by the broker. */
  addService(name: string): Required<Certificate>;
  cleanup(): void;
}

/** A temporary certificate directory holding `broker` plus `names`. */
export function tempCerts(...names: string[]): CertFixture {
  const dir = mkdtempSync(join(tmpdir(), "zmcp-certs-"));
  const outside = mkdtempSync(join(tmpdir(), "zmcp-outside-"));
  const certs: Record<string, Required<Certificate>> = {};
  const paths: Record<string, string> = {};
  const fixture: CertFixture = {
    dir,
    certs,
    secretPath: (name) => paths[name]!,
    key: (name) => certs[name]!.publicKey,
    addService(name) {
      const cert = generateCertificate({ name: `svc-${name}`, service: name });
      certs[`svc-${name}`] = cert;
      paths[`svc-${name}`] = saveCertificate(cert, dir, `svc-${name}`).secretPath;
      return cert;
    },
    add(name, admitted = true) {
      const cert = generateCertificate({ name });
      certs[name] = cert;
      paths[name] = saveCertificate(cert, admitted ? dir : outside, name).secretPath;
      return cert;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
      rmSync(outside, { recursive: true, force: true });
    },
  };
  for (const name of ["broker", ...names]) fixture.add(name);
  return fixture;
}
