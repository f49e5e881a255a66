/**
 * MCP over the mesh in the 2026-07-28 era: `serveMesh(factory, {agent})`, the mesh's
 * counterpart of the 2.x SDK's `serveStdio` and `createMcpHandler`.
 *
 * The 2.x SDK chooses a message's era only in its serving entries, and marks a server instance
 * modern there (its negotiated revision and modern-only handlers are internal to the package).
 * Of those entries, `createMcpHandler` is the one shaped like the mesh binding: one request in,
 * one answer out, a fresh server instance per request, nothing kept between requests. So each
 * mesh `mcp/rpc` call carrying the 2026 envelope claim is handed to a strict (`legacy:
 * "reject"`) `createMcpHandler` as one POST, exactly as an HTTP request would be, and its
 * response (JSON, or an event stream whose progress notifications become the mesh job's
 * progress) is the call's answer. Everything else (the 2025 era: `initialize`, claim-less
 * requests and notifications) goes to one 2025-era instance on the MeshServerTransport, as
 * before, unless `legacy: "reject"`.
 *
 * The mesh has no header layer: the body is the only signal, as on stdio. The standard
 * headers the HTTP entry requires (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`) are
 * derived from the body here, so they always agree with it; the caller is the broker-
 * authenticated curve key, given to handlers as `ctx.http.authInfo` (`clientId`), which is
 * also whose 2026 tasks a request may see when the server binds tasks to it.
 *
 * `subscriptions/listen` is the one request whose stream outlives an answer: it runs as a mesh
 * job (the client's transport sends it to `mcp/rpc.job`), each notification on its stream one
 * progress event whose message is that notification's JSON, so the stream lasts as long as
 * the job; the server publishes through the handler's `notify`.
 */
import { classifyInboundRequest, createMcpHandler, type McpHttpHandler, type McpServer, type Server, type ServerNotifier } from "@modelcontextprotocol/server";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { ErrorCode as McpErrorCode, isJSONRPCRequest, JSONRPCMessageSchema, type JSONRPCMessage, type JSONRPCRequest, type RequestId } from "@modelcontextprotocol/sdk/types.js";
import type { Agent, ToolContext } from "../agent/agent.js";
import { ConfigError, ZmcpError } from "../errors.js";
import { silentLogger, type Logger } from "../support/log.js";
import { LISTEN_METHOD, MCP_RPC_JOB_TOOL, MeshServerTransport } from "./transport.js";

/** The envelope key naming a request's protocol revision (2026-07-28 and later). */
const PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion";
/** The body field each method's `Mcp-Name` header mirrors (the SDK's table, SEP-2243). */
const MCP_NAME_SOURCE: Record<string, string> = {
  "tools/call": "name",
  "prompts/get": "name",
  "resources/read": "uri",
  "tasks/get": "taskId",
  "tasks/update": "taskId",
  "tasks/cancel": "taskId",
};
/** A job progress message's bound (docs/PROTOCOL.md §10.2): a listen notification longer than this is dropped. */
const MAX_LISTEN_EVENT_CHARS = 4096;
/** Bytes of one request's response stream read at most (the SDK's body limit, both ways). */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/**
 * Open listen streams at most, per caller and in all. Each is a running mesh job, and running
 * jobs count against the agent's `maxConcurrency` (64 by default) for as long as they last: one
 * caller opening 64 streams (or leaving without closing them) refused every other call `busy`
 * (review finding). The total keeps at least half of the default for everything else.
 */
export const MAX_LISTENS_PER_CALLER = 4;
export const MAX_LISTENS = 32;

type ServerProduct = Server | McpServer;
/** A server per era, as for `serveStdio` and `createMcpHandler`: the same tools for both. */
export type MeshServerFactory = (ctx: { era: "legacy" | "modern" }) => ServerProduct | Promise<ServerProduct>;

