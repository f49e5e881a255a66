import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nacl from "tweetnacl";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadCertDirectory, loadCertificate, parseCertificate, publicKeyOf } from "../../src/auth/certs.js";
import { CertError } from "../../src/errors.js";
import { isZ85Key, z85Decode, z85Encode } from "../../src/wire/z85.js";
import { BIN } from "../support/process.js";

describe("z85", () => {
  it("matches the RFC 32 test vector", () => {
    const bytes = new Uint8Array([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]);
    expect(z85Encode(bytes)).toBe("HelloWorld");
    expect(Array.from(z85Decode("HelloWorld"))).toEqual(Array.from(bytes));
  });

  it("round-trips random keys and agrees with nacl on the public key", () => {
    for (let i = 0; i < 50; i++) {
      const kp = nacl.box.keyPair();
      const text = z85Encode(kp.secretKey);
      expect(text).toHaveLength(40);
      expect(Array.from(z85Decode(text))).toEqual(Array.from(kp.secretKey));
      expect(publicKeyOf(text)).toBe(z85Encode(kp.publicKey));
    }
  });

  it("rejects bad lengths, characters and overflow", () => {
    expect(() => z85Encode(new Uint8Array(3))).toThrow(RangeError);
    expect(() => z85Decode("abcd")).toThrow(RangeError);
    expect(() => z85Decode("Hello Worl")).toThrow(RangeError);
    expect(() => z85Decode("#####")).toThrow(/overflows/);
    expect(isZ85Key("HelloWorld")).toBe(false);
    expect(isZ85Key("#".repeat(40))).toBe(false); // valid characters, groups above 32 bits
    expect(isZ85Key("HelloWorl ".repeat(4))).toBe(false);
    expect(isZ85Key(z85Encode(nacl.box.keyPair().publicKey))).toBe(true);
  });
});

// Fixtures written by hand from the layouts that czmq's zcert_save and pyzmq's
// zmq.auth.create_certificates produce (banner, blank line, metadata, curve, 4-space indent).
const CZMQ_SECRET = `#   ****  Generated on 2024-03-01 10:00:00 by CZMQ  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
    name = "czmq-agent"
    email = "ops@example.com"
curve
    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
`;
const PYZMQ_PUBLIC = `#   ****  Generated on 2024-03-01 10:00:00.123456 by pyzmq  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

metadata
    role = worker
curve
    public-key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
`;

