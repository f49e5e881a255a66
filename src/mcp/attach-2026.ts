/**
 * `zmq-mcp attach` of a server that speaks only the 2026-07-28 era. The bridge opens every
 * server with the 2025 `initialize` (SDK v1, what nearly every server speaks); a server that
 * serves only 2026-07-28 refuses it with -32022 (UnsupportedProtocolVersion) naming the
 * revisions it supports, and is then started again behind the `@modelcontextprotocol/client`
 * 2.x client pinned to one of them (the SDK does the era's wire: `server/discover`, the
 * per-request `_meta` envelope, `resultType`).
 *
 * The mirroring code (attach-tools.ts, attach-catalog.ts) is written against the v1 client;
 * {@link ModernServerClient} offers the same calls over the 2.x client, so a 2026 server's
 * tools, resources, prompts and completion reach the mesh exactly as a 2025 server's do.
 *
 * Tasks: a 2026 server that offers the `io.modelcontextprotocol/tasks` extension decides per
 * call whether to answer with a task (the era lists no per-tool `execution`: the 2.x codec
 * strips it). The 2.x client has no client for the extension (its codec refuses a
 * `resultType: "task"` result), so {@link ModernServerClient.callToolTasking} speaks it over
 * the client's own transport, with request ids of its own kind (strings `zmcp-task-N`, the
 * SDK's are numbers) taken off the transport before the SDK sees them.
 */
