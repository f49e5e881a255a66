/**
 * MCP over the mesh: an MCP SDK `Transport` for each side, so that an official SDK `Client`
 * and `Server` talk through the broker with the mesh's sealing, tokens and services.
 *
 * The binding (docs/MCP.md, "MCP over the mesh"): one JSON-RPC message per mesh call to the
 * reserved tool `mcp/rpc` of the server's agent (or service). A request's response is the
 * call's result; a notification's call answers `null`. A request that carries a
 * `progressToken` goes to `mcp/rpc.job` instead: a mesh job, whose progress events are the
 * request's progress notifications and whose cancellation is the request's cancellation.
 *
 * Stateless by design: every request is self-contained (no session, nothing kept between
 * calls), so any replica behind `svc:NAME` can answer it, and a request whose replica died is
 * simply sent again by the caller's retry (same mesh request id, another replica).
 *
 * JSON-RPC ids are per caller, and one server transport serves every caller: the server side
 * gives each request an id of its own while it runs and puts the caller's id back on the
 * response, so that two callers using the same id never meet.
 */
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  ErrorCode as McpErrorCode,
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  JSONRPCMessageSchema,
  type JSONRPCMessage,
  type JSONRPCNotification,
  type JSONRPCRequest,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Agent, ToolContext } from "../agent/agent.js";
import { ConfigError, RemoteError, ZmcpError } from "../errors.js";
import type { Job } from "../agent/jobs.js";
import { silentLogger, type Logger } from "../support/log.js";
import { parseServiceAddress } from "../wire/services.js";

/** The reserved tool that carries one JSON-RPC message per call. */
export const MCP_RPC_TOOL = "mcp/rpc";
/** The same, run as a mesh job: for requests that carry a `progressToken`. */
export const MCP_RPC_JOB_TOOL = "mcp/rpc.job";

/** True for the binding's own tools (not tools for a model: `expose` leaves them out). */
export function isMcpBindingTool(name: string): boolean {
  return name === MCP_RPC_TOOL || name === MCP_RPC_JOB_TOOL;
}

const JSONRPC_INPUT_SCHEMA: Record<string, unknown> = {
  type: "object",
  description: "One JSON-RPC 2.0 message of the Model Context Protocol (see docs/MCP.md, MCP over the mesh)",
  properties: { jsonrpc: { const: "2.0" } },
  required: ["jsonrpc"],
};

export interface MeshServerTransportOptions {
  /** The connected agent (its key, or a service it serves, is the MCP server's address). */
  agent: Agent;
  /**
   * Scope a caller's token must cover, for every MCP method (the agent checks it when it
   * checks tokens). Default `call:mcp/rpc` (a token granting `call:mcp/*` covers it).
   */
  scope?: string;
  log?: Logger;
  /**
   * Serves the messages it accepts itself instead of handing them to the connected SDK server:
   * `serveMesh` (transport-2026.ts) routes the 2026-07-28 era's messages to the SDK's
   * per-request entry this way. Its answer is the mesh call's (a response, or null).
   */
  modern?: MeshMessageRoute;
}

/** Messages served apart from the connected server (see MeshServerTransportOptions.modern). */
export interface MeshMessageRoute {
  accepts(message: JSONRPCMessage): boolean;
  serve(message: JSONRPCMessage, ctx: ToolContext, authInfo: AuthInfo): Promise<unknown>;
}

interface Running {
  /** The caller's own JSON-RPC id, put back on the response. */
  callerId: RequestId;
  /** `caller key \0 JSON of the caller's id`, to find it again for a `notifications/cancelled`. */
  callerKey: string;
  ctx: ToolContext;
  resolve(response: JSONRPCMessage): void;
  reject(err: Error): void;
}

/**
 * The server side: registers `mcp/rpc` and `mcp/rpc.job` on the agent at `start()` and hands
 * each message to the SDK `Server` connected to it. Handlers see the caller in
 * `extra.authInfo`: `clientId` is the caller's curve key (authenticated by the broker),
 * `scopes` its token's scopes, `extra.name` its certificate name.
 */
