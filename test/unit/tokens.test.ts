/**
 * Tokens without sockets: JWT interop with jose both ways, verification rules, the cache,
 * the caller's refresh schedule, the rate limiter, the deny list, and the keygen CLI.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as jose from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateCertificate } from "../../src/auth/certs.js";
import { DenyList, parseDenyList } from "../../src/auth/denylist.js";
import { ConfigError, ProtocolError, ZmcpError, CertError } from "../../src/errors.js";
import { generateAuthority, jwkThumbprint, loadJwkFile, saveAuthority, type AuthorityJwk } from "../../src/auth/jwk.js";
import { RateLimiter } from "../../src/auth/ratelimit.js";
import { TokenSource } from "../../src/auth/token-source.js";
import { createToken, scopeCovers, TokenIssuer } from "../../src/auth/tokens.js";
import { decodeTokenUnverified, TokenVerifier } from "../../src/auth/token-verifier.js";
import { BIN } from "../support/process.js";

const alice = generateCertificate({ name: "alice" });
const bob = generateCertificate({ name: "bob" });

/** The ProtocolError `fn` throws (fails the test if it throws something else, or nothing). */
function refusal(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error("expected a ProtocolError");
}

describe("token issue and verify", () => {
  let authority: { privateJwk: AuthorityJwk; publicJwk: AuthorityJwk };
  let verifier: TokenVerifier;
  beforeEach(() => {
    authority = generateAuthority();
    verifier = new TokenVerifier({ authority: authority.publicJwk, watch: false });
  });
  afterEach(() => verifier.close());

  it("issues a compact EdDSA JWT with every claim, that jose verifies", async () => {
    const token = createToken({ authority: authority.privateJwk, sub: "alice", key: alice.publicKey, scope: "call:batch_sum call:jobs.*", ttl: 120 });
    const key = await jose.importJWK(authority.publicJwk, "EdDSA");
    const { payload, protectedHeader } = await jose.jwtVerify(token, key, { audience: "mesh", issuer: "zmcp", subject: "alice", algorithms: ["EdDSA"] });
    expect(protectedHeader).toEqual({ alg: "EdDSA", typ: "JWT", kid: authority.publicJwk.kid });
    expect(payload.scope).toBe("call:batch_sum call:jobs.*");
    expect(payload.cnf).toEqual({ "zmcp:key": alice.publicKey });
    expect(payload.exp! - payload.iat!).toBe(120);
    expect(payload.nbf!).toBeLessThan(payload.iat!);
    expect(payload.iat! - payload.nbf!).toBeLessThanOrEqual(5);
    expect(payload.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // jose computes the same RFC 7638 thumbprint as kid.
    expect(await jose.calculateJwkThumbprint(authority.publicJwk)).toBe(authority.publicJwk.kid);
  });

  it("accepts a token made by jose with the authority key", async () => {
    const key = await jose.importJWK(authority.privateJwk, "EdDSA");
    const token = await new jose.SignJWT({ scope: "call:*", cnf: { "zmcp:key": alice.publicKey } })
      .setProtectedHeader({ alg: "EdDSA", kid: authority.publicJwk.kid })
      .setIssuer("ops")
      .setSubject("alice")
      .setAudience(["other", "mesh"])
      .setIssuedAt()
      .setNotBefore("-3s")
      .setExpirationTime("5m")
      .setJti("jose-1")
      .sign(key);
    const verified = verifier.authorize(token, alice.publicKey, "call:anything");
    expect(verified).toMatchObject({ sub: "alice", iss: "ops", jti: "jose-1", scopes: ["call:*"], key: alice.publicKey, kid: authority.publicJwk.kid });
  });

  it("caches a verified token until it expires, in a bounded cache", () => {
    const small = new TokenVerifier({ authority: authority.publicJwk, watch: false, cacheSize: 2, clockSkew: 0 });
    const issuer = new TokenIssuer(authority.privateJwk);
    const now = Date.now();
    const t1 = issuer.issue({ sub: "a", key: alice.publicKey, scope: "call:x", ttl: 60, now });
    const first = small.verify(t1, now);
    expect(small.verify(t1, now)).toBe(first); // the same frozen object: no second signature check
    expect(Object.isFrozen(first)).toBe(true);
    for (let i = 0; i < 5; i++) small.verify(issuer.issue({ sub: `s${i}`, key: alice.publicKey, scope: "call:x", now }), now);
    expect(small.cached).toBe(2);
    const t2 = issuer.issue({ sub: "b", key: alice.publicKey, scope: "call:x", ttl: 60, now });
    small.verify(t2, now);
    expect(refusal(() => small.verify(t2, now + 61_000)).code).toBe("token_expired");
  });

  it("applies the configured clock skew to nbf and exp", () => {
    const now = Date.now();
    const early = createToken({ authority: authority.privateJwk, sub: "a", key: alice.publicKey, scope: "call:x", now: now + 20_000 });
    const strict = new TokenVerifier({ authority: authority.publicJwk, watch: false, clockSkew: 0 });
    expect(refusal(() => strict.verify(early, now)).code).toBe("token_not_yet_valid");
    expect(verifier.verify(early, now).sub).toBe("a"); // default skew 30 s
    const late = createToken({ authority: authority.privateJwk, sub: "a", key: alice.publicKey, scope: "call:x", ttl: 10, now: now - 20_000 });
    expect(refusal(() => strict.verify(late, now)).code).toBe("token_expired");
    expect(verifier.verify(late, now).sub).toBe("a");
  });

  it("refuses malformed tokens, alg none, unknown kids and critical headers as token_invalid", async () => {
    const good = createToken({ authority: authority.privateJwk, sub: "a", key: alice.publicKey, scope: "call:x" });
    const [h, p] = good.split(".");
    const unsecured = new jose.UnsecuredJWT({ sub: "a" }).encode();
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const cases = [
      "not a token",
      `${h}.${p}`,
      `${h}.${p}.${"A".repeat(86)}`,
      unsecured,
      `${b64({ alg: "EdDSA", kid: "nope" })}.${p}.${good.split(".")[2]}`,
      `${b64({ alg: "EdDSA", kid: authority.publicJwk.kid, crit: ["exp"] })}.${p}.${good.split(".")[2]}`,
      "x".repeat(9000),
    ];
    for (const token of cases) expect(refusal(() => verifier.verify(token)).code).toBe("token_invalid");
    // Validly signed but not bound to a key: refused too.
    const key = await jose.importJWK(authority.privateJwk, "EdDSA");
    const unbound = await new jose.SignJWT({ scope: "call:x" }).setProtectedHeader({ alg: "EdDSA", kid: authority.publicJwk.kid }).setSubject("a").setAudience("mesh").setJti("j").setExpirationTime("1m").sign(key);
    expect(refusal(() => verifier.verify(unbound)).code).toBe("token_invalid");
  });

  it("trusts several authorities at once, given as paths or JWKs, and picks them by kid", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zmcp-auth-"));
    try {
      const second = generateAuthority();
      const { publicPath } = saveAuthority(second.privateJwk, dir, "second");
      const both = new TokenVerifier({ authority: [authority.publicJwk, publicPath], watch: false });
      expect(both.kids.sort()).toEqual([authority.publicJwk.kid, second.publicJwk.kid].sort());
      for (const a of [authority, second]) {
        const t = createToken({ authority: a.privateJwk, sub: "a", key: alice.publicKey, scope: "call:x" });
        expect(both.authorize(t, alice.publicKey, "call:x").kid).toBe(a.publicJwk.kid);
      }
      const third = generateAuthority();
      const t3 = createToken({ authority: third.privateJwk, sub: "a", key: alice.publicKey, scope: "call:x" });
      expect(refusal(() => both.verify(t3)).code).toBe("token_invalid");
      expect(() => new TokenVerifier({ authority: join(dir, "missing.jwk"), watch: false })).toThrow(CertError);
      // Without a kid, a token is matched only while a single authority is trusted.
      const noKid = async (jwk: AuthorityJwk) =>
        new jose.SignJWT({ scope: "call:x", cnf: { "zmcp:key": alice.publicKey } })
          .setProtectedHeader({ alg: "EdDSA" })
          .setSubject("a")
          .setAudience("mesh")
          .setJti("k")
          .setExpirationTime("1m")
          .sign(await jose.importJWK(jwk, "EdDSA"));
      const t = await noKid(second.privateJwk);
      expect(refusal(() => both.verify(t)).code).toBe("token_invalid");
      expect(new TokenVerifier({ authority: publicPath, watch: false }).verify(t).kid).toBe(second.publicJwk.kid);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("matches scopes exactly or by a trailing wildcard", () => {
    expect(scopeCovers(["call:batch_sum"], "call:batch_sum")).toBe(true);
    expect(scopeCovers(["call:batch_sum"], "call:batch_sum2")).toBe(false);
    expect(scopeCovers(["call:jobs.*"], "call:jobs.submit")).toBe(true);
    expect(scopeCovers(["call:jobs.*"], "call:jobs")).toBe(false);
    expect(scopeCovers(["call:jobs.*"], "call:batch_sum")).toBe(false);
    expect(scopeCovers(["call:*"], "call:anything.at.all")).toBe(true);
    expect(scopeCovers(["call:*"], "admin:reset")).toBe(false);
    expect(scopeCovers(["*"], "admin:reset")).toBe(true);
    expect(scopeCovers(["call:*x"], "call:ax")).toBe(false); // only a trailing * is a wildcard
  });

  it("refuses to issue beyond the TTL cap unless raised, and checks its options", () => {
    const base = { authority: authority.privateJwk, sub: "a", key: alice.publicKey, scope: "call:x" };
    expect(() => createToken({ ...base, ttl: 301 })).toThrow(ConfigError);
    expect(decodeTokenUnverified(createToken({ ...base, ttl: 3600, maxTtl: 3600 }))).toMatchObject({ sub: "a" });
    expect(() => createToken({ ...base, key: "not-a-key" })).toThrow(ConfigError);
    expect(() => createToken({ ...base, scope: "" })).toThrow(ConfigError);
    expect(() => createToken({ ...base, scope: ['call:"x"'] })).toThrow(ConfigError);
    expect(() => createToken({ ...base, authority: authority.publicJwk })).toThrow(CertError);
  });
});

describe("TokenSource (the caller's refresh schedule)", () => {
  const authority = generateAuthority();
  const issuer = new TokenIssuer(authority.privateJwk);

  it("reuses a token, refreshes in the background near expiry, and waits past the margin", async () => {
    const t0 = Date.now();
    let clock = t0;
    let issued = 0;
    const source = new TokenSource(() => {
      issued++;
      return issuer.issue({ sub: "a", key: alice.publicKey, scope: "call:x", ttl: 100, now: clock });
    });
    const exp = (t: string) => (decodeTokenUnverified(t)!["exp"] as number) * 1000;
    const first = await source.get(clock);
    expect(issued).toBe(1);
    expect(await source.get(clock + 1000)).toBe(first);
    expect(issued).toBe(1);
    // 20% of 100 s = 20 s before expiry: the current token still goes out, a new one is fetched.
    clock = exp(first) - 15_000;
    expect(await source.get(clock)).toBe(first);
    expect(issued).toBe(2);
    const second = await source.get(clock);
    expect(second).not.toBe(first);
    // Past half the margin of the second one: the call waits for a third.
    clock = exp(second) - 5_000;
    const third = await source.get(clock);
    expect(issued).toBe(3);
    expect(third).not.toBe(second);
  });

  it("passes a fixed token through, and reports a failing provider as token_unavailable", async () => {
    expect(await new TokenSource("fixed").get()).toBe("fixed");
    const failing = new TokenSource(() => Promise.reject(new Error("issuer down")));
    await expect(failing.get()).rejects.toMatchObject({ code: "token_unavailable" });
    const junk = new TokenSource(() => "not-a-jwt");
    const err = await junk.get().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZmcpError);
    expect((err as ZmcpError).code).toBe("token_unavailable");
    // A provider (the application's code) that throws a value String() cannot print is still a
    // typed token_unavailable, not a TypeError out of the error path itself.
    const odd = new TokenSource(() => Promise.reject(Object.create(null)));
    const oddErr = await odd.get().catch((e: unknown) => e);
    expect(oddErr).toBeInstanceOf(ZmcpError);
    expect((oddErr as ZmcpError).code).toBe("token_unavailable");
  });
});

describe("RateLimiter", () => {
  it("engages past the burst and releases as the bucket refills", () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 3 });
    let t = 1000;
    expect([1, 2, 3, 4].map(() => limiter.take("k", t))).toEqual([true, true, true, false]);
    expect(limiter.take("other", t)).toBe(true); // per key
    t += 100; // one token back
    expect(limiter.take("k", t)).toBe(true);
    expect(limiter.take("k", t)).toBe(false);
    t += 10_000; // never more than the burst
    expect([1, 2, 3, 4].map(() => limiter.take("k", t))).toEqual([true, true, true, false]);
  });

  it("holds a bounded number of buckets however many keys send", () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1, maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) limiter.take(`key-${i}`, 0);
    expect(limiter.size).toBe(100);
  });

  it("rejects a configuration that is not positive", () => {
    expect(() => new RateLimiter({ perSecond: 0, burst: 1 })).toThrow(ConfigError);
    expect(() => new RateLimiter({ perSecond: 1, burst: 0 })).toThrow(ConfigError);
  });
});

