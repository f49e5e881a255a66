/**
 * `zmq-mcp expose --http --oauth-issuer`: the bridge as an OAuth resource server (src/mcp/oauth.ts)
 * in front of a real local issuer (an HTTP server on 127.0.0.1 serving RFC 8414 metadata and a
 * JWKS, and signing tokens with a key it holds).
 *
 * A valid token works through the official SDK client; every bad token (expired, not yet valid,
 * another audience, another issuer, an unknown kid, alg none, HS256 signed with the public key,
 * a missing scope, no exp) gets its 401/403 with the WWW-Authenticate the MCP authorization spec
 * asks for, and the bridge serves on. Unknown kids do not make the bridge hammer the issuer; a
 * rotated-in key is fetched; an issuer that is down is a 503 (no keys yet) or no problem (keys
 * known). The CLI wiring is checked with a real `zmq-mcp expose` process.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { ConfigError } from "../../src/errors.js";
import { MeshExposer } from "../../src/mcp/expose.js";
import { checkHttpSetup, serveHttp, type HttpExpose } from "../../src/mcp/http.js";
import { OAuthResourceServer } from "../../src/mcp/oauth.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN, spawnChild, type Child } from "../support/process.js";
import { sleep } from "../support/wait.js";

type Key = { kid: string; privateKey: CryptoKey; publicJwk: JWK };

async function newKey(kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" } };
}

const CLIENT = { id: "m2m-client", secret: "m2m-secret-0123456789" };

/**
 * A local authorization server: RFC 8414 metadata, a JWKS (whose keys the test may change), a
 * client_credentials token endpoint (client_secret_basic; the token's aud is the RFC 8707
 * `resource` asked for), hit counts; `stop()` takes it down.
 */
