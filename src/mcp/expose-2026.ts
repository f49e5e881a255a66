/**
 * `expose` in the 2026-07-28 era: the same tools, resources, prompts and completion served by
 * a `@modelcontextprotocol/server` 2.x `Server`, which owns that era's wire (no `initialize`,
 * the per-request `_meta` envelope, `server/discover`, `resultType`, cache fields). The
 * serving entries of the same package choose the era of each stdio connection
 * (`serveStdio`) and of each HTTP request (`createMcpHandler`): see expose.ts and http.ts.
 *
 * The request handlers are the 2025 side's (written against SDK v1 types): {@link
 * legacyShapedHost} registers them on the 2.x server, re-parsing each request with the v1
 * schema so the handlers see exactly what they see on the 2025 side. Two things exist only
 * here: a job tool becomes a task of the `io.modelcontextprotocol/tasks` extension when the
 * client declares it (expose-tasks.ts), and the task methods that go with it.
 */
import { Server as ModernServer, type AuthInfo, type ServerContext, type ServerCapabilities } from "@modelcontextprotocol/server";
import type { Server as LegacyServer } from "@modelcontextprotocol/sdk/server/index.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import { CallToolRequestSchema, type ServerNotification, type ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Progress } from "../wire/envelope.js";
import type { Logger } from "../support/log.js";
import { toMcpError, type ToolCaller } from "./expose-calls.js";
import { ExtensionTaskStore, MISSING_REQUIRED_CLIENT_CAPABILITY, TASKS_EXTENSION, TaskProtocolError, type DetailedTask } from "./expose-tasks.js";

/** Where the exposer's parts register their request handlers: a v1 server, or a 2.x one through {@link legacyShapedHost}. */
export type HandlerHost = Pick<LegacyServer, "setRequestHandler">;

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** The envelope key of the client's capabilities (per request, 2026-07-28). */
const CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities";

export interface ModernServerOptions {
  serverInfo: { name: string; version: string };
  instructions: string;
  /** Announce `tools.listChanged` (a long-lived stdio connection has a stream for it). */
  listChanged: boolean;
  /** Registers tools/list, resources, prompts and completion (the same code as the 2025 side). */
  register: (host: HandlerHost) => void;
  caller: ToolCaller;
  tasks: ExtensionTaskStore;
  /**
   * Whose tasks this server's requests create and may see: the connection's owner on stdio.
   * On HTTP it is undefined and each request's bearer identity (`authInfo.clientId`) is the owner.
   */
  owner: string | undefined;
  log: Logger;
}

/** Answers a tools/call with a task handle, or undefined to have it answered as a plain call. */
type CreateTask = (request: unknown, ctx: ServerContext) => Promise<Record<string, unknown> | undefined>;

/** A 2.x server that answers a job tool's call with a task when the caller declares the tasks extension. */
class TaskingServer extends ModernServer {
  readonly #createTask: CreateTask;

  constructor(info: { name: string; version: string }, options: ConstructorParameters<typeof ModernServer>[1], createTask: CreateTask) {
    super(info, options);
    this.#createTask = createTask;
  }

  // A task handle is not a CallToolResult: the SDK's tools/call wrapper would validate it as
  // one (and add `content: []`), so it is answered before that wrapper runs.
  protected override _wrapHandler(method: string, handler: Parameters<ModernServer["_wrapHandler"]>[1]): ReturnType<ModernServer["_wrapHandler"]> {
    const wrapped = super._wrapHandler(method, handler);
    if (method !== "tools/call") return wrapped;
    return async (request, ctx) => (await this.#createTask(request, ctx)) ?? wrapped(request, ctx);
  }
}

/** A 2.x server for one 2026-07-28 exchange (an HTTP request) or connection (stdio). */
export function createModernServer(o: ModernServerOptions): ModernServer {
  const capabilities: ServerCapabilities = {
    tools: { listChanged: o.listChanged },
    resources: {},
    prompts: {},
    completions: {},
    extensions: { [TASKS_EXTENSION]: {} },
  };
  const ownerOf = (ctx: ServerContext): string | undefined => o.owner ?? authOwner(ctx.http?.authInfo);
  const server: ModernServer = new TaskingServer(o.serverInfo, { capabilities, instructions: o.instructions }, async (request, ctx) => {
    const owner = ownerOf(ctx);
    // The extension: the server decides, and only for a client that declared it on this request.
    if (owner === undefined || !declaresTasks(ctx)) return undefined;
    const parsed = CallToolRequestSchema.safeParse(request);
    if (!parsed.success) return undefined; // the SDK's own validation answers it
    const route = await o.caller.resolve(parsed.data.params.name);
    if (!route.info.job) return undefined;
    return { resultType: "task", ...startTask(o, owner, route, parsed.data.params.arguments ?? {}) };
  });
  const host = legacyShapedHost(server);
  o.register(host);
  // A plain call (not a task): progress notifications on the request's stream, then the result.
  host.setRequestHandler(CallToolRequestSchema, (request, extra) => o.caller.onCall(request, extra));

  const taskParams = z.looseObject({ taskId: z.string().min(1).max(256) });
  const taskOwner = (ctx: ServerContext): string => {
    if (!declaresTasks(ctx)) {
      throw new TaskProtocolError(MISSING_REQUIRED_CLIENT_CAPABILITY, "Missing required client capability", { requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } } });
    }
    const owner = ownerOf(ctx);
    if (owner === undefined) throw new TaskProtocolError(-32602, "Failed to retrieve task: Task not found");
    return owner;
  };
  server.setRequestHandler("tasks/get", { params: taskParams }, async (params, ctx) => ({ ...o.tasks.get(taskOwner(ctx), params.taskId) }));
  server.setRequestHandler("tasks/cancel", { params: taskParams }, async (params, ctx) => {
    o.tasks.cancel(taskOwner(ctx), params.taskId);
    return {};
  });
  // No task of the bridge ever waits for input, so there is nothing to deliver: the task must
  // exist (and be the caller's), and the responses are ignored, as the extension allows.
  // (The SDK lifts `inputResponses` out of every request's params, as multi-round-trip material:
  // it is found on the context.)
  server.setRequestHandler("tasks/update", { params: taskParams }, async (params, ctx) => {
    const owner = taskOwner(ctx);
    if (!isObject(ctx.mcpReq.inputResponses) && !isObject(params["inputResponses"])) throw new TaskProtocolError(-32602, "tasks/update needs inputResponses (an object)");
    o.tasks.get(owner, params.taskId);
    return {};
  });
  return server;
}

