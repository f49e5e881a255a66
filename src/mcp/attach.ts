/**
 * `zmq-mcp attach`: an existing stdio MCP server joins the mesh as an agent.
 *
 * The server runs as a child process (the MCP SDK's Client over StdioClientTransport). Its
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
 */
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { JsonSchemaValidator, jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import {
  ErrorCode,
  McpError,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ToolListChangedNotificationSchema,
  type CallToolResult,
  type Prompt,
  type Resource,
  type ResourceTemplate,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Agent, CompleteResult, Completer, CompletionRef, GetPromptResult, ReadResourceResult, ToolAnnotations, ToolContext } from "../agent/agent.js";
import { ConfigError, ZmcpError } from "../errors.js";
import { isBuiltinTool } from "../agent/tools.js";
import { silentLogger, type Logger } from "../support/log.js";
import { SchemaCache } from "./schemas.js";

export interface AttachOptions {
  /** The connected agent whose tools the server's tools become. */
  agent: Agent;
  /** The MCP server's command and arguments (run without a shell). */
  command: string;
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

interface Attached {
  /** The MCP name on the server. */
  mcpName: string;
  signature: string;
}

interface Child {
  client: Client;
  pid: number | null;
  startedAt: number;
  /** Resolves when the server's connection closes (the process exited). */
  exited: Promise<void>;
}

/** Validates nothing: results are passed on as they are, and checking them is the caller's business. */
const passAll: jsonSchemaValidator = {
  getValidator: <T>(): JsonSchemaValidator<T> => (input: unknown) => ({ valid: true, data: input as T, errorMessage: undefined }),
};

/** A running stdio MCP server bridged onto the mesh. Create it with {@link McpAttachment.start}. */
export class McpAttachment {
  readonly #options: AttachOptions;
  readonly #agent: Agent;
  readonly #log: Logger;
  readonly #jobs: Set<string>;
  readonly #prefix: string;
  readonly #only: Set<string> | undefined;
  /** Input schemas compiled once per distinct schema (a server re-listing its tools does not recompile them). */
  readonly #schemas = new SchemaCache();
  /** Mesh name → what it was registered as. */
  readonly #attached = new Map<string, Attached>();
  /** Resource URIs and templates, and prompt names, registered on the agent → their signature. */
  readonly #resources = new Map<string, string>();
  readonly #prompts = new Map<string, string>();
  #child: Child | undefined;
  #waiters: Array<(child: Child) => void> = [];
  #restarts = 0;
  #closed = false;
  readonly #stopping = new AbortController();
  #supervisor: Promise<void> = Promise.resolve();
  #syncing: Promise<void> = Promise.resolve();

  private constructor(options: AttachOptions) {
    this.#options = options;
    this.#agent = options.agent;
    this.#log = options.log ?? silentLogger;
    this.#jobs = new Set(options.jobs ?? []);
    this.#prefix = options.prefix ?? "";
    this.#only = options.only?.length ? new Set(options.only) : undefined;
  }

  /** Starts the server, registers its tools on the agent, and keeps the server running. Rejects if the first start fails. */
  static async start(options: AttachOptions): Promise<McpAttachment> {
    if (!options.command) throw new ConfigError("no MCP server command given");
    const attachment = new McpAttachment(options);
    const child = await attachment.#launch();
    attachment.#supervisor = attachment.#supervise(child);
    return attachment;
  }

  /** The mesh names of the attached tools. */
  get tools(): string[] {
    return [...this.#attached.keys()];
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
    for (const name of this.#attached.keys()) this.#agent.removeTool(name);
    this.#attached.clear();
    for (const uri of this.#resources.keys()) this.#agent.removeResource(uri);
    this.#resources.clear();
    for (const name of this.#prompts.keys()) this.#agent.removePrompt(name);
    this.#prompts.clear();
  }

  /** The resource URIs and templates offered on the mesh. */
  get resources(): string[] {
    return [...this.#resources.keys()];
  }

  /** The prompt names offered on the mesh. */
  get prompts(): string[] {
    return [...this.#prompts.keys()];
  }

  // ---- the child process ------------------------------------------------------------------

  async #launch(): Promise<Child> {
    const o = this.#options;
    const transport = new StdioClientTransport({
      command: o.command,
      args: o.args ?? [],
      env: serverEnv(o),
      stderr: "pipe",
      ...(o.cwd === undefined ? {} : { cwd: o.cwd }),
    });
    // The server's stderr is its log: passed on, a line at a time, into ours (stdout is MCP).
    const stderr = transport.stderr as Readable | null;
    if (stderr) createInterface({ input: stderr }).on("line", (line) => this.#log.info("server stderr", { line }));
    const client = new Client(o.clientInfo ?? { name: "zmq-mcp-attach", version: "0.1.0" }, { capabilities: {}, jsonSchemaValidator: passAll });
    let onExit!: () => void;
    const exited = new Promise<void>((resolve) => (onExit = resolve));
    client.onclose = () => onExit();
    client.onerror = (err) => this.#log.debug("MCP client error", { error: err.message });
    try {
      await client.connect(transport, { timeout: o.startTimeout ?? 30_000 });
    } catch (err) {
      await client.close().catch(() => undefined);
      throw new ZmcpError("config", `MCP server ${o.command} did not start: ${(err as Error).message}`, { cause: err });
    }
    const child: Child = { client, pid: transport.pid, startedAt: Date.now(), exited };
    const server = client.getServerVersion();
    this.#log.info("MCP server started", { pid: child.pid, server: server?.name, version: server?.version, restarts: this.#restarts });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void this.#sync(child).catch(() => undefined));
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void this.#sync(child).catch(() => undefined));
    client.setNotificationHandler(PromptListChangedNotificationSchema, () => void this.#sync(child).catch(() => undefined));
    try {
      await this.#sync(child);
    } catch (err) {
      await client.close().catch(() => undefined);
      throw new ZmcpError("config", `MCP server ${o.command} did not list its tools: ${(err as Error).message}`, { cause: err });
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
        const uptime = Date.now() - child.startedAt;
        this.#log.error("MCP server exited", { pid: child.pid, uptimeMs: uptime });
      }
      failures = Date.now() - startedAt >= stableAfter ? 0 : failures + 1;
      const delay = Math.min(max, min * 2 ** Math.max(0, failures - 1));
      this.#log.info("restarting MCP server", { inMs: delay, attempt: failures });
      await sleep(delay, this.#stopping.signal);
      if (this.#closed) return;
      startedAt = Date.now();
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
    if (this.#child) return Promise.resolve(this.#child);
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

  // ---- tools --------------------------------------------------------------------------------

  /** Lists the server's tools and brings the agent's registrations in line (one sync at a time). */
  #sync(child: Child): Promise<void> {
    this.#syncing = this.#syncing
      .catch(() => undefined)
      .then(() => this.#syncNow(child))
      // Resources and prompts are extras: a server that fails to list them still serves its tools.
      .then(() => this.#syncCatalog(child).catch((err: unknown) => this.#log.warn("resources and prompts not listed", { error: (err as Error).message })));
    return this.#syncing;
  }

  async #syncNow(child: Child): Promise<void> {
    const tools: Tool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const listed = await child.client.listTools(cursor === undefined ? {} : { cursor });
      tools.push(...listed.tools);
      cursor = listed.nextCursor;
      if (!cursor) break;
    }
    if (this.#closed) return;
    const seen = new Set<string>();
    for (const tool of tools) {
      if (this.#only && !this.#only.has(tool.name)) continue;
      const meshName = this.#prefix + tool.name;
      if (isBuiltinTool(meshName) || meshName.length > 256) {
        this.#log.warn("tool skipped: its name is reserved or too long on the mesh", { tool: tool.name });
        continue;
      }
      if (tool.execution?.taskSupport === "required") {
        this.#log.warn("tool skipped: it can only run as an MCP task", { tool: tool.name });
        continue;
      }
      seen.add(meshName);
      const job = this.#jobs.has("*") || this.#jobs.has(tool.name);
      const signature = JSON.stringify([tool.description, tool.inputSchema, tool.outputSchema, job, tool.annotations, tool.title]);
      const known = this.#attached.get(meshName);
      if (known?.signature === signature) continue;
      if (known) {
        this.#agent.removeTool(meshName);
        this.#attached.delete(meshName);
      }
      try {
        this.#register(meshName, tool, job);
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

  #register(meshName: string, tool: Tool, job: boolean): void {
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
      (args, ctx) => this.#call(tool, args, ctx, job),
    );
  }

  // ---- resources and prompts ----------------------------------------------------------------

  /**
   * Lists the server's resources, resource templates and prompts (each kind only if the
   * server has the capability, and only if not turned off) and brings the agent's
   * registrations in line: added, changed (registered again), withdrawn.
   */
  async #syncCatalog(child: Child): Promise<void> {
    const caps = child.client.getServerCapabilities() ?? {};
    const o = this.#options;
    const resources: Array<[string, Resource | ResourceTemplate]> = [];
    const prompts: Prompt[] = [];
    if (caps.resources && o.resources !== false) {
      for (const r of await listPages((cursor) => child.client.listResources(cursor), (p) => p.resources)) resources.push([r.uri, r]);
      for (const t of await listPages((cursor) => child.client.listResourceTemplates(cursor), (p) => p.resourceTemplates)) resources.push([t.uriTemplate, t]);
    }
    if (caps.prompts && o.prompts !== false) prompts.push(...(await listPages((cursor) => child.client.listPrompts(cursor), (p) => p.prompts)));
    if (this.#closed) return;
    // Completion passes through when the server offers it (for prompts and templates alike).
    const completer = (ref: CompletionRef): { complete?: Completer } =>
      caps.completions ? { complete: (argument, context, ctx) => this.#complete(ref, argument, context.arguments, ctx) } : {};

    const seenResources = new Set<string>();
    for (const [uri, r] of resources) {
      if (seenResources.has(uri)) continue;
      seenResources.add(uri);
      const signature = JSON.stringify(r);
      if (this.#resources.get(uri) === signature) continue;
      if (this.#resources.delete(uri)) this.#agent.removeResource(uri);
      try {
        this.#agent.resource(
          uri,
          {
            name: r.name,
            ...(r.title === undefined ? {} : { title: r.title }),
            ...(r.description === undefined ? {} : { description: r.description }),
            ...(r.mimeType === undefined ? {} : { mimeType: r.mimeType }),
            ...("size" in r && typeof r.size === "number" ? { size: r.size } : {}),
            ...(r.annotations === undefined ? {} : { annotations: r.annotations as Record<string, unknown> }),
            ...("uriTemplate" in r ? completer({ type: "ref/resource", uri: uri }) : {}),
          },
          (target, ctx) => this.#read(target, ctx),
        );
        this.#resources.set(uri, signature);
      } catch (err) {
        this.#log.warn("resource skipped", { uri: uri.slice(0, 256), error: (err as Error).message });
      }
    }
    for (const uri of [...this.#resources.keys()]) {
      if (!seenResources.has(uri)) {
        this.#agent.removeResource(uri);
        this.#resources.delete(uri);
      }
    }

    const seenPrompts = new Set<string>();
    for (const p of prompts) {
      if (seenPrompts.has(p.name)) continue;
      seenPrompts.add(p.name);
      const signature = JSON.stringify(p);
      if (this.#prompts.get(p.name) === signature) continue;
      if (this.#prompts.delete(p.name)) this.#agent.removePrompt(p.name);
      try {
        this.#agent.prompt(
          p.name,
          {
            ...(p.title === undefined ? {} : { title: p.title }),
            ...(p.description === undefined ? {} : { description: p.description }),
            ...(p.arguments === undefined
              ? {}
              : {
                  arguments: p.arguments.map((a) => ({
                    name: a.name,
                    ...(a.description === undefined ? {} : { description: a.description }),
                    ...(a.required === undefined ? {} : { required: a.required }),
                  })),
                }),
            ...completer({ type: "ref/prompt", name: p.name }),
          },
          (args, ctx) => this.#getPrompt(p.name, args, ctx),
        );
        this.#prompts.set(p.name, signature);
      } catch (err) {
        this.#log.warn("prompt skipped", { prompt: p.name.slice(0, 256), error: (err as Error).message });
      }
    }
    for (const name of [...this.#prompts.keys()]) {
      if (!seenPrompts.has(name)) {
        this.#agent.removePrompt(name);
        this.#prompts.delete(name);
      }
    }
    if (resources.length + prompts.length > 0) this.#log.info("resources and prompts", { resources: this.#resources.size, prompts: [...this.#prompts.keys()] });
  }

  /** A mesh `resources/read` → the server's, within the caller's deadline (waiting for a restart). */
  async #read(uri: string, ctx: ToolContext): Promise<ReadResourceResult> {
    const child = await this.#ready(ctx.deadline, ctx.signal);
    try {
      return (await child.client.readResource({ uri }, { timeout: Math.max(1, ctx.deadline - Date.now()), signal: ctx.signal })) as ReadResourceResult;
    } catch (err) {
      throw meshError(err, uri);
    }
  }

  /** A mesh `completion/complete` → the server's. */
  async #complete(ref: CompletionRef, argument: { name: string; value: string }, args: Record<string, string>, ctx: ToolContext): Promise<CompleteResult["completion"]> {
    const child = await this.#ready(ctx.deadline, ctx.signal);
    try {
      const params = { ref, argument, ...(Object.keys(args).length > 0 ? { context: { arguments: args } } : {}) };
      return (await child.client.complete(params, { timeout: Math.max(1, ctx.deadline - Date.now()), signal: ctx.signal })).completion;
    } catch (err) {
      throw meshError(err, "completion/complete");
    }
  }

  /** A mesh `prompts/get` → the server's. */
  async #getPrompt(name: string, args: Record<string, string>, ctx: ToolContext): Promise<GetPromptResult> {
    const child = await this.#ready(ctx.deadline, ctx.signal);
    try {
      return (await child.client.getPrompt({ name, arguments: args }, { timeout: Math.max(1, ctx.deadline - Date.now()), signal: ctx.signal })) as GetPromptResult;
    } catch (err) {
      throw meshError(err, name);
    }
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
        if (closed && again && attempt === 1 && !this.#closed) {
          this.#log.info("MCP server exited during a call; calling again once it is back", { tool: name });
          continue;
        }
        throw meshError(err, name);
      }
    }
    if (result.isError) throw new ZmcpError("tool_failed", textOf(result) || `${name} failed`);
    const { isError: _no, ...rest } = result;
    return rest;
  }
}

/** An MCP failure → the mesh error the caller gets: the server refusing the arguments is `invalid_args`. */
function meshError(err: unknown, tool: string): ZmcpError {
  if (err instanceof McpError) {
    if (err.code === ErrorCode.InvalidParams) return new ZmcpError("invalid_args", `${tool}: ${err.message}`);
    if (err.code === ErrorCode.ConnectionClosed) return new ZmcpError("tool_failed", `${tool}: the MCP server exited during the call`);
    return new ZmcpError("tool_failed", `${tool}: ${err.message}`);
  }
  return new ZmcpError("tool_failed", `${tool}: ${err instanceof Error ? err.message : String(err)}`);
}

/** A listing's every page (capped at 100 pages, as tools are). */
async function listPages<P extends { nextCursor?: string | undefined }, T>(list: (params: { cursor?: string }) => Promise<P>, items: (page: P) => T[]): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const listed = await list(cursor === undefined ? {} : { cursor });
    out.push(...items(listed));
    cursor = listed.nextCursor;
    if (!cursor) break;
  }
  return out;
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

/** The server's environment: the SDK's safe default (or everything, on request), the names passed on, then `env`. */
export function serverEnv(options: Pick<AttachOptions, "env" | "passEnv" | "inheritEnv">, from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = options.inheritEnv ? {} : getDefaultEnvironment();
  if (options.inheritEnv) for (const [k, v] of Object.entries(from)) if (v !== undefined) env[k] = v;
  for (const name of options.passEnv ?? []) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...options.env };
}

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
