/**
 * `zmq-mcp expose`, the call path: an MCP `tools/call` made as a mesh call or job, answered
 * as a tool result or an MCP protocol error (the error split is in expose.ts's header and
 * docs/MCP.md), optionally run as an MCP task. Kept apart from the listing (expose-tools.ts)
 * because its concerns are a call's lifetime: progress, deadlines, aborts, and cancelling a
 * mesh job nobody waits for any more.
 */
import { InMemoryTaskStore } from "@modelcontextprotocol/sdk/experimental/tasks";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import {
  CallToolResultSchema,
  ErrorCode,
  McpError,
  type CallToolRequest,
  type CallToolResult,
  type CreateTaskResult,
  type ServerNotification,
  type ServerRequest,
  type Task,
} from "@modelcontextprotocol/sdk/types.js";
import type { Agent } from "../agent/agent.js";
import type { Job } from "../agent/jobs.js";
import type { Progress } from "../wire/envelope.js";
import { RemoteError, ZmcpError } from "../errors.js";
import type { Logger } from "../support/log.js";
import type { Route, ToolListing } from "./expose-tools.js";

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface ToolCallerOptions {
  agent: Agent;
  listing: ToolListing;
  /** Deadline of a mesh call (or of a job's start), ms. */
  timeout: number;
  /** How long a job may run before it is given up and cancelled, ms. */
  jobTimeout: number;
  /** Cap of a task's ttl, ms. */
  taskTtl: number;
  tasks: BridgeTaskStore;
  log: Logger;
}

/** Answers `tools/call` for every server of one exposer, and tracks the job cancels it sent. */
export class ToolCaller {
  readonly #o: ToolCallerOptions;
  /** Cancels of mesh jobs still on their way (awaited, briefly, on close). */
  readonly #cancels = new Set<Promise<unknown>>();

  constructor(options: ToolCallerOptions) {
    this.#o = options;
  }

  /** Waits (at most 2 s) for the job cancels still on their way, so that they leave before the agent closes. */
  async drain(): Promise<void> {
    if (this.#cancels.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(this.#cancels), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
    }
  }

  async onCall(request: CallToolRequest, extra: Extra): Promise<CallToolResult | CreateTaskResult> {
    const route = await this.resolve(request.params.name);
    const args = request.params.arguments ?? {};
    const progressToken = request.params._meta?.progressToken;
    let last = -Infinity;
    const onProgress = (p: Progress) => {
      // MCP wants progress to increase with each notification.
      if (progressToken === undefined || !(p.progress > last)) return;
      last = p.progress;
      const params = { progressToken, progress: p.progress, ...(p.total === undefined ? {} : { total: p.total }), ...(p.message === undefined ? {} : { message: p.message }) };
      extra.sendNotification({ method: "notifications/progress", params }).catch(() => undefined);
    };
    if (request.params.task && extra.taskStore) return this.#startTask(route, args, request.params.task.ttl, extra, onProgress);
    return this.#run(route, args, extra.signal, onProgress);
  }

  /** The route of an exposed tool name; InvalidParams when there is none. */
  async resolve(name: string): Promise<Route> {
    const listing = this.#o.listing;
    let route = listing.routes.get(name);
    // A name not listed (yet): the targets may have added it since. Re-listed at most once a second.
    if (!route && performance.now() - listing.refreshedAt > 1000) route = (await listing.refresh().catch(() => listing.routes)).get(name);
    if (!route) throw new McpError(ErrorCode.InvalidParams, `Tool ${name} not found`);
    return route;
  }

  /** One call of a resolved tool, for a caller that keeps the call's lifetime itself (a 2026 task). */
  call(route: Route, args: unknown, signal: AbortSignal, onProgress: (p: Progress) => void): Promise<CallToolResult> {
    return this.#run(route, args, signal, onProgress);
  }

