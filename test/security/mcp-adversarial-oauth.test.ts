/**
 * Adversarial review of `expose --http --oauth-issuer`: who owns a 2026 task.
 *
 * The owner of a task created over HTTP with OAuth is derived from the access token's claims.
 * It used to be `iss|sub ?? client_id ?? ""`, stringified: a token naming nobody (no `sub`, no
 * `client_id`) was the identity `iss|`, shared by every such token; a client whose
 * `client_id` equals a user's `sub` was that user; `sub: 7` was `sub: "7"`. Each reached the
 * other's tasks (`tasks/get` showed its result, `tasks/cancel` stopped its job). Here a real
 * local issuer signs tokens of each shape, and one holder must never reach another's task.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { MeshExposer } from "../../src/mcp/expose.js";
import { serveHttp, type HttpExpose } from "../../src/mcp/http.js";
import { OAuthResourceServer } from "../../src/mcp/oauth.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

const MODERN = "2026-07-28";
const TASKS = "io.modelcontextprotocol/tasks";
type Json = Record<string, unknown>;
let nextId = 1;

/** One 2026-07-28 request over HTTP declaring the tasks extension; its HTTP status and JSON-RPC response. */
async function rpc(url: string, bearer: string, method: string, params: Json): Promise<{ status: number; body: Json }> {
  const name = params["name"] ?? params["taskId"];
  const res = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${bearer}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": MODERN,
      "mcp-method": method,
      ...(typeof name === "string" ? { "mcp-name": name } : {}),
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: nextId++,
      method,
      params: {
        ...params,
        _meta: {
          "io.modelcontextprotocol/protocolVersion": MODERN,
          "io.modelcontextprotocol/clientInfo": { name: "adversary", version: "1.0.0" },
          "io.modelcontextprotocol/clientCapabilities": { extensions: { [TASKS]: {} } },
        },
      },
    }),
  });
  const text = await res.text();
  const data = text.startsWith("{") ? text : (text.split("\n").filter((l) => l.startsWith("data: ")).at(-1) ?? "data: {}").slice(6);
  return { status: res.status, body: JSON.parse(data) as Json };
}

describe("mcp adversarial: OAuth identities own their tasks, and only theirs", () => {
  let fx: CertFixture;
  let broker: Broker;
  let worker: Agent;
  let bridge: Agent;
  let exposer: MeshExposer;
  let served: HttpExpose;
  let issuerServer: Server;
  let issuerUrl = "";
  let privateKey: CryptoKey;
  let publicJwk: JWK;
  const now = () => Math.floor(Date.now() / 1000);

  /** A token of the issuer with `claims` exactly (plus iss, aud, exp); `sub` only if given. */
  const token = (claims: JWTPayload) =>
    new SignJWT({ iss: issuerUrl, aud: served.url, exp: now() + 300, ...claims }).setProtectedHeader({ alg: "ES256", kid: "k1" }).sign(privateKey);

  beforeAll(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    privateKey = pair.privateKey;
    publicJwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    issuerServer = createServer((req, res) => {
      res.writeHead(req.url === "/.well-known/oauth-authorization-server" || req.url === "/jwks" ? 200 : 404, { "content-type": "application/json" });
      if (req.url === "/.well-known/oauth-authorization-server") return res.end(JSON.stringify({ issuer: issuerUrl, jwks_uri: `${issuerUrl}/jwks` }));
      if (req.url === "/jwks") return res.end(JSON.stringify({ keys: [publicJwk] }));
      res.end();
    });
    await new Promise<void>((resolve) => issuerServer.listen(0, "127.0.0.1", resolve));
    issuerUrl = `http://127.0.0.1:${(issuerServer.address() as AddressInfo).port}`;

    fx = tempCerts("worker", "bridge");
    broker = await startBroker(fx);
    worker = await connectAgent(fx, "worker", broker.endpoint);
    worker.tool("slow", { input: z.object({ ms: z.number().int().min(1).max(5000) }), job: true }, async ({ ms }, ctx) => {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, ms);
        ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(new Error("cancelled"))), { once: true });
      });
      return { secret: "result of the token holder who started it" };
    });
    bridge = await connectAgent(fx, "bridge", broker.endpoint);
    exposer = new MeshExposer({ agent: bridge, targets: ["worker"], refreshInterval: 0 });
    served = await serveHttp({ exposer, host: "127.0.0.1", port: 0, oauth: new OAuthResourceServer({ issuer: issuerUrl }) });
  }, 30_000);

  afterAll(async () => {
    await served?.close();
    await exposer?.close();
    await bridge?.close();
    await worker?.close();
    await broker?.close();
    issuerServer?.closeAllConnections();
    await new Promise<void>((resolve) => issuerServer?.close(() => resolve()) ?? resolve());
    fx?.cleanup();
  });

  const result = (r: { body: Json }) => r.body["result"] as Json;
  const error = (r: { body: Json }) => r.body["error"] as { code: number; message: string };

  it("a client whose client_id equals a user's sub does not reach that user's task", async () => {
    const user = await token({ sub: "alice" });
    const client = await token({ client_id: "alice" });
    const started = await rpc(served.url, user, "tools/call", { name: "slow", arguments: { ms: 2000 } });
    expect(started.status).toBe(200);
    const task = result(started);
    expect(task).toMatchObject({ resultType: "task", status: "working" });
    const theirs = await rpc(served.url, client, "tasks/get", { taskId: task["taskId"] });
    expect(error(theirs)).toMatchObject({ code: -32602, message: "Failed to retrieve task: Task not found" });
    expect(error(await rpc(served.url, client, "tasks/cancel", { taskId: task["taskId"] }))).toMatchObject({ code: -32602 });
    // The owner still sees it, running (the other's cancel did nothing).
    expect(result(await rpc(served.url, user, "tasks/get", { taskId: task["taskId"] }))).toMatchObject({ status: "working" });
  }, 20_000);

  it("tokens that name nobody (no sub, no client_id) own no tasks: a job tool runs as a plain call, and no task is shared between them", async () => {
    const first = await token({ jti: "one" });
    const second = await token({ jti: "two" });
    const called = await rpc(served.url, first, "tools/call", { name: "slow", arguments: { ms: 10 } });
    expect(called.status).toBe(200);
    // No owner: not a task, the call's own result (nobody else can poll it).
    expect(result(called)).toMatchObject({ structuredContent: { secret: expect.any(String) } });
    expect(result(called)["resultType"]).not.toBe("task");
    // And a task of a named holder is not reachable by them either.
    const named = result(await rpc(served.url, await token({ sub: "bob" }), "tools/call", { name: "slow", arguments: { ms: 2000 } }));
    expect(named).toMatchObject({ resultType: "task" });
    expect(error(await rpc(served.url, second, "tasks/get", { taskId: named["taskId"] }))).toMatchObject({ code: -32602 });
  }, 20_000);

  it("a sub or client_id that is not a string is refused (401 invalid_token), not stringified into someone else's identity", async () => {
    for (const claims of [{ sub: 7 }, { sub: ["alice"] }, { client_id: { id: "alice" } }] as JWTPayload[]) {
      const res = await rpc(served.url, await token(claims), "tools/call", { name: "slow", arguments: { ms: 10 } });
      expect(res.status).toBe(401);
      expect(error(res).message).toMatch(/invalid/);
    }
    // The bridge serves on for a good token.
    const ok = await rpc(served.url, await token({ sub: "carol" }), "tools/call", { name: "slow", arguments: { ms: 10 } });
    expect(result(ok)).toMatchObject({ resultType: "task" });
  }, 20_000);
});