/** Starts the mesh call in the background and answers with its task. */
function startTask(o: ModernServerOptions, owner: string, route: Awaited<ReturnType<ToolCaller["resolve"]>>, args: unknown): DetailedTask {
  const { task, signal } = o.tasks.create(owner);
  const id = task.taskId;
  o.log.info("task started", { task: id, tool: route.info.name, target: route.target.address });
  let last = -Infinity;
  const onProgress = (p: Progress) => {
    if (!(p.progress > last)) return;
    last = p.progress;
    o.tasks.progress(id, progressText(p));
  };
  void o.caller.call(route, args, signal, onProgress).then(
    (result) => o.tasks.complete(id, result),
    (err: unknown) => {
      const e = toMcpError(err, `${route.info.name} on ${route.target.address}`);
      o.tasks.fail(id, { code: e.code, message: e.message, ...(e.data === undefined ? {} : { data: e.data }) });
    },
  );
  return task;
}

/** A job's progress as a task's status message (the extension has no progress notifications). */
export function progressText(p: Progress): string {
  const amount = p.total === undefined ? `${p.progress}` : `${p.progress}/${p.total}`;
  return p.message === undefined ? `progress ${amount}` : `progress ${amount}: ${p.message}`;
}

/** The owner of an HTTP caller's tasks: the identity its credentials were verified as. */
function authOwner(auth: AuthInfo | undefined): string | undefined {
  return auth && auth.clientId !== "" ? `auth:${auth.clientId}` : undefined;
}

function declaresTasks(ctx: ServerContext): boolean {
  const envelope: Record<string, unknown> | undefined = ctx.mcpReq.envelope as Record<string, unknown> | undefined;
  const caps = envelope?.[CLIENT_CAPABILITIES];
  const extensions = isObject(caps) ? caps["extensions"] : undefined;
  return isObject(extensions) && isObject(extensions[TASKS_EXTENSION]);
}

/**
 * The v1 `setRequestHandler(schema, handler)` surface over a 2.x server: the method is the
 * schema's literal, the request is parsed with the v1 schema (what the handler's types say),
 * and the handler gets the v1 `extra` it uses: the abort signal, progress notifications, the
 * caller's auth info.
 */
export function legacyShapedHost(server: ModernServer): HandlerHost {
  const register = (schema: { shape: { method: { value: string } }; parse(value: unknown): unknown }, handler: (request: unknown, extra: Extra) => unknown): void => {
    const method = schema.shape.method.value;
    // The method is one of the spec's (the v1 schema's literal); the 2.x overload wants it typed as such.
    server.setRequestHandler(method as "tools/list", async (request: unknown, ctx: ServerContext) => (await handler(schema.parse(request), extraOf(ctx))) as never);
  };
  return { setRequestHandler: register as unknown as HandlerHost["setRequestHandler"] };
}

function extraOf(ctx: ServerContext): Extra {
  const auth = ctx.http?.authInfo;
  const extra: Partial<Extra> = {
    signal: ctx.mcpReq.signal,
    requestId: ctx.mcpReq.id,
    ...(ctx.mcpReq._meta === undefined ? {} : { _meta: ctx.mcpReq._meta as NonNullable<Extra["_meta"]> }),
    ...(auth ? { authInfo: { token: auth.token, clientId: auth.clientId, scopes: auth.scopes } } : {}),
    sendNotification: (notification: ServerNotification) => ctx.mcpReq.notify(notification as Parameters<ServerContext["mcpReq"]["notify"]>[0]),
    sendRequest: () => Promise.reject(new TaskProtocolError(-32601, "the 2026-07-28 era has no server-to-client requests")),
  };
  return extra as Extra;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
