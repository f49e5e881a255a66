/**
 * `zmq-mcp attach --url`: a remote MCP server reached over Streamable HTTP (the v1 SDK's
 * StreamableHTTPClientTransport) instead of a child process on stdio.
 *
 * There is no process to restart, so "the server exited" becomes "the connection is lost":
 * a request that cannot reach the server (connection refused, DNS, reset), a session the
 * server no longer knows (HTTP 404: a stateful server that restarted), or a gateway saying
 * the server is down (502, 503, 504). The connection is then closed, and the supervision of
 * attach.ts treats it like a server that exited: reconnect with the same backoff (a new
 * `initialize`, a new session, the listings taken again), calls waiting meanwhile.
 *
 * A request that never reached the server (refused, unresolved, 404 session unknown, 503) is
 * marked `delivered: false`, so the call is made again on the new connection whatever the
 * tool: the server did not run it. One lost mid-answer may have run, and is called again only
 * for tools that say it is harmless, as for a stdio server that died under a call.
 *
 * The server is a peer that may be hostile: each answer's body is capped (`maxResponseBytes`;
 * on an event stream, per event), so a huge or endless answer costs at most the cap in memory
 * and fails the call with `too_large` instead of growing the process without bound; and a
 * request the SDK gives up on (its deadline passed, or it was cancelled) has its HTTP
 * exchange aborted, so a server that never answers holds no socket past the call.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ErrorCode, JSONRPCMessageSchema, McpError, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { ConfigError, ZmcpError } from "../errors.js";
import type { Logger } from "../support/log.js";
import { StreamableHTTPClientTransport as ModernHttpTransport } from "@modelcontextprotocol/client";
import type { Child } from "./attach-server.js";
import { passAll } from "./attach-server.js";
import { connectModern, modernRevisionsOf } from "./attach-2026.js";

/** Default cap of one HTTP answer's body (one event of an event stream), bytes. */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** What `attach --url` needs of the attach options. */
export interface HttpServerOptions {
  url: string;
  /** Headers sent with every request (e.g. `Authorization: Bearer ...`). */
  headers?: Record<string, string>;
  /** Cap of one answer's body (of one event on an event stream), bytes. Default 16 MiB. */
  maxResponseBytes?: number;
}

