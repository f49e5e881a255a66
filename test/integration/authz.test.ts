/**
 * Authorization on real sockets: every refusal code of a token check, as the caller sees it
 * (a RemoteError with the code), revocation on open connections, authority rotation, token
 * refresh across expiry, and the broker's rate limit.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as jose from "jose";
import { z } from "zod";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Agent, AgentOptions } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { CertError, ConfigError, RemoteError, type WireCode } from "../../src/errors.js";
import { generateAuthority, saveAuthority, type AuthorityJwk } from "../../src/auth/jwk.js";
import { createToken, TokenIssuer } from "../../src/auth/tokens.js";
import { decodeTokenUnverified, type VerifiedToken } from "../../src/auth/token-verifier.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN, spawnBroker } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const sumTool = { input: z.strictObject({ numbers: z.array(z.number()) }) };
const sum = ({ numbers }: { numbers: number[] }) => numbers.reduce((a, b) => a + b, 0);

/** The RemoteError a call rejects with; fails the test on success or another error class. */
async function rejection(call: Promise<unknown>): Promise<RemoteError> {
  const err = await call.then(
    () => new Error("call succeeded, a refusal was expected"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RemoteError);
  return err as RemoteError;
}

describe("token checks on a real mesh", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;
  let authority: { privateJwk: AuthorityJwk; publicJwk: AuthorityJwk };
  let publicPath: string;
  let denyPath: string;
  let seen: Array<VerifiedToken | undefined>;
  const agents: Agent[] = [];

  const startBob = async (options: Partial<AgentOptions> = {}) => {
    const agent = await connectAgent(fx, "bob", broker.endpoint, { authority: publicPath, requireToken: true, denyList: denyPath, ...options });
    agent.tool("batch_sum", sumTool, (args, ctx) => {
      seen.push(ctx.token);
      return sum(args);
    });
    agent.tool("jobs.submit", sumTool, (args) => sum(args));
    agent.tool("reset", { ...sumTool, scope: "admin:reset" }, () => "reset");
    agents.push(agent);
    return agent;
  };
  const alice = async (token?: AgentOptions["token"]) => {
    const agent = await connectAgent(fx, "alice", broker.endpoint, token === undefined ? {} : { token });
    agents.push(agent);
    return agent;
  };
  const tokenFor = (name: string, overrides: Partial<Parameters<typeof createToken>[0]> = {}) =>
    createToken({ authority: authority.privateJwk, sub: name, key: fx.key(name), scope: "call:batch_sum", ...overrides });
  /** Calls bob's batch_sum as alice holding `token`, and returns the refusal. */
  const refusedWith = async (token: string | undefined, tool = "batch_sum"): Promise<WireCode> => {
    const a = await alice(token);
    try {
      const err = await rejection(a.call("bob", tool, { numbers: [1, 2] }));
      expect(err.origin).toBe("peer");
      return err.code as WireCode;
    } finally {
      await a.close();
    }
  };

  beforeEach(async () => {
    fx = tempCerts("alice", "bob", "carol");
    authority = generateAuthority();
    publicPath = saveAuthority(authority.privateJwk, fx.dir, "authority").publicPath;
    denyPath = join(fx.dir, "deny.json");
    writeFileSync(denyPath, "{}\n");
    seen = [];
    broker = await startBroker(fx);
    bob = await startBob();
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.close();
    await broker.close();
    fx.cleanup();
  });

  it("accepts a valid token and hands the verified claims to the tool", async () => {
    const a = await alice(tokenFor("alice"));
    expect(await a.call("bob", "batch_sum", { numbers: [1, 2, 3] })).toBe(6);
    expect(seen[0]).toMatchObject({ sub: "alice", key: fx.key("alice"), scopes: ["call:batch_sum"] });
  });

  it("refuses inconsistent or unreadable token options at connect, with typed errors", async () => {
    await expect(connectAgent(fx, "carol", broker.endpoint, { requireToken: true })).rejects.toBeInstanceOf(ConfigError);
    await expect(connectAgent(fx, "carol", broker.endpoint, { denyList: denyPath })).rejects.toBeInstanceOf(ConfigError);
    await expect(connectAgent(fx, "carol", broker.endpoint, { authority: join(fx.dir, "missing.jwk") })).rejects.toBeInstanceOf(CertError);
    await expect(connectAgent(fx, "carol", broker.endpoint, { authority: publicPath, denyList: join(fx.dir, "missing.json") })).rejects.toBeInstanceOf(ConfigError);
    const carol = await connectAgent(fx, "carol", broker.endpoint, { authority: publicPath });
    agents.push(carol);
    expect(() => carol.tool("x", { ...sumTool, scope: "has space" }, () => 0)).toThrow(ConfigError);
  });

  it("token_missing: a request without a token", async () => {
    expect(await refusedWith(undefined)).toBe("token_missing");
  });

  it("token_invalid: a bad signature", async () => {
    const [h, p, s] = tokenFor("alice").split(".") as [string, string, string];
    const flipped = `${h}.${p}.${s.startsWith("A") ? "B" : "A"}${s.slice(1)}`;
    expect(await refusedWith(flipped)).toBe("token_invalid");
  });

  it("token_invalid: a token of an untrusted authority (unknown kid)", async () => {
    const rogue = generateAuthority();
    expect(await refusedWith(createToken({ authority: rogue.privateJwk, sub: "alice", key: fx.key("alice"), scope: "call:*" }))).toBe("token_invalid");
  });

  it("token_expired: a token past its exp", async () => {
    expect(await refusedWith(tokenFor("alice", { ttl: 60, now: Date.now() - 10 * 60_000 }))).toBe("token_expired");
  });

  it("token_not_yet_valid: a token whose nbf is ahead beyond the clock skew", async () => {
    expect(await refusedWith(tokenFor("alice", { now: Date.now() + 10 * 60_000 }))).toBe("token_not_yet_valid");
  });

  it("token_audience: a token for another audience", async () => {
    expect(await refusedWith(tokenFor("alice", { aud: "elsewhere" }))).toBe("token_audience");
  });

  it("token_key_mismatch: carol's token sent by alice", async () => {
    expect(await refusedWith(tokenFor("carol", { scope: "call:*" }))).toBe("token_key_mismatch");
  });

  it("token_scope: a scope that does not cover the tool (wildcards and custom tool scopes)", async () => {
    expect(await refusedWith(tokenFor("alice", { scope: "call:batch_sum" }), "jobs.submit")).toBe("token_scope");
    expect(await refusedWith(tokenFor("alice", { scope: "call:*" }), "reset")).toBe("token_scope");
    // Unknown tools are not revealed to callers whose token does not cover them.
    expect(await refusedWith(tokenFor("alice", { scope: "call:batch_sum" }), "nope")).toBe("token_scope");
    const a = await alice(tokenFor("alice", { scope: "call:jobs.* admin:reset" }));
    expect(await a.call("bob", "jobs.submit", { numbers: [2, 3] })).toBe(5);
    expect(await a.call("bob", "reset", { numbers: [] })).toBe("reset");
  });

  it("revoked: the agent refuses a revoked jti once its deny list changes, on an open connection", async () => {
    const token = tokenFor("alice");
    const a = await alice(token);
    expect(await a.call("bob", "batch_sum", { numbers: [1] })).toBe(1);
    writeFileSync(denyPath, JSON.stringify({ jti: [decodeTokenUnverified(token)!["jti"]] }));
    const err = (await waitFor(() => a.call("bob", "batch_sum", { numbers: [1] }).then(() => undefined, (e: unknown) => e as RemoteError), 5000, "revocation"))!;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.code).toBe("revoked");
    expect(err.origin).toBe("peer");
  });

  it("accepts a token made by jose with the authority key", async () => {
    const key = await jose.importJWK(authority.privateJwk, "EdDSA");
    const token = await new jose.SignJWT({ scope: "call:batch_sum", cnf: { "zmcp:key": fx.key("alice") } })
      .setProtectedHeader({ alg: "EdDSA", kid: authority.publicJwk.kid })
      .setIssuer("jose")
      .setSubject("alice")
      .setAudience("mesh")
      .setIssuedAt()
      .setJti("from-jose")
      .setExpirationTime("2m")
      .sign(key);
    const a = await alice(token);
    expect(await a.call("bob", "batch_sum", { numbers: [4, 5] })).toBe(9);
    expect(seen[0]).toMatchObject({ iss: "jose", jti: "from-jose" });
  });

  it("accepts a token from the keygen CLI (authority and token round trip)", async () => {
    execFileSync(process.execPath, [BIN("zmq-keygen"), "authority", "--dir", fx.dir, "--name", "cli"]);
    await bob.close();
    bob = await startBob({ authority: join(fx.dir, "cli.pub.jwk") });
    const token = execFileSync(
      process.execPath,
      [BIN("zmq-keygen"), "token", "--sub", "alice", "--key", join(fx.dir, "alice.key"), "--scope", "call:batch_*", "--authority", join(fx.dir, "cli.jwk")],
      { encoding: "utf8" },
    ).trim();
    const a = await alice(token);
    expect(await a.call("bob", "batch_sum", { numbers: [1, 1] })).toBe(2);
  });

  it("optional mode: without requireToken, token-less calls pass and bad tokens are still refused", async () => {
    await bob.close();
    bob = await startBob({ requireToken: false });
    const plain = await alice();
    expect(await plain.call("bob", "batch_sum", { numbers: [1] })).toBe(1);
    await plain.close();
    expect(await refusedWith(tokenFor("alice", { aud: "x" }))).toBe("token_audience");
  });

  it("rotation: two authorities trusted at once through a JWK Set, then the old one removed", async () => {
    const next = generateAuthority();
    const setPath = join(fx.dir, "trusted.jwks");
    writeFileSync(setPath, JSON.stringify({ keys: [authority.publicJwk, next.publicJwk] }));
    await bob.close();
    bob = await startBob({ authority: setPath });
    const oldToken = tokenFor("alice");
    const newToken = createToken({ authority: next.privateJwk, sub: "alice", key: fx.key("alice"), scope: "call:batch_sum" });
    const a = await alice(oldToken);
    expect(await a.call("bob", "batch_sum", { numbers: [1] })).toBe(1);
    await a.close();
    const b = await alice(newToken);
    expect(await b.call("bob", "batch_sum", { numbers: [2] })).toBe(2);
    expect(new Set(seen.map((t) => t?.kid))).toEqual(new Set([authority.publicJwk.kid, next.publicJwk.kid]));
    await b.close();

    // The old authority retired: its (cached) tokens stop working, the new ones go on.
    writeFileSync(setPath, JSON.stringify({ keys: [next.publicJwk] }));
    const c = await alice(oldToken);
    const err = (await waitFor(() => c.call("bob", "batch_sum", { numbers: [1] }).then(() => undefined, (e: unknown) => e as RemoteError), 5000, "rotation"))!;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.code).toBe("token_invalid");
    await c.close();
    const d = await alice(newToken);
    expect(await d.call("bob", "batch_sum", { numbers: [3] })).toBe(3);
  });

  it("refreshes short-lived tokens from a provider across several expiries with no failed call", async () => {
    await bob.close();
    bob = await startBob({ clockSkew: 0 }); // no grace: a token used past exp would fail
    const issuer = new TokenIssuer(authority.privateJwk);
    let issued = 0;
    const a = await alice(() => {
      issued++;
      return issuer.issue({ sub: "alice", key: fx.key("alice"), scope: "call:batch_sum", ttl: 2 });
    });
    let ok = 0;
    let failed = 0;
    const errors = new Set<string>();
    const deadline = Date.now() + 20_000; // a safety net only: the loop ends on the 4th token
    while (issued < 4 && Date.now() < deadline) {
      try {
        await a.call("bob", "batch_sum", { numbers: [1] });
        ok++;
      } catch (err) {
        failed++;
        errors.add(String(err));
      }
    }
    expect([...errors]).toEqual([]);
    expect(failed).toBe(0);
    expect(issued).toBeGreaterThanOrEqual(4);
    expect(ok).toBeGreaterThan(0);
    // The tool saw at least three different tokens: calls went on across the changeovers.
    expect(new Set(seen.map((t) => t?.jti)).size).toBeGreaterThanOrEqual(3);
  });
});

