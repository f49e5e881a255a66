/**
 * A 2.x MCP server offering the 2026 tasks extension (`io.modelcontextprotocol/tasks`), written
 * by hand (the 2.x SDK has none), shared by the stdio test server (test/support/mcp-server-2026.ts
 * `--tasks`) and the mesh transport's tasks test. Its `research` tool runs only as a task (a
 * client that does not declare the extension gets a tool error); `research_log` tells each
 * task's end, for the tests to see a cancel arrive.
 *
 * The tasks live in a `TaskStore` outside the server instances, because the 2026 entries
 * (`createMcpHandler`, `serveMesh`) make a fresh instance per request. Each task is bound to
 * its creator, `ctx.http.authInfo.clientId` (the bearer's identity over HTTP, the caller's
 * curve key over the mesh; nobody in particular on stdio, one connection): another owner's
 * task id is "not found" (-32602), as an unknown one.
 */
import { randomUUID } from "node:crypto";
import { Server, type ServerContext } from "@modelcontextprotocol/server";
import { z } from "zod";

export const TASKS_EXTENSION = "io.modelcontextprotocol/tasks";

type Task = { taskId: string; status: string; statusMessage?: string; createdAt: string; lastUpdatedAt: string; ttlMs: number; pollIntervalMs: number; result?: unknown; error?: unknown };

/** Tasks by id with their owners, and how each ended (for `research_log`). */
export class TaskStore {
  readonly tasks = new Map<string, { task: Task; owner: string }>();
  readonly ends: Record<string, string> = {};
}

function ownerOf(ctx: ServerContext): string {
  return ctx.http?.authInfo?.clientId ?? "";
}

function declaresTasks(ctx: ServerContext): boolean {
  const caps = (ctx.mcpReq.envelope as Record<string, { extensions?: Record<string, unknown> }> | undefined)?.["io.modelcontextprotocol/clientCapabilities"];
  return typeof caps?.extensions?.[TASKS_EXTENSION] === "object";
}

/** Runs `research` as a task: a status message per step, then completed (or failed for topic "fail"); cancel stops it. */
function startResearch(store: TaskStore, owner: string, topic: string, steps: number): Task {
  const now = new Date().toISOString();
  const task: Task = { taskId: randomUUID(), status: "working", createdAt: now, lastUpdatedAt: now, ttlMs: 60_000, pollIntervalMs: 50 };
  store.tasks.set(task.taskId, { task, owner });
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
    store.ends[task.taskId] = task.status;
  })();
  return task;
}

/** A server instance over `store`: call it from the factory given to serveStdio / serveMesh. */
export function buildTaskingServer(store: TaskStore): Server {
  class TaskingServer extends Server {
    protected override _wrapHandler(method: string, handler: Parameters<Server["_wrapHandler"]>[1]): ReturnType<Server["_wrapHandler"]> {
      const wrapped = super._wrapHandler(method, handler);
      if (method !== "tools/call") return wrapped;
      return async (request, ctx) => {
        const params = (request as { params?: { name?: unknown; arguments?: { topic?: unknown; steps?: unknown } } }).params;
        if (params?.name !== "research" || !declaresTasks(ctx)) return wrapped(request, ctx);
        const task = startResearch(store, ownerOf(ctx), String(params.arguments?.topic ?? "?"), Number(params.arguments?.steps ?? 3));
        return { resultType: "task", ...task } as never;
      };
    }
  }
  const server = new TaskingServer({ name: "modern-tasks", version: "1.0.0" }, { capabilities: { tools: {}, extensions: { [TASKS_EXTENSION]: {} } } });
  server.setRequestHandler("tools/list", async () => ({
    tools: [
      { name: "research", description: "Researches a topic, as a task only", inputSchema: { type: "object", properties: { topic: { type: "string" }, steps: { type: "number" } }, required: ["topic"] } },
      { name: "research_log", description: "How each task ended", inputSchema: { type: "object", properties: {} } },
    ],
  }));
  server.setRequestHandler("tools/call", async (request) => {
    if (request.params.name === "research_log") return { content: [{ type: "text", text: JSON.stringify(store.ends) }] };
    return { content: [{ type: "text", text: "research runs only as a task: declare the io.modelcontextprotocol/tasks extension" }], isError: true };
  });
  const taskParams = z.looseObject({ taskId: z.string() });
  // Another owner's task is not found, exactly as an unknown id: its existence is not told.
  const find = (id: string, ctx: ServerContext): Task => {
    const held = store.tasks.get(id);
    if (!held || held.owner !== ownerOf(ctx)) throw Object.assign(new Error("Failed to retrieve task: Task not found"), { code: -32602 });
    return held.task;
  };
  server.setRequestHandler("tasks/get", { params: taskParams }, async (params, ctx) => ({ ...find(params.taskId, ctx) }) as never);
  server.setRequestHandler("tasks/cancel", { params: taskParams }, async (params, ctx) => {
    const task = find(params.taskId, ctx);
    if (task.status === "working") {
      task.status = "cancelled";
      task.lastUpdatedAt = new Date().toISOString();
      store.ends[task.taskId] = "cancelled";
    }
    return {} as never;
  });
  return server;
}