/** The server's URL, checked: http or https, no credentials in it (they would be logged). */
export function serverUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`MCP server URL ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new ConfigError(`MCP server URL ${JSON.stringify(url)}: only http: and https: are supported`);
  if (parsed.username || parsed.password) throw new ConfigError("MCP server URL: put credentials in a header (--header, --bearer), not in the URL (it is logged)");
  return parsed;
}

/** How a failed HTTP exchange bears on the connection: lost before the server saw the request, lost after, or not lost. */
export type Loss = "undelivered" | "broken" | undefined;

/** Network error codes (undici's `cause.code`) meaning the request never reached the server. */
const UNDELIVERED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "UND_ERR_CONNECT_TIMEOUT"]);

/** Classifies an error of the transport (a POST, or the session's GET event stream). */
export function lossOf(err: unknown): Loss {
  if (err instanceof StreamableHTTPError) {
    // 404: the session is gone (the spec's signal to start a new one); 503: the server (or its gateway) refused it unseen.
    if (err.code === 404 || err.code === 503) return "undelivered";
    if (err.code === 502 || err.code === 504) return "broken";
    return undefined;
  }
  // undici: fetch() rejects with TypeError("fetch failed", {cause}); reading a body cut short, TypeError("terminated").
  if (err instanceof TypeError) {
    const cause = (err as { cause?: { code?: unknown; errors?: Array<{ code?: unknown }> } }).cause;
    const code = typeof cause?.code === "string" ? cause.code : cause?.errors?.find((e) => typeof e.code === "string")?.code;
    if (typeof code === "string" && UNDELIVERED.has(code)) return "undelivered";
    if (cause !== undefined || err.message === "fetch failed" || err.message === "terminated") return "broken";
  }
  return undefined;
}

/**
 * The SDK's transport, with its failures made ones the supervision understands: a lost
 * connection rejects the request with MCP `ConnectionClosed` (`data.delivered` says whether the
 * server saw it) and `lost` is called, which closes the connection.
 */
class SupervisedHttpTransport extends StreamableHTTPClientTransport {
  readonly #where: string;
  readonly #lost: (loss: Exclude<Loss, undefined>, err: unknown) => void;
  readonly #inFlight: InFlight;

  constructor(url: URL, options: ConstructorParameters<typeof StreamableHTTPClientTransport>[1], lost: (loss: Exclude<Loss, undefined>, err: unknown) => void, inFlight: InFlight) {
    super(url, options);
    this.#where = url.origin + url.pathname;
    this.#lost = lost;
    this.#inFlight = inFlight;
  }

  override async send(message: JSONRPCMessage | JSONRPCMessage[], options?: Parameters<StreamableHTTPClientTransport["send"]>[1]): Promise<void> {
    return guardedSend(message, () => super.send(message, options), { where: this.#where, lost: this.#lost, inFlight: this.#inFlight, answer: (m) => this.onmessage?.(m) });
  }
}

/**
 * One send of either SDK's HTTP transport, made what the supervision understands: the SDK
 * cancels a request it gives up on by notification, and its HTTP exchange ends too; a lost
 * connection rejects with MCP `ConnectionClosed` (`data.delivered`) after calling `lost`; an
 * HTTP error whose body is the JSON-RPC error answering the request (a 2026-only server
 * refusing the 2025 `initialize` says so in a 400) is delivered as that answer.
 */
export async function guardedSend(
  message: JSONRPCMessage | JSONRPCMessage[],
  send: () => Promise<void>,
  o: { where: string; lost: (loss: Exclude<Loss, undefined>, err: unknown) => void; inFlight: InFlight; answer?: (m: JSONRPCMessage) => void },
): Promise<void> {
  const cancelled = !Array.isArray(message) && "method" in message && message.method === "notifications/cancelled" ? (message.params as { requestId?: unknown } | undefined)?.requestId : undefined;
  if (typeof cancelled === "string" || typeof cancelled === "number") o.inFlight.cancel(cancelled);
  try {
    await send();
  } catch (err) {
    if (err instanceof ZmcpError) throw err;
    const answer = o.answer && !Array.isArray(message) && "id" in message ? errorAnswerIn(err, message.id) : undefined;
    if (answer) return o.answer!(answer);
    const loss = lossOf(err);
    if (loss === undefined) throw err;
    o.lost(loss, err);
    throw new McpError(ErrorCode.ConnectionClosed, `the MCP server at ${o.where} is unreachable: ${describe(err)}`, { delivered: loss !== "undelivered" });
  }
}

/** The JSON-RPC error response to `id` that a v1 StreamableHTTPError quotes (an HTTP 400's body), if it is one. */
function errorAnswerIn(err: unknown, id: unknown): JSONRPCMessage | undefined {
  if (!(err instanceof StreamableHTTPError) || err.code !== 400) return undefined;
  const at = err.message.indexOf("{");
  if (at < 0) return undefined;
  try {
    const parsed = JSONRPCMessageSchema.safeParse(JSON.parse(err.message.slice(at)));
    return parsed.success && "error" in parsed.data && parsed.data.id === id ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** An error's message with its HTTP status or its network cause (`fetch failed: connect ECONNREFUSED ...`). */
function describe(err: unknown): string {
  const e = err as { message?: unknown; cause?: { message?: unknown } };
  const text = typeof e.message === "string" ? e.message : String(err);
  // The SDK's HTTP errors name the body, not the status: the status is what an operator looks for.
  const message = err instanceof StreamableHTTPError && err.code !== undefined && err.code > 0 ? `HTTP ${err.code}: ${text}` : text;
  return typeof e.cause?.message === "string" && e.cause.message !== "" ? `${message}: ${e.cause.message}` : message;
}

/** A JSON-RPC request id, as the SDK sends it. */
type RequestId = string | number;

/**
 * The exchanges in flight, by the id of the request each carries, so that a request the SDK
 * gives up on (its timeout, or the mesh caller's cancel, both send `notifications/cancelled`)
 * also ends its HTTP exchange: a server that never answers does not hold a socket for ever.
 */
export class InFlight {
  readonly #byId = new Map<RequestId, AbortController>();

  /** `fetch`, with every answer's body capped (see {@link byteCap}) and each request's exchange abortable by id. */
  fetch(max: number, base: typeof fetch = fetch): typeof fetch {
    return async (input, init) => {
      const id = requestIdOf(init?.body);
      const abort = new AbortController();
      if (id !== undefined) this.#byId.set(id, abort);
      const done = () => {
        if (id !== undefined && this.#byId.get(id) === abort) this.#byId.delete(id);
      };
      try {
        const signal = init?.signal ? AbortSignal.any([init.signal, abort.signal]) : abort.signal;
        // No redirects: a server that answers 3xx would otherwise get the request, its body (tool
        // arguments) and every --header (API keys) re-sent to wherever it points, https → http and
        // internal addresses included (undici strips only Authorization across origins).
        const response = await base(input, { ...init, signal, redirect: "error" });
        if (!response.body || response.status < 200 || response.status > 599) {
          done();
          return response;
        }
        const sse = (response.headers.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream");
        const capped = response.body.pipeThrough(byteCap(max, sse, id, done));
        return new Response(capped, { status: response.status, statusText: response.statusText, headers: response.headers });
      } catch (err) {
        done();
        throw err;
      }
    };
  }

  /** Ends the exchange of request `id`, if it is still in flight. */
  cancel(id: RequestId): void {
    this.#byId.get(id)?.abort(new ZmcpError("cancelled", "request cancelled"));
    this.#byId.delete(id);
  }
}

/** The id of the one JSON-RPC request a POST body carries (notifications and batches: none). */
function requestIdOf(body: unknown): RequestId | undefined {
  if (typeof body !== "string") return undefined;
  try {
    const message = JSON.parse(body) as { id?: unknown; method?: unknown };
    return typeof message.method === "string" && (typeof message.id === "string" || typeof message.id === "number") ? message.id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A byte stream capped at `max` bytes: in all for a JSON answer (the body then errors with
 * ZmcpError(too_large): the SDK's read of it fails the request), or per event on an event
 * stream. An event stream is the SDK's to parse, and an error of it is only logged while the
 * request waits for an answer that will not come; so for the event stream of request `id` the
 * stream ends with an event of its own, the JSON-RPC error answering `id` (`data.code:
 * "too_large"`), and the request fails at once.
 */
function byteCap(max: number, perEvent: boolean, id: RequestId | undefined, done: () => void): TransformStream<Uint8Array, Uint8Array> {
  let count = 0;
  let lineBytes = 0;
  let lastCR = false;
  let over = false;
  return new TransformStream({
    transform(chunk, controller) {
      if (over) return;
      if (!perEvent) count += chunk.byteLength;
      else {
        for (const byte of chunk) {
          if (byte === 0x0a && lastCR) {
            lastCR = false; // the \n of a \r\n: the same line end
            continue;
          }
          lastCR = byte === 0x0d;
          if (byte === 0x0a || byte === 0x0d) {
            if (lineBytes === 0) count = 0; // a blank line ends an event
            lineBytes = 0;
          } else {
            lineBytes++;
            count++;
          }
        }
      }
      if (count <= max) {
        controller.enqueue(chunk);
        return;
      }
      over = true;
      done();
      const message = `the MCP server's answer exceeds ${max} bytes`;
      if (!perEvent || id === undefined) {
        controller.error(new ZmcpError("too_large", message));
        return;
      }
      // The partial event is ended (the SDK logs it as unparsable), then the answer to `id`.
      const error = { jsonrpc: "2.0", id, error: { code: ErrorCode.InternalError, message, data: { code: "too_large" } } };
      controller.enqueue(new TextEncoder().encode(`\n\nevent: message\ndata: ${JSON.stringify(error)}\n\n`));
      controller.terminate();
    },
    flush: done,
  });
}

