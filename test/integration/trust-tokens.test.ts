/**
 * Tokens at the trust edges (issue 10):
 * - verification enforces a maximum lifetime (`exp - iat` and `exp - now`), whatever the signer wrote;
 * - a token never has to be on a command line: `--token @FILE`, `--token-env NAME` or
 *   `ZMCP_TOKEN`, and the literal form is refused; `zmq-keygen token --out` writes a 0600 file.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sign } from "node:crypto";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { generateCertificate } from "../../src/auth/certs.js";
import { ConfigError, ProtocolError } from "../../src/errors.js";
import { generateAuthority, privateKeyObject, saveAuthority, type AuthorityJwk } from "../../src/auth/jwk.js";
import { TokenIssuer } from "../../src/auth/tokens.js";
import { TokenVerifier } from "../../src/auth/token-verifier.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN } from "../support/process.js";

const run = promisify(execFile);
const holder = generateCertificate({ name: "holder" });

/** A token with exactly these claims, signed by `authority` (no issuer-side checks). */
function rawToken(authority: AuthorityJwk, claims: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const input = `${b64({ alg: "EdDSA", typ: "JWT", kid: authority.kid })}.${b64(claims)}`;
  return `${input}.${sign(null, Buffer.from(input), privateKeyObject(authority)).toString("base64url")}`;
}

function refusal(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error("expected a ProtocolError");
}

describe("token lifetime", () => {
  const authority = generateAuthority();
  const verifier = new TokenVerifier({ authority: authority.publicJwk, watch: false });
  const now = Date.now();
  const s = Math.floor(now / 1000);
  const claims = (times: Record<string, number>) =>
    rawToken(authority.privateJwk, { sub: "holder", aud: "mesh", jti: `j${Math.random()}`, scope: "call:x", cnf: { "zmcp:key": holder.publicKey }, ...times });

  it("refuses exp: 1e308, with or without iat, as token_invalid", () => {
    for (const times of [{ exp: 1e308 }, { exp: 1e308, iat: s }, { exp: 1e308, iat: 1e308 - 1 }, { exp: 1e308, iat: s, nbf: s }]) {
      const err = refusal(() => verifier.verify(claims(times), now));
      expect(err.code).toBe("token_invalid");
      expect(err.message).toMatch(/maximum (lifetime )?of 300 s|beyond the maximum lifetime of 300 s/);
    }
  });

  it("refuses exp - iat above the maximum even when exp is near, and exp far from now when iat is near exp", () => {
    // Issued an hour ago for an hour: exp - now (60 s) looks fine; exp - iat does not.
    const backdated = refusal(() => verifier.verify(claims({ iat: s - 3600, exp: s + 60 }), now));
    expect(backdated.code).toBe("token_invalid");
    expect(backdated.message).toMatch(/lifetime of 3660 s exceeds the maximum of 300 s/);
    // iat placed just before a far exp: exp - iat is small, exp - now is not.
    const forward = refusal(() => verifier.verify(claims({ iat: s + 86_400 - 100, exp: s + 86_400 }), now));
    expect(forward.code).toBe("token_invalid");
    expect(forward.message).toMatch(/expires 86\d{3} s from now, beyond the maximum lifetime of 300 s/);
    // No iat at all: exp - now decides.
    expect(refusal(() => verifier.verify(claims({ exp: s + 3600 }), now)).code).toBe("token_invalid");
  });

  it("accepts the issuer's 300 s tokens, and longer ones only when maxTokenLifetime is raised", () => {
    const issuer = new TokenIssuer(authority.privateJwk, { maxTtl: 3600 });
    expect(verifier.verify(issuer.issue({ sub: "holder", key: holder.publicKey, scope: "call:x", ttl: 300, now }), now).sub).toBe("holder");
    const hour = issuer.issue({ sub: "holder", key: holder.publicKey, scope: "call:x", ttl: 3600, now });
    expect(refusal(() => verifier.verify(hour, now)).code).toBe("token_invalid");
    const lenient = new TokenVerifier({ authority: authority.publicJwk, watch: false, maxTokenLifetime: 3600 });
    expect(lenient.verify(hour, now).sub).toBe("holder");
    expect(() => new TokenVerifier({ authority: authority.publicJwk, watch: false, maxTokenLifetime: 0 })).toThrow(ConfigError);
  });

  it("an absurd nbf is token_not_yet_valid, not a RangeError", () => {
    expect(refusal(() => verifier.verify(claims({ iat: s, nbf: 1e308, exp: s + 60 }), now)).code).toBe("token_not_yet_valid");
  });
});