export class MeshServerTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: Transport["onmessage"];
  readonly #agent: Agent;
  readonly #scope: string;
  readonly #log: Logger;
  readonly #modern: MeshMessageRoute | undefined;
  /** Requests being answered, by the id this transport gave them. */
  readonly #running = new Map<number, Running>();
  readonly #byCaller = new Map<string, number>();
  #nextId = 0;
  #started = false;
  #closed = false;
  /** The key of the caller whose message the SDK is being handed (only while it is). */
  #dispatching: string | undefined;

  constructor(options: MeshServerTransportOptions) {
    this.#agent = options.agent;
    this.#scope = options.scope ?? `call:${MCP_RPC_TOOL}`;
    this.#log = options.log ?? silentLogger;
    this.#modern = options.modern;
  }

  /**
   * The session, as the SDK reads it when a message arrives: the caller's curve key
   * (authenticated by the broker). One transport serves every caller, and the SDK binds
   * tasks to the transport's `sessionId` (its task store keeps each task for the session that
   * created it: `tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/list`), so a fixed session
   * would give every caller every other caller's tasks. The SDK reads it synchronously as it
   * takes a request in, which is while {@link #dispatch} holds the caller; at any other time
   * it is undefined.
   */
  get sessionId(): string | undefined {
    return this.#dispatching;
  }

  /** Requests being answered now (each ends with its response, its cancellation, or its deadline). */
  get running(): number {
    return this.#running.size;
  }

  async start(): Promise<void> {
    if (this.#started) throw new ConfigError("MeshServerTransport already started");
    this.#started = true;
    for (const [name, job] of [
      [MCP_RPC_TOOL, false],
      [MCP_RPC_JOB_TOOL, true],
    ] as const) {
      this.#agent.tool(
        name,
        { description: "MCP over the mesh: one JSON-RPC message per call", input: z.unknown(), inputSchema: JSONRPC_INPUT_SCHEMA, job, scope: this.#scope },
        (args, ctx) => this.#receive(args, ctx),
      );
    }
  }

  /** A message from the SDK `Server`: a response to a running request, or a notification. */
  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      const running = typeof message.id === "number" ? this.#running.get(message.id) : undefined;
      if (!running) {
        this.#log.debug("mcp response for no running request", { id: message.id });
        return;
      }
      running.resolve({ ...message, id: running.callerId });
      return;
    }
    if (isJSONRPCNotification(message)) {
      const related = typeof options?.relatedRequestId === "number" ? this.#running.get(options.relatedRequestId) : undefined;
      if (message.method === "notifications/progress" && related) {
        const p = message.params as { progress?: unknown; total?: unknown; message?: unknown };
        if (typeof p.progress === "number") {
          related.ctx.progress({
            progress: p.progress,
            ...(typeof p.total === "number" ? { total: p.total } : {}),
            ...(typeof p.message === "string" ? { message: p.message } : {}),
          });
        }
        return;
      }
      // Stateless: there is no stream to the client outside a request's progress.
      this.#log.debug("mcp notification not carried over the mesh", { method: message.method });
      return;
    }
    // Sampling, elicitation, roots: the server would wait for an answer no one can route back.
    throw new ZmcpError("config", `server-to-client requests are not carried over the mesh (${(message as { method?: unknown }).method})`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#started) {
      this.#agent.removeTool(MCP_RPC_TOOL);
      this.#agent.removeTool(MCP_RPC_JOB_TOOL);
    }
    this.#running.clear();
    this.#byCaller.clear();
    this.onclose?.();
  }

  /** One mesh call to `mcp/rpc` or `mcp/rpc.job`. */
  async #receive(args: unknown, ctx: ToolContext): Promise<unknown> {
    if (this.#closed) throw new ZmcpError("busy", "the MCP server is not connected");
    const parsed = JSONRPCMessageSchema.safeParse(args);
    if (!parsed.success) throw new ZmcpError("invalid_args", `not a JSON-RPC 2.0 message: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    const message = parsed.data;
    const extra = { authInfo: authInfoOf(ctx) };
    if (this.#modern?.accepts(message)) return this.#modern.serve(message, ctx, extra.authInfo);
    if (!this.onmessage) throw new ZmcpError("busy", "the MCP server is not connected");
    if (isJSONRPCNotification(message)) {
      this.#notify(message, ctx, extra.authInfo);
      return null;
    }
    if (!isJSONRPCRequest(message)) throw new ZmcpError("invalid_args", "a response: this MCP server sends no requests to its clients");
    const callerKey = `${ctx.from}\0${JSON.stringify(message.id)}`;
    if (this.#byCaller.has(callerKey)) throw new ZmcpError("invalid_args", `request id ${JSON.stringify(message.id)} is already in use by this caller`);
    const id = ++this.#nextId;
    let timer: NodeJS.Timeout | undefined;
    const cancel = (reason: string) => this.#dispatch({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: id, reason } }, extra, ctx.from);
    let onAbort: (() => void) | undefined;
    try {
      return await new Promise<JSONRPCMessage>((resolve, reject) => {
        this.#running.set(id, { callerId: message.id, callerKey, ctx, resolve, reject });
        this.#byCaller.set(callerKey, id);
        onAbort = () => {
          cancel("cancelled by the caller");
          reject(new ZmcpError("cancelled", "cancelled by the caller"));
        };
        ctx.signal.addEventListener("abort", onAbort, { once: true });
        // A plain call past its deadline has no one waiting for it: stop the handler.
        if (ctx.jobId === undefined) {
          timer = setTimeout(() => {
            cancel("deadline passed");
            reject(new ZmcpError("expired", "the request's deadline passed"));
          }, Math.max(0, ctx.deadline - Date.now()));
        }
        this.#dispatch({ ...message, id }, extra, ctx.from);
      });
    } finally {
      clearTimeout(timer);
      if (onAbort) ctx.signal.removeEventListener("abort", onAbort);
      this.#running.delete(id);
      this.#byCaller.delete(callerKey);
    }
  }

  #notify(message: JSONRPCNotification, ctx: ToolContext, authInfo: AuthInfo): void {
    if (message.method === "notifications/cancelled") {
      // Refers to the caller's id: find the request this caller has running here, if any.
      const requestId = (message.params as { requestId?: unknown } | undefined)?.requestId;
      const id = this.#byCaller.get(`${ctx.from}\0${JSON.stringify(requestId)}`);
      const running = id === undefined ? undefined : this.#running.get(id);
      if (id === undefined || !running) return;
      this.#dispatch({ ...message, params: { ...message.params, requestId: id } }, { authInfo }, ctx.from);
      // The SDK sends no response to a cancelled request: end the call now (its id is free again).
      running.reject(new ZmcpError("cancelled", "cancelled by the caller"));
      return;
    }
    this.#dispatch(message, { authInfo }, ctx.from);
  }

  /** Hands a message to the SDK with `sessionId` reading `caller` meanwhile. */
  #dispatch(message: JSONRPCMessage, extra: { authInfo: AuthInfo }, caller: string): void {
    const outer = this.#dispatching;
    this.#dispatching = caller;
    try {
      this.onmessage?.(message, extra);
    } finally {
      this.#dispatching = outer;
    }
  }
}

/** The caller, as MCP handlers see it (`extra.authInfo`). */
function authInfoOf(ctx: ToolContext): AuthInfo {
  return {
    // The raw token stays with the agent (verified there); handlers get what it grants.
    token: "",
    clientId: ctx.from,
    scopes: [...(ctx.token?.scopes ?? [])],
    ...(ctx.token ? { expiresAt: Math.floor(ctx.token.exp / 1000) } : {}),
    extra: { name: ctx.fromName, sub: ctx.token?.sub, meshRequestId: ctx.requestId },
  };
}

export interface MeshClientTransportOptions {
  /** The connected agent the client calls as (its key and token). */
  agent: Agent;
  /** The MCP server: an agent's certificate name, a Z85 key, or `svc:NAME`. */
  to: string;
  /** Deadline of one request's mesh call, ms (retries included). Default 60,000 (the SDK's request timeout). */
  timeout?: number;
  log?: Logger;
}

interface Outgoing {
  controller: AbortController;
  job: Job | undefined;
}

/** The 2026-07-28 era's stream of change notifications (the binding, 8). */
export const LISTEN_METHOD = "subscriptions/listen";

/** A listen job's progress message: the JSON of one JSON-RPC notification, or undefined. */
function listenNotification(message: string | undefined): JSONRPCMessage | undefined {
  if (message === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return undefined;
  }
  const parsed = JSONRPCMessageSchema.safeParse(value);
  return parsed.success && isJSONRPCNotification(parsed.data) ? parsed.data : undefined;
}

/**
 * The client side: each request is one mesh call to `to`, its response the call's result.
 * A mesh failure (no route, a refused token, a timeout) is delivered as a JSON-RPC error
 * response, so the SDK `Client`'s request rejects with an McpError and never hangs.
 */
export class MeshClientTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: Transport["onmessage"];
  readonly #agent: Agent;
  readonly #to: string;
  readonly #timeout: number;
  readonly #log: Logger;
  readonly #outgoing = new Map<string, Outgoing>();
  #protocolVersion: string | undefined;
  #started = false;
  #closed = false;

  constructor(options: MeshClientTransportOptions) {
    this.#agent = options.agent;
    this.#to = options.to;
    this.#timeout = options.timeout ?? 60_000;
    if (!(this.#timeout > 0)) throw new ConfigError("timeout must be a positive number of ms");
    this.#log = options.log ?? silentLogger;
  }

  /** The protocol version the client and server agreed on (told by the SDK after `initialize`). */
  get protocolVersion(): string | undefined {
    return this.#protocolVersion;
  }

  setProtocolVersion(version: string): void {
    this.#protocolVersion = version;
  }

  async start(): Promise<void> {
    if (this.#started) throw new ConfigError("MeshClientTransport already started");
    // A mistyped name fails here (unknown_peer), not at the first request.
    if (!parseServiceAddress(this.#to)) this.#agent.resolve(this.#to);
    this.#started = true;
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed) throw new ZmcpError("closed", "the mesh transport is closed");
    if (isJSONRPCRequest(message)) {
      void this.#request(message);
      return;
    }
    if (isJSONRPCNotification(message)) {
      if (message.method === "notifications/cancelled") this.#cancelLocally((message.params as { requestId?: unknown } | undefined)?.requestId);
      // Fire and forget: a notification has no answer to wait for.
      this.#agent.call(this.#to, MCP_RPC_TOOL, message, { timeout: this.#timeout }).catch((err: Error) => {
        this.#log.debug("mcp notification not delivered", { method: message.method, error: err.message });
      });
      return;
    }
    // A response: this transport never delivers server requests, so there is nothing to answer.
    this.#log.debug("mcp response dropped: no server requests over the mesh");
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const key of [...this.#outgoing.keys()]) this.#cancelLocally(JSON.parse(key));
    this.onclose?.();
  }

  /** The client gave up on a request: stop waiting, and cancel its mesh job if it runs as one. */
  #cancelLocally(requestId: unknown): void {
    const key = JSON.stringify(requestId);
    const outgoing = this.#outgoing.get(key);
    if (!outgoing) return;
    this.#outgoing.delete(key);
    outgoing.controller.abort();
    if (outgoing.job && !outgoing.job.settled) outgoing.job.cancel().catch(() => undefined);
  }

  async #request(request: JSONRPCRequest): Promise<void> {
    const key = JSON.stringify(request.id);
    const outgoing: Outgoing = { controller: new AbortController(), job: undefined };
    const signal = outgoing.controller.signal;
    this.#outgoing.set(key, outgoing);
    const progressToken = request.params?._meta?.progressToken;
    // A listen stream outlives its request: it runs as a job whose progress events carry the stream's notifications.
    const listen = request.method === LISTEN_METHOD;
    try {
      let answer: unknown;
      if (progressToken === undefined && !listen) {
        answer = await this.#agent.call(this.#to, MCP_RPC_TOOL, request, { timeout: this.#timeout, signal });
      } else {
        // Not aborted half way: once accepted the job has an id to cancel.
        const job = await this.#agent.start(this.#to, MCP_RPC_JOB_TOOL, request, { timeout: this.#timeout });
        outgoing.job = job;
        if (signal.aborted) {
          job.cancel().catch(() => undefined);
          return;
        }
        let seen = 0;
        job.on("progress", (p) => {
          if (signal.aborted) return;
          if (listen) {
            // Each step once (a poll may repeat a pushed one); the message is one notification, anything else is dropped.
            if (!(p.progress > seen)) return;
            seen = p.progress;
            const notification = listenNotification(p.message);
            if (notification) this.onmessage?.(notification);
            else this.#log.debug("mcp listen event dropped: not a notification");
            return;
          }
          const params = { progressToken, progress: p.progress, ...(p.total === undefined ? {} : { total: p.total }), ...(p.message === undefined ? {} : { message: p.message }) };
          this.onmessage?.({ jsonrpc: "2.0", method: "notifications/progress", params });
        });
        answer = await job.result;
      }
      if (signal.aborted) return;
      const parsed = JSONRPCMessageSchema.safeParse(answer);
      if (!parsed.success || !(isJSONRPCResultResponse(parsed.data) || isJSONRPCErrorResponse(parsed.data)) || parsed.data.id !== request.id) {
        this.#deliverError(request.id, McpErrorCode.InternalError, `${request.method}: the mesh answer is not the JSON-RPC response to request ${key}`, { code: "bad_frame" });
        return;
      }
      this.onmessage?.(parsed.data);
    } catch (err) {
      if (signal.aborted) return;
      const e = err instanceof ZmcpError ? err : new ZmcpError("config", err instanceof Error ? err.message : String(err));
      const code =
        e.code === "timeout" || e.code === "expired"
          ? McpErrorCode.RequestTimeout
          : e.code === "closed"
            ? McpErrorCode.ConnectionClosed
            : e.code === "too_large"
              ? McpErrorCode.InvalidParams
              : McpErrorCode.InternalError;
      this.#deliverError(request.id, code, `${request.method} on ${this.#to}: ${e.code}: ${e.message}`, {
        code: e.code,
        ...(e instanceof RemoteError ? { origin: e.origin } : {}),
      });
    } finally {
      if (this.#outgoing.get(key) === outgoing) this.#outgoing.delete(key);
    }
  }

  #deliverError(id: RequestId, code: number, message: string, data: Record<string, unknown>): void {
    this.onmessage?.({ jsonrpc: "2.0", id, error: { code, message, data } });
  }
}