/** Connects to the server at `o.url` (`initialize` within `timeout`); rejects with a `config` ZmcpError if it does not answer. */
export async function connectHttp(o: HttpServerOptions, log: Logger, clientInfo: { name: string; version: string }, timeout: number): Promise<Child> {
  const url = serverUrl(o.url);
  const where = url.origin + url.pathname;
  let onExit!: () => void;
  const exited = new Promise<void>((resolve) => (onExit = resolve));
  const child: Child = { client: undefined as never, era: "2025", pid: null, url: where, startedAt: performance.now(), exited, gone: false };
  const client = new Client(clientInfo, { capabilities: {}, jsonSchemaValidator: passAll });
  const inFlight = new InFlight();
  const lost = (loss: Exclude<Loss, undefined>, err: unknown) => {
    if (child.gone) return;
    // Gone at once (no call is handed this connection again); closed once the failing request has its error.
    child.gone = true;
    log.warn("MCP server connection lost", { url: where, error: describe(err), delivered: loss !== "undelivered" });
    setImmediate(() => void client.close().catch(() => undefined));
  };
  const transport = new SupervisedHttpTransport(
    url,
    {
      ...(o.headers ? { requestInit: { headers: o.headers } } : {}),
      fetch: inFlight.fetch(o.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES),
      // The session's GET stream: a few quick reconnects; a server that stays away is found by the next call.
      reconnectionOptions: { initialReconnectionDelay: 500, maxReconnectionDelay: 5000, reconnectionDelayGrowFactor: 2, maxRetries: 2 },
    },
    lost,
    inFlight,
  );
  client.onclose = () => {
    child.gone = true;
    onExit();
  };
  client.onerror = (err) => {
    log.debug("MCP client error", { error: describe(err) });
    // Errors of the session's GET stream come only here (a POST's also reach send).
    const loss = lossOf(err) ?? lossOf((err as { cause?: unknown }).cause);
    if (loss) lost(loss, err);
  };
  try {
    await client.connect(transport, { timeout });
  } catch (err) {
    client.onclose = () => undefined;
    await client.close().catch(() => undefined);
    const revisions = modernRevisionsOf(err);
    if (revisions.length === 0) throw new ZmcpError("config", `MCP server at ${where} did not start: ${describe(err)}`, { cause: err });
    log.info("MCP server speaks only the 2026-07-28 era; connecting again with the 2.x client", { supported: revisions });
    return connectModernHttp(o, url, revisions[0]!, clientInfo, timeout, log);
  }
  child.client = client;
  child.tasks = client.experimental.tasks;
  return child;
}

