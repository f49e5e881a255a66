/**
 * `zmq-mcp attach`, the tool mirror: the server's tools registered as the agent's tools
 * (added, changed, withdrawn at each listing), their arguments checked against their JSON
 * Schemas here, and a mesh call made as the server's `tools/call`. Kept apart from the
 * process supervision (attach.ts) because it only needs a running client, whichever run of
 * the server that is.
 */
import type { JsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import { ErrorCode, McpError, type CallToolResult, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Agent, ToolAnnotations, ToolContext } from "../agent/agent.js";
import { ZmcpError } from "../errors.js";
import { isBuiltinTool } from "../agent/tools.js";
import type { Logger } from "../support/log.js";
import { SchemaCache } from "./schemas.js";
import type { AttachOptions } from "./attach.js";
import { meshError, type Child, type ReadyFn } from "./attach-server.js";
import { ModernServerClient } from "./attach-2026.js";

interface Attached {
  /** The MCP name on the server. */
  mcpName: string;
  signature: string;
}

export interface ToolMirrorOptions {
  agent: Agent;
  options: AttachOptions;
  log: Logger;
  ready: ReadyFn;
  /** Whether the attachment is closed (a listing that ends after close registers nothing; a call is not retried). */
  closed: () => boolean;
}

/** The server's tools as the agent's tools. */
export class ToolMirror {
  readonly #agent: Agent;
  readonly #options: AttachOptions;
  readonly #log: Logger;
  readonly #ready: ReadyFn;
  readonly #closed: () => boolean;
  readonly #jobs: Set<string>;
  readonly #prefix: string;
  readonly #only: Set<string> | undefined;
  /** Input schemas compiled once per distinct schema (a server re-listing its tools does not recompile them). */
  readonly #schemas = new SchemaCache();
  /** Mesh name → what it was registered as. */
  readonly #attached = new Map<string, Attached>();

  constructor(o: ToolMirrorOptions) {
    this.#agent = o.agent;
    this.#options = o.options;
    this.#log = o.log;
    this.#ready = o.ready;
    this.#closed = o.closed;
    this.#jobs = new Set(o.options.jobs ?? []);
    this.#prefix = o.options.prefix ?? "";
    this.#only = o.options.only?.length ? new Set(o.options.only) : undefined;
  }

  /** The mesh names of the attached tools. */
  get names(): string[] {
    return [...this.#attached.keys()];
  }

  /** Withdraws every attached tool from the agent. */
  clear(): void {
    for (const name of this.#attached.keys()) this.#agent.removeTool(name);
    this.#attached.clear();
  }

  /** Lists the server's tools and brings the agent's registrations in line. */
  async sync(child: Child): Promise<void> {
    const tools: Tool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const listed = await child.client.listTools(cursor === undefined ? {} : { cursor });
      tools.push(...listed.tools);
      cursor = listed.nextCursor;
      if (!cursor) break;
    }
    if (this.#closed()) return;
    const seen = new Set<string>();
    for (const tool of tools) {
      if (this.#only && !this.#only.has(tool.name)) continue;
      const meshName = this.#prefix + tool.name;
      if (isBuiltinTool(meshName) || meshName.length > 256) {
        this.#log.warn("tool skipped: its name is reserved or too long on the mesh", { tool: tool.name });
        continue;
      }
      // A tool that runs only as an MCP task is a mesh job whose calls are tasks (2025 era: the v1
      // client's experimental tasks). A 2026 server lists no `execution`: where it offers the
      // tasks extension, every call declares it and a task answer is followed (#call).
      const asTask = tool.execution?.taskSupport === "required";
      if (asTask && !child.tasks) {
        this.#log.warn("tool skipped: it can only run as an MCP task, and tasks are not supported in this era", { tool: tool.name, era: child.era });
        continue;
      }
      seen.add(meshName);
      const job = asTask || this.#jobs.has("*") || this.#jobs.has(tool.name);
      const signature = JSON.stringify([tool.description, tool.inputSchema, tool.outputSchema, job, tool.annotations, tool.title]);
      const known = this.#attached.get(meshName);
      if (known?.signature === signature) continue;
      if (known) {
        this.#agent.removeTool(meshName);
        this.#attached.delete(meshName);
      }
      try {
        this.#register(meshName, tool, job, asTask);
        this.#attached.set(meshName, { mcpName: tool.name, signature });
      } catch (err) {
        // e.g. a name that cannot make a scope (spaces, quotes): the other tools go on.
        this.#log.warn("tool skipped", { tool: tool.name, error: (err as Error).message });
      }
    }
    for (const name of [...this.#attached.keys()]) {
      if (!seen.has(name)) {
        this.#agent.removeTool(name);
        this.#attached.delete(name);
      }
    }
    this.#log.info("tools", { tools: [...this.#attached.keys()], jobs: [...this.#attached.keys()].filter((n) => this.#jobs.has("*") || this.#jobs.has(this.#attached.get(n)!.mcpName)) });
  }

  #register(meshName: string, tool: Tool, job: boolean, asTask: boolean): void {
    this.#agent.tool(
      meshName,
      {
        description: tool.description ?? tool.title ?? "",
        input: this.#argsSchema(tool),
        inputSchema: tool.inputSchema as Record<string, unknown>,
        ...(tool.outputSchema ? { outputSchema: tool.outputSchema as Record<string, unknown> } : {}),
        ...annotationsOf(tool),
        job,
      },
      (args, ctx) => (asTask ? this.#callAsTask(tool, args, ctx) : this.#call(tool, args, ctx, job)),
    );
  }

  /** Arguments: an object, checked against the tool's JSON Schema when a validator can be made from it. */
  #argsSchema(tool: Tool): z.ZodType<Record<string, unknown>> {
    let check: JsonSchemaValidator<unknown> | undefined;
    const verdict = this.#schemas.check(tool.inputSchema as Record<string, unknown>);
    if (verdict.ok) check = verdict.validate;
    else this.#log.warn("arguments of this tool are not checked here", { tool: tool.name, error: verdict.error });
    return z.record(z.string(), z.unknown()).superRefine((args, ctx) => {
      const verdict = check?.(args);
      if (verdict && !verdict.valid) ctx.addIssue({ code: "custom", message: verdict.errorMessage ?? "arguments do not match the tool's schema" });
    });
  }

  async #call(tool: Tool, args: Record<string, unknown>, ctx: ToolContext, job: boolean): Promise<unknown> {
    const name = tool.name;
    const deadline = job ? Date.now() + (this.#options.jobTimeout ?? 600_000) : ctx.deadline;
    // A server that dies under a call may or may not have run it: the call is made again on
    // the restarted server only for a tool that says doing so is harmless.
    const again = tool.annotations?.idempotentHint === true || tool.annotations?.readOnlyHint === true;
    let result: CallToolResult;
    for (let attempt = 1; ; attempt++) {
      const child = await this.#ready(deadline, ctx.signal);
      if (child.client instanceof ModernServerClient && child.client.offersTasks) {
        result = await this.#callTasking(child.client, tool, args, ctx, job, deadline);
        break;
      }
      try {
        result = (await child.client.callTool({ name, arguments: args }, undefined, {
          timeout: Math.max(1, deadline - Date.now()),
          signal: ctx.signal,
          ...(job
            ? {
                onprogress: (p) =>
                  ctx.progress({ progress: p.progress, ...(p.total === undefined ? {} : { total: p.total }), ...(p.message === undefined ? {} : { message: p.message }) }),
              }
            : {}),
        })) as CallToolResult;
        break;
      } catch (err) {
        const closed = err instanceof McpError && err.code === ErrorCode.ConnectionClosed;
        // A request that never reached an HTTP server (attach-http.ts) did not run: it is made
        // again on the next connection, whatever the tool (a few times, within the deadline).
        const undelivered = closed && (err.data as { delivered?: unknown } | undefined)?.delivered === false;
        if (closed && !this.#closed() && (undelivered ? attempt <= 3 : again && attempt === 1)) {
          this.#log.info("MCP server gone during a call; calling again once it is back", { tool: name, delivered: !undelivered });
          continue;
        }
        throw meshError(err, name);
      }
    }
    return meshResult(result, name);
  }

  /**
   * A call to a 2026 server offering the tasks extension: declared on the call, so the server
   * may answer with a task, which is followed to its end (ModernServerClient.callToolTasking).
   * Each new status message is a progress step of a mesh job; the mesh job's cancel (or the
   * call's deadline: jobTimeout for a job, the caller's for a plain call) is `tasks/cancel`.
   * Not made again after a server crash: a task dies with its server.
   */
  async #callTasking(client: ModernServerClient, tool: Tool, args: Record<string, unknown>, ctx: ToolContext, job: boolean, deadline: number): Promise<CallToolResult> {
    const name = tool.name;
    const ttl = Math.max(1, deadline - Date.now());
    const expired = AbortSignal.timeout(ttl);
    const signal = AbortSignal.any([ctx.signal, expired]);
    let step = 0;
    try {
      return await client.callToolTasking(
        { name, arguments: args },
        {
          signal,
          timeout: ttl,
          onTask: (taskId) => this.#log.info("MCP task started", { tool: name, task: taskId, era: "2026" }),
          ...(job ? { onStatus: (message: string) => ctx.progress({ progress: ++step, message: message.slice(0, 1024) }) } : {}),
        },
      );
    } catch (err) {
      if (expired.aborted && !ctx.signal.aborted) throw new ZmcpError(job ? "tool_failed" : "timeout", `${name}: the MCP task did not end within ${ttl} ms; cancelled`);
      if (ctx.signal.aborted) throw new ZmcpError("cancelled", `${name}: cancelled`);
      throw meshError(err, name);
    }
  }

  /**
   * A call of a tool that runs only as an MCP task (2025 experimental tasks): the SDK creates
   * the task and polls it; each new status message is a progress step of the mesh job; the
   * mesh job's cancel is the task's `tasks/cancel`. Not made again after a server crash: the
   * task died with the server.
   */
  async #callAsTask(tool: Tool, args: Record<string, unknown>, ctx: ToolContext): Promise<unknown> {
    const name = tool.name;
    const deadline = Date.now() + (this.#options.jobTimeout ?? 600_000);
    const child = await this.#ready(deadline, ctx.signal);
    const tasks = child.tasks;
    if (!tasks) throw new ZmcpError("tool_failed", `${name}: the MCP server no longer runs tasks`);
    let taskId: string | undefined;
    const cancel = () => {
      if (taskId !== undefined) void tasks.cancelTask(taskId).catch((err: Error) => this.#log.debug("task cancel failed", { tool: name, task: taskId, error: err.message }));
    };
    // The SDK's `timeout` bounds each request of the stream (the create, every tasks/get), not
    // the task: a server answering `working` for ever would be polled for ever. The job's
    // deadline is a signal of its own, ending the stream (and cancelling the task) when it passes.
    const ttl = Math.max(1, deadline - Date.now());
    const expired = AbortSignal.timeout(ttl);
    const signal = AbortSignal.any([ctx.signal, expired]);
    // tool_failed, as for a plain job tool that outlives jobTimeout (the SDK's request timeout).
    const overdue = () => new ZmcpError("tool_failed", `${name}: the MCP task did not end within ${ttl} ms (jobTimeout); cancelled`);
    signal.addEventListener("abort", cancel, { once: true });
    let step = 0;
    let lastMessage: string | undefined;
    try {
      for await (const m of tasks.callToolStream({ name, arguments: args }, undefined, { timeout: ttl, signal, task: { ttl } })) {
        if (expired.aborted && !ctx.signal.aborted) throw overdue();
        if (m.type === "taskCreated") {
          taskId = m.task.taskId;
          this.#log.info("MCP task started", { tool: name, task: taskId });
          if (signal.aborted) cancel();
        } else if (m.type === "taskStatus") {
          const message = m.task.statusMessage;
          if (message !== undefined && message !== lastMessage) {
            lastMessage = message;
            ctx.progress({ progress: ++step, message: message.slice(0, 1024) });
          }
        } else if (m.type === "result") {
          return meshResult(m.result as CallToolResult, name);
        } else {
          throw m.error;
        }
      }
      throw new ZmcpError("tool_failed", `${name}: the task ended without a result`);
    } catch (err) {
      // Past the deadline, whatever the stream said on its way out is the deadline's doing.
      if (expired.aborted && !ctx.signal.aborted) throw overdue();
      if (err instanceof ZmcpError) throw err;
      throw meshError(err, name);
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }
}

/** An MCP tool result → the mesh result: `tool_failed` for `isError`, else the result without the flag. */
function meshResult(result: CallToolResult, name: string): unknown {
  if (result.isError) throw new ZmcpError("tool_failed", textOf(result) || `${name} failed`);
  const { isError: _no, ...rest } = result;
  return rest;
}

/** A tool's MCP annotations (and its title), as the agent's tool spec carries them. */
function annotationsOf(tool: Tool): { annotations?: ToolAnnotations } {
  const a = tool.annotations ?? {};
  const out: ToolAnnotations = {};
  const title = a.title ?? tool.title;
  if (typeof title === "string") out.title = title;
  for (const k of ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"] as const) if (typeof a[k] === "boolean") out[k] = a[k];
  return Object.keys(out).length > 0 ? { annotations: out } : {};
}

function textOf(result: CallToolResult): string {
  return result.content
    .map((c) => (c.type === "text" ? c.text : `[${c.type}]`))
    .join("\n")
    .slice(0, 4096);
}