describe("broker revocation and rate limit", () => {
  let fx: CertFixture;
  const agents: Agent[] = [];
  beforeEach(() => {
    fx = tempCerts("alice", "bob");
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.close();
    fx.cleanup();
  });

  it("zmq-broker --deny: a revoked key is refused `revoked` on its open connection after SIGHUP", async () => {
    const denyPath = join(fx.dir, "deny.json");
    writeFileSync(denyPath, JSON.stringify({ keys: [] }));
    const proc = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir, "--deny", denyPath, "--rate", "1000", "--burst", "1000"]);
    try {
      expect(proc.logs.find((l) => l["msg"] === "ready")).toMatchObject({ denyList: denyPath, rate: 1000, burst: 1000 });
      const bob = await connectAgent(fx, "bob", proc.endpoint);
      agents.push(bob);
      bob.tool("batch_sum", sumTool, (args) => sum(args));
      const alice = await connectAgent(fx, "alice", proc.endpoint);
      agents.push(alice);
      expect(await alice.call("bob", "batch_sum", { numbers: [1, 2] })).toBe(3);

      writeFileSync(denyPath, JSON.stringify({ keys: [fx.key("alice")] }));
      proc.proc.kill("SIGHUP");
      await waitFor(() => proc.logs.some((l) => l["msg"] === "deny list reloaded" && l["keys"] === 1), 5000, "deny list reload");
      const err = await rejection(alice.call("bob", "batch_sum", { numbers: [1] }));
      expect(err.code).toBe("revoked");
      expect(err.origin).toBe("broker");
      // Others are unaffected.
      expect(await bob.call(fx.key("bob"), "batch_sum", { numbers: [5] })).toBe(5);
    } finally {
      await proc.stop();
    }
  });

  it("rate limit: a sender above its bucket gets `rate_limited`, and gets through again once it refills", async () => {
    const broker = await startBroker(fx, { rateLimit: { perSecond: 5, burst: 3 } });
    try {
      const bob = await connectAgent(fx, "bob", broker.endpoint);
      agents.push(bob);
      bob.tool("batch_sum", sumTool, (args) => sum(args));
      const alice = await connectAgent(fx, "alice", broker.endpoint);
      agents.push(alice);
      const results = await Promise.allSettled(Array.from({ length: 12 }, () => alice.call("bob", "batch_sum", { numbers: [1] })));
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as RemoteError);
      expect(refused.length).toBeGreaterThan(0);
      for (const err of refused) {
        expect(err).toBeInstanceOf(RemoteError);
        expect(err.code).toBe("rate_limited");
        expect(err.origin).toBe("broker");
      }
      expect(broker.stats.refused.rate_limited).toBe(refused.length);
      const released = await waitFor(() => alice.call("bob", "batch_sum", { numbers: [7] }).catch(() => undefined), 5000, "bucket refill");
      expect(released).toBe(7);
    } finally {
      await broker.close();
    }
  });
});