describe("deny list", () => {
  it("parses jti and keys, and refuses junk with a typed error", () => {
    const list = parseDenyList(JSON.stringify({ jti: ["a"], keys: [alice.publicKey] }));
    expect(list.jti.has("a")).toBe(true);
    expect(list.keys.has(alice.publicKey)).toBe(true);
    expect(() => parseDenyList("{")).toThrow(ConfigError);
    expect(() => parseDenyList(JSON.stringify({ keys: ["short"] }))).toThrow(ConfigError);
    expect(() => parseDenyList(JSON.stringify({ jtis: [] }))).toThrow(ConfigError);
  });

  it("keeps the previous list when the file turns invalid, and refuses a missing file at start", () => {
    const dir = mkdtempSync(join(tmpdir(), "zmcp-deny-"));
    try {
      const path = join(dir, "deny.json");
      writeFileSync(path, JSON.stringify({ keys: [bob.publicKey] }));
      const list = DenyList.open(path, { watch: false });
      writeFileSync(path, "{ half written");
      expect(list.reload()).toBe(false);
      expect(list.hasKey(bob.publicKey)).toBe(true);
      writeFileSync(path, JSON.stringify({ jti: ["x"] }));
      expect(list.reload()).toBe(true);
      expect(list.hasKey(bob.publicKey)).toBe(false);
      expect(list.hasJti("x")).toBe(true);
      expect(() => DenyList.open(join(dir, "nope.json"))).toThrow(ConfigError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("zmq-keygen authority and token", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "zmcp-keygen-tok-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const keygen = (...args: string[]) => spawnSync(process.execPath, [BIN("zmq-keygen"), ...args], { encoding: "utf8" });

  it("creates an authority (private 0600, public without d), refuses to overwrite, and issues tokens jose verifies", async () => {
    const out = execFileSync(process.execPath, [BIN("zmq-keygen"), "authority", "--dir", dir], { encoding: "utf8" });
    const priv = join(dir, "authority.jwk");
    const pub = join(dir, "authority.pub.jwk");
    expect(out).toContain(priv);
    expect(statSync(priv).mode & 0o777).toBe(0o600);
    const pubJwk = JSON.parse(readFileSync(pub, "utf8"));
    expect(pubJwk).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA" });
    expect(pubJwk.d).toBeUndefined();
    expect(pubJwk.kid).toBe(jwkThumbprint(pubJwk));
    expect(out).toContain(`kid: ${pubJwk.kid}`);
    expect(JSON.parse(readFileSync(priv, "utf8")).d).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(loadJwkFile(pub)[0]!.kid).toBe(pubJwk.kid);

    const again = keygen("authority", "--dir", dir);
    expect(again.status).toBe(1);
    expect(JSON.parse(again.stderr)).toMatchObject({ code: "cert" });
    expect(keygen("authority", "--dir", dir, "--name", "next").status).toBe(0);
    expect(keygen("authority", "--dir", dir, "--force").status).toBe(0);
    const rotated = JSON.parse(readFileSync(pub, "utf8"));
    expect(rotated.kid).not.toBe(pubJwk.kid);

    execFileSync(process.execPath, [BIN("zmq-keygen"), "cert", "alice", "--dir", dir]);
    const token = execFileSync(
      process.execPath,
      [BIN("zmq-keygen"), "token", "--sub", "alice", "--key", join(dir, "alice.key"), "--scope", "call:batch_sum call:jobs.*", "--ttl", "60", "--authority", priv],
      { encoding: "utf8" },
    ).trim();
    const { payload } = await jose.jwtVerify(token, await jose.importJWK(rotated, "EdDSA"), { audience: "mesh" });
    expect(payload).toMatchObject({ sub: "alice", scope: "call:batch_sum call:jobs.*", iss: "zmcp" });
    expect((payload.cnf as Record<string, string>)["zmcp:key"]).toBe(JSON.parse(execFileSync(process.execPath, [BIN("zmq-keygen"), "show", join(dir, "alice.key"), "--json"], { encoding: "utf8" })).publicKey);
    expect(payload.exp! - payload.iat!).toBe(60);

    // A Z85 key works as well as a certificate file.
    const byKey = keygen("token", "--sub", "bob", "--key", bob.publicKey, "--scope", "call:*", "--aud", "lab", "--authority", priv);
    expect(byKey.status).toBe(0);
    expect(decodeTokenUnverified(byKey.stdout.trim())).toMatchObject({ aud: "lab", cnf: { "zmcp:key": bob.publicKey } });
  });

  it("fails with typed errors: ttl above the cap, bad key, missing authority, missing option", () => {
    execFileSync(process.execPath, [BIN("zmq-keygen"), "authority", "--dir", dir]);
    const priv = join(dir, "authority.jwk");
    const base = ["token", "--sub", "a", "--key", alice.publicKey, "--scope", "call:x", "--authority", priv];
    const tooLong = keygen(...base, "--ttl", "301");
    expect(tooLong.status).toBe(1);
    expect(JSON.parse(tooLong.stderr)).toMatchObject({ code: "config" });
    expect(keygen(...base, "--ttl", "600", "--max-ttl", "600").status).toBe(0);
    expect(JSON.parse(keygen(...base, "--ttl", "abc").stderr)).toMatchObject({ code: "config" });
    expect(JSON.parse(keygen("token", "--sub", "a", "--key", join(dir, "nope.key"), "--scope", "call:x", "--authority", priv).stderr)).toMatchObject({ code: "cert" });
    expect(JSON.parse(keygen("token", "--sub", "a", "--key", alice.publicKey, "--scope", "call:x", "--authority", join(dir, "authority.pub.jwk")).stderr)).toMatchObject({ code: "cert" });
    expect(JSON.parse(keygen("token", "--sub", "a", "--key", alice.publicKey, "--scope", "call:x", "--authority", join(dir, "missing.jwk")).stderr)).toMatchObject({ code: "cert" });
    const missing = keygen("token", "--sub", "a", "--scope", "call:x");
    expect(missing.status).toBe(2);
    expect(JSON.parse(missing.stderr)).toMatchObject({ code: "config" });
  });
});
