/**
 * The MCP bridge, with the official MCP SDK on the other side and real processes:
 * - an MCP client (SDK Client over stdio) spawns `zmq-mcp expose` in front of the reference agent;
 * - `zmq-mcp attach` puts @modelcontextprotocol/server-everything (a published server) on the mesh;
 * - both chained: MCP client → expose → broker → attach → server-everything.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CallToolResultSchema, ErrorCode, McpError, type CallToolResult, type Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { generateAuthority, saveAuthority } from "../../src/auth/jwk.js";
import { errorResult, parseTarget, toMcpError, toolResult } from "../../src/mcp/expose.js";
import { TokenIssuer } from "../../src/auth/tokens.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { BIN, built, ROOT, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
/** The server-everything tools the tests attach (it has others, e.g. get-env, which a mesh should not get by default). */
const ATTACHED = ["echo", "get-sum", "get-structured-content", "trigger-long-running-operation"];

/** Spawns `zmq-mcp` with `args` and waits for `readyMsg`; its log lines are kept. */
const spawnBridge = (args: string[], readyMsg: string): Promise<Child> => spawnChild(BIN("zmq-mcp"), args, readyMsg);

/** An MCP client (the official SDK) running `zmq-mcp expose` as its stdio server. */
async function mcpClient(args: string[]): Promise<{ client: Client; pid: number; stderr: string[] }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [BIN("zmq-mcp"), "expose", ...args], stderr: "pipe" });
  const stderr: string[] = [];
  createInterface({ input: transport.stderr as Readable }).on("line", (line) => stderr.push(line));
  const client = new Client({ name: "zmcp-test", version: "1.0.0" });
  await client.connect(transport, { timeout: 15_000 });
  return { client, pid: transport.pid!, stderr };
}

function parseLine(line: string): Record<string, unknown> {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { msg: "raw", line };
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Closes the client (which closes the bridge's stdin) and checks that the bridge process ends, told by its stdin. */
async function closeClient(c: { client: Client; pid: number; stderr: string[] }): Promise<void> {
  await c.client.close();
  await waitFor(() => !alive(c.pid), 5000, "expose process to exit");
  const shutdown = c.stderr.map(parseLine).find((e) => e["msg"] === "shutting down");
  expect(shutdown?.["why"]).not.toBe("SIGTERM");
}

function text(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : "")).join("");
}

async function mcpErrorOf(p: Promise<unknown>): Promise<McpError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(McpError);
  return err as McpError;
}

async function remoteErrorOf(p: Promise<unknown>): Promise<RemoteError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RemoteError);
  return err as RemoteError;
}

describe("bridge mapping", () => {
  it("parses targets: names, services, keys (which may hold '='), and label=target", () => {
    expect(parseTarget("bob")).toEqual({ address: "bob", label: "bob" });
    expect(parseTarget("svc:summarize")).toEqual({ address: "svc:summarize", label: "svc_summarize" });
    expect(parseTarget("calc=svc:calculator")).toEqual({ address: "svc:calculator", label: "calc" });
    const key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]y=7";
    expect(parseTarget(key)).toEqual({ address: key, label: "rq_rM__U" });
    expect(parseTarget(key, () => "bob")).toEqual({ address: key, label: "bob" });
    expect(parseTarget(`b=${key}`)).toEqual({ address: key, label: "b" });
  });

  it("maps results: JSON text and structured content; MCP results pass as they are", () => {
    expect(toolResult({ count: 1 })).toEqual({ content: [{ type: "text", text: '{"count":1}' }], structuredContent: { count: 1 } });
    expect(toolResult(42)).toEqual({ content: [{ type: "text", text: "42" }] });
    expect(toolResult(undefined)).toEqual({ content: [{ type: "text", text: "null" }] });
    const mcpResult = { content: [{ type: "text", text: "hi" }], structuredContent: { a: 1 } };
    expect(toolResult(mcpResult)).toEqual(mcpResult);
    // Not an MCP result (another key): treated as data.
    expect(toolResult({ content: [], extra: 1 }).structuredContent).toEqual({ content: [], extra: 1 });
  });

  it("splits errors: mesh answers are tool results, missing answers are MCP errors", () => {
    const remote = errorResult(new RemoteError("token_scope", "no scope covers call:x", "peer"));
    expect(remote.isError).toBe(true);
    expect(text(remote)).toBe("token_scope: peer: no scope covers call:x");
    expect(toMcpError(new ZmcpError("timeout", "late"), "x").code).toBe(ErrorCode.RequestTimeout);
    expect(toMcpError(new ZmcpError("closed", "gone"), "x").code).toBe(ErrorCode.ConnectionClosed);
    expect(toMcpError(new ZmcpError("too_large", "big"), "x").code).toBe(ErrorCode.InvalidParams);
    expect(toMcpError(new ZmcpError("unknown_peer", "who"), "x")).toMatchObject({ code: ErrorCode.InternalError, data: { code: "unknown_peer" } });
  });
});

