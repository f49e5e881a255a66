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
 */
import { Client as ModernClient, ProtocolError } from "@modelcontextprotocol/client";
import { StdioClientTransport as ModernStdioTransport, type StdioServerParameters } from "@modelcontextprotocol/client/stdio";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { RequestOptions } from "@modelcontextprotocol/sdk/shared/protocol.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

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
  return new ModernServerClient(client);
}

/** The v1 client's calls over a 2.x client (the JSON is the same; only the SDKs' types differ). */
export class ModernServerClient implements ServerClient {
  readonly #client: ModernClient;

  constructor(client: ModernClient) {
    this.#client = client;
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

/** A 2.x protocol error → the v1 McpError the mirroring maps to mesh errors (meshError). */
async function modern<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ProtocolError) throw new McpError(err.code, err.message, err.data);
    throw err;
  }
}