/** The same connection to a 2026-only server, behind the 2.x client pinned to `revision` (attach-2026.ts): stateless, no tasks. */
async function connectModernHttp(o: HttpServerOptions, url: URL, revision: string, clientInfo: { name: string; version: string }, timeout: number, log: Logger): Promise<Child> {
  const where = url.origin + url.pathname;
  let onExit!: () => void;
  const exited = new Promise<void>((resolve) => (onExit = resolve));
  const child: Child = { client: undefined as never, era: revision, pid: null, url: where, startedAt: performance.now(), exited, gone: false };
  const inFlight = new InFlight();
  let close: () => void = () => undefined;
  const lost = (loss: Exclude<Loss, undefined>, err: unknown) => {
    if (child.gone) return;
    child.gone = true;
    log.warn("MCP server connection lost", { url: where, error: describe(err), delivered: loss !== "undelivered" });
    setImmediate(() => close());
  };
  const transport = new GuardedModernTransport(url, { ...(o.headers ? { requestInit: { headers: o.headers } } : {}), fetch: inFlight.fetch(o.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES) }, { where, lost, inFlight });
  try {
    const modern = await connectModern(transport, revision, clientInfo, timeout, passAll);
    close = () => void modern.close().catch(() => undefined);
    modern.onclose = () => {
      child.gone = true;
      onExit();
    };
    modern.onerror = (err) => {
      log.debug("MCP client error", { error: describe(err) });
      const loss = lossOf(err);
      if (loss) lost(loss, err);
    };
    child.client = modern;
    return child;
  } catch (err) {
    throw new ZmcpError("config", `MCP server at ${where} did not start (2026-07-28 era): ${describe(err)}`, { cause: err });
  }
}

/** The 2.x SDK's HTTP transport with the same guarded sends. */
class GuardedModernTransport extends ModernHttpTransport {
  readonly #guard: Parameters<typeof guardedSend>[2];

  constructor(url: URL, options: ConstructorParameters<typeof ModernHttpTransport>[1], guard: Parameters<typeof guardedSend>[2]) {
    super(url, options);
    this.#guard = guard;
  }

  override async send(message: Parameters<ModernHttpTransport["send"]>[0], options?: Parameters<ModernHttpTransport["send"]>[1]): Promise<void> {
    return guardedSend(message as JSONRPCMessage, () => super.send(message, options), this.#guard);
  }
}
