/**
 * A stdio MCP server built on `@modelcontextprotocol/server` 2.x that speaks only the
 * 2026-07-28 era (`serveStdio` with `legacy: "reject"`: a 2025 `initialize` is refused with
 * -32022), for the attach tests. `--both` serves the 2025 era too. `--http` serves it over
 * Streamable HTTP instead (2026-07-28 only), on a free port of 127.0.0.1 logged in its
 * `mcp http ready` line. `--tasks` serves (on stdio) a server that offers the 2026 tasks
 * extension (`io.modelcontextprotocol/tasks`, written by hand: the 2.x SDK has none): its
 * `research` tool runs only as a task (a client that does not declare the extension gets a
 * tool error), `research_log` tells each task's end, for the tests to see a cancel arrive.
 */
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { createMcpHandler, McpServer, Server, type ServerContext } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { z } from "zod";

function build(): McpServer {
  const server = new McpServer({ name: "modern-only", version: "1.0.0" });
  server.registerTool("shout", { description: "Upper-cases a text", inputSchema: z.object({ text: z.string() }), annotations: { readOnlyHint: true } }, async ({ text }) => ({
    content: [{ type: "text", text: text.toUpperCase() }],
    structuredContent: { loud: text.toUpperCase() },
  }));
  server.registerTool("slow", { description: "Waits, reporting progress", inputSchema: z.object({ steps: z.number().int().min(1).max(50) }) }, async ({ steps }, ctx) => {
    for (let i = 1; i <= steps; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const token = ctx.mcpReq._meta?.progressToken;
      if (token !== undefined) await ctx.mcpReq.notify({ method: "notifications/progress", params: { progressToken: token, progress: i, total: steps } });
    }
    return { content: [{ type: "text", text: `waited ${steps}` }] };
  });
  server.registerResource("motd", "modern://motd", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "hello from 2026" }] }));
  server.registerPrompt("greet", { argsSchema: z.object({ name: z.string() }) }, ({ name }) => ({ messages: [{ role: "user", content: { type: "text", text: `Greet ${name}.` } }] }));
  return server;
}

const TASKS = "io.modelcontextprotocol/tasks";
type Task = { taskId: string; status: string; statusMessage?: string; createdAt: string; lastUpdatedAt: string; ttlMs: number; pollIntervalMs: number; result?: unknown; error?: unknown };
const tasks = new Map<string, Task>();
const ends: Record<string, string> = {};

function declaresTasks(ctx: ServerContext): boolean {
  const caps = (ctx.mcpReq.envelope as Record<string, { extensions?: Record<string, unknown> }> | undefined)?.["io.modelcontextprotocol/clientCapabilities"];
  return typeof caps?.extensions?.[TASKS] === "object";
}

/** Runs `research` as a task: a status message per step, then completed (or failed for topic "fail"); cancel stops it. */
function startResearch(topic: string, steps: number): Task {
  const now = new Date().toISOString();
  const task: Task = { taskId: randomUUID(), status: "working", createdAt: now, lastUpdatedAt: now, ttlMs: 60_000, pollIntervalMs: 50 };
  tasks.set(task.taskId, task);
  void (async () => {
    for (let i = 1; i <= steps; i++) {
      await new Promise((resolve) => setTimeout(resolve, 60));
      if (task.status !== "working") return;
      task.statusMessage = `step ${i}/${steps}`;
      task.lastUpdatedAt = new Date().toISOString();
    }
    if (task.status !== "working") return;
    if (topic === "fail") {
      task.status = "failed";
      task.error = { code: -32603, message: "research failed" };
    } else {
      task.status = "completed";
      task.result = { content: [{ type: "text", text: `researched ${topic}` }], structuredContent: { topic, steps } };
    }
    ends[task.taskId] = task.status;
  })();
  return task;
}

class TaskingServer extends Server {
  protected override _wrapHandler(method: string, handler: Parameters<Server["_wrapHandler"]>[1]): ReturnType<Server["_wrapHandler"]> {
    const wrapped = super._wrapHandler(method, handler);
    if (method !== "tools/call") return wrapped;
    return async (request, ctx) => {
      const params = (request as { params?: { name?: unknown; arguments?: { topic?: unknown; steps?: unknown } } }).params;
      if (params?.name !== "research" || !declaresTasks(ctx)) return wrapped(request, ctx);
      const task = startResearch(String(params.arguments?.topic ?? "?"), Number(params.arguments?.steps ?? 3));
      return { resultType: "task", ...task } as never;
    };
  }
}

function buildTasking(): Server {
  const server = new TaskingServer({ name: "modern-tasks", version: "1.0.0" }, { capabilities: { tools: {}, extensions: { [TASKS]: {} } } });
  server.setRequestHandler("tools/list", async () => ({
    tools: [
      { name: "research", description: "Researches a topic, as a task only", inputSchema: { type: "object", properties: { topic: { type: "string" }, steps: { type: "number" } }, required: ["topic"] } },
      { name: "research_log", description: "How each task ended", inputSchema: { type: "object", properties: {} } },
    ],
  }));
  server.setRequestHandler("tools/call", async (request) => {
    if (request.params.name === "research_log") return { content: [{ type: "text", text: JSON.stringify(ends) }] };
    return { content: [{ type: "text", text: "research runs only as a task: declare the io.modelcontextprotocol/tasks extension" }], isError: true };
  });
  const taskParams = z.looseObject({ taskId: z.string() });
  const find = (id: string): Task => {
    const task = tasks.get(id);
    if (!task) throw Object.assign(new Error("Failed to retrieve task: Task not found"), { code: -32602 });
    return task;
  };
  server.setRequestHandler("tasks/get", { params: taskParams }, async (params) => ({ ...find(params.taskId) }) as never);
  server.setRequestHandler("tasks/cancel", { params: taskParams }, async (params) => {
    const task = find(params.taskId);
    if (task.status === "working") {
      task.status = "cancelled";
      task.lastUpdatedAt = new Date().toISOString();
      ends[task.taskId] = "cancelled";
    }
    return {} as never;
  });
  return server;
}

if (process.argv.includes("--tasks")) {
  serveStdio(buildTasking, { legacy: "reject" });
} else if (process.argv.includes("--http")) {
  // Streamable HTTP on 127.0.0.1 (a free port, logged as `mcp http ready`), 2026-07-28 only:
  // the SDK's createMcpHandler refuses a 2025 initialize with HTTP 400 and -32022.
  const handler = createMcpHandler(build, { legacy: "reject" });
  const http = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
      const response = await handler.fetch(new Request(`http://127.0.0.1${req.url ?? "/"}`, { method: req.method ?? "GET", headers, ...(req.method === "POST" ? { body: Buffer.concat(chunks) } : {}) }));
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    })().catch(() => res.destroy());
  });
  http.listen(0, "127.0.0.1", () => {
    const address = http.address();
    process.stderr.write(`${JSON.stringify({ level: "info", msg: "mcp http ready", port: typeof address === "object" && address ? address.port : null })}\n`);
  });
  process.once("SIGTERM", () => http.close(() => process.exit(0)));
} else {
  serveStdio(build, { legacy: process.argv.includes("--both") ? "serve" : "reject" });
}
