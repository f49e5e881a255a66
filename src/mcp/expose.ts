/**
 * `zmq-mcp expose`: an MCP server whose tools are the tools of mesh agents and services.
 *
 * Each target's tools are found through its built-in `tools/list`; a `tools/call` becomes a
 * sealed mesh call made with this bridge's key and token. Job tools report progress as MCP
 * progress notifications and complete as one result, or run as MCP tasks when the client asks.
 *
 * The error split (see docs/MCP.md): whatever the mesh answered (a RemoteError, from the called
 * agent or from the broker) is a tool result with `isError: true` and the code in its text, so
 * that the model reads it; whatever kept an answer from coming (a timeout, the bridge closing,
 * an unresolvable target) is an MCP protocol error (McpError). A name that is not in the
 * exposed list is a protocol error too (InvalidParams), as the MCP specification asks.
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { InMemoryTaskStore } from "@modelcontextprotocol/sdk/experimental/tasks";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  ToolSchema,
  type CallToolRequest,
  type CallToolResult,
  type CreateTaskResult,
  type ServerNotification,
  type ServerRequest,
  type Task,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import type { Agent, ToolInfo } from "../agent/agent.js";
import type { Progress } from "../wire/envelope.js";
import { ConfigError, RemoteError, ZmcpError } from "../errors.js";
import type { Job } from "../agent/jobs.js";
import { silentLogger, type Logger } from "../support/log.js";
import { parseServiceAddress } from "../wire/services.js";
import { isZ85Key } from "../wire/z85.js";
import { canonicalJson, SchemaCache } from "./schemas.js";
import { isMcpBindingTool } from "./transport.js";
import { addCatalogHandlers } from "./expose-catalog.js";

/** Separator between a target's label and a tool's name in prefixed names: `bob__batch_sum`. */
export const NAME_SEPARATOR = "__";

/** One mesh agent or service whose tools are exposed. */
export interface ExposeTarget {
  /** What the bridge calls: a certificate name, a Z85 key, or `svc:NAME`. */
  address: string;
  /** Prefix of its tools' names when names are prefixed (letters, digits, `_`, `.`, `-`). */
  label: string;
}

/**
 * When tool names get their target's label in front:
 * - `auto`: when more than one target is exposed (names then never depend on what the targets happen to offer);
 * - `always`, `never` (on a clash the first target's tool wins and the clash is logged).
 */
export type PrefixMode = "auto" | "always" | "never";

export interface ExposeOptions {
  /** The connected agent the bridge calls as (its key, and its `token` if any). */
  agent: Agent;
  /** Agents or services whose tools are exposed, in order (strings are parsed with {@link parseTarget}). */
  targets: Array<ExposeTarget | string>;
  /** Default `auto`. */
  prefix?: PrefixMode;
  /** Deadline of a mesh call (a tool call, or the start of a job), ms. Default 60,000. */
  timeout?: number;
  /** How long a job tool may run before the bridge gives up and cancels it, ms. Default 600,000. */
  jobTimeout?: number;
  /** Deadline of each target's `tools/list`, ms. Default 5,000. */
  listTimeout?: number;
  /** Re-list the targets this often and tell the client when the tools changed, ms; 0 = never. Default 30,000. */
  refreshInterval?: number;
  /**
   * Tools per `tools/list` page; 0 = all in one page. Default 0. The cursor is the position in
   * the listing, so any process exposing the same targets continues a page another one began.
   */
  pageSize?: number;
  /** How long a finished MCP task's result is kept, ms (a client's requested ttl is capped by it). Default 3,600,000. */
  taskTtl?: number;
  /** Largest input or output schema of one tool, bytes of JSON; a tool with a larger one is not exposed. Default 65,536. */
  maxSchemaBytes?: number;
  /** Bound of the cache of compiled output schemas, bytes of their JSON. Default 8 MiB. */
  schemaCacheBytes?: number;
  /** Server name and version announced to MCP clients. */
  serverInfo?: { name: string; version: string };
  log?: Logger;
}

/** Warnings about skipped tools per listing; the rest are counted in one summary line. */
const SKIP_WARNINGS_PER_LISTING = 20;
/** Skipped tools remembered so that each is warned about once, not at every refresh. */
const SKIPS_REMEMBERED = 10_000;
/** Synchronous work between two yields to the event loop while a listing is turned into tools, ms. */
const SLICE_MS = 10;

