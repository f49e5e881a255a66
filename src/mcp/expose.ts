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
 *
 * This file wires one MCP server (or one per stateless HTTP exchange) onto the parts: the
 * listing and naming of the targets' tools (expose-tools.ts), the calls and jobs
 * (expose-calls.ts), and resources, prompts and completion (expose-catalog.ts).
 */
import type { Server as ModernServer } from "@modelcontextprotocol/server";
import { serveStdio, StdioServerTransport } from "@modelcontextprotocol/server/stdio";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { CallToolRequestSchema, ListToolsRequestSchema, type Tool } from "@modelcontextprotocol/sdk/types.js";
import type { Agent } from "../agent/agent.js";
import { ConfigError, ZmcpError } from "../errors.js";
import { silentLogger, type Logger } from "../support/log.js";
import { parseServiceAddress } from "../wire/services.js";
import { SchemaCache } from "./schemas.js";
import { addCatalogHandlers, type CatalogAccess } from "./expose-catalog.js";
import { BridgeTaskStore, ToolCaller } from "./expose-calls.js";
import { ExposeSubscriptions, SUBSCRIPTION_DEFAULTS } from "./expose-subscriptions.js";
import { LABEL, NAME_SEPARATOR, pageOf, parseTarget, ToolListing, type ExposeTarget, type Route } from "./expose-tools.js";
import { createModernServer, type HandlerHost } from "./expose-2026.js";
import { ExtensionTaskStore } from "./expose-tasks.js";

// What expose.ts exported before the split (zmcp/mcp, bin/zmq-mcp.ts, tests import them from here).
export { NAME_SEPARATOR, parseTarget } from "./expose-tools.js";
export type { ExposeTarget } from "./expose-tools.js";
export { errorResult, toMcpError, toolResult } from "./expose-calls.js";

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
  /**
   * Re-read resources a client subscribed to this often and notify it of changes, ms; 0 = no
   * subscriptions. Default 5,000. Long-lived 2025-era connections (stdio) only: expose-subscriptions.ts.
   */
  subscriptionInterval?: number;
  /** Most resources subscribed at once. Default 100. */
  maxSubscriptions?: number;
  /**
   * How long a finished MCP task's result is kept, ms (a client's requested ttl is capped by it);
   * a 2026 task is kept this long from its creation. Default 3,600,000.
   */
  taskTtl?: number;
  /** Largest input or output schema of one tool, bytes of JSON; a tool with a larger one is not exposed. Default 65,536. */
  maxSchemaBytes?: number;
  /** Bound of the cache of compiled output schemas, bytes of their JSON. Default 8 MiB. */
  schemaCacheBytes?: number;
  /** Server name and version announced to MCP clients. */
  serverInfo?: { name: string; version: string };
  log?: Logger;
}

