/**
 * `zmq-mcp expose --http`: the official SDK client over stateless Streamable HTTP, through a
 * round-robin balancer in front of two `expose --http` processes (so consecutive requests of
 * one client land on different processes), the bearer token check, and the bind rules.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client as Client2026, StreamableHTTPClientTransport as StreamableHTTPClientTransport2026 } from "@modelcontextprotocol/client";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ErrorCode, McpError, type CallToolResult, type Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { BIN, built, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const TOKEN = "test-bearer-token-0123456789abcdef";

/** A tiny round-robin HTTP balancer: each request goes to the next backend; counts per backend. */
async function roundRobin(backends: string[]): Promise<{ url: string; hits: number[]; close(): Promise<void> }> {
  const hits = backends.map(() => 0);
  let next = 0;
  const server: Server = createServer((req, res) => {
    const i = next++ % backends.length;
    hits[i]!++;
    const target = new URL(req.url ?? "/", backends[i]);
    // One connection per request (agent: false): nothing is shared between backends' exchanges.
    const upstream = httpRequest(target, { method: req.method, headers: req.headers, agent: false }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    // The client went away before the answer ended: so does the exchange with the backend.
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    hits,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function text(result: unknown): string {
  return (result as CallToolResult).content.map((c) => (c.type === "text" ? c.text : "")).join("");
}

async function httpClient(url: string, token: string): Promise<Client> {
  const client = new Client({ name: "http-test", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return client;
}

describe("zmq-mcp expose --http", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let bob: Child;
  let dir: string;
  let tokenFile: string;
  const exposes: Child[] = [];
  // Each process has its own key: two connections with one key would take each other's answers.
  const common = (cert: string) => ["--to", "bob", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath(cert), "--http-token", `@${tokenFile}`];

  beforeAll(async () => {
    fx = tempCerts("bob", "mcp", "mcp0", "mcp1", "page0", "page1");
    dir = mkdtempSync(join(tmpdir(), "zmcp-http-"));
    tokenFile = join(dir, "http.token");
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", fx.secretPath("bob"), "--certs", fx.dir, "--name", "bob"], "agent ready");
    for (let i = 0; i < 2; i++) exposes.push(await spawnChild(BIN("zmq-mcp"), ["expose", ...common(`mcp${i}`), "--http", "127.0.0.1:0"], "expose ready"));
  });
  afterAll(async () => {
    for (const e of exposes) await e.stop();
    await bob?.stop();
    await broker?.stop();
    fx.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("two stateless expose processes behind a round-robin balancer serve one SDK client", async () => {
    const urls = exposes.map((e) => e.ready["http"] as string);
    for (const url of urls) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const lb = await roundRobin(urls);
    const client = await httpClient(lb.url, TOKEN);
    try {
      // Stateless: no session id, no tasks (a task would live in one process only).
      expect(client.getServerCapabilities()?.tasks).toBeUndefined();
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(["batch_sum", "poll_job", "server_identity", "start_long_task"]);
      expect(tools.find((t) => t.name === "start_long_task")!.execution).toBeUndefined();
      for (let i = 1; i <= 6; i++) {
        const sum = (await client.callTool({ name: "batch_sum", arguments: { numbers: [i, 1] } })) as CallToolResult;
        expect(sum.structuredContent).toEqual({ count: 2, total: i + 1 });
      }
      // A job tool: its progress comes on the POST's event stream, then its result.
      const progress: Progress[] = [];
      const long = (await client.callTool({ name: "start_long_task", arguments: { seconds: 2, payload: { via: "http" } } }, undefined, {
        onprogress: (p) => progress.push(p),
        timeout: 15_000,
      })) as CallToolResult;
      expect(long.structuredContent).toEqual({ payload: { via: "http" }, seconds: 2 });
      expect(progress.length).toBeGreaterThanOrEqual(1);
      // Both processes answered some of this one client's requests.
      expect(lb.hits[0]).toBeGreaterThanOrEqual(3);
      expect(lb.hits[1]).toBeGreaterThanOrEqual(3);
    } finally {
      await client.close();
      await lb.close();
    }
  });

  for (const mode of ["legacy", "auto"] as const) {
    it(`the 2026 client package (@modelcontextprotocol/client 2.x, versionNegotiation ${mode}) lists and calls through the balancer`, async () => {
      const lb = await roundRobin(exposes.map((e) => e.ready["http"] as string));
      // "auto" first probes with server/discover (2026-07-28): expose answers it, and the client
      // goes on in that era, each request on whichever process the balancer picks.
      const client = new Client2026({ name: "http-test-2026", version: "1.0.0" }, { versionNegotiation: { mode } });
      await client.connect(new StreamableHTTPClientTransport2026(new URL(lb.url), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
      try {
        expect(client.getNegotiatedProtocolVersion()).toBe(mode === "auto" ? "2026-07-28" : "2025-11-25");
        const { tools } = await client.listTools();
        expect(tools.map((t) => t.name).sort()).toEqual(["batch_sum", "poll_job", "server_identity", "start_long_task"]);
        const sum = await client.callTool({ name: "batch_sum", arguments: { numbers: [4, 5] } });
        expect(sum.structuredContent).toEqual({ count: 2, total: 9 });
        const progress: Array<{ progress: number }> = [];
        const long = await client.callTool({ name: "start_long_task", arguments: { seconds: 1, payload: { era: 2026 } } }, { onprogress: (p) => progress.push(p), timeout: 15_000 });
        expect(long.structuredContent).toEqual({ payload: { era: 2026 }, seconds: 1 });
        expect(progress.length).toBeGreaterThanOrEqual(1);
        expect(lb.hits[0]).toBeGreaterThanOrEqual(1);
        expect(lb.hits[1]).toBeGreaterThanOrEqual(1);
      } finally {
        await client.close();
        await lb.close();
      }
    });
  }

  it("pagination: tools/list pages (--page-size) continue on whichever process gets the cursor", async () => {
    const paged: Child[] = [];
    for (let i = 0; i < 2; i++) paged.push(await spawnChild(BIN("zmq-mcp"), ["expose", ...common(`page${i}`), "--http", "127.0.0.1:0", "--page-size", "1"], "expose ready"));
    const lb = await roundRobin(paged.map((e) => e.ready["http"] as string));
    const client = await httpClient(lb.url, TOKEN);
    try {
      const names: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const listed = await client.listTools(cursor === undefined ? {} : { cursor });
        expect(listed.tools.length).toBe(1);
        names.push(...listed.tools.map((t) => t.name));
        cursor = listed.nextCursor;
        if (cursor === undefined) break;
      }
      expect(names.sort()).toEqual(["batch_sum", "poll_job", "server_identity", "start_long_task"]);
      const bad = await client.listTools({ cursor: "not-a-cursor" }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(bad).toBeInstanceOf(McpError);
      expect((bad as McpError).code).toBe(ErrorCode.InvalidParams);
      expect(lb.hits[0]).toBeGreaterThanOrEqual(2);
      expect(lb.hits[1]).toBeGreaterThanOrEqual(2);
    } finally {
      await client.close();
      await lb.close();
      for (const p of paged) await p.stop();
    }
  });

  it("closing the client mid-job cancels the mesh job", async () => {
    const [first] = exposes as [Child];
    const client = await httpClient(first.ready["http"] as string, TOKEN);
    let running: () => void = () => undefined;
    const progressed = new Promise<void>((resolve) => (running = resolve));
    const call = client.callTool({ name: "start_long_task", arguments: { seconds: 20 } }, undefined, { onprogress: () => running(), timeout: 30_000 });
    call.catch(() => undefined);
    // The job runs (its first progress came through the POST's stream); then the client goes away.
    await progressed;
    await client.close();
    const cancelled = await first.waitLog((e) => e["msg"] === "cancelling mesh job", "the job to be cancelled", 10_000);
    expect(cancelled["tool"]).toBe("start_long_task");
  });

  it("refuses a missing or wrong bearer token with 401, and GET with 405", async () => {
    const url = exposes[0]!.ready["http"] as string;
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: {} });
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    const none = await fetch(url, { method: "POST", headers, body });
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer /);
    const wrong = await fetch(url, { method: "POST", headers: { ...headers, authorization: `Bearer ${TOKEN}x` }, body });
    expect(wrong.status).toBe(401);
    const prefix = await fetch(url, { method: "POST", headers: { ...headers, authorization: `Bearer ${TOKEN.slice(0, -1)}` }, body });
    expect(prefix.status).toBe(401);
    const get = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(get.status).toBe(405);
    // The SDK client with a wrong token cannot connect; with the right one it can.
    await expect(httpClient(url, "not-the-token-at-all-00")).rejects.toThrow(/401|Unauthorized/);
    const ok = await httpClient(url, TOKEN);
    expect(text(await ok.callTool({ name: "batch_sum", arguments: { numbers: [2, 2] } }))).toBe('{"count":2,"total":4}');
    await ok.close();
    await waitFor(() => exposes[0]!.logs.some((e) => e["msg"] === "http request refused"), 5000, "the refusal logged"); // another process's log line: it may come after what the test saw
  });

  it("refuses a non-loopback bind without --http-public, a missing or short token, and a literal token", async () => {
    const run = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const out = await promisify(execFile)(process.execPath, [BIN("zmq-mcp"), "expose", ...args], { env: { PATH: process.env["PATH"], ...env } }).then(
        () => ({ code: 0, stderr: "" }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
      const last = out.stderr.trim().split("\n").at(-1) ?? "{}";
      return { code: out.code, error: JSON.parse(last) as { code: string; message: string } };
    };
    const base = ["--to", "bob", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("mcp")];
    const publicBind = await run([...base, "--http", "0.0.0.0:0", "--http-token", `@${tokenFile}`]);
    expect(publicBind).toMatchObject({ code: 1, error: { code: "config" } });
    expect(publicBind.error.message).toMatch(/not a loopback address.*--http-public/);
    expect(await run([...base, "--http", "127.0.0.1:0"])).toMatchObject({ code: 1, error: { code: "config", message: expect.stringMatching(/needs a bearer token/) } });
    expect(await run([...base, "--http", "127.0.0.1:0"], { ZMCP_HTTP_TOKEN: "short" })).toMatchObject({ code: 1, error: { code: "config", message: expect.stringMatching(/at least 16/) } });
    expect(await run([...base, "--http", "127.0.0.1:0", "--http-token", TOKEN])).toMatchObject({ code: 1, error: { code: "config" } });
    // With --http-public the bind passes the address check (and then the short token is what is refused).
    const allowed = await run([...base, "--http", "0.0.0.0:0", "--http-public"], { ZMCP_HTTP_TOKEN: "short" });
    expect(allowed).toMatchObject({ code: 1, error: { code: "config", message: expect.stringMatching(/at least 16/) } });
  });
});
