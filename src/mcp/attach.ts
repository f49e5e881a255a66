/**
 * `zmq-mcp attach`: an existing MCP server joins the mesh as an agent.
 *
 * The server runs as a child process (the MCP SDK's Client over StdioClientTransport), or is
 * reached at a URL over Streamable HTTP (attach-http.ts: a lost connection is this file's
 * "exited", reconnected with the same backoff). Its
 * tools become the agent's tools, with their JSON Schemas: mesh callers find them with
 * `tools/list` and call them sealed end to end, under the agent's token rules like any native
 * tool (scope `call:<name>`). Arguments are checked against the tool's schema here, so a bad
 * call is answered `invalid_args` before the server sees it.
 *
 * A result passes as the MCP tool result it is (`content`, and `structuredContent` when the
 * server gives one). A result with `isError: true` becomes the mesh error `tool_failed` with
 * the result's text, so that mesh callers catch it like any failed tool.
 *
 * If the server exits, the exit is logged and the server is started again after a capped
 * exponential backoff, and its tools are listed again (added, changed, withdrawn). Calls that
 * arrive meanwhile wait for it within their deadline.
 *
 * This file supervises the server (start, restart with backoff, waiting for it while it
 * restarts); the process and its environment are in attach-server.ts, the HTTP connection in
 * attach-http.ts, the tool mirror in
 * attach-tools.ts, resources and prompts in attach-catalog.ts.
 */