describe("zmq-mcp", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let bob: Child;
  const common = () => ["--broker", broker.endpoint, "--certs", fx.dir];

  beforeAll(async () => {
    fx = tempCerts("alice", "bob", "carol", "dave", "ghost", "erin", "mcp");
    fx.addService("everything");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", fx.secretPath("bob"), "--certs", fx.dir, "--name", "bob"], "agent ready");
  });
  afterAll(async () => {
    await bob.stop();
    await broker.stop();
    fx.cleanup();
  });

  describe("expose: an MCP client uses mesh tools", () => {
    it("lists the reference agent's tools, calls sync and job tools with progress, and reports errors", async () => {
      const mcp = await mcpClient(["--to", "bob", ...common(), "--cert", fx.secretPath("mcp"), "--timeout", "5000"]);
      try {
        const { client } = mcp;
        expect(client.getServerCapabilities()?.tools).toBeTruthy();
        const { tools } = await client.listTools();
        const byName = new Map(tools.map((t) => [t.name, t]));
        expect([...byName.keys()].sort()).toEqual(["batch_sum", "poll_job", "server_identity", "start_long_task"]);
        expect(byName.get("batch_sum")!.inputSchema).toMatchObject({ type: "object", properties: { numbers: { type: "array" } }, required: ["numbers"] });
        expect(byName.get("batch_sum")!.outputSchema).toMatchObject({ type: "object", properties: { count: {}, total: {} } });
        expect(byName.get("start_long_task")!.execution?.taskSupport).toBe("optional");
        expect(byName.get("batch_sum")!.execution).toBeUndefined();

        // A sync tool: JSON text plus structured content (checked by the SDK against the output schema).
        const sum = (await client.callTool({ name: "batch_sum", arguments: { numbers: [1, 2, 3.5] } })) as CallToolResult;
        expect(sum.isError).toBeFalsy();
        expect(sum.structuredContent).toEqual({ count: 3, total: 6.5 });
        expect(JSON.parse(text(sum))).toEqual({ count: 3, total: 6.5 });

        // A job tool: progress notifications while it runs, then one result.
        const progress: Progress[] = [];
        const long = (await client.callTool({ name: "start_long_task", arguments: { seconds: 2, payload: { x: 1 } } }, undefined, {
          onprogress: (p) => progress.push(p),
          timeout: 15_000,
        })) as CallToolResult;
        expect(long.isError).toBeFalsy();
        expect(long.structuredContent).toEqual({ payload: { x: 1 }, seconds: 2 });
        expect(progress.length).toBeGreaterThanOrEqual(1);
        expect(progress[0]).toMatchObject({ progress: 1, total: 2, message: "1/2 s" });
        for (let i = 1; i < progress.length; i++) expect(progress[i]!.progress).toBeGreaterThan(progress[i - 1]!.progress);

        // A name that is not exposed: an MCP protocol error.
        const unknown = await mcpErrorOf(client.callTool({ name: "no_such_tool", arguments: {} }));
        expect(unknown.code).toBe(ErrorCode.InvalidParams);

        // Arguments the agent refuses: a tool result with isError and the mesh code.
        const invalid = (await client.callTool({ name: "batch_sum", arguments: { numbers: [] } })) as CallToolResult;
        expect(invalid.isError).toBe(true);
        expect(text(invalid)).toMatch(/^invalid_args: /);
        expect(invalid._meta).toMatchObject({ "zmcp/error": { code: "invalid_args", origin: "peer" } });
        const failed = (await client.callTool({ name: "start_long_task", arguments: { seconds: 99 } })) as CallToolResult;
        expect(failed.isError).toBe(true);
        expect(text(failed)).toMatch(/^invalid_args: /);
      } finally {
        await closeClient(mcp);
      }
      expect(mcp.stderr.some((l) => l.includes('"msg":"expose ready"'))).toBe(true);
    });

    it("runs a job tool as an MCP task when the client asks", async () => {
      const mcp = await mcpClient(["--to", "bob", ...common(), "--cert", fx.secretPath("mcp")]);
      try {
        const progress: Progress[] = [];
        const kinds: string[] = [];
        let result: CallToolResult | undefined;
        const stream = mcp.client.experimental.tasks.callToolStream({ name: "start_long_task", arguments: { seconds: 1, payload: { via: "task" } } }, CallToolResultSchema, {
          task: { ttl: 60_000 },
          onprogress: (p) => progress.push(p),
          timeout: 15_000,
        });
        for await (const message of stream) {
          kinds.push(message.type);
          if (message.type === "result") result = message.result as CallToolResult;
          if (message.type === "error") throw message.error;
        }
        expect(kinds[0]).toBe("taskCreated");
        expect(kinds.at(-1)).toBe("result");
        expect(result?.structuredContent).toEqual({ payload: { via: "task" }, seconds: 1 });
        const { tasks } = await mcp.client.experimental.tasks.listTasks();
        expect(tasks.some((t) => t.status === "completed")).toBe(true);
      } finally {
        await closeClient(mcp);
      }
    });

    it("a task cancelled by the client cancels the mesh job", async () => {
      const mcp = await mcpClient(["--to", "bob", ...common(), "--cert", fx.secretPath("mcp")]);
      try {
        const statuses: string[] = [];
        let error: McpError | undefined;
        const stream = mcp.client.experimental.tasks.callToolStream({ name: "start_long_task", arguments: { seconds: 10 } }, CallToolResultSchema, {
          task: { ttl: 60_000 },
          timeout: 15_000,
        });
        for await (const message of stream) {
          if (message.type === "taskCreated") await mcp.client.experimental.tasks.cancelTask(message.task.taskId);
          if (message.type === "taskStatus") statuses.push(message.task.status);
          if (message.type === "error") error = message.error;
        }
        expect(statuses.at(-1)).toBe("cancelled");
        expect(error?.message).toContain("cancelled");
        await waitFor(() => mcp.stderr.some((l) => l.includes('"msg":"cancelling mesh job"')), 5000, "mesh job cancelled");
      } finally {
        await closeClient(mcp);
      }
    });

    it("a client that goes away cancels the mesh jobs it was waiting for", async () => {
      const dave = await connectAgent(fx, "dave", broker.endpoint);
      let started = false;
      let cancelled = false;
      dave.tool("slow", { description: "a job that runs until cancelled", input: z.object({}), job: true }, (_args, ctx) => {
        started = true;
        return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve((cancelled = true))));
      });
      const mcp = await mcpClient(["--to", "dave", ...common(), "--cert", fx.secretPath("mcp")]);
      try {
        const call = mcp.client.callTool({ name: "slow", arguments: {} }, undefined, { timeout: 15_000 }).catch((e: unknown) => e);
        await waitFor(() => started, 5000, "job started");
        await closeClient(mcp);
        expect(await call).toBeInstanceOf(McpError); // ConnectionClosed, on the client's side
        await waitFor(() => cancelled, 5000, "job cancelled on dave");
      } finally {
        await dave.close();
      }
    });

    it("a target that no certificate names stops expose at start (exit 1, unknown_peer on stderr)", async () => {
      const run = promisify(execFile);
      const failed = (await run(process.execPath, [BIN("zmq-mcp"), "expose", "--to", "nosuch", ...common(), "--cert", fx.secretPath("mcp")], { timeout: 15_000 }).catch(
        (e: unknown) => e,
      )) as { code: number; stderr: string };
      expect(failed.code).toBe(1);
      expect(JSON.parse(failed.stderr.trim().split("\n").at(-1)!)).toMatchObject({ code: "unknown_peer" });
    });

    it("names tools <label>__<tool> with several targets; no answer in time is an MCP error (RequestTimeout)", async () => {
      // dave: an agent whose tool never answers; ghost: a key the broker knows but no agent holds.
      const dave = await connectAgent(fx, "dave", broker.endpoint);
      // Ends only well after its deadline: resolving at the abort itself raced the caller's own
      // timer under load (the answer could arrive first and the call succeed).
      dave.tool("hang", { description: "never answers", input: z.object({}) }, (_args, ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => setTimeout(resolve, 3000))));
      const mcp = await mcpClient(["--to", "dave", "--to", "nobody=ghost", ...common(), "--cert", fx.secretPath("mcp"), "--timeout", "1000", "--list-timeout", "800"]);
      try {
        const { tools } = await mcp.client.listTools();
        expect(tools.map((t) => t.name)).toEqual(["dave__hang"]); // ghost did not answer: left out, logged
        expect(mcp.stderr.some((l) => l.includes('"msg":"tools/list failed"') && l.includes('"code":"no_route"'))).toBe(true);
        const err = await mcpErrorOf(mcp.client.callTool({ name: "dave__hang", arguments: {} }));
        expect(err.code).toBe(ErrorCode.RequestTimeout);
        expect(err.message).toContain("timeout");
      } finally {
        await closeClient(mcp);
        await dave.close();
      }
    });
  });

  describe("attach: a published MCP server joins the mesh", () => {
    let attach: Child;
    let alice: Agent;
    const attachArgs = () => [
      "attach",
      ...common(),
      "--cert",
      fx.secretPath("carol"),
      "--serve",
      "everything",
      "--job",
      "trigger-long-running-operation",
      ...ATTACHED.flatMap((t) => ["--tool", t]),
      "--restart-delay",
      "200",
      "--",
      process.execPath,
      EVERYTHING,
      "stdio",
    ];

    beforeAll(async () => {
      attach = await spawnBridge(attachArgs(), "attach ready");
      alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 10_000 });
    });
    afterAll(async () => {
      await alice?.close();
      if (attach) await attach.stop();
    });

    it("a mesh agent lists the server's tools and calls them through the broker", async () => {
      const tools = await alice.listTools("carol");
      expect(tools.map((t) => t.name).sort()).toEqual([...ATTACHED].sort());
      const sumTool = tools.find((t) => t.name === "get-sum")!;
      expect(sumTool.description).toBe("Returns the sum of two numbers");
      expect(sumTool.inputSchema).toMatchObject({ type: "object", properties: { a: { type: "number" }, b: { type: "number" } } });
      expect(tools.find((t) => t.name === "trigger-long-running-operation")!.job).toBe(true);

      expect(await alice.call("carol", "get-sum", { a: 2, b: 3 })).toEqual({ content: [{ type: "text", text: "The sum of 2 and 3 is 5." }] });
      const structured = (await alice.call("carol", "get-structured-content", { location: "Chicago" })) as CallToolResult;
      expect(structured.structuredContent).toMatchObject({ temperature: expect.any(Number) });
      // Checked against the tool's JSON Schema before the server sees it.
      const bad = await remoteErrorOf(alice.call("carol", "get-sum", { a: "two", b: 3 }));
      expect(bad.code).toBe("invalid_args");
      expect(bad.origin).toBe("peer");
      // Through the service name too: any replica, sealed to the service key.
      expect(await alice.call("svc:everything", "echo", { message: "svc" })).toEqual({ content: [{ type: "text", text: "Echo: svc" }] });
    });

    it("a tool run as a mesh job pushes the server's progress", async () => {
      const job = await alice.start("carol", "trigger-long-running-operation", { duration: 1, steps: 2 });
      const seen: number[] = [];
      job.on("progress", (p) => seen.push(p.progress));
      const result = (await job.result) as CallToolResult;
      expect(text(result)).toContain("Long running operation completed");
      await waitFor(() => seen.length >= 1, 2000, "progress");
      expect(seen[0]).toBe(1);
    });

    it("chained: MCP client → expose → broker → attach → server-everything", async () => {
      const mcp = await mcpClient(["--to", "carol", ...common(), "--cert", fx.secretPath("mcp"), "--timeout", "10000"]);
      try {
        const { tools } = await mcp.client.listTools();
        expect(tools.map((t) => t.name).sort()).toEqual([...ATTACHED].sort());
        const structuredTool = tools.find((t) => t.name === "get-structured-content")!;
        expect(structuredTool.outputSchema).toMatchObject({ type: "object" });

        // The server's own result comes out as it went in.
        const echo = (await mcp.client.callTool({ name: "echo", arguments: { message: "through the mesh" } })) as CallToolResult;
        expect(echo).toMatchObject({ content: [{ type: "text", text: "Echo: through the mesh" }] });
        expect(echo.isError).toBeFalsy();
        const structured = (await mcp.client.callTool({ name: "get-structured-content", arguments: { location: "New York" } })) as CallToolResult;
        expect(structured.structuredContent).toMatchObject({ temperature: expect.any(Number), conditions: expect.any(String) });

        // Progress crosses both bridges.
        const progress: Progress[] = [];
        const long = (await mcp.client.callTool({ name: "trigger-long-running-operation", arguments: { duration: 1, steps: 2 } }, undefined, {
          onprogress: (p) => progress.push(p),
          timeout: 15_000,
        })) as CallToolResult;
        expect(text(long)).toContain("Long running operation completed");
        expect(progress.length).toBeGreaterThanOrEqual(1);
        expect(progress[0]).toMatchObject({ progress: 1, total: 2 });

        const invalid = (await mcp.client.callTool({ name: "get-sum", arguments: { a: "x" } })) as CallToolResult;
        expect(invalid.isError).toBe(true);
        expect(text(invalid)).toMatch(/^invalid_args: /);
      } finally {
        await closeClient(mcp);
      }
    });

    it("restarts a crashed server, re-lists its tools, and stops it on exit", async () => {
      const first = (await attach.waitLog((e) => e["msg"] === "MCP server started", "first start"))["pid"] as number;
      expect(alive(first)).toBe(true);
      process.kill(first, "SIGKILL");
      // A call made during the restart waits for the server within its deadline.
      expect(await alice.call("carol", "echo", { message: "again" }, { timeout: 15_000 })).toEqual({ content: [{ type: "text", text: "Echo: again" }] });
      await attach.waitLog((e) => e["msg"] === "MCP server exited" && e["pid"] === first, "exit logged");
      const restarted = await attach.waitLog((e) => e["msg"] === "MCP server started" && e["restarts"] === 1, "restart");
      const second = restarted["pid"] as number;
      expect(second).not.toBe(first);
      expect((await alice.listTools("carol")).map((t) => t.name).sort()).toEqual([...ATTACHED].sort());
      await attach.stop();
      await waitFor(() => !alive(second), 5000, "MCP server to stop with the bridge");
    });
  });

  it("attach applies the agent's token rules to the server's tools", async () => {
    const authority = generateAuthority();
    const { publicPath } = saveAuthority(authority.privateJwk, fx.dir, "authority");
    const issuer = new TokenIssuer(authority.privateJwk);
    const attach = await spawnBridge(
      ["attach", ...common(), "--cert", fx.secretPath("erin"), "--authority", publicPath, "--tool", "echo", "--tool", "get-sum", "--tool-prefix", "every.", "--", process.execPath, EVERYTHING],
      "attach ready",
    );
    const anonymous = await connectAgent(fx, "alice", broker.endpoint);
    const holder = await connectAgent(fx, "dave", broker.endpoint, { token: issuer.issue({ sub: "dave", key: fx.key("dave"), scope: "call:every.get-sum" }) });
    try {
      expect((await remoteErrorOf(anonymous.call("erin", "every.echo", { message: "hi" }))).code).toBe("token_missing");
      expect((await holder.listTools("erin")).map((t) => t.name)).toEqual(["every.get-sum"]);
      expect(await holder.call("erin", "every.get-sum", { a: 1, b: 1 })).toEqual({ content: [{ type: "text", text: "The sum of 1 and 1 is 2." }] });
      expect((await remoteErrorOf(holder.call("erin", "every.echo", { message: "hi" }))).code).toBe("token_scope");
    } finally {
      await anonymous.close();
      await holder.close();
      await attach.stop();
    }
  });
});
