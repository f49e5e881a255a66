/**
 * Mesh jobs as tasks of the 2026-07-28 `io.modelcontextprotocol/tasks` extension, through
 * `expose` (HTTP in-process with two bearer tokens, and the stdio CLI): a job tool called by a
 * client that declares the extension answers with a task handle; `tasks/get` shows it
 * working (with the job's progress as its status message), then completed with the result;
 * `tasks/cancel` cancels the mesh job. Hostile: another token's task id, a client that did not
 * declare the extension, malformed task requests, and the bridge serving on after them.
 *
 * The 2.x client (@modelcontextprotocol/client 2.4.0) has no tasks extension: its 2026 codec
 * refuses a `resultType: "task"` result (UnsupportedResultType, tested below), so the task
 * exchanges are written as raw JSON-RPC, with the headers and `_meta` envelope the spec asks.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { Client as Client2026, SdkError, StreamableHTTPClientTransport as HttpTransport2026, type CallToolResult } from "@modelcontextprotocol/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { MeshExposer } from "../../src/mcp/expose.js";
import { serveHttp, type HttpExpose } from "../../src/mcp/http.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { join } from "node:path";
import { RemoteError } from "../../src/errors.js";
import { BIN, ROOT, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const ALICE = "alice-bearer-token-0123456789abcdef";
const MALLORY = "mallory-bearer-token-0123456789abc";
const MODERN = "2026-07-28";
const TASKS = "io.modelcontextprotocol/tasks";
const envelope = (withTasks: boolean) => ({
  "io.modelcontextprotocol/protocolVersion": MODERN,
  "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1.0.0" },
  "io.modelcontextprotocol/clientCapabilities": withTasks ? { extensions: { [TASKS]: {} } } : {},
});

type Json = Record<string, unknown>;
let nextId = 1;

/** One 2026-07-28 request over HTTP (headers as the spec asks), answered as its JSON-RPC response. */
async function rpc(url: string, token: string, method: string, params: Json, options: { tasks?: boolean } = {}): Promise<{ status: number; body: Json }> {
  const name = params["name"] ?? params["taskId"];
  const res = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": MODERN,
      "mcp-method": method,
      ...(typeof name === "string" ? { "mcp-name": name } : {}),
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params: { ...params, _meta: envelope(options.tasks ?? true) } }),
  });
  const text = await res.text();
  const data = text.startsWith("{") ? text : (text.split("\n").filter((l) => l.startsWith("data: ")).at(-1) ?? "data: {}").slice(6);
  return { status: res.status, body: JSON.parse(data) as Json };
}

const result = (r: { body: Json }) => r.body["result"] as Json;
const error = (r: { body: Json }) => r.body["error"] as { code: number; message: string; data?: unknown };

