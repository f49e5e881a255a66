/**
 * MCP over the mesh (src/mcp/transport.ts): the official SDK's Client and McpServer, each on
 * a mesh transport, talking through a real broker: requests and responses, progress (a mesh
 * job), cancellation, the caller as the server sees it, mesh errors as JSON-RPC errors, and a
 * stateless server behind `svc:NAME` with two replica processes, one killed mid-request.
 */
import { Client as Client2026 } from "@modelcontextprotocol/client";
import { McpServer as McpServer2026 } from "@modelcontextprotocol/server";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ErrorCode, McpError, type CallToolResult, type Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { RemoteError } from "../../src/errors.js";
import type { Broker } from "../../src/broker/broker.js";
import { generateAuthority, saveAuthority } from "../../src/auth/jwk.js";
import { MCP_RPC_JOB_TOOL, MCP_RPC_TOOL, MeshClientTransport, MeshServerTransport } from "../../src/mcp/transport.js";
import { TokenIssuer } from "../../src/auth/tokens.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { built, spawnChild, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";

function text(result: unknown): string {
  return (result as CallToolResult).content.map((c) => (c.type === "text" ? c.text : "")).join("");
}

async function mcpErrorOf(p: Promise<unknown>): Promise<McpError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(McpError);
  return err as McpError;
}

async function meshClient(agent: Agent, to: string, timeout = 20_000): Promise<Client> {
  const client = new Client({ name: "mesh-client", version: "1.0.0" });
  await client.connect(new MeshClientTransport({ agent, to, timeout }));
  return client;
}