interface Route {
  target: ExposeTarget;
  info: ToolInfo;
  tool: Tool;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const LABEL = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * `bob`, `svc:summarize`, a Z85 key, or `label=address` → target. The label defaults to the
 * name (`svc:summarize` → `svc_summarize`) or, for a key, its first 8 characters made safe.
 */
export function parseTarget(spec: string, nameOf?: (key: string) => string | undefined): ExposeTarget {
  if (spec.length === 0) throw new ConfigError("empty target");
  if (!isZ85Key(spec)) {
    const eq = spec.indexOf("=");
    if (eq > 0 && LABEL.test(spec.slice(0, eq)) && eq < spec.length - 1) return { label: spec.slice(0, eq), address: spec.slice(eq + 1) };
  }
  const named = isZ85Key(spec) ? (nameOf?.(spec) ?? spec.slice(0, 8)) : spec;
  return { address: spec, label: named.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) };
}

/** The MCP server side of the bridge. Call {@link connect} with a transport (stdio for the CLI). */
export class MeshExposer {
  readonly server: Server;
  readonly #agent: Agent;
  readonly #targets: ExposeTarget[];
  readonly #prefixed: boolean;
  readonly #timeout: number;
  readonly #jobTimeout: number;
  readonly #listTimeout: number;
  readonly #refreshInterval: number;
  readonly #taskTtl: number;
  readonly #log: Logger;
  readonly #tasks: BridgeTaskStore;
  readonly #schemas: SchemaCache;
  readonly #serverInfo: { name: string; version: string };
  readonly #pageSize: number;
  /** `target\0tool\0reason` of the skipped tools already warned about. */
  readonly #warnedSkips = new Set<string>();
  /** Last successful listing of each target (kept while a target does not answer). */
  readonly #listed = new Map<string, ToolInfo[]>();
  #routes = new Map<string, Route>();
  #signature = "";
  #refreshing: Promise<Map<string, Route>> | undefined;
  #refreshedAt = 0;
  /** Cancels of mesh jobs still on their way (awaited, briefly, on close). */
  readonly #cancels = new Set<Promise<unknown>>();
  #timer: NodeJS.Timeout | undefined;
  #connected = false;
  #closed = false;