export interface ServeMeshOptions {
  /** The connected agent (its key, or a service it serves, is the MCP server's address). */
  agent: Agent;
  /** `serve` (default): 2025-era messages go to one 2025-era instance; `reject`: the 2026 era only. */
  legacy?: "serve" | "reject";
  /** Scope a caller's token must cover (see MeshServerTransportOptions). Default `call:mcp/rpc`. */
  scope?: string;
  log?: Logger;
}

export interface MeshServing {
  /** The transport carrying the binding's tools (and the 2025-era instance, if served). */
  readonly transport: MeshServerTransport;
  /** 2026-era requests being answered now (open `subscriptions/listen` streams included). */
  readonly running: number;
  /** Publishes change events (`resourceUpdated(uri)`, `toolsChanged()`, ...) to the open listen streams. */
  readonly notify: ServerNotifier;
  /** Removes the binding's tools, ends the requests in flight and closes the instances. */
  close(): Promise<void>;
}

/**
 * Serves an MCP server over the mesh in both eras (or the 2026 era only): each message's era
 * is its own, read from its body with the SDK's classification, so 2025 and 2026 clients share
 * one address, `svc:NAME` replicas included.
 */
export async function serveMesh(factory: MeshServerFactory, options: ServeMeshOptions): Promise<MeshServing> {
  const log = options.log ?? silentLogger;
  const modern = new ModernMeshHandler(factory, log);
  const legacyMode = options.legacy ?? "serve";
  if (legacyMode !== "serve" && legacyMode !== "reject") throw new ConfigError(`legacy must be "serve" or "reject", not ${String(legacyMode)}`);
  const transport = new MeshServerTransport({
    agent: options.agent,
    ...(options.scope === undefined ? {} : { scope: options.scope }),
    log,
    // In reject mode every message goes to the strict handler, which answers 2025-era requests with the SDK's own refusal.
    modern: { accepts: (message) => legacyMode === "reject" || !isLegacyMessage(message), serve: (message, ctx, auth) => modern.serve(message, ctx, auth) },
  });
  let legacyInstance: ServerProduct | undefined;
  if (legacyMode === "serve") {
    legacyInstance = await factory({ era: "legacy" });
    await legacyInstance.connect(transport as never);
  } else {
    await transport.start();
  }
  return {
    transport,
    get running() {
      return modern.running;
    },
    notify: modern.notify,
    async close() {
      await modern.close();
      if (legacyInstance) await legacyInstance.close();
      await transport.close();
    },
  };
}

/** True for what the SDK's entries serve in the 2025 era (no 2026 envelope claim). */
export function isLegacyMessage(message: JSONRPCMessage): boolean {
  return classifyInboundRequest({ httpMethod: "POST", body: message }).kind === "legacy";
}

/**
 * The 2026 side: one mesh call → one exchange of a strict `createMcpHandler`. The caller's
 * JSON-RPC id stays as it is (each exchange has a server instance of its own, so two callers'
 * ids never meet); a `notifications/cancelled` naming a caller's running request aborts it.
 */
export class ModernMeshHandler {
  readonly #handler: McpHttpHandler;
  readonly #log: Logger;
  /** Requests running, by `caller key \0 JSON of the caller's id`. */
  readonly #running = new Map<string, AbortController>();
  /** Open listen streams per caller key (bounded by MAX_LISTENS_PER_CALLER and MAX_LISTENS). */
  readonly #listens = new Map<string, number>();
  #listensOpen = 0;