import { PromptListChangedNotificationSchema, ResourceListChangedNotificationSchema, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { Agent } from "../agent/agent.js";
import { ConfigError, ZmcpError } from "../errors.js";
import { silentLogger, type Logger } from "../support/log.js";
import { connectServer, type Child } from "./attach-server.js";
import { serverUrl } from "./attach-http.js";
import { ToolMirror } from "./attach-tools.js";
import { CatalogMirror } from "./attach-catalog.js";

// What attach.ts exported before the split (zmcp/mcp and the tests import it from here).
export { serverEnv } from "./attach-server.js";

export interface AttachOptions {
  /** The connected agent whose tools the server's tools become. */
  agent: Agent;
  /** The MCP server's command and arguments (run without a shell); or give `url`. */
  command?: string;
  args?: string[];
  /**
   * Variables set in the server's environment, on top of the safe default: the MCP SDK's
   * `getDefaultEnvironment()` (HOME, LOGNAME, PATH, SHELL, TERM, USER), never this process's
   * whole environment, which may hold credentials that a tool (or a prompt-injected call to a
   * tool such as server-everything's `get-env`) would hand to any mesh caller. Default none.
   */
  env?: Record<string, string>;
  /** Names of variables copied from this process's environment into the server's (unset ones are skipped). Default none. */
  passEnv?: string[];
  /** Give the server this process's whole environment (the behaviour before the safe default; opt in knowingly). Default false. */
  inheritEnv?: boolean;
  cwd?: string;
  /**
   * A remote MCP server's Streamable HTTP endpoint (`http://127.0.0.1:8080/mcp`) instead of a
   * command: no process is started; a lost connection is reconnected with the restart backoff
   * (attach-http.ts). `env`, `passEnv`, `inheritEnv`, `cwd` do not apply.
   */
  url?: string;
  /** With `url`: headers sent with every request, e.g. `{Authorization: "Bearer ..."}`. Default none. */
  headers?: Record<string, string>;
  /** With `url`: cap of one answer's body (one event of an event stream), bytes; past it the call fails `too_large`. Default 16 MiB. */
  maxResponseBytes?: number;
  /** Attach only these tools (MCP names); default all. */
  only?: string[];
  /** Tools that run as mesh jobs (progress pushed to the caller, cancellable); `"*"` for all. Default none. */
  jobs?: string[];
  /** Put in front of every tool name on the mesh (e.g. `fs.` gives `fs.read_file`, scope `call:fs.read_file`). Default none. */
  prefix?: string;
  /** How long a job tool may run, ms (a plain tool has its caller's deadline). Default 600,000. */
  jobTimeout?: number;
  /** How long the server may take to start and answer `initialize`, ms. Default 30,000. */
  startTimeout?: number;
  /** First delay before a restart, ms; doubled per quick failure. Default 500. */
  restartDelay?: number;
  /** Largest delay before a restart, ms. Default 30,000. */
  maxRestartDelay?: number;
  /** A server that ran this long before it exited is restarted after the first delay again, ms. Default 10,000. */
  stableAfter?: number;
  /** Offer the server's resources and resource templates on the mesh (read scope `read:<uri>`). Default true. */
  resources?: boolean;
  /** Offer the server's prompts on the mesh (scope `prompt:<name>`). Default true. */
  prompts?: boolean;
  /** Client name and version announced to the server. */
  clientInfo?: { name: string; version: string };
  log?: Logger;
}

/** A running stdio MCP server bridged onto the mesh. Create it with {@link McpAttachment.start}. */
export class McpAttachment {
  readonly #options: AttachOptions;
  readonly #log: Logger;
  readonly #tools: ToolMirror;
  readonly #catalog: CatalogMirror;
  #child: Child | undefined;
  #waiters: Array<(child: Child) => void> = [];
  #restarts = 0;
  #closed = false;
  readonly #stopping = new AbortController();
  #supervisor: Promise<void> = Promise.resolve();
  #syncing: Promise<void> = Promise.resolve();
  /** The sync waiting for the running one to end (not listing yet), and whose server it lists. */
  #queued: { child: Child; done: Promise<void> } | undefined;

  private constructor(options: AttachOptions) {
    this.#options = options;
    this.#log = options.log ?? silentLogger;
    const parts = { agent: options.agent, options, log: this.#log, ready: this.#ready.bind(this), closed: () => this.#closed };
    this.#tools = new ToolMirror(parts);
    this.#catalog = new CatalogMirror(parts);
  }

  /** Starts the server, registers its tools on the agent, and keeps the server running. Rejects if the first start fails. */
  static async start(options: AttachOptions): Promise<McpAttachment> {
    if (Boolean(options.command) === (options.url !== undefined)) throw new ConfigError("give an MCP server command or a URL, one of them");
    if (options.url !== undefined) serverUrl(options.url);
    const attachment = new McpAttachment(options);
    const child = await attachment.#launch();
    attachment.#supervisor = attachment.#supervise(child);
    return attachment;
  }

  /** The mesh names of the attached tools. */
  get tools(): string[] {
    return this.#tools.names;
  }

  /** How many times the server was restarted. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The server's process id, while it runs. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** Stops the server (its stdin is closed, then SIGTERM) and withdraws its tools. The agent stays open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopping.abort();
    const child = this.#child;
    this.#child = undefined;
    await child?.client.close().catch(() => undefined);
    await this.#supervisor;
    this.#tools.clear();
    this.#catalog.clear();
  }

  /** The resource URIs and templates offered on the mesh. */
  get resources(): string[] {
    return this.#catalog.resources;
  }

  /** The prompt names offered on the mesh. */
  get prompts(): string[] {
    return this.#catalog.prompts;
  }

  async #launch(): Promise<Child> {
    const o = this.#options;
    const child = await connectServer(o, this.#log);
    const client = child.client;
    const server = client.getServerVersion();
    this.#log.info("MCP server started", { ...(child.url === undefined ? { pid: child.pid } : { url: child.url }), server: server?.name, version: server?.version, era: child.era, restarts: this.#restarts });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void this.#sync(child).catch(() => undefined));
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void this.#sync(child).catch(() => undefined));
    client.setNotificationHandler(PromptListChangedNotificationSchema, () => void this.#sync(child).catch(() => undefined));
    try {
      await this.#sync(child);
    } catch (err) {
      await client.close().catch(() => undefined);
      throw new ZmcpError("config", `MCP server ${o.url ?? o.command} did not list its tools: ${(err as Error).message}`, { cause: err });
    }
    if (this.#closed) {
      await client.close().catch(() => undefined);
      throw new ZmcpError("closed", "attachment closed");
    }
    this.#child = child;
    for (const wake of this.#waiters.splice(0)) wake(child);
    return child;
  }

  /** Waits for the server to exit, then starts it again after a backoff, until closed. */
  async #supervise(first: Child): Promise<void> {
    const min = this.#options.restartDelay ?? 500;
    const max = this.#options.maxRestartDelay ?? 30_000;
    const stableAfter = this.#options.stableAfter ?? 10_000;
    let child: Child | undefined = first;
    let failures = 0;
    let startedAt = first.startedAt;
    while (!this.#closed) {
      if (child) {
        await child.exited;
        if (this.#closed) return;
        if (this.#child === child) this.#child = undefined;
        const uptime = Math.round(performance.now() - child.startedAt);
        if (child.url === undefined) this.#log.error("MCP server exited", { pid: child.pid, uptimeMs: uptime });
        else this.#log.error("MCP server connection closed", { url: child.url, uptimeMs: uptime });
      }
      failures = performance.now() - startedAt >= stableAfter ? 0 : failures + 1;
      const delay = Math.min(max, min * 2 ** Math.max(0, failures - 1));
      this.#log.info("restarting MCP server", { inMs: delay, attempt: failures });
      await sleep(delay, this.#stopping.signal);
      if (this.#closed) return;
      startedAt = performance.now();
      this.#restarts++;
      try {
        child = await this.#launch();
      } catch (err) {
        child = undefined;
        if (!this.#closed) this.#log.error("MCP server failed to start", { error: (err as Error).message });
      }
    }
  }

  /** The running server's client; waits (until `deadline`) while it restarts. */
  #ready(deadline: number, signal: AbortSignal): Promise<Child> {
    // A run already known gone (its exit not yet seen by the supervisor) is not handed out.
    if (this.#child && !this.#child.gone) return Promise.resolve(this.#child);
    return new Promise((resolve, reject) => {
      const wake = (child: Child) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve(child);
      };
      const giveUp = (err: Error) => {
        this.#waiters = this.#waiters.filter((w) => w !== wake);
        signal.removeEventListener("abort", onAbort);
        reject(err);
      };
      const onAbort = () => {
        clearTimeout(timer);
        giveUp(new ZmcpError("cancelled", "cancelled while the MCP server was restarting"));
      };
      const timer = setTimeout(() => giveUp(new ZmcpError("busy", "the MCP server is restarting")), Math.max(0, deadline - Date.now()));
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(wake);
    });
  }

  /**
   * Lists the server's tools, then its resources and prompts, and brings the agent's
   * registrations in line. One sync runs at a time, and at most one more waits: a list_changed
   * arriving while one waits joins it (the waiting sync has not listed yet, so it sees that
   * change too). A server's storm of n notifications costs two listings, not n queued ones.
   */
  #sync(child: Child): Promise<void> {
    if (this.#queued?.child === child) return this.#queued.done;
    const done = this.#syncing
      .catch(() => undefined)
      .then(() => {
        // Listing starts now: a change notified from here on needs a sync after this one.
        if (this.#queued?.done === done) this.#queued = undefined;
        return this.#tools.sync(child);
      })
      // Resources and prompts are extras: a server that fails to list them still serves its tools.
      .then(() => this.#catalog.sync(child).catch((err: unknown) => this.#log.warn("resources and prompts not listed", { error: (err as Error).message })));
    this.#queued = { child, done };
    this.#syncing = done;
    return done;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (so that close() does not wait out a restart backoff). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