/** The MCP server side of the bridge. Call {@link connect} with a transport (stdio for the CLI). */
export class MeshExposer {
  readonly server: Server;
  readonly #agent: Agent;
  readonly #targets: ExposeTarget[];
  readonly #prefixed: boolean;
  readonly #timeout: number;
  readonly #listTimeout: number;
  readonly #refreshInterval: number;
  readonly #log: Logger;
  readonly #tasks: BridgeTaskStore;
  readonly #schemas: SchemaCache;
  readonly #serverInfo: { name: string; version: string };
  readonly #pageSize: number;
  readonly #listing: ToolListing;
  readonly #caller: ToolCaller;
  readonly #subscriptions: ExposeSubscriptions;
  /** Tasks of the 2026 tasks extension (both stdio and HTTP: each bound to its owner). */
  readonly #extTasks: ExtensionTaskStore;
  /** The 2026-era servers of stdio connections, told when the tools change. */
  readonly #modern = new Set<ModernServer>();
  #connections = 0;
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
    const jobTimeout = positive(options.jobTimeout ?? 600_000, "jobTimeout");
    this.#listTimeout = positive(options.listTimeout ?? 5_000, "listTimeout");
    this.#refreshInterval = options.refreshInterval ?? 30_000;
    const taskTtl = positive(options.taskTtl ?? 3_600_000, "taskTtl");
    this.#tasks = new BridgeTaskStore();
    this.#extTasks = new ExtensionTaskStore({ ttlMs: taskTtl });
    // Only whether an output schema compiles matters here (the client compiles it to check results).
    this.#schemas = new SchemaCache({
      keepValidators: false,
      ...(options.maxSchemaBytes === undefined ? {} : { maxSchemaBytes: options.maxSchemaBytes }),
      ...(options.schemaCacheBytes === undefined ? {} : { maxBytes: options.schemaCacheBytes }),
    });
    this.#serverInfo = options.serverInfo ?? { name: "zmq-mcp-expose", version: "0.1.0" };
    this.#pageSize = options.pageSize ?? 0;
    if (!Number.isInteger(this.#pageSize) || this.#pageSize < 0) throw new ConfigError("pageSize must be an integer >= 0");
    this.#listing = new ToolListing({
      agent: this.#agent,
      targets: this.#targets,
      prefixed: this.#prefixed,
      listTimeout: this.#listTimeout,
      schemas: this.#schemas,
      log: this.#log,
      // Only the long-lived (stdio) server has a stream to announce changes on.
      onChanged: async () => {
        if (this.#connected && !this.#closed) await this.server.sendToolListChanged().catch(() => undefined);
        for (const server of this.#modern) await server.sendToolListChanged().catch(() => undefined);
      },
    });
    this.#caller = new ToolCaller({ agent: this.#agent, listing: this.#listing, timeout: this.#timeout, jobTimeout, taskTtl, tasks: this.#tasks, log: this.#log });
    this.#subscriptions = new ExposeSubscriptions({
      agent: this.#agent,
      interval: nonNegative(options.subscriptionInterval ?? SUBSCRIPTION_DEFAULTS.interval, "subscriptionInterval"),
      listInterval: this.#refreshInterval,
      maxSubscriptions: positiveInt(options.maxSubscriptions ?? SUBSCRIPTION_DEFAULTS.maxSubscriptions, "maxSubscriptions"),
      timeout: this.#listTimeout,
      log: this.#log,
    });
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

  /**
   * A 2.x server for the 2026-07-28 era (expose-2026.ts), on the same tools: for one HTTP
   * request when `owner` is undefined (the request's bearer identity then owns its tasks), or
   * for one stdio connection, whose tasks `owner` names.
   */
  createModernServer(owner?: string): ModernServer {
    if (this.#closed) throw new ZmcpError("closed", "the exposer is closed");
    return createModernServer({
      serverInfo: this.#serverInfo,
      instructions: INSTRUCTIONS,
      listChanged: owner !== undefined,
      register: (host) => this.#registerShared(host, false),
      caller: this.#caller,
      tasks: this.#extTasks,
      owner,
      log: this.#log,
    });
  }

  #newServer(withTasks: boolean): Server {
    const server = new Server(this.#serverInfo, {
      capabilities: {
        tools: { listChanged: withTasks },
        // Listed afresh at every client listing (expose-catalog.ts); the long-lived server also
        // watches for changes and subscriptions (expose-subscriptions.ts); a stateless one cannot notify.
        ...(withTasks ? this.#subscriptions.capabilities() : { resources: {}, prompts: {} }),
        completions: {},
        ...(withTasks ? { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } } : {}),
      },
      ...(withTasks ? { taskStore: this.#tasks } : {}),
      instructions: INSTRUCTIONS,
    });
    const catalog = this.#registerShared(server, withTasks);
    server.setRequestHandler(CallToolRequestSchema, (request, extra) => this.#caller.onCall(request, extra));
    if (withTasks) this.#subscriptions.attach(server, catalog);
    return server;
  }

  /** The handlers both eras share: tools/list, resources, prompts, completion. */
  #registerShared(server: HandlerHost, withTasks: boolean): CatalogAccess {
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
    return addCatalogHandlers(server, {
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
  }

  /** The exposed names and where each goes, as of the last listing. */
  get routes(): ReadonlyMap<string, { target: string; tool: string; job: boolean }> {
    return new Map([...this.#listing.routes].map(([name, r]) => [name, { target: r.target.address, tool: r.info.name, job: r.info.job }]));
  }

  /** The compiled-schema cache: entries, bytes held (bounded by `schemaCacheBytes`), compilations so far. */
  get schemaCache(): { size: number; bytes: number; maxBytes: number; compilations: number } {
    const c = this.#schemas;
    return { size: c.size, bytes: c.bytes, maxBytes: c.maxBytes, compilations: c.compilations };
  }

  /** Serves MCP in the 2025 era only (SDK v1) on `transport`, and starts re-listing the targets now and then. */
  async connect(transport: Transport): Promise<void> {
    await this.server.connect(transport);
    this.#connected = true;
    this.#startRefresh();
  }

  /**
   * Serves one stdio connection in the era its client opens with (the SDK's `serveStdio`
   * decides, from the first message): a 2025 `initialize` gets the v1 server (with
   * experimental tasks), a 2026-07-28 request (or `server/discover`) a 2.x server. `onClose`
   * is called when a 2025 connection ends (a 2026 one ends with stdin).
   */
  async serveStdio(options: { transport?: StdioServerTransport; onClose?: () => void } = {}): Promise<{ close(): Promise<void> }> {
    if (this.#closed) throw new ZmcpError("closed", "the exposer is closed");
    const transport = options.transport ?? new StdioServerTransport();
    const owner = `stdio:${++this.#connections}`;
    const handle = serveStdio(
      ({ era }) => {
        if (era === "modern") {
          const server = this.createModernServer(owner);
          this.#modern.add(server);
          // Not `onClose`: a 2026 instance also closes when serveStdio discards a `server/discover`
          // probe and the client goes on in the 2025 era. The connection's end is stdin's.
          server.onclose = () => this.#modern.delete(server);
          return server;
        }
        this.#connected = true;
        this.server.onclose = () => options.onClose?.();
        // serveStdio connects the instance to its channel and closes it, nothing more: a v1
        // server does both the same way (a Transport of the same shape).
        return this.server as unknown as ModernServer;
      },
      { transport, onerror: (err) => this.#log.debug("stdio serving", { error: err.message }) },
    );
    this.#startRefresh();
    return handle;
  }

  #refreshing = false;
  #startRefresh(): void {
    if (this.#refreshing) return;
    this.#refreshing = true;
    if (this.#refreshInterval > 0) {
      this.#timer = setInterval(() => void this.refresh().catch(() => undefined), this.#refreshInterval).unref();
    }
    this.#subscriptions.start();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#subscriptions.close();
    this.#tasks.abortAll();
    this.#tasks.cleanup();
    this.#extTasks.close();
    await Promise.allSettled([...this.#modern].map((s) => s.close()));
    // Closing the server aborts the calls in flight; their jobs are then cancelled on the
    // mesh, and those cancels get a moment to leave before the agent closes.
    await this.server.close();
    await new Promise((resolve) => setImmediate(resolve));
    await this.#caller.drain();
  }

  /**
   * Lists every target's tools (at once, each within `listTimeout`) and rebuilds the exposed
   * names. A target that does not answer keeps its last listing; if no target was ever
   * listed, rejects with an McpError. Tells a connected client when the list changed.
   */
  refresh(): Promise<Map<string, Route>> {
    return this.#listing.refresh();
  }

  /** Re-lists everything and re-reads subscribed resources now, notifying the client of changes (the CLI runs it on SIGHUP). */
  async recheck(): Promise<void> {
    await Promise.all([this.refresh().catch(() => undefined), this.#subscriptions.recheck()]);
  }

  /** The exposed URIs the client is subscribed to. */
  get subscriptions(): string[] {
    return this.#subscriptions.subscribed;
  }
}

const INSTRUCTIONS =
  "Tools of agents on a zmcp mesh, called through a sealed, authenticated message bus. " +
  "A failed call returns isError with the mesh error code first (for example invalid_args, token_scope, no_route).";

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new ConfigError(`${name} must be an integer >= 1`);
  return value;
}

function nonNegative(value: number, name: string): number {
  if (!(value >= 0)) throw new ConfigError(`${name} must be a number of ms >= 0`);
  return value;
}

function positive(value: number, name: string): number {
  if (!(value > 0)) throw new ConfigError(`${name} must be a positive number of ms`);
  return value;
}