  /** A task-augmented call: answers with the task at once; the call goes on in the background. */
  async #startTask(route: Route, args: unknown, ttl: number | undefined, extra: Extra, onProgress: (p: Progress) => void): Promise<CreateTaskResult> {
    const store = extra.taskStore!;
    const taskTtl = this.#o.taskTtl;
    const task: Task = await store.createTask({ ttl: Math.min(ttl ?? taskTtl, taskTtl), pollInterval: 1000 });
    const controller = this.#o.tasks.track(task.taskId);
    void (async () => {
      let result: CallToolResult;
      try {
        result = await this.#run(route, args, controller.signal, onProgress);
      } catch (err) {
        result = { isError: true, content: [{ type: "text", text: err instanceof Error ? err.message : String(err) }] };
      }
      this.#o.tasks.untrack(task.taskId);
      // A cancelled task keeps its status; storing fails then, which is expected.
      await store.storeTaskResult(task.taskId, result.isError ? "failed" : "completed", result).catch(() => undefined);
    })();
    return { task };
  }

  /**
   * One tool call through the mesh. Resolves with a tool result (`isError` for mesh errors);
   * rejects with McpError when no answer could be had.
   */
  async #run(route: Route, args: unknown, signal: AbortSignal, onProgress: (p: Progress) => void): Promise<CallToolResult> {
    const { target, info } = route;
    const timeout = this.#o.timeout;
    let job: Job | undefined;
    try {
      // A job's start is not abandoned half way: once accepted it has an id to cancel. (A
      // start aborted in flight could leave a job running that nobody can name.)
      // No circuit breaker: the bridge calls for all its MCP clients as one agent, so a circuit
      // per destination would let one client's burst of `busy` refusals fail every other
      // client's calls `circuit_open` (adversarial review of issue 17); each client's call has
      // its own deadline, and a `busy` reaches that client as a tool error.
      const options = { timeout, circuit: false } as const;
      job = await this.#o.agent.start(target.address, info.name, args, info.job ? options : { ...options, signal });
      job.on("progress", onProgress);
      const result = await settle(job, this.#o.jobTimeout, signal);
      return toolResult(result);
    } catch (err) {
      if (job && !job.settled) {
        this.#o.log.info("cancelling mesh job", { job: job.id, tool: info.name, target: target.address, reason: (err as Error).message });
        const cancel = job.cancel().catch(() => undefined);
        this.#cancels.add(cancel);
        void cancel.finally(() => this.#cancels.delete(cancel));
      }
      if (err instanceof RemoteError) return errorResult(err);
      throw toMcpError(err, `${info.name} on ${target.address}`);
    }
  }
}

/** Awaits a job's end within `ms`; rejects with TimeoutError or `aborted` (the caller then cancels it). */
function settle(job: Job, ms: number, signal: AbortSignal): Promise<unknown> {
  if (job.settled) return job.result;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new ZmcpError("timeout", `job ${job.id} did not end within ${ms} ms; cancelled`)), ms);
    const onAbort = () => reject(new ZmcpError("aborted", "cancelled by the MCP client"));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    job.result.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    });
  });
}

const RESULT_KEYS = new Set(["content", "structuredContent", "_meta"]);

/**
 * A mesh result → an MCP tool result: JSON text, plus `structuredContent` when it is an object.
 * A result that already is an MCP tool result (a tool of an attached MCP server) passes as is.
 */
export function toolResult(result: unknown): CallToolResult {
  if (isObject(result) && Array.isArray(result["content"]) && Object.keys(result).every((k) => RESULT_KEYS.has(k))) {
    const parsed = CallToolResultSchema.safeParse(result);
    if (parsed.success) return parsed.data;
  }
  const out: CallToolResult = { content: [{ type: "text", text: JSON.stringify(result ?? null) }] };
  if (isObject(result)) out.structuredContent = result;
  return out;
}

/** A mesh error → a tool result the model can read: `code: message`, and the code in `_meta`. */
export function errorResult(err: RemoteError): CallToolResult {
  return {
    isError: true,
    content: [{ type: "text", text: `${err.code}: ${err.message}` }],
    _meta: { "zmcp/error": { code: err.code, origin: err.origin } },
  };
}

/** A local failure (no answer came) → the MCP protocol error that says so. */
export function toMcpError(err: unknown, what: string): McpError {
  if (err instanceof McpError) return err;
  const e = err instanceof ZmcpError ? err : new ZmcpError("config", err instanceof Error ? err.message : String(err));
  const code =
    e.code === "timeout" || e.code === "aborted"
      ? ErrorCode.RequestTimeout
      : e.code === "closed"
        ? ErrorCode.ConnectionClosed
        : e.code === "invalid_args" || e.code === "too_large"
          ? ErrorCode.InvalidParams
          : ErrorCode.InternalError;
  return new McpError(code, `${what}: ${e.code}: ${e.message}`, { code: e.code });
}

/** The SDK's in-memory task store, told when a client cancels a task so that the mesh job is cancelled too. */
export class BridgeTaskStore extends InMemoryTaskStore {
  readonly #running = new Map<string, AbortController>();

  track(taskId: string): AbortController {
    const controller = new AbortController();
    this.#running.set(taskId, controller);
    return controller;
  }

  untrack(taskId: string): void {
    this.#running.delete(taskId);
  }

  abortAll(): void {
    for (const controller of this.#running.values()) controller.abort();
    this.#running.clear();
  }

  override async updateTaskStatus(taskId: string, status: Task["status"], statusMessage?: string, sessionId?: string): Promise<void> {
    await super.updateTaskStatus(taskId, status, statusMessage, sessionId);
    if (status === "cancelled") this.#running.get(taskId)?.abort();
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