  constructor(options: ExposeOptions) {
    this.#agent = options.agent;
    this.#log = options.log ?? silentLogger;
    this.#targets = options.targets.map((t) => (typeof t === "string" ? parseTarget(t, (key) => options.agent.nameOf(key)) : t));
    if (this.#targets.length === 0) throw new ConfigError("at least one target (--to) is required");
    const labels = new Set<string>();
    for (const t of this.#targets) {
      if (!LABEL.test(t.label)) throw new ConfigError(`invalid label ${JSON.stringify(t.label)} (letters, digits, _ . - only)`);
      if (labels.has(t.label)) throw new ConfigError(`two targets have the label ${JSON.stringify(t.label)}; name them with label=target`);
      labels.add(t.label);
      // A mistyped name fails here (unknown_peer), not as a tool that never shows up.
      if (!parseServiceAddress(t.address)) options.agent.resolve(t.address);
    }
    const prefix = options.prefix ?? "auto";
    this.#prefixed = prefix === "always" || (prefix === "auto" && this.#targets.length > 1);
    this.#timeout = positive(options.timeout ?? 60_000, "timeout");
    this.#jobTimeout = positive(options.jobTimeout ?? 600_000, "jobTimeout");
    this.#listTimeout = positive(options.listTimeout ?? 5_000, "listTimeout");
    this.#refreshInterval = options.refreshInterval ?? 30_000;
    this.#taskTtl = positive(options.taskTtl ?? 3_600_000, "taskTtl");
    this.#tasks = new BridgeTaskStore();
    // Only whether an output schema compiles matters here (the client compiles it to check results).
    this.#schemas = new SchemaCache({
      keepValidators: false,
      ...(options.maxSchemaBytes === undefined ? {} : { maxSchemaBytes: options.maxSchemaBytes }),
      ...(options.schemaCacheBytes === undefined ? {} : { maxBytes: options.schemaCacheBytes }),
    });
    this.#serverInfo = options.serverInfo ?? { name: "zmq-mcp-expose", version: "0.1.0" };
    this.#pageSize = options.pageSize ?? 0;
    if (!Number.isInteger(this.#pageSize) || this.#pageSize < 0) throw new ConfigError("pageSize must be an integer >= 0");
    this.server = this.#newServer(true);
  }

  /**
   * A new MCP server on the same tools, for one stateless exchange (one Streamable HTTP
   * request): no tasks (a task would live in this process only, and the next request may go
   * to another), and no list-changed notifications (there is no stream to send them on).
   * Close it when its exchange ends: that aborts its calls in flight (and cancels their jobs).
   */
  createStatelessServer(): Server {
    if (this.#closed) throw new ZmcpError("closed", "the exposer is closed");
    return this.#newServer(false);
  }

  #newServer(withTasks: boolean): Server {
    const server = new Server(this.#serverInfo, {
      capabilities: {
        tools: { listChanged: withTasks },
        // Listed afresh at every client listing (expose-catalog.ts), so there is no change to announce.
        resources: {},
        prompts: {},
        completions: {},
        ...(withTasks ? { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } } : {}),
      },
      ...(withTasks ? { taskStore: this.#tasks } : {}),
      instructions:
        "Tools of agents on a zmcp mesh, called through a sealed, authenticated message bus. " +
        "A failed call returns isError with the mesh error code first (for example invalid_args, token_scope, no_route).",
    });
    // Without tasks, no tool may say a task is possible (`execution.taskSupport`).
    const advertised = (tool: Tool): Tool => {
      if (withTasks || !tool.execution) return tool;
      const { execution: _dropped, ...rest } = tool;
      return rest;
    };
    server.setRequestHandler(ListToolsRequestSchema, async (request) => {
      const tools = [...(await this.refresh()).values()].map((r) => advertised(r.tool));
      const { items, nextCursor } = pageOf(tools, request.params?.cursor, this.#pageSize);
      return { tools: items, ...(nextCursor === undefined ? {} : { nextCursor }) };
    });
    server.setRequestHandler(CallToolRequestSchema, (request, extra) => this.#onCall(request, extra));
    addCatalogHandlers(server, {
      agent: this.#agent,
      targets: this.#targets,
      prefixed: this.#prefixed,
      separator: NAME_SEPARATOR,
      timeout: this.#timeout,
      listTimeout: this.#listTimeout,
      pageSize: this.#pageSize,
      log: this.#log,
      page: pageOf,
    });
    return server;
  }

  /** The exposed names and where each goes, as of the last listing. */
  get routes(): ReadonlyMap<string, { target: string; tool: string; job: boolean }> {
    return new Map([...this.#routes].map(([name, r]) => [name, { target: r.target.address, tool: r.info.name, job: r.info.job }]));
  }

  /** The compiled-schema cache: entries, bytes held (bounded by `schemaCacheBytes`), compilations so far. */
  get schemaCache(): { size: number; bytes: number; maxBytes: number; compilations: number } {
    const c = this.#schemas;
    return { size: c.size, bytes: c.bytes, maxBytes: c.maxBytes, compilations: c.compilations };
  }

  /** Serves MCP on `transport`, and starts re-listing the targets now and then. */
  async connect(transport: Transport): Promise<void> {
    await this.server.connect(transport);
    this.#connected = true;
    if (this.#refreshInterval > 0) {
      this.#timer = setInterval(() => void this.refresh().catch(() => undefined), this.#refreshInterval).unref();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#tasks.abortAll();
    this.#tasks.cleanup();
    // Closing the server aborts the calls in flight; their jobs are then cancelled on the
    // mesh, and those cancels get a moment to leave before the agent closes.
    await this.server.close();
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#cancels.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(this.#cancels), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
    }
  }

  /**
   * Lists every target's tools (at once, each within `listTimeout`) and rebuilds the exposed
   * names. A target that does not answer keeps its last listing; if no target was ever
   * listed, rejects with an McpError. Tells a connected client when the list changed.
   */
  refresh(): Promise<Map<string, Route>> {
    this.#refreshing ??= this.#relist().finally(() => {
      this.#refreshing = undefined;
      this.#refreshedAt = Date.now();
    });
    return this.#refreshing;
  }

  async #relist(): Promise<Map<string, Route>> {
    const failures: string[] = [];
    await Promise.all(
      this.#targets.map(async (target) => {
        try {
          this.#listed.set(target.address, await this.#agent.listTools(target.address, { timeout: this.#listTimeout }));
        } catch (err) {
          const e = err as ZmcpError;
          failures.push(`${target.address}: ${e.code ?? "error"}: ${e.message}`);
          this.#log.warn("tools/list failed", { target: target.address, code: e.code, message: e.message, kept: this.#listed.has(target.address) });
        }
      }),
    );
    if (this.#listed.size === 0) throw new McpError(ErrorCode.InternalError, `no target answered tools/list: ${failures.join("; ")}`);
    const routes = new Map<string, Route>();
    const skips = { warned: 0, more: 0 };
    // Thousands of tools are checked here: the event loop gets a turn every few ms, so calls
    // in flight and the MCP connection are served meanwhile.
    let sliceStart = performance.now();
    for (const target of this.#targets) {
      for (const info of this.#listed.get(target.address) ?? []) {
        // The MCP-over-the-mesh binding's own tools carry JSON-RPC, not work for a model.
        if (isMcpBindingTool(info.name)) continue;
        if (performance.now() - sliceStart > SLICE_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
        const name = this.#prefixed ? `${target.label}${NAME_SEPARATOR}${info.name}` : info.name;
        const clash = routes.get(name);
        if (clash) {
          // Through the same once-per-tool, capped log as invalid tools: a peer chooses its tool names.
          this.#skip(target, info.name, `name clash: ${name} is kept from ${clash.target.address}`, skips);
          continue;
        }
        const tool = this.#toMcpTool(name, target, info);
        if (typeof tool === "string") {
          this.#skip(target, info.name, tool, skips);
          continue;
        }
        routes.set(name, { target, info, tool });
      }
    }
    if (skips.more > 0) this.#log.warn("more tools skipped", { count: skips.more });
    const signature = JSON.stringify([...routes.values()].map((r) => r.tool));
    const previous = this.#signature;
    this.#routes = routes;
    this.#signature = signature;
    if (signature !== previous) {
      this.#log.info("tools", { tools: [...routes.keys()] });
      // The first listing is no change: the client has not seen any list yet.
      if (previous !== "" && this.#connected && !this.#closed) await this.server.sendToolListChanged().catch(() => undefined);
    }
    return routes;
  }

  /**
   * The MCP tool for a mesh tool, or why it cannot be one. A peer's listing is untrusted: a
   * tool the MCP tool schema refuses would make the client refuse the whole `tools/list`
   * answer, so that one bad tool would hide every other.
   */
  #toMcpTool(name: string, target: ExposeTarget, info: ToolInfo): Tool | string {
    try {
      canonicalJson(info.inputSchema, this.#schemas.maxSchemaBytes);
    } catch (err) {
      return `input schema: ${(err as Error).message}`;
    }
    const tool: Tool = {
      name,
      description: info.description || `${info.name} on ${target.address}`,
      inputSchema: info.inputSchema["type"] === "object" ? (info.inputSchema as Tool["inputSchema"]) : { type: "object" },
      _meta: { "zmcp/target": target.address, "zmcp/tool": info.name, "zmcp/job": info.job },
    };
    const output = this.#outputSchema(info);
    if (output) tool.outputSchema = output;
    if (info.job) tool.execution = { taskSupport: "optional" };
    if (info.annotations) tool.annotations = { ...info.annotations };
    const checked = ToolSchema.safeParse(tool);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      return `not a valid MCP tool: ${issue ? `${issue.path.join(".") || "(tool)"}: ${issue.message}` : "refused by the MCP tool schema"}`;
    }
    return tool;
  }

  /** Logs a skipped tool once (not at every refresh), at most {@link SKIP_WARNINGS_PER_LISTING} lines per listing. */
  #skip(target: ExposeTarget, tool: string, reason: string, skips: { warned: number; more: number }): void {
    const key = `${target.address}\0${tool}\0${reason}`;
    if (this.#warnedSkips.has(key)) return;
    if (skips.warned >= SKIP_WARNINGS_PER_LISTING) {
      skips.more++;
      return;
    }
    if (this.#warnedSkips.size >= SKIPS_REMEMBERED) this.#warnedSkips.clear();
    this.#warnedSkips.add(key);
    skips.warned++;
    this.#log.warn("tool skipped", { target: target.address, tool: tool.slice(0, 256), reason: reason.slice(0, 512) });
  }

  /**
   * The result schema to advertise, if a client can use it: MCP wants an object schema, and
   * clients compile it (a draft-07 validator refuses a 2020-12 `$schema`, so it is dropped).
   */
  #outputSchema(info: ToolInfo): Tool["outputSchema"] | undefined {
    if (!info.outputSchema || info.outputSchema["type"] !== "object") return undefined;
    const { $schema: _ignored, ...schema } = info.outputSchema;
    // Compiled once per distinct schema (see schemas.ts); one that does not compile, or is too large, is left out.
    return this.#schemas.check(schema).ok ? (schema as Tool["outputSchema"]) : undefined;
  }

  async #onCall(request: CallToolRequest, extra: Extra): Promise<CallToolResult | CreateTaskResult> {
    const name = request.params.name;
    let route = this.#routes.get(name);
    // A name not listed (yet): the targets may have added it since. Re-listed at most once a second.
    if (!route && Date.now() - this.#refreshedAt > 1000) route = (await this.refresh().catch(() => this.#routes)).get(name);
    if (!route) throw new McpError(ErrorCode.InvalidParams, `Tool ${name} not found`);
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

  /** A task-augmented call: answers with the task at once; the call goes on in the background. */
  async #startTask(route: Route, args: unknown, ttl: number | undefined, extra: Extra, onProgress: (p: Progress) => void): Promise<CreateTaskResult> {
    const store = extra.taskStore!;
    const task: Task = await store.createTask({ ttl: Math.min(ttl ?? this.#taskTtl, this.#taskTtl), pollInterval: 1000 });
    const controller = this.#tasks.track(task.taskId);
    void (async () => {
      let result: CallToolResult;
      try {
        result = await this.#run(route, args, controller.signal, onProgress);
      } catch (err) {
        result = { isError: true, content: [{ type: "text", text: err instanceof Error ? err.message : String(err) }] };
      }
      this.#tasks.untrack(task.taskId);
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
    let job: Job | undefined;
    try {
      // A job's start is not abandoned half way: once accepted it has an id to cancel. (A
      // start aborted in flight could leave a job running that nobody can name.)
      job = await this.#agent.start(target.address, info.name, args, info.job ? { timeout: this.#timeout } : { timeout: this.#timeout, signal });
      job.on("progress", onProgress);
      const result = await settle(job, this.#jobTimeout, signal);
      return toolResult(result);
    } catch (err) {
      if (job && !job.settled) {
        this.#log.info("cancelling mesh job", { job: job.id, tool: info.name, target: target.address, reason: (err as Error).message });
        const cancel = job.cancel().catch(() => undefined);
        this.#cancels.add(cancel);
        void cancel.finally(() => this.#cancels.delete(cancel));
      }
      if (err instanceof RemoteError) return errorResult(err);
      throw toMcpError(err, `${info.name} on ${target.address}`);
    }
  }
}

/**
 * One page of a listing. The cursor is opaque to clients; here it is the offset, base64url
 * JSON, so that it means the same in every process that lists the same targets (stateless
 * HTTP behind a balancer). A cursor that does not decode, or points past the end, is
 * InvalidParams, as the MCP specification asks.
 */
function pageOf<T>(tools: T[], cursor: string | undefined, size: number): { items: T[]; nextCursor?: string } {
  let start = 0;
  if (cursor !== undefined) {
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    } catch {
      decoded = undefined;
    }
    const offset = isObject(decoded) ? decoded["o"] : undefined;
    if (typeof offset !== "number" || !Number.isInteger(offset) || offset < 0 || offset > tools.length) {
      throw new McpError(ErrorCode.InvalidParams, "invalid cursor (the listing may have changed: list again from the start)");
    }
    start = offset;
  }
  const end = size === 0 ? tools.length : Math.min(tools.length, start + size);
  const out: { items: T[]; nextCursor?: string } = { items: tools.slice(start, end) };
  if (end < tools.length) out.nextCursor = Buffer.from(JSON.stringify({ o: end }), "utf8").toString("base64url");
  return out;
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
class BridgeTaskStore extends InMemoryTaskStore {
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

function positive(value: number, name: string): number {
  if (!(value > 0)) throw new ConfigError(`${name} must be a positive number of ms`);
  return value;
}