  constructor(factory: MeshServerFactory, log: Logger) {
    this.#log = log;
    this.#handler = createMcpHandler(() => factory({ era: "modern" }), {
      legacy: "reject",
      onerror: (err) => log.debug("mcp 2026-07-28 exchange over the mesh", { error: err.message }),
    });
  }

  get running(): number {
    return this.#running.size;
  }

  /** The handler's publish side for its listen streams. */
  get notify(): ServerNotifier {
    return this.#handler.notify;
  }

  async close(): Promise<void> {
    for (const controller of this.#running.values()) controller.abort();
    this.#running.clear();
    await this.#handler.close();
  }

  /** Answers one message: the JSON-RPC response for a request, null for a notification. */
  async serve(message: JSONRPCMessage, ctx: ToolContext, authInfo: AuthInfo): Promise<unknown> {
    const request = isJSONRPCRequest(message) ? message : undefined;
    const method = (message as { method?: unknown }).method;
    if (request === undefined && method === "notifications/cancelled") {
      const requestId = (message as { params?: { requestId?: unknown } }).params?.requestId;
      this.#running.get(`${ctx.from}\0${JSON.stringify(requestId)}`)?.abort();
      return null;
    }
    const listen = request?.method === LISTEN_METHOD;
    if (request && listen && ctx.jobId === undefined) {
      // A listen stream stays open for as long as the client listens: only a job has events to carry it.
      return errorResponse(request.id, McpErrorCode.MethodNotFound, `subscriptions/listen is carried by the job tool ${MCP_RPC_JOB_TOOL} only (a plain call has no stream)`);
    }
    if (request && listen) {
      const mine = this.#listens.get(ctx.from) ?? 0;
      if (mine >= MAX_LISTENS_PER_CALLER || this.#listensOpen >= MAX_LISTENS) {
        const why = mine >= MAX_LISTENS_PER_CALLER ? `this caller has ${mine} open (at most ${MAX_LISTENS_PER_CALLER})` : `${this.#listensOpen} are open (at most ${MAX_LISTENS})`;
        return errorResponse(request.id, McpErrorCode.InvalidRequest, `too many subscriptions/listen streams: ${why}; close one first`);
      }
      this.#listens.set(ctx.from, mine + 1);
      this.#listensOpen++;
    }
    try {
      return await this.#serveOne(message, request, listen, ctx, authInfo);
    } finally {
      if (request && listen) {
        const mine = (this.#listens.get(ctx.from) ?? 1) - 1;
        if (mine > 0) this.#listens.set(ctx.from, mine);
        else this.#listens.delete(ctx.from);
        this.#listensOpen--;
      }
    }
  }

  async #serveOne(message: JSONRPCMessage, request: JSONRPCRequest | undefined, listen: boolean, ctx: ToolContext, authInfo: AuthInfo): Promise<unknown> {
    let headers: Headers;
    try {
      headers = headersFor(message);
    } catch {
      // Not representable as the standard headers (a control character in the method, say): not a request the SDK could be given.
      if (request) return errorResponse(request.id, McpErrorCode.InvalidRequest, "the method or protocol version is not a valid token");
      return null;
    }
    const key = request ? `${ctx.from}\0${JSON.stringify(request.id)}` : undefined;
    if (key !== undefined && this.#running.has(key)) throw new ZmcpError("invalid_args", `request id ${JSON.stringify(request!.id)} is already in use by this caller`);
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (key !== undefined) this.#running.set(key, controller);
    try {
      const body = JSON.stringify(message);
      const httpRequest = new Request("http://mesh.invalid/mcp", { method: "POST", headers, body, signal: controller.signal });
      const response = await this.#handler.fetch(httpRequest, { authInfo, parsedBody: message });
      if (!request) {
        await response.body?.cancel().catch(() => undefined);
        return null;
      }
      const answer = await readAnswer(response, request.id, ctx, controller.signal, listen ? this.#log : undefined);
      if (controller.signal.aborted) throw new ZmcpError("cancelled", "cancelled by the caller");
      return answer;
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      if (key !== undefined && this.#running.get(key) === controller) this.#running.delete(key);
    }
  }
}

/** The standard headers the HTTP entry requires, derived from the body (so they agree with it). */
function headersFor(message: JSONRPCMessage): Headers {
  const params = (message as { params?: unknown }).params;
  const meta = isObject(params) && isObject(params["_meta"]) ? params["_meta"] : undefined;
  const version = meta?.[PROTOCOL_VERSION_META];
  const method = (message as { method?: unknown }).method;
  const headers = new Headers({ "content-type": "application/json", accept: "application/json, text/event-stream" });
  if (typeof version === "string") headers.set("mcp-protocol-version", version);
  if (typeof method === "string") {
    headers.set("mcp-method", method);
    const field = Object.hasOwn(MCP_NAME_SOURCE, method) ? MCP_NAME_SOURCE[method] : undefined;
    const value = field !== undefined && isObject(params) ? params[field] : undefined;
    // Always the Base64 form: any string (non-ASCII, spaces, control characters) is a valid header that way.
    if (typeof value === "string") headers.set("mcp-name", `=?base64?${Buffer.from(value, "utf8").toString("base64")}?=`);
  }
  return headers;
}

/**
 * The request's JSON-RPC response out of the exchange's HTTP response: a JSON body, or an event
 * stream of related messages then the response. Progress notifications on the stream become the
 * mesh job's progress (a plain call's `ctx.progress` does nothing); other notifications have
 * no stream to go to outside a request and are dropped.
 */
async function readAnswer(response: Response, id: RequestId, ctx: ToolContext, signal: AbortSignal, listenLog?: Logger): Promise<unknown> {
  let events = 0;
  const type = response.headers.get("content-type") ?? "";
  if (response.body === null) return errorResponse(id, McpErrorCode.InternalError, `the server gave no answer (HTTP ${response.status})`);
  if (!type.startsWith("text/event-stream")) {
    const text = await readCapped(response.body);
    return responseOf(text, id);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const stop = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener("abort", stop, { once: true });
  let buffer = "";
  let read = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // A listen stream lives as long as the client listens: what is bounded there is the event
      // being read (a total would end every long subscription, review finding); an answer, its total.
      read = listenLog !== undefined ? buffer.length + value.length : read + value.length;
      if (read > MAX_RESPONSE_BYTES) return errorResponse(id, McpErrorCode.InternalError, `the server's answer is larger than ${MAX_RESPONSE_BYTES} bytes`);
      buffer += value.replace(/\r\n?/g, "\n");
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
          .join("\n");
        if (data === "") continue;
        const parsed = JSONRPCMessageSchema.safeParse(safeJson(data));
        if (!parsed.success) continue;
        const m = parsed.data as { id?: unknown; method?: unknown; params?: { progress?: unknown; total?: unknown; message?: unknown } };
        if ("id" in m && !("method" in m)) {
          if (m.id === id) return parsed.data;
          continue;
        }
        if (listenLog !== undefined) {
          // A listen stream: every notification on it is one progress event whose message is its JSON (the binding, 8).
          const json = JSON.stringify(parsed.data);
          if (json.length > MAX_LISTEN_EVENT_CHARS) listenLog.debug("mcp listen notification dropped: larger than a progress message", { method: m.method, chars: json.length });
          else ctx.progress({ progress: ++events, message: json });
          continue;
        }
        if (m.method === "notifications/progress" && typeof m.params?.progress === "number") {
          ctx.progress({
            progress: m.params.progress,
            ...(typeof m.params.total === "number" ? { total: m.params.total } : {}),
            ...(typeof m.params.message === "string" ? { message: m.params.message } : {}),
          });
        }
      }
    }
  } finally {
    signal.removeEventListener("abort", stop);
    stop();
  }
  if (signal.aborted) throw new ZmcpError("cancelled", "cancelled by the caller");
  return errorResponse(id, McpErrorCode.InternalError, "the server's event stream ended without the response");
}

async function readCapped(body: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > MAX_RESPONSE_BYTES) throw new ZmcpError("too_large", `the server's answer is larger than ${MAX_RESPONSE_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** A JSON body: the response itself (the entry's own refusals carry the request's id too). */
function responseOf(text: string, id: RequestId): unknown {
  const parsed = JSONRPCMessageSchema.safeParse(safeJson(text));
  if (!parsed.success || !("id" in parsed.data) || "method" in parsed.data) return errorResponse(id, McpErrorCode.InternalError, "the server's answer is not a JSON-RPC response");
  // A refusal the entry could not tie to an id (null) is still this request's answer.
  return { ...parsed.data, id };
}

function errorResponse(id: RequestId, code: number, message: string): JSONRPCMessage {
  return { jsonrpc: "2.0", id, error: { code, message } };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
