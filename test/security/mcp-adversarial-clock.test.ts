/**
 * Adversarial review of the MCP bridge: a wall clock that jumps (NTP stepping, a resumed VM, an
 * operator's `date -s`). Elapsed time was measured with Date.now():
 * - a 2026 task expired `ttlMs` after creation by the wall clock: a jump forward past the ttl
 *   dropped every running task (its mesh job aborted, its result lost); a jump back kept dead
 *   tasks (and their places under the caps) for as long as the jump;
 * - the OAuth resource server's JWKS cooldown and key age: after a jump back of an hour, no
 *   refetch for an hour, so tokens signed with a key the issuer rotated in were refused.
 * Only the Date clock is faked here (timers stay real), as a jump would look to the process.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ExtensionTaskStore, TaskProtocolError } from "../../src/mcp/expose-tasks.js";
import { OAuthResourceServer } from "../../src/mcp/oauth.js";
import { sleep } from "../support/wait.js";

const HOUR = 3_600_000;

function thrown(f: () => unknown): TaskProtocolError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(TaskProtocolError);
    return err as TaskProtocolError;
  }
  throw new Error("did not throw");
}

describe("mcp adversarial: a wall clock that jumps", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("tasks: a jump forward past the ttl does not expire a running task nor abort its job", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const store = new ExtensionTaskStore({ ttlMs: HOUR });
    const { task, signal } = store.create("alice");
    vi.setSystemTime(Date.now() + 2 * HOUR);
    expect(store.get("alice", task.taskId)).toMatchObject({ status: "working" });
    store.create("bob"); // a create sweeps
    expect(signal.aborted).toBe(false);
    expect(store.size).toBe(2);
  });

  it("tasks: after a jump back, a task still expires once its ttl has elapsed", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const store = new ExtensionTaskStore({ ttlMs: 200 });
    const { task, signal } = store.create("alice");
    vi.setSystemTime(Date.now() - HOUR);
    await sleep(1100);
    expect(thrown(() => store.get("alice", task.taskId))).toMatchObject({ code: -32602, message: "Failed to retrieve task: Task not found" });
    store.create("bob");
    expect(signal.aborted).toBe(true);
    expect(store.size).toBe(1);
  });

  it("oauth: after a jump back, a key the issuer rotated in is fetched once the cooldown has elapsed", async () => {
    const keys: Array<{ kid: string; privateKey: CryptoKey; jwk: JWK }> = [];
    const newKey = async (kid: string) => {
      const pair = await generateKeyPair("ES256", { extractable: true });
      keys.push({ kid, privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: "ES256", use: "sig" } });
    };
    let url = "";
    let jwksHits = 0;
    const issuer: Server = createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      if (req.url === "/jwks") {
        jwksHits++;
        return res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
      }
      res.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/jwks` }));
    });
    await new Promise<void>((resolve) => issuer.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}`;
    try {
      await newKey("k1");
      const oauth = new OAuthResourceServer({ issuer: url, resource: "http://127.0.0.1:1/mcp", jwksCooldown: 300 });
      const request = async (kid: string) => {
        const k = keys.find((x) => x.kid === kid)!;
        const now = Math.floor(Date.now() / 1000);
        const jwt = await new SignJWT({ iss: url, aud: oauth.audience, sub: "alice", iat: now, exp: now + 300 }).setProtectedHeader({ alg: "ES256", kid }).sign(k.privateKey);
        return oauth.check({ headers: { authorization: `Bearer ${jwt}` } } as IncomingMessage);
      };
      expect(await request("k1")).toMatchObject({ ok: true });
      expect(jwksHits).toBe(1);
      vi.useFakeTimers({ toFake: ["Date"] });
      vi.setSystemTime(Date.now() - HOUR);
      await newKey("k2");
      await sleep(500); // past the 300 ms cooldown, by any clock that does not jump
      expect(await request("k2")).toMatchObject({ ok: true });
      expect(jwksHits).toBe(2);
    } finally {
      vi.useRealTimers();
      issuer.closeAllConnections();
      await new Promise<void>((resolve) => issuer.close(() => resolve()));
    }
  });
});
