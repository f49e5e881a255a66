/**
 * The 2026-07-28 protocol through `zmq-mcp expose`, next to the 2025 era: the official 2.x
 * client pinned to 2026-07-28 (no `initialize`, the `_meta` envelope on every request,
 * `server/discover`) and the v1 client (2025 `initialize`), against one `expose` over stdio
 * and one over HTTP; tools, a job tool's progress, resources, prompts, completion. Hostile:
 * an envelope naming a revision the bridge does not speak, a malformed envelope, headers that
 * disagree with the body, and the bridge answering on after each.
 */
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client as Client2026, StreamableHTTPClientTransport as HttpTransport2026, type CallToolResult as CallToolResult2026 } from "@modelcontextprotocol/client";
import { StdioClientTransport as StdioTransport2026 } from "@modelcontextprotocol/client/stdio";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { BIN, ROOT, built, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const TOKEN = "test-bearer-token-2026-0123456789";
const MODERN = "2026-07-28";
const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": MODERN,
  "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1.0.0" },
  "io.modelcontextprotocol/clientCapabilities": {},
};

/** A raw 2026-07-28 POST (with the standard headers the spec requires), answered as JSON. */
async function post(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const params = body["params"] as Record<string, unknown> | undefined;
  const name = params?.["name"] ?? params?.["uri"] ?? params?.["taskId"];
  const res = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${TOKEN}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": MODERN,
      "mcp-method": String(body["method"]),
      ...(typeof name === "string" ? { "mcp-name": name } : {}),
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  // A stream answer: its last data line is the response.
  const data = text.startsWith("{") ? text : (text.split("\n").filter((l) => l.startsWith("data: ")).at(-1) ?? "data: {}").slice(6);
  return { status: res.status, json: JSON.parse(data) as Record<string, unknown> };
}

function text(result: CallToolResult | CallToolResult2026): string {
  return result.content.map((c) => (c.type === "text" ? c.text : "")).join("");
}