describe("jobs as tasks of the 2026 tasks extension", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let worker: Agent;
  let bridge: Agent;
  let exposer: MeshExposer;
  let served: HttpExpose;
  const aborted: number[] = [];

  beforeAll(async () => {
    fx = tempCerts("worker", "bridge", "mcp");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    worker = await connectAgent(fx, "worker", broker.endpoint);
    worker
      .tool("add", { input: z.object({ a: z.number(), b: z.number() }) }, ({ a, b }) => ({ sum: a + b }))
      .tool("count", { description: "Counts, one step per `ms`", input: z.object({ to: z.number().int().min(1).max(100), ms: z.number().int().min(1).max(1000) }), job: true }, async ({ to, ms }, ctx) => {
        for (let i = 1; i <= to; i++) {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(resolve, ms);
            ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(new Error("cancelled"))), { once: true });
          }).catch((err: Error) => {
            aborted.push(to);
            throw err;
          });
          ctx.progress({ progress: i, total: to, message: `at ${i}` });
        }
        return { counted: to };
      });
    bridge = await connectAgent(fx, "bridge", broker.endpoint);
    exposer = new MeshExposer({ agent: bridge, targets: ["worker"], refreshInterval: 0 });
    served = await serveHttp({ exposer, host: "127.0.0.1", port: 0, token: [ALICE, MALLORY] });
  });
  afterAll(async () => {
    await served?.close();
    await exposer?.close();
    await bridge?.close();
    await worker?.close();
    await broker?.stop();
    fx?.cleanup();
  });

  /** Polls tasks/get until the task is terminal (bounded), returning every answer seen. */
  async function follow(taskId: string, token = ALICE): Promise<Json[]> {
    const seen: Json[] = [];
    for (let i = 0; i < 200; i++) {
      const got = await rpc(served.url, token, "tasks/get", { taskId });
      expect(got.status).toBe(200);
      const task = result(got);
      seen.push(task);
      if (["completed", "failed", "cancelled"].includes(task["status"] as string)) return seen;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`task ${taskId} did not end`);
  }

  it("a job tool answers with a task; tasks/get shows it working with progress, then completed with the result", async () => {
    const created = await rpc(served.url, ALICE, "tools/call", { name: "count", arguments: { to: 8, ms: 100 } });
    expect(created.status).toBe(200);
    const task = result(created);
    expect(task).toMatchObject({ resultType: "task", status: "working", ttlMs: 3_600_000, pollIntervalMs: 1000 });
    expect(task["taskId"]).toEqual(expect.any(String));
    // A task handle, not a tool result.
    expect(task).not.toHaveProperty("content");
    const seen = await follow(task["taskId"] as string);
    const working = seen.filter((t) => t["status"] === "working");
    expect(working.length).toBeGreaterThanOrEqual(1);
    expect(working.map((t) => t["statusMessage"]).filter(Boolean)).toEqual(expect.arrayContaining([expect.stringMatching(/^progress \d\/8: at \d$/)]));
    const done = seen.at(-1)!;
    expect(done).toMatchObject({ resultType: "complete", taskId: task["taskId"], status: "completed", result: { structuredContent: { counted: 8 } } });
    expect(Date.parse(done["lastUpdatedAt"] as string)).toBeGreaterThanOrEqual(Date.parse(done["createdAt"] as string));

    // The server decides: a plain tool is answered at once, and a client without the extension gets no task.
    expect(result(await rpc(served.url, ALICE, "tools/call", { name: "add", arguments: { a: 1, b: 2 } }))).toMatchObject({ resultType: "complete", structuredContent: { sum: 3 } });
    expect(result(await rpc(served.url, ALICE, "tools/call", { name: "count", arguments: { to: 2, ms: 10 } }, { tasks: false }))).toMatchObject({ resultType: "complete", structuredContent: { counted: 2 } });
    // A tool error is a completed task whose result is isError (not a failed task).
    const bad = result(await rpc(served.url, ALICE, "tools/call", { name: "count", arguments: { to: 0, ms: 10 } }));
    const badEnd = (await follow(bad["taskId"] as string)).at(-1)!;
    expect(badEnd).toMatchObject({ status: "completed", result: { isError: true } });
  }, 30_000);

  it("tasks/cancel cancels the mesh job; the task ends cancelled", async () => {
    const task = result(await rpc(served.url, ALICE, "tools/call", { name: "count", arguments: { to: 50, ms: 100 } }));
    const ack = await rpc(served.url, ALICE, "tasks/cancel", { taskId: task["taskId"] });
    expect(result(ack)).toEqual({ resultType: "complete", _meta: expect.any(Object) });
    expect(result(await rpc(served.url, ALICE, "tasks/get", { taskId: task["taskId"] }))).toMatchObject({ status: "cancelled" });
    await waitFor(() => aborted.includes(50), 5000, "the worker's job was aborted");
    // Cancelling again, or a terminal task: acknowledged, nothing changes.
    expect(result(await rpc(served.url, ALICE, "tasks/cancel", { taskId: task["taskId"] }))).toMatchObject({ resultType: "complete" });
  }, 20_000);

  it("another token's task id is refused exactly like an unknown one, and its cancel changes nothing", async () => {
    const task = result(await rpc(served.url, ALICE, "tools/call", { name: "count", arguments: { to: 10, ms: 100 } }));
    const id = task["taskId"] as string;
    const unknown = error(await rpc(served.url, MALLORY, "tasks/get", { taskId: "00000000-0000-4000-8000-000000000000" }));
    const theirs = error(await rpc(served.url, MALLORY, "tasks/get", { taskId: id }));
    expect(theirs).toEqual(unknown);
    expect(theirs).toMatchObject({ code: -32602, message: "Failed to retrieve task: Task not found" });
    expect(error(await rpc(served.url, MALLORY, "tasks/cancel", { taskId: id }))).toMatchObject({ code: -32602 });
    expect(error(await rpc(served.url, MALLORY, "tasks/update", { taskId: id, inputResponses: {} }))).toMatchObject({ code: -32602 });
    // The owner's task ran on.
    expect((await follow(id)).at(-1)).toMatchObject({ status: "completed", result: { structuredContent: { counted: 10 } } });
  }, 20_000);

  it("task methods need the extension declared (-32021); malformed task requests are -32602 and the bridge serves on", async () => {
    const task = result(await rpc(served.url, ALICE, "tools/call", { name: "count", arguments: { to: 1, ms: 10 } }));
    const undeclared = error(await rpc(served.url, ALICE, "tasks/get", { taskId: task["taskId"] }, { tasks: false }));
    expect(undeclared).toMatchObject({ code: -32021, data: { requiredCapabilities: { extensions: { [TASKS]: {} } } } });
    for (const params of [{}, { taskId: 42 }, { taskId: "" }, { taskId: "x".repeat(10_000) }, { taskId: ["a"] }]) {
      const bad = await rpc(served.url, ALICE, "tasks/get", params);
      expect(error(bad)).toMatchObject({ code: -32602 });
    }
    expect(error(await rpc(served.url, ALICE, "tasks/update", { taskId: task["taskId"] }))).toMatchObject({ code: -32602 });
    // tasks/update of a task that never waits for input: acknowledged, the responses ignored.
    expect(result(await rpc(served.url, ALICE, "tasks/update", { taskId: task["taskId"], inputResponses: { nothing: { action: "accept" } } }))).toMatchObject({ resultType: "complete" });
    // The 2025 experimental methods are not part of the 2026 era.
    expect(error(await rpc(served.url, ALICE, "tasks/list", {}))).toMatchObject({ code: -32601 });
    expect(result(await rpc(served.url, ALICE, "tools/call", { name: "add", arguments: { a: 2, b: 2 } }))).toMatchObject({ structuredContent: { sum: 4 } });
  }, 20_000);

  it("the 2.x SDK client declaring the extension cannot take a task handle (why the exchanges above are raw)", async () => {
    const client = new Client2026({ name: "sdk", version: "1.0.0" }, { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { extensions: { [TASKS]: {} } } });
    await client.connect(new HttpTransport2026(new URL(served.url), { requestInit: { headers: { authorization: `Bearer ${ALICE}` } } }));
    try {
      // Without the extension's result type in its codec, the SDK refuses the answer...
      const refused = await client.callTool({ name: "count", arguments: { to: 1, ms: 10 } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(SdkError);
      expect((refused as SdkError).code).toBe("UNSUPPORTED_RESULT_TYPE");
      // ...while plain tools work for it as for any client.
      expect(((await client.callTool({ name: "add", arguments: { a: 3, b: 4 } })) as CallToolResult).structuredContent).toEqual({ sum: 7 });
    } finally {
      await client.close();
    }
  }, 20_000);

  it("stdio: the connection owns its tasks (expose CLI, raw JSON lines)", async () => {
    const proc = spawn(process.execPath, [BIN("zmq-mcp"), "expose", "--to", "worker", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("mcp")], { stdio: ["pipe", "pipe", "ignore"] });
    const lines: Json[] = [];
    createInterface({ input: proc.stdout }).on("line", (l) => lines.push(JSON.parse(l) as Json));
    const ask = async (method: string, params: Json): Promise<Json> => {
      const id = nextId++;
      proc.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params: { ...params, _meta: envelope(true) } })}\n`);
      await waitFor(() => lines.some((l) => l["id"] === id), 10_000, `answer to ${method}`);
      return lines.find((l) => l["id"] === id)!;
    };
    try {
      const created = (await ask("tools/call", { name: "count", arguments: { to: 3, ms: 50 } }))["result"] as Json;
      expect(created).toMatchObject({ resultType: "task", status: "working" });
      let last: Json = {};
      for (let i = 0; i < 100 && last["status"] !== "completed"; i++) {
        last = (await ask("tasks/get", { taskId: created["taskId"] }))["result"] as Json;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(last).toMatchObject({ status: "completed", result: { structuredContent: { counted: 3 } } });
      // The HTTP side's tasks are not this connection's (another process, another owner).
      expect((await ask("tasks/get", { taskId: "00000000-0000-4000-8000-000000000000" }))["error"]).toMatchObject({ code: -32602 });
      // Malformed task requests are answered, and the connection serves on.
      expect((await ask("tasks/get", { taskId: 7 }))["error"]).toMatchObject({ code: -32602 });
      expect((await ask("tasks/cancel", {}))["error"]).toMatchObject({ code: -32602 });
      expect((await ask("tools/call", { name: "add", arguments: { a: 5, b: 5 } }))["result"]).toMatchObject({ structuredContent: { sum: 10 } });
      expect(proc.exitCode).toBeNull();
    } finally {
      proc.kill("SIGTERM");
      await new Promise((resolve) => proc.once("exit", resolve));
    }
  }, 30_000);
});

describe("attach: a 2025 server's task-only tool is a mesh job run as an MCP task", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let attach: Child;
  let alice: Agent;

  beforeAll(async () => {
    fx = tempCerts("alice", "everything");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    const everything = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    attach = await spawnChild(
      BIN("zmq-mcp"),
      ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("everything"), "--tool", "simulate-research-query", "--tool", "echo", "--", process.execPath, everything, "stdio"],
      "attach ready",
      { timeoutMs: 30_000 },
    );
    alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 10_000 });
  }, 60_000);
  afterAll(async () => {
    await alice?.close();
    await attach?.stop();
    await broker?.stop();
    fx?.cleanup();
  });

  it("offered as a job; its task's status messages are the job's progress; the task's result is the job's", async () => {
    const research = (await alice.listTools("everything")).find((t) => t.name === "simulate-research-query");
    expect(research).toMatchObject({ job: true });
    const job = await alice.start("everything", "simulate-research-query", { topic: "bridges" });
    const steps: Array<{ progress: number; message?: string | undefined }> = [];
    job.on("progress", (p) => void steps.push(p));
    const result = (await job.result) as { content: Array<{ type: string; text: string }> };
    expect(result.content[0]!.text).toContain("bridges");
    expect(steps.map((s) => s.message)).toEqual(expect.arrayContaining(["Gathering sources..."]));
    expect(steps.map((s) => s.progress)).toEqual(steps.map((_, i) => i + 1));
    await waitFor(() => attach.logs.some((l) => l["msg"] === "MCP task started" && l["tool"] === "simulate-research-query"), 5000, "the attach process logged the task start"); // another process's log line: it may come after what the test saw
  }, 30_000);

  it("cancelling the mesh job cancels the task; the attachment serves on", async () => {
    const job = await alice.start("everything", "simulate-research-query", { topic: "tunnels" });
    await attach.waitLog((l) => l["msg"] === "MCP task started", "task started", 10_000);
    await job.cancel();
    const err = await job.result.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe("cancelled");
    expect(await alice.call("everything", "echo", { message: "still here" })).toMatchObject({ content: [{ type: "text", text: expect.stringContaining("still here") }] });
  }, 30_000);
});
