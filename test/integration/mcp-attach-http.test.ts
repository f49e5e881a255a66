/**
 * `zmq-mcp attach --url`: a remote MCP server over Streamable HTTP joins the mesh.
 *
 * The server is the SDK v1's McpServer behind its StreamableHTTPServerTransport, stateful, in
 * a child process on 127.0.0.1 (test/support/mcp-http-server.ts), requiring a bearer token.
 * Its tools, resources, prompts and a job tool's progress reach mesh callers; the server
 * stopped and started again (a new process, its sessions gone) → calls wait and recover, a call
 * that arrived while it was down runs once; a session the server forgot (HTTP 404) → a new
 * session, the call answered. The bearer token is sent (the server refuses requests without
 * it, and the attach then fails `config`). The CLI takes `--url` and `--bearer @FILE`, and
 * refuses a token on the command line.
 *
 * The hostile server (a raw node:http server in this process) answers `initialize` and
 * `tools/list`, then never answers one tool, and answers another with 4 MiB (JSON) or a 4 MiB
 * event (event stream): typed mesh errors (`timeout` at the caller's deadline, `too_large`),
 * the hung exchange is aborted at the deadline, the attach process stays up and serves on.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { McpAttachment } from "../../src/mcp/attach.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN, built, spawnChild, type Child } from "../support/process.js";
import { sleep, waitFor } from "../support/wait.js";

const TOKEN = "s3cret-http-token";
const text = (r: unknown) => ((r as CallToolResult).content[0] as { text: string }).text;

describe("attach over Streamable HTTP", () => {
  let fx: CertFixture;
  let broker: Broker;
  let host: Agent;
  let caller: Agent;
  let server: Child | undefined;
  let port = 0;
  let attachment: McpAttachment;

  const startServer = async () => {
    server = await spawnChild(built("test/support/mcp-http-server.js"), ["--port", String(port), "--token-file", join(fx.dir, "..", "http-token")], "mcp http ready");
    port = server.ready["port"] as number;
    return server;
  };

  beforeAll(async () => {
    fx = tempCerts("host", "caller", "cli");
    writeFileSync(join(fx.dir, "..", "http-token"), `${TOKEN}\n`, { mode: 0o600 });
    broker = await startBroker(fx);
    host = await connectAgent(fx, "host", broker.endpoint);
    caller = await connectAgent(fx, "caller", broker.endpoint, { timeout: 20_000 });
    await startServer();
    attachment = await McpAttachment.start({
      agent: host,
      url: `http://127.0.0.1:${port}/mcp`,
      headers: { Authorization: `Bearer ${TOKEN}` },
      jobs: ["slow"],
      restartDelay: 100,
      maxRestartDelay: 500,
    });
  }, 30_000);

  afterAll(async () => {
    await attachment?.close();
    await server?.stop();
    await caller?.close();
    await host?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("the server's tools, resources, prompts and progress reach the mesh", async () => {
    const tools = await caller.listTools("host");
    expect(tools.map((t) => t.name).sort()).toEqual(["calls", "echo", "slow"]);
    expect(tools.find((t) => t.name === "echo")!.annotations).toEqual({ readOnlyHint: true });
    const echoed = (await caller.call("host", "echo", { text: "hi" })) as CallToolResult;
    expect(echoed.structuredContent).toEqual({ pid: server!.proc.pid, text: "hi" });
    expect((await caller.listResources("host")).map((r) => r.uri)).toEqual(["web://motd"]);
    expect((await caller.readResource("host", "web://motd")).contents[0]).toMatchObject({ text: "hello over http" });
    expect((await caller.readResource("host", "web://note/7")).contents[0]).toMatchObject({ text: "note 7" });
    const prompt = await caller.getPrompt("host", "greet", { name: "Ada" });
    expect(prompt.messages[0]!.content).toEqual({ type: "text", text: "Greet Ada." });
    const job = await caller.start("host", "slow", { n: 3 });
    const seen: number[] = [];
    job.on("progress", (p) => seen.push(p.progress));
    expect(text(await job.result)).toBe("slow 3");
    await waitFor(() => seen.includes(3), 2000, "progress");
    // Arguments are checked against the server's schema before it sees them.
    const bad = await caller.call("host", "slow", { n: "many" }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(RemoteError);
    expect((bad as RemoteError).code).toBe("invalid_args");
  });

  it("a session the server forgot (404) is a lost connection: a new session, the call answered", async () => {
    const before = attachment.restarts;
    // Clears the server's session table, as a server that restarted behind a proxy would have.
    await fetch(`http://127.0.0.1:${port}/forget`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(text(await caller.call("host", "echo", { text: "after 404" }))).toBe(`${server!.proc.pid}:after 404`);
    expect(attachment.restarts).toBe(before + 1);
  });

  it("the server stopped and started again: a call made while it is down waits, runs once, and calls go on", async () => {
    const before = attachment.restarts;
    const oldPid = server!.proc.pid;
    await server!.stop();
    // Not idempotent: made again only because the request never reached the server.
    const pending = caller.call("host", "calls", {}, { timeout: 20_000 });
    await sleep(1000);
    await startServer();
    expect(text(await pending)).toBe("1");
    expect(server!.logs.filter((l) => l["msg"] === "calls")).toHaveLength(1);
    const echoed = (await caller.call("host", "echo", { text: "back" })) as CallToolResult;
    expect(echoed.structuredContent).toEqual({ pid: server!.proc.pid, text: "back" });
    expect(server!.proc.pid).not.toBe(oldPid);
    expect(attachment.restarts).toBeGreaterThan(before);
    expect((await caller.readResource("host", "web://motd")).contents[0]).toMatchObject({ text: "hello over http" });
  }, 30_000);

  it("while the server stays down, a call fails busy at its deadline (typed), not hanging", async () => {
    await server!.stop();
    try {
      const err = await caller.call("host", "echo", { text: "nobody" }, { timeout: 1500, retry: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ZmcpError);
      expect(["busy", "timeout"]).toContain((err as ZmcpError).code);
    } finally {
      await startServer();
    }
    await waitFor(async () => text(await caller.call("host", "echo", { text: "up" }).catch(() => ({ content: [{ text: "" }] }))).endsWith(":up"), 15_000, "server back");
  }, 30_000);

  it("the bearer token is sent: without it, or with another, the server refuses and the attach fails config", async () => {
    for (const headers of [undefined, { Authorization: "Bearer wrong" }]) {
      const err = await McpAttachment.start({ agent: host, url: `http://127.0.0.1:${port}/mcp`, ...(headers ? { headers } : {}), startTimeout: 5000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ZmcpError);
      expect((err as ZmcpError).code).toBe("config");
      expect((err as Error).message).toContain("401");
    }
    expect(server!.logs.filter((l) => l["msg"] === "refused: bad bearer").map((l) => l["got"])).toEqual(expect.arrayContaining(["none", "other"]));
  });

  it("a URL that is not http(s), or carries credentials, is refused (config)", async () => {
    for (const url of ["ftp://127.0.0.1/mcp", "http://user:pw@127.0.0.1:1/mcp", "not a url"]) {
      const err = await McpAttachment.start({ agent: host, url }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ZmcpError);
      expect((err as ZmcpError).code).toBe("config");
    }
    const both = await McpAttachment.start({ agent: host, url: `http://127.0.0.1:${port}/mcp`, command: "node" }).catch((e: unknown) => e);
    expect((both as ZmcpError).code).toBe("config");
  });

  it("the CLI: --url with --bearer @FILE attaches; a literal --bearer or Authorization header is refused", async () => {
    const common = ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("cli"), "--url", `http://127.0.0.1:${port}/mcp`];
    const cli = await spawnChild(BIN("zmq-mcp"), [...common, "--bearer", `@${join(fx.dir, "..", "http-token")}`], "attach ready", { timeoutMs: 20_000 });
    try {
      expect(cli.ready["url"]).toBe(`http://127.0.0.1:${port}/mcp`);
      expect(text(await caller.call("cli", "echo", { text: "cli" }))).toBe(`${server!.proc.pid}:cli`);
    } finally {
      await cli.stop();
    }
    for (const bad of [
      ["--bearer", TOKEN],
      ["--header", `Authorization: Bearer ${TOKEN}`],
      ["--env", "A=B"],
    ]) {
      const { code, stderr } = await runCli([...common, ...bad]);
      expect(code).not.toBe(0);
      expect(stderr).toContain('"code":"config"');
    }
    const help = await runCli(["attach", "--help"]);
    expect(help.stdout).toContain("--url <url>");
    expect(help.stdout).toContain("--bearer <@file>");
  }, 30_000);
});

/** Runs the CLI to its end (bounded), with its exit code and output. */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN("zmq-mcp"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`zmq-mcp ${args.join(" ")} did not end: ${stderr}`));
    }, 15_000);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("attach over Streamable HTTP: a hostile server", () => {
  const BIG = 4 * 1024 * 1024;
  let fx: CertFixture;
  let broker: Broker;
  let caller: Agent;
  let http: Server;
  let attach: Child;
  let hung = 0;
  let aborted = 0;

  const tools = ["hang", "huge_json", "huge_sse", "fine"].map((name) => ({ name, inputSchema: { type: "object" } }));
  const answer = (res: ServerResponse, id: unknown, result: unknown): void => void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id, result }));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "POST") return void res.writeHead(405).end();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const msg = JSON.parse(Buffer.concat(chunks).toString()) as { id?: unknown; method: string; params?: { name?: string } };
    if (msg.id === undefined) return void res.writeHead(202).end();
    if (msg.method === "initialize") return answer(res, msg.id, { protocolVersion: "2025-06-18", capabilities: { tools: {} }, serverInfo: { name: "hostile", version: "1" } });
    if (msg.method === "tools/list") return answer(res, msg.id, { tools });
    if (msg.method !== "tools/call") return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "no" } }));
    const name = msg.params?.name;
    if (name === "hang") {
      hung++;
      res.writeHead(200, { "content-type": "application/json" });
      res.flushHeaders();
      req.socket.once("close", () => aborted++);
      return; // never answers
    }
    const huge = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { content: [{ type: "text", text: "x".repeat(BIG) }] } });
    if (name === "huge_json") return void res.writeHead(200, { "content-type": "application/json" }).end(huge);
    if (name === "huge_sse") return void res.writeHead(200, { "content-type": "text/event-stream" }).end(`event: message\ndata: ${huge}\n\n`);
    return answer(res, msg.id, { content: [{ type: "text", text: "fine" }] });
  }

  beforeAll(async () => {
    fx = tempCerts("attach", "caller");
    broker = await startBroker(fx);
    caller = await connectAgent(fx, "caller", broker.endpoint, { timeout: 20_000 });
    http = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    attach = await spawnChild(BIN("zmq-mcp"), ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("attach"), "--url", url, "--max-response-bytes", String(1024 * 1024)], "attach ready", {
      timeoutMs: 20_000,
    });
  }, 30_000);

  afterAll(async () => {
    await attach?.stop();
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
    await caller?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("a tool that never answers: the caller gets timeout at its deadline, the exchange is aborted, the bridge serves on", async () => {
    const err = await caller.call("attach", "hang", {}, { timeout: 1500, retry: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZmcpError);
    expect((err as ZmcpError).code).toBe("timeout");
    expect(hung).toBe(1);
    // The SDK gives up at the deadline and cancels; the HTTP exchange ends with it.
    await waitFor(() => aborted === 1, 10_000, "the hung exchange aborted");
    expect(text(await caller.call("attach", "fine", {}))).toBe("fine");
    expect(attach.alive()).toBe(true);
  });

  for (const tool of ["huge_json", "huge_sse"]) {
    it(`${tool}: an answer past --max-response-bytes is too_large at once, the bridge serves on`, async () => {
      const err = await caller.call("attach", tool, {}, { timeout: 10_000, retry: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect((err as RemoteError).code).toBe("too_large");
      expect((err as RemoteError).message).toContain(`exceeds ${1024 * 1024} bytes`);
      expect(text(await caller.call("attach", "fine", {}))).toBe("fine");
      expect(attach.alive()).toBe(true);
    });
  }
});

describe("attach over Streamable HTTP: a server of the 2026-07-28 era only", () => {
  let fx: CertFixture;
  let broker: Broker;
  let host: Agent;
  let caller: Agent;
  let server: Child;
  let attachment: McpAttachment;

  beforeAll(async () => {
    fx = tempCerts("host", "caller");
    broker = await startBroker(fx);
    host = await connectAgent(fx, "host", broker.endpoint);
    caller = await connectAgent(fx, "caller", broker.endpoint, { timeout: 20_000 });
    server = await spawnChild(built("test/support/mcp-server-2026.js"), ["--http"], "mcp http ready");
  }, 30_000);

  afterAll(async () => {
    await attachment?.close();
    await server?.stop();
    await caller?.close();
    await host?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("its refusal of initialize (HTTP 400, -32022) leads to the 2.x client; tools, progress, resources and prompts reach the mesh", async () => {
    attachment = await McpAttachment.start({ agent: host, url: `http://127.0.0.1:${server.ready["port"] as number}/mcp`, jobs: ["slow"] });
    expect(attachment.tools.sort()).toEqual(["shout", "slow"]);
    expect(await caller.call("host", "shout", { text: "hi" })).toMatchObject({ content: [{ type: "text", text: "HI" }], structuredContent: { loud: "HI" } });
    const job = await caller.start("host", "slow", { steps: 3 });
    const seen: number[] = [];
    job.on("progress", (p) => seen.push(p.progress));
    expect(text(await job.result)).toBe("waited 3");
    await waitFor(() => seen.includes(3), 2000, "progress");
    expect((await caller.readResource("host", "modern://motd")).contents[0]).toMatchObject({ text: "hello from 2026" });
    expect((await caller.getPrompt("host", "greet", { name: "Ada" })).messages[0]!.content).toEqual({ type: "text", text: "Greet Ada." });
  });
});