describe("the 2026-07-28 era through expose (stdio and HTTP), next to 2025", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let notes: Agent;
  let http: Child;
  let dir: string;
  const common = (cert: string) => ["--to", "notes", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath(cert)];

  beforeAll(async () => {
    fx = tempCerts("notes", "mcp", "mcp2", "mcp3", "mcph");
    dir = mkdtempSync(join(tmpdir(), "zmcp-2026-"));
    writeFileSync(join(dir, "token"), `${TOKEN}\n`, { mode: 0o600 });
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    notes = await connectAgent(fx, "notes", broker.endpoint);
    notes
      .tool("add", { description: "Adds", input: z.object({ a: z.number(), b: z.number() }) }, ({ a, b }) => ({ sum: a + b }))
      .tool("count", { description: "Counts slowly", input: z.object({ to: z.number().int().min(1).max(20) }), job: true }, async ({ to }, ctx) => {
        for (let i = 1; i <= to; i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          ctx.progress({ progress: i, total: to, message: `at ${i}` });
        }
        return { counted: to };
      })
      .resource("notes://index", { name: "index", mimeType: "text/plain" }, () => "a\nb")
      .resource("notes://note/{id}", { name: "note", mimeType: "text/plain" }, (uri, ctx) => `note ${ctx.params["id"]}`)
      .prompt("summarize", { arguments: [{ name: "id", required: true }], complete: (arg) => ["7", "42"].filter((v) => v.startsWith(arg.value)) }, (args) => `Summarize note ${args["id"]}.`);
    http = await spawnChild(BIN("zmq-mcp"), ["expose", ...common("mcph"), "--http", "127.0.0.1:0", "--http-token", `@${join(dir, "token")}`], "expose ready");
  });
  afterAll(async () => {
    await http?.stop();
    await notes?.close();
    await broker?.stop();
    fx?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** What every client of either era must see of the same mesh agent. */
  async function exercise(client: Client | Client2026): Promise<void> {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(["add", "count"]);
    const sum = (await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })) as CallToolResult;
    expect(sum.structuredContent).toEqual({ sum: 5 });
    // A job tool called plainly: progress notifications, then the result.
    const progress: number[] = [];
    const options = { onprogress: (p: { progress: number }) => progress.push(p.progress), timeout: 15_000 };
    const call = { name: "count", arguments: { to: 4 } };
    // The v1 client takes a result schema before the options; the 2.x client does not.
    const counted = (client instanceof Client2026 ? await client.callTool(call, options) : await client.callTool(call, undefined, options)) as CallToolResult;
    expect(counted.structuredContent).toEqual({ counted: 4 });
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    // A mesh error is a tool result the model reads.
    const bad = (await client.callTool({ name: "add", arguments: { a: "x" } })) as CallToolResult;
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/^invalid_args:/);
    const { resources } = await client.listResources();
    expect(resources.map((r) => r.uri)).toEqual(["notes://index"]);
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates.map((t) => t.uriTemplate)).toEqual(["notes://note/{id}"]);
    expect((await client.readResource({ uri: "notes://note/7" })).contents[0]).toMatchObject({ uri: "notes://note/7", text: "note 7" });
    expect((await client.listPrompts()).prompts.map((p) => p.name)).toEqual(["summarize"]);
    expect((await client.getPrompt({ name: "summarize", arguments: { id: "42" } })).messages[0]).toMatchObject({ role: "user", content: { type: "text", text: "Summarize note 42." } });
    expect((await client.complete({ ref: { type: "ref/prompt", name: "summarize" }, argument: { name: "id", value: "4" } })).completion.values).toEqual(["42"]);
  }

  it("stdio: a 2.x client pinned to 2026-07-28 is served in that era, a v1 client in 2025", async () => {
    const modern = new Client2026({ name: "modern", version: "1.0.0" }, { versionNegotiation: { mode: { pin: MODERN } } });
    const transport = new StdioTransport2026({ command: process.execPath, args: [BIN("zmq-mcp"), "expose", ...common("mcp")], stderr: "pipe" });
    const stderr: string[] = [];
    createInterface({ input: transport.stderr as Readable }).on("line", (line) => stderr.push(line));
    await modern.connect(transport, { timeout: 15_000 });
    try {
      expect(modern.getNegotiatedProtocolVersion()).toBe(MODERN);
      expect(modern.getProtocolEra()).toBe("modern");
      // server/discover: the 2026 capabilities, the tasks extension among them; no 2025 `tasks`.
      const discovered = modern.getDiscoverResult();
      expect(discovered?.supportedVersions).toContain(MODERN);
      expect(discovered?.capabilities).toMatchObject({ tools: {}, resources: {}, prompts: {}, completions: {}, extensions: { "io.modelcontextprotocol/tasks": {} } });
      expect(discovered?.capabilities).not.toHaveProperty("tasks");
      await exercise(modern);
    } finally {
      await modern.close();
    }

    const legacy = new Client({ name: "legacy", version: "1.0.0" });
    await legacy.connect(new StdioClientTransport({ command: process.execPath, args: [BIN("zmq-mcp"), "expose", ...common("mcp2")], stderr: "ignore" }), { timeout: 15_000 });
    try {
      expect(legacy.getServerVersion()?.name).toBe("zmq-mcp-expose");
      // The 2025 era keeps its experimental tasks on stdio.
      expect(legacy.getServerCapabilities()?.tasks).toBeDefined();
      await exercise(legacy);
    } finally {
      await legacy.close();
    }
  }, 90_000);

  it("stdio: a 2.x client in auto mode finds the 2026 era by server/discover", async () => {
    const auto = new Client2026({ name: "auto", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
    await auto.connect(new StdioTransport2026({ command: process.execPath, args: [BIN("zmq-mcp"), "expose", ...common("mcp3")], stderr: "ignore" }), { timeout: 15_000 });
    try {
      expect(auto.getNegotiatedProtocolVersion()).toBe(MODERN);
      expect(((await auto.callTool({ name: "add", arguments: { a: 1, b: 1 } })) as CallToolResult2026).structuredContent).toEqual({ sum: 2 });
    } finally {
      await auto.close();
    }
  }, 60_000);

  it("HTTP: the 2.x client pinned to 2026-07-28 and the v1 client on one endpoint", async () => {
    const url = http.ready["http"] as string;
    const headers = { authorization: `Bearer ${TOKEN}` };
    const modern = new Client2026({ name: "modern", version: "1.0.0" }, { versionNegotiation: { mode: { pin: MODERN } } });
    await modern.connect(new HttpTransport2026(new URL(url), { requestInit: { headers } }));
    try {
      expect(modern.getNegotiatedProtocolVersion()).toBe(MODERN);
      expect(modern.getDiscoverResult()?.capabilities).toMatchObject({ extensions: { "io.modelcontextprotocol/tasks": {} } });
      await exercise(modern);
    } finally {
      await modern.close();
    }
    const legacy = new Client({ name: "legacy", version: "1.0.0" });
    await legacy.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
    try {
      // Stateless 2025: no experimental tasks over HTTP (they would live in one process only).
      expect(legacy.getServerCapabilities()?.tasks).toBeUndefined();
      await exercise(legacy);
    } finally {
      await legacy.close();
    }
  }, 90_000);

  it("HTTP, hostile: an unknown revision, a malformed envelope, disagreeing headers; the bridge answers on", async () => {
    const url = http.ready["http"] as string;
    // A revision the bridge does not speak: -32022 UnsupportedProtocolVersion, naming what it supports.
    const future = { ...ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01" };
    const unsupported = await post(url, { jsonrpc: "2.0", id: 1, method: "tools/list", params: { _meta: future } }, { "mcp-protocol-version": "2099-01-01" });
    expect(unsupported.status).toBe(400);
    expect(unsupported.json).toMatchObject({ id: 1, error: { code: -32022, data: { supported: [MODERN], requested: "2099-01-01" } } });
    // A claim whose envelope lacks the client capabilities: -32602, naming the key.
    const { "io.modelcontextprotocol/clientCapabilities": _dropped, ...partial } = ENVELOPE;
    const malformed = await post(url, { jsonrpc: "2.0", id: 2, method: "tools/list", params: { _meta: partial } });
    expect(malformed.status).toBe(400);
    expect(malformed.json).toMatchObject({ error: { code: -32602 } });
    expect(JSON.stringify(malformed.json)).toContain("clientCapabilities");
    // The header names another revision than the body: -32020 HeaderMismatch.
    const mismatch = await post(url, { jsonrpc: "2.0", id: 3, method: "tools/list", params: { _meta: ENVELOPE } }, { "mcp-protocol-version": "2025-11-25" });
    expect(mismatch.status).toBe(400);
    expect(mismatch.json).toMatchObject({ error: { code: -32020 } });
    // Not JSON at all.
    const garbage = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, body: "{not json" });
    expect(garbage.status).toBe(400);
    expect(await garbage.json()).toMatchObject({ error: { code: -32700 } });
    // A body over 4 MiB is refused before it is parsed (413), whichever era it would claim.
    const huge = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list", params: { _meta: ENVELOPE, pad: "x".repeat(5 * 1024 * 1024) } }),
    });
    expect(huge.status).toBe(413);
    // Without the token nothing is classified at all.
    const anonymous = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 4, method: "tools/list", params: { _meta: ENVELOPE } }) });
    expect(anonymous.status).toBe(401);
    // And a well-formed 2026 request is answered after all of that.
    const ok = await post(url, { jsonrpc: "2.0", id: 5, method: "tools/call", params: { name: "add", arguments: { a: 1, b: 2 }, _meta: ENVELOPE } });
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ id: 5, result: { resultType: "complete", structuredContent: { sum: 3 } } });
    expect(http.alive()).toBe(true);
  }, 30_000);

  it("stdio, hostile: an envelope naming an unknown revision is answered -32022 and the connection serves on", async () => {
    const { spawn } = await import("node:child_process");
    const proc = spawn(process.execPath, [BIN("zmq-mcp"), "expose", ...common("mcp")], { stdio: ["pipe", "pipe", "ignore"] });
    const lines: Array<Record<string, unknown>> = [];
    createInterface({ input: proc.stdout }).on("line", (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
    const answer = async (id: number) => {
      for (let i = 0; i < 300 && !lines.some((l) => l["id"] === id); i++) await new Promise((r) => setTimeout(r, 50));
      return lines.find((l) => l["id"] === id);
    };
    try {
      const send = (m: unknown) => proc.stdin.write(`${JSON.stringify(m)}\n`);
      send({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { _meta: { ...ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01" } } });
      expect(await answer(1)).toMatchObject({ error: { code: -32022, data: { supported: [MODERN], requested: "2099-01-01" } } });
      send({ jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "add", arguments: { a: 4, b: 4 }, _meta: ENVELOPE } });
      expect(await answer(2)).toMatchObject({ result: { resultType: "complete", structuredContent: { sum: 8 } } });
      // Once the connection is in the 2026 era, a 2025 initialize is refused (no era switch mid-connection).
      send({ jsonrpc: "2.0", id: 3, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "x", version: "1" } } });
      expect(await answer(3)).toMatchObject({ error: { code: -32022 } });
      expect(proc.exitCode).toBeNull();
    } finally {
      proc.kill("SIGTERM");
      await new Promise((resolve) => proc.once("exit", resolve));
    }
  }, 30_000);
});

describe("attach of a 2026-only server and of a 2025 server", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let modern: Child;
  let legacy: Child;
  let alice: Agent;

  beforeAll(async () => {
    fx = tempCerts("alice", "modern", "everything");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    const attach = (cert: string, extra: string[], server: string[]) =>
      spawnChild(BIN("zmq-mcp"), ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath(cert), ...extra, "--", process.execPath, ...server], "attach ready", { timeoutMs: 30_000 });
    // A server that refuses the 2025 initialize (-32022) and one that speaks nothing else.
    modern = await attach("modern", ["--job", "slow"], [built("test/support/mcp-server-2026.js")]);
    legacy = await attach("everything", ["--tool", "echo"], [join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"]);
    alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 10_000 });
  }, 60_000);
  afterAll(async () => {
    await alice?.close();
    await modern?.stop();
    await legacy?.stop();
    await broker?.stop();
    fx?.cleanup();
  });

  it("each server is spoken to in its own era, and both serve the mesh the same way", async () => {
    const started = (c: Child) => c.logs.find((l) => l["msg"] === "MCP server started");
    expect(started(modern)).toMatchObject({ server: "modern-only", era: MODERN });
    expect(started(legacy)).toMatchObject({ era: "2025" });
    await waitFor(() => modern.logs.some((l) => l["msg"] === "MCP server speaks only the 2026-07-28 era; starting it again with the 2.x client"), 5000, "the fallback to the 2.x client logged"); // another process's log line: it may come after what the test saw

    const tools = await alice.listTools("modern");
    expect(tools.map((t) => t.name).sort()).toEqual(["shout", "slow"]);
    expect(tools.find((t) => t.name === "shout")!.annotations).toMatchObject({ readOnlyHint: true });
    expect(tools.find((t) => t.name === "slow")!.job).toBe(true);
    expect(await alice.call("modern", "shout", { text: "hi" })).toMatchObject({ structuredContent: { loud: "HI" } });
    // The server refusing the arguments is invalid_args on the mesh, as for a 2025 server.
    expect(await alice.call("modern", "shout", { text: 42 }).catch((e: { code: string }) => e.code)).toBe("invalid_args");
    // A 2026 server's progress becomes the mesh job's.
    const job = await alice.start("modern", "slow", { steps: 4 });
    const progress: number[] = [];
    job.on("progress", (p) => void progress.push(p.progress));
    expect(await job.result).toMatchObject({ content: [{ type: "text", text: "waited 4" }] });
    expect(progress.length).toBeGreaterThanOrEqual(1);
    // Resources and prompts of the 2026 server.
    expect((await alice.listResources("modern")).map((r) => r.uri)).toEqual(["modern://motd"]);
    expect((await alice.readResource("modern", "modern://motd")).contents[0]).toMatchObject({ uri: "modern://motd", text: "hello from 2026" });
    expect((await alice.getPrompt("modern", "greet", { name: "Ada" })).messages[0]).toMatchObject({ content: { type: "text", text: "Greet Ada." } });

    // The 2025 server, through the v1 client as before.
    expect(await alice.call("everything", "echo", { message: "old" })).toMatchObject({ content: [{ type: "text", text: expect.stringContaining("old") }] });
  }, 60_000);
});