import { Client as ModernClient, ProtocolError } from "@modelcontextprotocol/client";
import { StdioClientTransport as ModernStdioTransport, type StdioServerParameters } from "@modelcontextprotocol/client/stdio";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { RequestOptions } from "@modelcontextprotocol/sdk/shared/protocol.js";
import { McpError, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { TASKS_EXTENSION } from "./expose-tasks.js";

/** The calls of the v1 client the mirroring uses. */
export type ServerClient = Pick<
  Client,
  "getServerCapabilities" | "getServerVersion" | "listTools" | "callTool" | "listResources" | "listResourceTemplates" | "listPrompts" | "readResource" | "getPrompt" | "complete" | "setNotificationHandler" | "close"
>;

/** The code a 2026-only server refuses `initialize` with. */
export const UNSUPPORTED_PROTOCOL_VERSION = -32022;

/** The 2026-era revisions a refused `initialize` names (the error's `data.supported`), newest first; empty if it is not that refusal. */
export function modernRevisionsOf(err: unknown): string[] {
  const cause = (err as { cause?: unknown } | undefined)?.cause ?? err;
  if (!(cause instanceof McpError) || cause.code !== UNSUPPORTED_PROTOCOL_VERSION) return [];
  const data = cause.data as { supported?: unknown } | undefined;
  const supported = Array.isArray(data?.supported) ? data.supported.filter((v): v is string => typeof v === "string") : [];
  // Revision identifiers are dates: the modern era is 2026-07-28 and later.
  return supported.filter((v) => v >= "2026-07-28").sort().reverse();
}

// The base StdioClientTransport runs a probe on a second copy of the server; a subclass probes
// in place, so the server is started once per run, as on the 2025 path.
class InPlaceStdioTransport extends ModernStdioTransport {}

/** Starts the server behind the 2.x client pinned to `revision`. */
export async function connectModernStdio(
  params: StdioServerParameters,
  revision: string,
  clientInfo: { name: string; version: string },
  timeout: number,
  validator: Validator,
  onTransport: (transport: ModernStdioTransport) => void,
): Promise<{ client: ModernServerClient; transport: ModernStdioTransport }> {
  const transport = new InPlaceStdioTransport(params);
  onTransport(transport);
  return { client: await connectModern(transport, revision, clientInfo, timeout, validator), transport };
}

type Validator = NonNullable<ConstructorParameters<typeof ModernClient>[1]>["jsonSchemaValidator"];

/** Connects the 2.x client pinned to `revision` over `transport` (stdio, or Streamable HTTP: attach-http.ts). */
export async function connectModern(transport: Parameters<ModernClient["connect"]>[0], revision: string, clientInfo: { name: string; version: string }, timeout: number, validator: Validator): Promise<ModernServerClient> {
  const client = new ModernClient(clientInfo, { capabilities: {}, versionNegotiation: { mode: { pin: revision } }, ...(validator ? { jsonSchemaValidator: validator } : {}) });
  try {
    await client.connect(transport, { timeout });
  } catch (err) {
    await client.close().catch(() => undefined);
    throw err;
  }
  return new ModernServerClient(client, revision, clientInfo);
}

/** What a task-following call reports as it goes. */
export interface TaskingCallOptions {
  /** Ends the call (and cancels the task with `tasks/cancel`). */
  signal: AbortSignal;
  /** Each request's own timeout, ms. */
  timeout: number;
  /** A new status message of the task (the extension's only progress). */
  onStatus?: (message: string) => void;
  /** The task's id, once created. */
  onTask?: (taskId: string) => void;
}

/** Bounds of the polling: the server's `pollIntervalMs`, within these. */
const MIN_POLL_MS = 20;
const MAX_POLL_MS = 5_000;

/** The v1 client's calls over a 2.x client (the JSON is the same; only the SDKs' types differ). */
export class ModernServerClient implements ServerClient {
  readonly #client: ModernClient;
  readonly #revision: string;
  readonly #clientInfo: { name: string; version: string };
  /** Raw requests in flight on the client's transport, by their ids (`zmcp-task-N`). */
  readonly #raw = new Map<string, { resolve(m: Record<string, unknown>): void; reject(e: Error): void }>();
  #nextRaw = 0;

  constructor(client: ModernClient, revision = "2026-07-28", clientInfo = { name: "zmcp-attach", version: "1" }) {
    this.#client = client;
    this.#revision = revision;
    this.#clientInfo = clientInfo;
    const transport = client.transport;
    if (transport) {
      // Answers to this wrapper's own requests are taken off before the SDK, which would drop them as unknown.
      const inner = transport.onmessage;
      transport.onmessage = ((message: Record<string, unknown>, extra?: unknown) => {
        const id = message["id"];
        if (typeof id === "string" && !("method" in message) && this.#raw.has(id)) {
          const waiting = this.#raw.get(id)!;
          this.#raw.delete(id);
          waiting.resolve(message);
          return;
        }
        (inner as ((m: unknown, e?: unknown) => void) | undefined)?.call(transport, message, extra);
      }) as typeof transport.onmessage;
      const innerClose = transport.onclose;
      transport.onclose = () => {
        for (const w of this.#raw.values()) w.reject(new McpError(-32000, "Connection closed"));
        this.#raw.clear();
        innerClose?.call(transport);
      };
    }
  }

  /** True when the server offers the 2026 tasks extension. */
  get offersTasks(): boolean {
    const caps = this.#client.getServerCapabilities() as { extensions?: Record<string, unknown> } | undefined;
    return typeof caps?.extensions?.[TASKS_EXTENSION] === "object" && caps.extensions[TASKS_EXTENSION] !== null;
  }

  /**
   * A tools/call with the tasks extension declared. A `complete` answer is the result; a task
   * is polled with `tasks/get` (at the server's `pollIntervalMs`, 20 ms to 5 s) until it ends:
   * `completed` gives its result, `failed` its error (as an McpError), `cancelled` a
   * "cancelled" McpError. When `signal` fires the task is cancelled (`tasks/cancel`, not
   * awaited) and the call rejects with the signal's reason.
   */
  async callToolTasking(params: { name: string; arguments?: Record<string, unknown> }, options: TaskingCallOptions): Promise<CallToolResult> {
    const { signal } = options;
    const created = await this.#rawRequest("tools/call", params, options);
    if (created["resultType"] !== "task") return stripResultType(created) as CallToolResult;
    const taskId = created["taskId"];
    if (typeof taskId !== "string" || taskId === "") throw new McpError(-32603, "the server answered with a task without a taskId");
    options.onTask?.(taskId);
    const cancel = () => void this.#rawRequest("tasks/cancel", { taskId }, { ...options, signal: new AbortController().signal }).catch(() => undefined);
    signal.addEventListener("abort", cancel, { once: true });
    try {
      let task: Record<string, unknown> = created;
      let last: string | undefined;
      for (;;) {
        const message = task["statusMessage"];
        if (typeof message === "string" && message !== last) {
          last = message;
          options.onStatus?.(message);
        }
        switch (task["status"]) {
          case "completed":
            return stripResultType((task["result"] ?? { content: [] }) as Record<string, unknown>) as CallToolResult;
          case "failed": {
            const e = task["error"] as { code?: unknown; message?: unknown; data?: unknown } | undefined;
            throw new McpError(typeof e?.code === "number" ? e.code : -32603, typeof e?.message === "string" ? e.message : "the task failed", e?.data);
          }
          case "cancelled":
            throw new McpError(-32800, "the task was cancelled");
        }
        const poll = Number(task["pollIntervalMs"]);
        await sleep(Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, Number.isFinite(poll) ? poll : 1000)), signal);
        task = await this.#rawRequest("tasks/get", { taskId }, options);
      }
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }

  /** One request on the client's transport with the era's envelope (the extension declared); resolves with its result. */
  async #rawRequest(method: string, params: Record<string, unknown>, options: { signal: AbortSignal; timeout: number }): Promise<Record<string, unknown>> {
    const transport = this.#client.transport;
    if (!transport) throw new McpError(-32000, "Connection closed");
    options.signal.throwIfAborted();
    const id = `zmcp-task-${++this.#nextRaw}`;
    const _meta = {
      "io.modelcontextprotocol/protocolVersion": this.#revision,
      "io.modelcontextprotocol/clientCapabilities": { extensions: { [TASKS_EXTENSION]: {} } },
      "io.modelcontextprotocol/clientInfo": this.#clientInfo,
    };
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.#raw.set(id, { resolve, reject });
      const timer = setTimeout(() => fail(new McpError(-32001, `Request timed out (${method})`)), options.timeout);
      const onAbort = () => fail(options.signal.reason instanceof Error ? options.signal.reason : new McpError(-32800, "cancelled"));
      options.signal.addEventListener("abort", onAbort, { once: true });
      const done = () => {
        clearTimeout(timer);
        options.signal.removeEventListener("abort", onAbort);
      };
      const fail = (e: Error) => {
        this.#raw.delete(id);
        done();
        reject(e);
      };
      this.#raw.set(id, {
        resolve: (m) => {
          done();
          resolve(m);
        },
        reject: fail,
      });
    });
    await transport.send({ jsonrpc: "2.0", id, method, params: { ...params, _meta } } as never);
    const message = await answer;
    const error = message["error"] as { code?: unknown; message?: unknown; data?: unknown } | undefined;
    if (error) throw new McpError(typeof error.code === "number" ? error.code : -32603, typeof error.message === "string" ? error.message : "error", error.data);
    const result = message["result"];
    if (typeof result !== "object" || result === null || Array.isArray(result)) throw new McpError(-32603, `${method}: the answer has no result object`);
    return result as Record<string, unknown>;
  }

  set onclose(f: () => void) {
    this.#client.onclose = f;
  }
  set onerror(f: (err: Error) => void) {
    this.#client.onerror = f;
  }

  getServerCapabilities = (() => this.#client.getServerCapabilities()) as ServerClient["getServerCapabilities"];
  getServerVersion = (() => this.#client.getServerVersion()) as ServerClient["getServerVersion"];
  listTools = ((params?: { cursor?: string }, options?: RequestOptions) => modern(this.#client.listTools(params, options))) as ServerClient["listTools"];
  // The v1 signature has a result schema before the options.
  callTool = ((params: { name: string; arguments?: Record<string, unknown> }, _schema: unknown, options?: RequestOptions) => modern(this.#client.callTool(params, options))) as ServerClient["callTool"];
  listResources = ((params?: { cursor?: string }, options?: RequestOptions) => modern(this.#client.listResources(params, options))) as ServerClient["listResources"];
  listResourceTemplates = ((params?: { cursor?: string }, options?: RequestOptions) => modern(this.#client.listResourceTemplates(params, options))) as ServerClient["listResourceTemplates"];
  listPrompts = ((params?: { cursor?: string }, options?: RequestOptions) => modern(this.#client.listPrompts(params, options))) as ServerClient["listPrompts"];
  readResource = ((params: { uri: string }, options?: RequestOptions) => modern(this.#client.readResource(params, options))) as ServerClient["readResource"];
  getPrompt = ((params: { name: string; arguments?: Record<string, string> }, options?: RequestOptions) => modern(this.#client.getPrompt(params, options))) as ServerClient["getPrompt"];
  complete = ((params: Parameters<ModernClient["complete"]>[0], options?: RequestOptions) => modern(this.#client.complete(params, options))) as ServerClient["complete"];
  // A v1 notification schema names its method in its literal; the 2.x client registers by method.
  setNotificationHandler = ((schema: { shape: { method: { value: string } } }, handler: (n: unknown) => void) =>
    this.#client.setNotificationHandler(schema.shape.method.value as "notifications/tools/list_changed", (n: unknown) => handler(n))) as ServerClient["setNotificationHandler"];
  close = () => this.#client.close();
}

function stripResultType(result: Record<string, unknown>): Record<string, unknown> {
  const { resultType: _r, ...rest } = result;
  return rest;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason instanceof Error ? signal.reason : new McpError(-32800, "cancelled"));
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason instanceof Error ? signal.reason : new McpError(-32800, "cancelled"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** A 2.x protocol error → the v1 McpError the mirroring maps to mesh errors (meshError). */
async function modern<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ProtocolError) throw new McpError(err.code, err.message, err.data);
    throw err;
  }
}