describe("tokens off the command line", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;
  let dir: string;
  let authorityPath: string;
  let token: string;

  beforeAll(async () => {
    fx = tempCerts("alice", "bob");
    dir = mkdtempSync(join(tmpdir(), "zmcp-trust-tokens-"));
    const authority = generateAuthority();
    const saved = saveAuthority(authority.privateJwk, dir, "authority");
    authorityPath = saved.privatePath;
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint, { authority: saved.publicPath });
    bob.tool("echo", { input: z.object({ v: z.string() }) }, ({ v }) => ({ v }));
    token = new TokenIssuer(authority.privateJwk).issue({ sub: "alice", key: fx.key("alice"), scope: "call:echo" });
  });
  afterAll(async () => {
    await bob?.close();
    await broker?.close();
    fx?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const callArgs = () => ["echo", '{"v":"hi"}', "--to", "bob", "--broker", broker.endpoint, "--cert", fx.secretPath("alice"), "--certs", fx.dir];
  const call = (extra: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [BIN("zmq-call"), ...callArgs(), ...extra], { env: { PATH: process.env["PATH"], ...env }, timeout: 20_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  const failure = (stderr: string) => JSON.parse(stderr.trim().split("\n").at(-1)!) as { code: string; message: string };

  it("zmq-call reads the token from ZMCP_TOKEN, from --token-env NAME, or from --token @FILE", async () => {
    expect(await call([], { ZMCP_TOKEN: token })).toMatchObject({ code: 0, stdout: '{"v":"hi"}\n' });
    expect(await call(["--token-env", "MY_TOKEN"], { MY_TOKEN: `${token}\n` })).toMatchObject({ code: 0, stdout: '{"v":"hi"}\n' });
    const file = join(dir, "alice.jwt");
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    expect(await call(["--token", `@${file}`])).toMatchObject({ code: 0, stdout: '{"v":"hi"}\n' });
    // Without any, bob refuses.
    expect(failure((await call([])).stderr).code).toBe("token_missing");
  });

  it("a literal --token is refused before anything connects (exit 2, config); so are an unset --token-env and an empty file", async () => {
    const literal = await call(["--token", token]);
    expect(literal.code).toBe(2);
    expect(failure(literal.stderr)).toMatchObject({ code: "config", message: expect.stringMatching(/\/proc\/PID\/cmdline.*--token @FILE/) });
    const unset = await call(["--token-env", "NOT_SET_HERE"]);
    expect(unset.code).toBe(2);
    expect(failure(unset.stderr)).toMatchObject({ code: "config", message: expect.stringMatching(/NOT_SET_HERE/) });
    const empty = join(dir, "empty.jwt");
    writeFileSync(empty, "\n");
    expect(failure((await call(["--token", `@${empty}`])).stderr)).toMatchObject({ code: "config", message: expect.stringMatching(/empty/) });
  });

  it("zmq-mcp expose refuses a literal --token too", () => {
    const r = spawnSync(process.execPath, [BIN("zmq-mcp"), "expose", "--to", "bob", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("alice"), "--token", token], {
      encoding: "utf8",
      timeout: 20_000,
      input: "",
    });
    expect(r.status).not.toBe(0);
    expect(failure(r.stderr)).toMatchObject({ code: "config", message: expect.stringMatching(/\/proc\/PID\/cmdline/) });
  });

  it("zmq-keygen token --out writes the token to a 0600 file, not stdout", () => {
    const out = join(dir, "issued.jwt");
    const r = spawnSync(process.execPath, [BIN("zmq-keygen"), "token", "--sub", "alice", "--key", fx.key("alice"), "--scope", "call:echo", "--authority", authorityPath, "--out", out], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("");
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readFileSync(out, "utf8").trim().split(".")).toHaveLength(3);
  });
});