describe("certificates", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "zmcp-certs-test-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("reads czmq's secret format (the RFC 26 example keys)", () => {
    const cert = parseCertificate(CZMQ_SECRET);
    expect(cert.publicKey).toBe("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    expect(cert.secretKey).toBe("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6");
    expect(cert.metadata).toEqual({ name: "czmq-agent", email: "ops@example.com" });
  });

  it("reads pyzmq's public format with unquoted metadata", () => {
    const cert = parseCertificate(PYZMQ_PUBLIC);
    expect(cert.publicKey).toBe("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
    expect(cert.secretKey).toBeUndefined();
    expect(cert.metadata).toEqual({ role: "worker" });
  });

  it("rejects a missing key, a bad key and a secret that does not match", () => {
    expect(() => parseCertificate("metadata\ncurve\n")).toThrow(CertError);
    expect(() => parseCertificate('curve\n    public-key = "short"\n')).toThrow(/40 Z85/);
    const mismatched = CZMQ_SECRET.replace("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
    const err = (() => {
      try {
        parseCertificate(mismatched);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CertError);
    expect((err as CertError).code).toBe("cert");
    expect((err as Error).message).toMatch(/does not match/);
  });

  it("zmq-keygen cert writes both files (secret 0600), refuses to overwrite, and show reads them back", () => {
    const out = execFileSync(process.execPath, [BIN("zmq-keygen"), "cert", "agent-7", "--dir", dir, "--meta", "role=worker", "zone=eu"], { encoding: "utf8" });
    const pub = join(dir, "agent-7.key");
    const sec = join(dir, "agent-7.key_secret");
    expect(out).toContain(pub);
    expect(statSync(sec).mode & 0o777).toBe(0o600);
    const text = readFileSync(sec, "utf8");
    expect(text).toMatch(/^#   \*\*\*\*  Generated on .* by zmcp  \*\*\*\*\n#   ZeroMQ CURVE \*\*Secret\*\* Certificate\n/);
    expect(text).toMatch(/\n\nmetadata\n    name = "agent-7"\n    role = "worker"\n    zone = "eu"\ncurve\n    public-key = "[^"]{40}"\n    secret-key = "[^"]{40}"\n$/);
    expect(readFileSync(pub, "utf8")).not.toContain("secret-key");

    const shown = JSON.parse(execFileSync(process.execPath, [BIN("zmq-keygen"), "show", sec, "--json"], { encoding: "utf8" }));
    expect(shown).toMatchObject({ publicKey: loadCertificate(pub).publicKey, secret: true, metadata: { name: "agent-7", role: "worker", zone: "eu" } });

    const again = spawnSync(process.execPath, [BIN("zmq-keygen"), "cert", "agent-7", "--dir", dir], { encoding: "utf8" });
    expect(again.status).not.toBe(0);
    expect(JSON.parse(again.stderr)).toMatchObject({ code: "cert" });
    const forced = spawnSync(process.execPath, [BIN("zmq-keygen"), "cert", "agent-7", "--dir", dir, "--force"], { encoding: "utf8" });
    expect(forced.status).toBe(0);

  });

  it("zmq-keygen show reads czmq and pyzmq files", () => {
    writeFileSync(join(dir, "czmq.key_secret"), CZMQ_SECRET);
    writeFileSync(join(dir, "py.key"), PYZMQ_PUBLIC);
    const a = JSON.parse(execFileSync(process.execPath, [BIN("zmq-keygen"), "show", join(dir, "czmq.key_secret"), "--json"], { encoding: "utf8" }));
    expect(a).toMatchObject({ publicKey: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", secret: true });
    const b = execFileSync(process.execPath, [BIN("zmq-keygen"), "show", join(dir, "py.key")], { encoding: "utf8" });
    expect(b).toContain("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
    expect(b).toContain("role:");
  });

  it("zmq-keygen show fails with a typed error on a file that is not a certificate", () => {
    writeFileSync(join(dir, "junk.key"), "hello\n");
    const r = spawnSync(process.execPath, [BIN("zmq-keygen"), "show", join(dir, "junk.key")], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stderr)).toMatchObject({ code: "cert" });
  });

  it("a directory load skips bad files and maps names both ways", () => {
    execFileSync(process.execPath, [BIN("zmq-keygen"), "cert", "bob", "--dir", dir]);
    writeFileSync(join(dir, "junk.key"), "hello\n");
    const errors: string[] = [];
    const d = loadCertDirectory(dir, (e) => errors.push(e.message));
    const bob = d.byName.get("bob")!;
    expect(d.byKey.get(bob)).toBe("bob");
    expect(errors).toHaveLength(1);
  });

  // Real pyzmq, when the machine has it (.ci/run installs python3-zmq): both directions.
  const python = "/usr/bin/python3";
  const hasPyzmq = existsSync(python) && spawnSync(python, ["-c", "import zmq.auth"]).status === 0;
  it.runIf(hasPyzmq)("interoperates with the real pyzmq both ways", () => {
    execFileSync(python, ["-c", `import zmq.auth; zmq.auth.create_certificates(${JSON.stringify(dir)}, "py", metadata={"role": "worker"})`]);
    const fromPy = loadCertificate(join(dir, "py.key_secret"));
    expect(fromPy.metadata).toEqual({ role: "worker" });
    expect(publicKeyOf(fromPy.secretKey!)).toBe(fromPy.publicKey);
    execFileSync(process.execPath, [BIN("zmq-keygen"), "cert", "ts", "--dir", dir]);
    const out = execFileSync(python, ["-c", `import zmq.auth; p, s = zmq.auth.load_certificate(${JSON.stringify(join(dir, "ts.key_secret"))}); print(p.decode(), s.decode())`], {
      encoding: "utf8",
    });
    const mine = loadCertificate(join(dir, "ts.key_secret"));
    expect(out.trim()).toBe(`${mine.publicKey} ${mine.secretKey}`);
  });
});