describe("MCP over the mesh", () => {
  let fx: CertFixture;
  let broker: Broker;
  let srv: Agent;
  let cli: Agent;
  let cli2: Agent;
  let plain: Agent;
  let server: McpServer;
  const aborted: string[] = [];
  let sawCaller: unknown;
  let serverTransport: MeshServerTransport;

  beforeAll(async () => {
    fx = tempCerts("srv", "cli", "cli2", "plain", "r1", "r2", "locked", "rc", "granted", "srv2026");
    fx.addService("calc");
    broker = await startBroker(fx);
    srv = await connectAgent(fx, "srv", broker.endpoint);
    cli = await connectAgent(fx, "cli", broker.endpoint);
    cli2 = await connectAgent(fx, "cli2", broker.endpoint);
    plain = await connectAgent(fx, "plain", broker.endpoint);
    server = new McpServer({ name: "in-process", version: "1.0.0" });
    server.registerTool("add", { annotations: { readOnlyHint: true, idempotentHint: true }, inputSchema: { a: z.number(), b: z.number(), delayMs: z.number().optional() } }, async ({ a, b, delayMs }) => {
      await new Promise((resolve) => setTimeout(resolve, delayMs ?? 0));
      return { content: [{ type: "text", text: String(a + b) }], structuredContent: { sum: a + b } };
    });
    server.registerTool("whoami", { inputSchema: {} }, async (_args, extra) => {
      sawCaller = extra.authInfo;
      return { content: [{ type: "text", text: extra.authInfo?.clientId ?? "?" }] };
    });
    server.registerTool("count", { inputSchema: { n: z.number() } }, async ({ n }, extra) => {
      for (let i = 1; i <= n; i++) {
        await new Promise((resolve) => setTimeout(resolve, 30));
        await extra.sendNotification({ method: "notifications/progress", params: { progressToken: extra._meta!.progressToken!, progress: i, total: n, message: `${i}/${n}` } });
      }
      return { content: [{ type: "text", text: `counted ${n}` }] };
    });
    server.registerTool("hang", { inputSchema: { tag: z.string() } }, async ({ tag }, extra) => {
      await new Promise<void>((resolve) => extra.signal.addEventListener("abort", () => resolve(), { once: true }));
      aborted.push(tag);
      return { content: [] };
    });
    server.registerResource("motd", "memo://motd", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, text: "hello mesh" }] }));
    server.registerResource("note", new ResourceTemplate("memo://notes/{id}", { list: undefined }), {}, async (uri, { id }) => ({
      contents: [{ uri: uri.href, text: `note ${String(id)}` }],
    }));
    server.registerPrompt(
      "greet",
      { argsSchema: { lang: completable(z.string(), (value) => ["en", "fr", "de"].filter((l) => l.startsWith(value))) } },
      ({ lang }) => ({ messages: [{ role: "user", content: { type: "text", text: `greet in ${lang}` } }] }),
    );
    serverTransport = new MeshServerTransport({ agent: srv });
    await server.connect(serverTransport);
  });
  afterAll(async () => {
    await server.close();
    for (const a of [srv, cli, cli2, plain]) await a.close();
    await broker.close();
    fx.cleanup();
  });

  it("an SDK Client lists and calls an SDK server's tools through the broker; the server sees the caller's key", async () => {
    const client = await meshClient(cli, "srv");
    try {
      expect(client.getServerVersion()).toMatchObject({ name: "in-process" });
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(["add", "count", "hang", "whoami"]);
      expect(tools.find((t) => t.name === "add")!.annotations).toEqual({ readOnlyHint: true, idempotentHint: true });
      const sum = (await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })) as CallToolResult;
      expect(sum.structuredContent).toEqual({ sum: 5 });
      expect(text(await client.callTool({ name: "whoami", arguments: {} }))).toBe(cli.publicKey);
      expect(sawCaller).toMatchObject({ clientId: cli.publicKey, extra: { name: "cli" } });
      // The server's own answers travel as they are: McpServer answers an unknown tool with isError,
      const unknown = (await client.callTool({ name: "nope", arguments: {} })) as CallToolResult;
      expect(unknown.isError).toBe(true);
      expect(text(unknown)).toMatch(/nope not found/);
      // and a request it refuses with the JSON-RPC error it sent.
      const noResource = await mcpErrorOf(client.readResource({ uri: "memo://nowhere" }));
      expect(noResource.code).toBe(ErrorCode.InvalidParams);
    } finally {
      await client.close();
    }
  });

  it("resources, resource templates, prompts and completion travel as they are", async () => {
    const client = await meshClient(cli, "srv");
    try {
      expect((await client.listResources()).resources.map((r) => r.uri)).toEqual(["memo://motd"]);
      expect((await client.readResource({ uri: "memo://motd" })).contents).toEqual([{ uri: "memo://motd", text: "hello mesh" }]);
      expect((await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate)).toEqual(["memo://notes/{id}"]);
      expect((await client.readResource({ uri: "memo://notes/7" })).contents[0]).toMatchObject({ text: "note 7" });
      expect((await client.listPrompts()).prompts.map((p) => p.name)).toEqual(["greet"]);
      expect((await client.getPrompt({ name: "greet", arguments: { lang: "fr" } })).messages[0]!.content).toEqual({ type: "text", text: "greet in fr" });
      const done = await client.complete({ ref: { type: "ref/prompt", name: "greet" }, argument: { name: "lang", value: "f" } });
      expect(done.completion.values).toEqual(["fr"]);
    } finally {
      await client.close();
    }
  });

  it("the 2026 client package (@modelcontextprotocol/client 2.x) runs on the mesh transport too", async () => {
    const client = new Client2026({ name: "mesh-client-2026", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
    await client.connect(new MeshClientTransport({ agent: cli, to: "srv" }));
    try {
      expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(["add", "count", "hang", "whoami"]);
      expect((await client.callTool({ name: "add", arguments: { a: 20, b: 22 } })).structuredContent).toEqual({ sum: 42 });
      const progress: Array<{ progress: number }> = [];
      expect(text(await client.callTool({ name: "count", arguments: { n: 2 } }, { onprogress: (p) => progress.push(p) }))).toBe("counted 2");
      expect(progress.length).toBeGreaterThanOrEqual(1);
    } finally {
      await client.close();
    }
  });

  it("a server built with @modelcontextprotocol/server 2.x on the mesh transport answers a 2.x client (auto negotiation) and a v1 client", async () => {
    const agent = await connectAgent(fx, "srv2026", broker.endpoint);
    // On a transport of its own, the 2.x server serves the 2025 era (its 2026-07-28 era is wired by its own stdio and HTTP entries only).
    const modern = new McpServer2026({ name: "modern", version: "2.0.0" });
    modern.registerTool("mul", { inputSchema: z.object({ a: z.number(), b: z.number() }) }, async ({ a, b }) => ({
      content: [{ type: "text" as const, text: String(a * b) }],
    }));
    await modern.connect(new MeshServerTransport({ agent }));
    try {
      const auto = new Client2026({ name: "auto", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
      await auto.connect(new MeshClientTransport({ agent: cli, to: "srv2026" }));
      expect((await auto.listTools()).tools.map((t) => t.name)).toEqual(["mul"]);
      expect(text(await auto.callTool({ name: "mul", arguments: { a: 6, b: 7 } }))).toBe("42");
      await auto.close();
      const legacy = await meshClient(cli2, "srv2026");
      expect(text(await legacy.callTool({ name: "mul", arguments: { a: 3, b: 3 } }))).toBe("9");
      await legacy.close();
    } finally {
      await modern.close();
      await agent.close();
    }
  });

  it("keeps callers apart: two clients using the same JSON-RPC ids at once each get their own answers", async () => {
    const [c1, c2] = await Promise.all([meshClient(cli, "srv"), meshClient(cli2, "srv")]);
    try {
      const calls = [];
      for (let i = 0; i < 5; i++) {
        calls.push(c1.callTool({ name: "add", arguments: { a: i, b: 100, delayMs: 50 } }).then((r) => [`c1:${i}`, text(r)]));
        calls.push(c2.callTool({ name: "add", arguments: { a: i, b: 200, delayMs: 50 } }).then((r) => [`c2:${i}`, text(r)]));
      }
      const results = Object.fromEntries(await Promise.all(calls));
      for (let i = 0; i < 5; i++) {
        expect(results[`c1:${i}`]).toBe(String(i + 100));
        expect(results[`c2:${i}`]).toBe(String(i + 200));
      }
    } finally {
      await c1.close();
      await c2.close();
    }
  });

  it("progress: a request with a progressToken runs as a mesh job whose progress is the request's", async () => {
    const client = await meshClient(cli, "srv");
    try {
      const progress: Progress[] = [];
      const result = await client.callTool({ name: "count", arguments: { n: 4 } }, undefined, { onprogress: (p) => progress.push(p) });
      expect(text(result)).toBe("counted 4");
      expect(progress.length).toBeGreaterThanOrEqual(1);
      expect(progress.at(-1)).toMatchObject({ total: 4 });
      expect(progress[0]).toMatchObject({ message: `${progress[0]!.progress}/4` });
    } finally {
      await client.close();
    }
  });

  it("cancellation: aborting a request stops the server's handler, as a plain call and as a job", async () => {
    const client = await meshClient(cli, "srv");
    try {
      for (const [tag, withProgress] of [
        ["plain", false],
        ["job", true],
      ] as const) {
        const controller = new AbortController();
        const call = client.callTool({ name: "hang", arguments: { tag } }, undefined, {
          signal: controller.signal,
          ...(withProgress ? { onprogress: () => undefined } : {}),
        });
        // Let the request reach the server before it is cancelled.
        await new Promise((resolve) => setTimeout(resolve, 300));
        controller.abort("changed my mind");
        await expect(call).rejects.toThrow();
        await waitFor(() => aborted.includes(tag), 5000, `the server to see ${tag} cancelled`);
        // The request's mesh call ended too (the SDK sends no response to a cancelled request).
        await waitFor(() => serverTransport.running === 0, 5000, `the ${tag} request to end on the server`);
      }
    } finally {
      await client.close();
    }
  });

  it("mesh failures are JSON-RPC errors with the mesh code: no MCP server there, an unknown name", async () => {
    const client = new Client({ name: "mesh-client", version: "1.0.0" });
    const err = await mcpErrorOf(client.connect(new MeshClientTransport({ agent: cli, to: "plain", timeout: 5000 })));
    expect(err.code).toBe(ErrorCode.InternalError);
    expect(err.data).toMatchObject({ code: "unknown_tool", origin: "peer" });
    await expect(new MeshClientTransport({ agent: cli, to: "nobody" }).start()).rejects.toMatchObject({ code: "unknown_peer" });
  });

  it("a peer's bad input: refused with invalid_args by the server, a bad answer is a JSON-RPC error at the client", async () => {
    const refused = async (args: unknown) => {
      const err = await cli.call("srv", MCP_RPC_TOOL, args).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RemoteError);
      return err as RemoteError;
    };
    expect(await refused({ not: "json-rpc" })).toMatchObject({ code: "invalid_args", origin: "peer" });
    expect(await refused([1, 2, 3])).toMatchObject({ code: "invalid_args" });
    // A response: the server sends no requests, so nothing is waiting for one.
    expect(await refused({ jsonrpc: "2.0", id: 1, result: {} })).toMatchObject({ code: "invalid_args" });
    // Two requests of one caller with one id at once: the second is refused, the first answered.
    const first = cli.call("srv", MCP_RPC_TOOL, { jsonrpc: "2.0", id: "same", method: "tools/call", params: { name: "add", arguments: { a: 1, b: 1, delayMs: 300 } } });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await refused({ jsonrpc: "2.0", id: "same", method: "tools/list" })).toMatchObject({ code: "invalid_args" });
    expect(await first).toMatchObject({ jsonrpc: "2.0", id: "same", result: { structuredContent: { sum: 2 } } });
    // A "server" whose mcp/rpc answers something that is not the response: the client's request fails cleanly.
    plain.tool(MCP_RPC_TOOL, { input: z.unknown() }, () => ({ jsonrpc: "2.0", id: 999, result: {} }));
    try {
      const err = await mcpErrorOf(new Client({ name: "x", version: "1" }).connect(new MeshClientTransport({ agent: cli, to: "plain", timeout: 5000 })));
      expect(err.code).toBe(ErrorCode.InternalError);
      expect(err.data).toMatchObject({ code: "bad_frame" });
    } finally {
      plain.removeTool(MCP_RPC_TOOL);
    }
    // The server is still serving.
    const client = await meshClient(cli, "srv");
    expect(text(await client.callTool({ name: "add", arguments: { a: 1, b: 2 } }))).toBe("3");
    await client.close();
  });

  it("tokens: the server's agent checks the caller's token scope on every MCP message", async () => {
    const authority = generateAuthority();
    const { publicPath } = saveAuthority(authority.privateJwk, fx.dir, "authority");
    const locked = await connectAgent(fx, "locked", broker.endpoint, { authority: publicPath });
    const lockedServer = new McpServer({ name: "locked", version: "1.0.0" });
    lockedServer.registerTool("ping", { inputSchema: {} }, async () => ({ content: [{ type: "text", text: "pong" }] }));
    await lockedServer.connect(new MeshServerTransport({ agent: locked }));
    const issuer = new TokenIssuer(authority.privateJwk);
    const wrongScope = await connectAgent(fx, "rc", broker.endpoint, { token: await issuer.issue({ sub: "rc", key: fx.key("rc"), scope: ["call:other"] }) });
    const granted = await connectAgent(fx, "granted", broker.endpoint, { token: await issuer.issue({ sub: "granted", key: fx.key("granted"), scope: [`call:mcp/*`] }) });
    try {
      const refused = await mcpErrorOf(new Client({ name: "x", version: "1" }).connect(new MeshClientTransport({ agent: wrongScope, to: "locked", timeout: 5000 })));
      expect(refused.data).toMatchObject({ code: "token_scope", origin: "peer" });
      const client = await meshClient(granted, "locked");
      expect(text(await client.callTool({ name: "ping", arguments: {} }))).toBe("pong");
      await client.close();
    } finally {
      await lockedServer.close();
      for (const a of [locked, wrongScope, granted]) await a.close();
    }
  });

  describe("svc: a stateless MCP server with two replica processes", () => {
    const replicas: Child[] = [];
    const spawnReplica = (name: string) =>
      spawnChild(built("test/support/mcp-replica.js"), ["--broker", broker.endpoint, "--cert", fx.secretPath(name), "--certs", fx.dir, "--name", name, "--service", "calc"], "replica ready");

    beforeAll(async () => {
      replicas.push(await spawnReplica("r1"), await spawnReplica("r2"));
    });
    afterAll(async () => {
      for (const r of replicas) await r.stop();
    });

    it("balances requests over both replicas; a request in flight on a killed replica fails (at most once per service), the others are answered", async () => {
      const client = await meshClient(cli, "svc:calc", 6_000);
      try {
        // The replicas list the binding's tools on the mesh; an MCP client sees the server's own.
        expect((await cli.listTools("svc:calc")).map((t) => t.name).sort()).toEqual([MCP_RPC_TOOL, MCP_RPC_JOB_TOOL].sort());
        expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(["count", "echo"]);
        const before = await Promise.all(Array.from({ length: 12 }, (_, i) => client.callTool({ name: "echo", arguments: { text: `a${i}`, delayMs: 20 } }).then(text)));
        const answeredBy = new Set(before.map((t) => t.split(":")[0]));
        expect(answeredBy).toEqual(new Set(["r1", "r2"]));
        for (let i = 0; i < 12; i++) expect(before[i]).toMatch(new RegExp(`^r[12]:a${i}$`));

        // Requests keep flowing; once r1 has one in flight (logged, then waiting), r1 is killed.
        const [r1, r2] = replicas as [Child, Child];
        const started = r1.logs.length;
        const stream = Array.from({ length: 16 }, (_, i) => client.callTool({ name: "echo", arguments: { text: `b${i}`, delayMs: 800 } }).then(text));
        const inFlight = await r1.waitLog((e) => e["msg"] === "echo start" && r1.logs.indexOf(e) >= started, "a request in flight on r1", 15_000);
        r1.kill("SIGKILL");
        const after = await Promise.allSettled(stream);
        // A timed-out attempt to svc:NAME is not resent to another replica (docs/SECURITY.md:
        // at most one run per service request), so what r1 had accepted fails; nothing else does.
        const onR2 = new Set(r2.logs.filter((e) => e["msg"] === "echo start").map((e) => e["text"] as string));
        after.forEach((r, i) => {
          if (r.status === "fulfilled") expect(r.value).toMatch(new RegExp(`^r[12]:b${i}$`));
          else expect(onR2.has(`b${i}`)).toBe(false); // failed, and run nowhere else
        });
        expect(after[Number((inFlight["text"] as string).slice(1))]!.status).toBe("rejected");
        expect(after.filter((r) => r.status === "fulfilled").length).toBeGreaterThan(0);
        expect(r2.alive()).toBe(true);
        // A request with progress (a mesh job) on the surviving replica.
        const progress: Progress[] = [];
        expect(text(await client.callTool({ name: "count", arguments: { n: 3 } }, undefined, { onprogress: (p) => progress.push(p) }))).toBe("r2:counted 3");
        expect(progress.length).toBeGreaterThanOrEqual(1);
      } finally {
        await client.close();
      }
    });
  });
});