async function startIssuer(): Promise<{ url: string; keys: Key[]; hits: { metadata: number; jwks: number; token: number }; stop(): Promise<void> }> {
  const hits = { metadata: 0, jwks: 0, token: 0 };
  const keys: Key[] = [];
  let url = "";
  const server: Server = createServer((req, res) => {
    if (req.url === "/.well-known/oauth-authorization-server") {
      hits.metadata++;
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(
        JSON.stringify({
          issuer: url,
          jwks_uri: `${url}/jwks`,
          authorization_endpoint: `${url}/authorize`,
          token_endpoint: `${url}/token`,
          response_types_supported: ["code"],
          grant_types_supported: ["client_credentials"],
          token_endpoint_auth_methods_supported: ["client_secret_basic"],
        }),
      );
    }
    if (req.url === "/token" && req.method === "POST") {
      hits.token++;
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => {
        const form = new URLSearchParams(body);
        const basic = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64").toString();
        if (basic !== `${CLIENT.id}:${CLIENT.secret}` || form.get("grant_type") !== "client_credentials") {
          res.writeHead(401, { "content-type": "application/json" });
          return res.end(JSON.stringify({ error: "invalid_client" }));
        }
        const k = keys[0]!;
        void new SignJWT({ iss: url, aud: form.get("resource") ?? "", sub: CLIENT.id, scope: form.get("scope") ?? "", exp: Math.floor(Date.now() / 1000) + 300 })
          .setProtectedHeader({ alg: "ES256", kid: k.kid })
          .sign(k.privateKey)
          .then((jwt) => {
            res.writeHead(200, { "content-type": "application/json" });
            res.end(JSON.stringify({ access_token: jwt, token_type: "Bearer", expires_in: 300, scope: form.get("scope") ?? "" }));
          });
      });
      return;
    }
    if (req.url === "/jwks") {
      hits.jwks++;
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    keys,
    hits,
    stop: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("expose --http as an OAuth resource server", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;
  let bridge: Agent;
  let exposer: MeshExposer;
  let issuer: Awaited<ReturnType<typeof startIssuer>>;
  let served: HttpExpose;
  let key: Key;
  const now = () => Math.floor(Date.now() / 1000);

  /** A token signed by `k` (default: the issuer's key) with sensible claims, overridden by `claims`. */
  const token = (claims: JWTPayload = {}, k: Key = key, header: Record<string, unknown> = {}) =>
    new SignJWT({ iss: issuer.url, aud: served.url, sub: "user-1", scope: "mcp:tools profile", iat: now(), exp: now() + 300, ...claims })
      .setProtectedHeader({ alg: "ES256", kid: k.kid, ...header })
      .sign(k.privateKey);

  const post = (url: string, authorization?: string) =>
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...(authorization === undefined ? {} : { authorization }) },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: {} }),
    });

  async function sdkClient(url: string, bearer: string): Promise<Client> {
    const client = new Client({ name: "oauth-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } }));
    return client;
  }

  beforeAll(async () => {
    fx = tempCerts("bob", "bridge", "cli-bridge");
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint);
    bob.tool("add", { input: z.object({ a: z.number(), b: z.number() }) }, ({ a, b }) => ({ sum: a + b }));
    bridge = await connectAgent(fx, "bridge", broker.endpoint);
    exposer = new MeshExposer({ agent: bridge, targets: ["bob"], refreshInterval: 0 });
    issuer = await startIssuer();
    key = await newKey("k1");
    issuer.keys.push(key);
    const oauth = new OAuthResourceServer({ issuer: issuer.url, scopes: ["mcp:tools"], jwksCooldown: 300 });
    served = await serveHttp({ exposer, host: "127.0.0.1", port: 0, oauth });
  }, 30_000);

  afterAll(async () => {
    await served?.close();
    await exposer?.close();
    await bridge?.close();
    await bob?.close();
    await broker?.close();
    await issuer?.stop().catch(() => undefined);
    fx?.cleanup();
  });

  it("serves RFC 9728 metadata; a valid token works through the SDK client", async () => {
    const origin = new URL(served.url).origin;
    for (const path of ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]) {
      const res = await fetch(`${origin}${path}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        resource: served.url,
        authorization_servers: [issuer.url],
        bearer_methods_supported: ["header"],
        scopes_supported: ["mcp:tools"],
        resource_name: "zmq-mcp expose",
      });
    }
    const client = await sdkClient(served.url, await token());
    try {
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["add"]);
      expect(((await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })) as CallToolResult).structuredContent).toEqual({ sum: 5 });
    } finally {
      await client.close();
    }
  });

  it("the SDK client's own OAuth (ClientCredentialsProvider) finds the metadata from the 401, gets a token for this resource, and calls", async () => {
    const before = issuer.hits.token;
    const client = new Client({ name: "oauth-m2m", version: "1.0.0" });
    const authProvider = new ClientCredentialsProvider({ clientId: CLIENT.id, clientSecret: CLIENT.secret, scope: "mcp:tools", expectedIssuer: issuer.url });
    await client.connect(new StreamableHTTPClientTransport(new URL(served.url), { authProvider }));
    try {
      expect(((await client.callTool({ name: "add", arguments: { a: 20, b: 22 } })) as CallToolResult).structuredContent).toEqual({ sum: 42 });
      expect(issuer.hits.token).toBe(before + 1);
      // The token the SDK got names this endpoint as its audience (RFC 8707 resource indicator).
      const claims = JSON.parse(Buffer.from(authProvider.tokens()!.access_token.split(".")[1]!, "base64url").toString()) as { aud: string };
      expect(claims.aud).toBe(served.url);
    } finally {
      await client.close();
    }
  });

  it("no token: 401 pointing at the metadata, without an error code; a malformed header: invalid_token", async () => {
    const res = await post(served.url);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(`Bearer resource_metadata="${new URL(served.url).origin}/.well-known/oauth-protected-resource/mcp", scope="mcp:tools"`);
    const basic = await post(served.url, "Basic dXNlcjpwYXNz");
    expect(basic.status).toBe(401);
    expect(basic.headers.get("www-authenticate")).toMatch(/error="invalid_token"/);
  });

  it("each bad token is a 401 invalid_token (403 insufficient_scope for a missing scope), and the bridge serves on", async () => {
    const rogue = await newKey("rogue");
    const sameKidRogue = await newKey("k1");
    const publicKeyBytes = new TextEncoder().encode(JSON.stringify(key.publicJwk));
    const hs256 = await new SignJWT({ iss: issuer.url, aud: served.url, scope: "mcp:tools", exp: now() + 300 })
      .setProtectedHeader({ alg: "HS256", kid: key.kid })
      .sign(publicKeyBytes);
    const none = `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: issuer.url, aud: served.url, scope: "mcp:tools", exp: now() + 300 })}.`;
    const cases: Array<[string, string, RegExp]> = [
      ["expired", await token({ exp: now() - 600 }), /token expired/],
      ["not yet valid", await token({ nbf: now() + 600 }), /claim nbf invalid/],
      ["another audience (a token for another server)", await token({ aud: "https://other.example/mcp" }), /claim aud invalid/],
      ["another issuer", await token({ iss: "https://evil.example" }), /claim iss invalid/],
      ["no exp", await new SignJWT({ iss: issuer.url, aud: served.url, scope: "mcp:tools" }).setProtectedHeader({ alg: "ES256", kid: "k1" }).sign(key.privateKey), /claim exp invalid/],
      ["an unknown kid", await token({}, rogue), /no issuer key matches/],
      ["the issuer's kid, another key", await token({}, sameKidRogue), /signature invalid/],
      ["HS256 with the public key as secret", hs256, /algorithm not accepted/],
      ["alg none", none, /algorithm not accepted/],
      ["not a JWT", "abc.def.ghi", /invalid token/],
    ];
    for (const [what, bad, reason] of cases) {
      const res = await post(served.url, `Bearer ${bad}`);
      expect(res.status, what).toBe(401);
      const challenge = res.headers.get("www-authenticate") ?? "";
      expect(challenge, what).toMatch(/^Bearer resource_metadata="[^"]+", scope="mcp:tools", error="invalid_token", error_description="/);
      expect(challenge, what).toMatch(reason);
    }
    const noScope = await post(served.url, `Bearer ${await token({ scope: "profile" })}`);
    expect(noScope.status).toBe(403);
    expect(noScope.headers.get("www-authenticate")).toMatch(/^Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="[^"]+"/);
    // `scp` as a list is read too.
    expect((await post(served.url, `Bearer ${await token({ scope: undefined, scp: ["mcp:tools"] })}`)).status).toBe(200);
    expect((await post(served.url, `Bearer ${await token()}`)).status).toBe(200);
  });

  it("unknown kids refetch the JWKS at most once per cooldown; a rotated-in key is picked up", async () => {
    await sleep(400); // past the cooldown of the earlier fetches
    const before = issuer.hits.jwks;
    const rogue = await newKey("rogue2");
    const results = await Promise.all(Array.from({ length: 30 }, async () => (await post(served.url, `Bearer ${await token({}, rogue)}`)).status));
    expect(new Set(results)).toEqual(new Set([401]));
    expect(issuer.hits.jwks - before).toBeLessThanOrEqual(1);
    // The issuer rotates a new key in: once the cooldown has passed, its tokens verify.
    const k2 = await newKey("k2");
    issuer.keys.push(k2);
    await sleep(400);
    expect((await post(served.url, `Bearer ${await token({}, k2)}`)).status).toBe(200);
  });

  it("the issuer down: 503 with Retry-After while no keys are known; known keys keep working", async () => {
    const dead = await startIssuer();
    const deadUrl = dead.url;
    await dead.stop();
    const lonely = await serveHttp({ exposer, host: "127.0.0.1", port: 0, oauth: new OAuthResourceServer({ issuer: deadUrl, fetchTimeout: 1000 }) });
    try {
      const res = await post(lonely.url, `Bearer ${await token({ iss: deadUrl, aud: lonely.url })}`);
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("30");
      // The metadata is served all the same.
      expect((await fetch(`${new URL(lonely.url).origin}/.well-known/oauth-protected-resource`)).status).toBe(200);
    } finally {
      await lonely.close();
    }
    await issuer.stop();
    expect((await post(served.url, `Bearer ${await token()}`)).status).toBe(200);
  });

  it("a hostile issuer: metadata naming another issuer, a JWKS over the size cap, an issuer that never answers: 503, no keys trusted, bridge up", async () => {
    let mode: "other-issuer" | "huge" | "hang" = "other-issuer";
    let url = "";
    const held: ServerResponse[] = [];
    const server = createServer((req, res) => {
      if (mode === "hang") return void held.push(res); // accepts, never answers
      if (req.url === "/.well-known/oauth-authorization-server") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(JSON.stringify({ issuer: mode === "other-issuer" ? issuer.url : url, jwks_uri: `${url}/jwks` }));
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [key.publicJwk], padding: "x".repeat(300 * 1024) }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const m of ["other-issuer", "huge", "hang"] as const) {
        mode = m;
        const hostile = await serveHttp({ exposer, host: "127.0.0.1", port: 0, oauth: new OAuthResourceServer({ issuer: url, fetchTimeout: 500, jwksCooldown: 1 }) });
        try {
          // Signed with a key the hostile issuer serves: it must still not be trusted through a refused document.
          const res = await post(hostile.url, `Bearer ${await token({ iss: url, aud: hostile.url })}`);
          expect(res.status, m).toBe(503);
        } finally {
          await hostile.close();
        }
      }
    } finally {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    expect((await post(served.url, `Bearer ${await token()}`)).status).toBe(200);
  });

  it("checks the setup: an issuer over plain http off loopback, a token and an issuer both, a bad scope", () => {
    expect(() => new OAuthResourceServer({ issuer: "http://auth.example.com" })).toThrow(ConfigError);
    expect(() => new OAuthResourceServer({ issuer: "https://auth.example.com", scopes: ['a"b'] })).toThrow(ConfigError);
    const oauth = new OAuthResourceServer({ issuer: "https://auth.example.com" });
    expect(() => checkHttpSetup({ host: "127.0.0.1", token: "x".repeat(32), oauth })).toThrow(ConfigError);
    expect(() => checkHttpSetup({ host: "127.0.0.1", oauth })).not.toThrow();
  });
});

describe("zmq-mcp expose --http --oauth-issuer (the CLI)", () => {
  it("refuses --oauth-* without --http, and --oauth-issuer with --http-token", async () => {
    const fx = tempCerts("cli");
    try {
      const base = ["expose", "--to", "cli", "--cert", fx.secretPath("cli"), "--certs", fx.dir, "--broker", "tcp://127.0.0.1:1"];
      for (const extra of [["--oauth-issuer", "https://a.example"], ["--http", "127.0.0.1:0", "--oauth-issuer", "https://a.example", "--http-token-env", "X"], ["--http", "127.0.0.1:0", "--oauth-scope", "s"]]) {
        const child = spawnChild(BIN("zmq-mcp"), [...base, ...extra], "expose ready");
        await expect(child, extra.join(" ")).rejects.toThrow(/"code\\?":\\?"config\\?"/);
      }
    } finally {
      fx.cleanup();
    }
  }, 60_000);

  it("serves with a real issuer: metadata, 401 without a token, a valid token lists the tools", async () => {
    const fx = tempCerts("bob", "cli-bridge");
    const broker = await startBroker(fx);
    const bob = await connectAgent(fx, "bob", broker.endpoint);
    bob.tool("echo", { input: z.object({ s: z.string() }) }, ({ s }) => s);
    const issuer = await startIssuer();
    const key = await newKey("cli");
    issuer.keys.push(key);
    let child: Child | undefined;
    try {
      child = await spawnChild(BIN("zmq-mcp"), [
        "expose", "--to", "bob", "--broker", broker.endpoint, "--cert", fx.secretPath("cli-bridge"), "--certs", fx.dir,
        "--http", "127.0.0.1:0", "--oauth-issuer", issuer.url, "--oauth-scope", "mcp", "--oauth-audience", "zmcp-bridge",
      ], "expose ready");
      const url = child.ready["http"] as string;
      expect(((await (await fetch(`${new URL(url).origin}/.well-known/oauth-protected-resource/mcp`)).json()) as { resource: string }).resource).toBe(url);
      expect((await fetch(url, { method: "POST", body: "{}" })).status).toBe(401);
      const jwt = await new SignJWT({ iss: issuer.url, aud: "zmcp-bridge", scope: "mcp", exp: Math.floor(Date.now() / 1000) + 300 }).setProtectedHeader({ alg: "ES256", kid: "cli" }).sign(key.privateKey);
      const client = new Client({ name: "oauth-cli-test", version: "1.0.0" });
      await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${jwt}` } } }));
      try {
        expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["echo"]);
      } finally {
        await client.close();
      }
    } finally {
      await child?.stop();
      await issuer.stop();
      await bob.close();
      await broker.close();
      fx.cleanup();
    }
  }, 60_000);
});
