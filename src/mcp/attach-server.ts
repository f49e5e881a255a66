/**
 * `zmq-mcp attach`, the server process: its environment, starting it as a child behind the
 * MCP SDK's stdio client, and what talking to it shares (listing every page, turning its
 * failures into mesh errors). Kept apart from the mirroring (attach-tools.ts,
 * attach-catalog.ts) and the supervision (attach.ts) because the environment is a trust
 * edge of its own: what the server sees is what any mesh caller may get out of it.
 */
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { JsonSchemaValidator, jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { ConfigError, ZmcpError } from "../errors.js";
import type { Logger } from "../support/log.js";
import type { AttachOptions } from "./attach.js";
import { connectHttp } from "./attach-http.js";
import { connectModernStdio, modernRevisionsOf, type ServerClient } from "./attach-2026.js";

/** One run of the server. */
export interface Child {
  /** The v1 client (2025 era), or the same calls over a 2.x client (attach-2026.ts). */
  client: ServerClient;
  /** The era spoken with the server: `2025` (initialize, SDK v1), or the 2026-era revision pinned. */
  era: string;
  /** The v1 client's experimental (2025) tasks, to call a tool that runs only as a task; not in the 2026 era. */
  tasks?: Client["experimental"]["tasks"];
  /** The process id (stdio); null over HTTP. */
  pid: number | null;
  /** The server's URL (origin and path), when it is reached over Streamable HTTP (attach-http.ts). */
  url?: string;
  /** When it started, on the monotonic clock (performance.now()): uptimes survive a wall clock jump. */
  startedAt: number;
  /** Resolves when the server's connection closes (the process exited, or the HTTP connection was lost). */
  exited: Promise<void>;
  /** Set as soon as the server is known to be gone, before `exited` resolves: no call is handed this run again. */
  gone: boolean;
}

/** Validates nothing: results are passed on as they are, and checking them is the caller's business. */
export const passAll: jsonSchemaValidator = {
  getValidator: <T>(): JsonSchemaValidator<T> => (input: unknown) => ({ valid: true, data: input as T, errorMessage: undefined }),
};

/**
 * Starts the server and connects to it (`initialize` within `startTimeout`); rejects with a
 * `config` ZmcpError if it does not answer. A server that refuses `initialize` because it
 * speaks only the 2026-07-28 era is started again behind the 2.x client (attach-2026.ts).
 */
export async function connectServer(o: AttachOptions, log: Logger): Promise<Child> {
  const clientInfo = o.clientInfo ?? { name: "zmq-mcp-attach", version: "0.1.0" };
  const timeout = o.startTimeout ?? 30_000;
  if (o.url !== undefined) return connectHttp({ ...o, url: o.url }, log, clientInfo, timeout);
  if (o.command === undefined) throw new ConfigError("no MCP server command or URL given");
  const params = { command: o.command, args: o.args ?? [], env: serverEnv(o), stderr: "pipe" as const, ...(o.cwd === undefined ? {} : { cwd: o.cwd }) };
  // The server's stderr is its log: passed on, a line at a time, into ours (stdout is MCP).
  const pipeLog = (stderr: unknown) => {
    if (stderr) createInterface({ input: stderr as Readable }).on("line", (line) => log.info("server stderr", { line }));
  };
  let resolveExit!: () => void;
  const exited = new Promise<void>((resolve) => (resolveExit = resolve));
  let gone = false;
  const onExit = () => {
    gone = true;
    resolveExit();
  };
  const transport = new StdioClientTransport(params);
  pipeLog(transport.stderr);
  const client = new Client(clientInfo, { capabilities: {}, jsonSchemaValidator: passAll });
  client.onclose = () => onExit();
  client.onerror = (err) => log.debug("MCP client error", { error: err.message });
  try {
    await client.connect(transport, { timeout });
    return { client, era: "2025", tasks: client.experimental.tasks, pid: transport.pid, startedAt: performance.now(), exited, get gone() { return gone; } };
  } catch (err) {
    client.onclose = () => undefined;
    await client.close().catch(() => undefined);
    const revisions = modernRevisionsOf(err);
    if (revisions.length === 0) throw new ZmcpError("config", `MCP server ${o.command} did not start: ${(err as Error).message}`, { cause: err });
    log.info("MCP server speaks only the 2026-07-28 era; starting it again with the 2.x client", { supported: revisions });
    try {
      const modern = await connectModernStdio(params, revisions[0]!, clientInfo, timeout, passAll, (t) => pipeLog(t.stderr));
      modern.client.onclose = () => onExit();
      modern.client.onerror = (e) => log.debug("MCP client error", { error: e.message });
      return { client: modern.client, era: revisions[0]!, pid: modern.transport.pid, startedAt: performance.now(), exited, get gone() { return gone; } };
    } catch (err2) {
      throw new ZmcpError("config", `MCP server ${o.command} did not start (2026-07-28 era): ${(err2 as Error).message}`, { cause: err2 });
    }
  }
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

/** An MCP failure → the mesh error the caller gets: the server refusing the arguments is `invalid_args`. */
export function meshError(err: unknown, tool: string): ZmcpError {
  if (err instanceof McpError) {
    if (err.code === ErrorCode.InvalidParams) return new ZmcpError("invalid_args", `${tool}: ${err.message}`);
    if ((err.data as { code?: unknown } | undefined)?.code === "too_large") return new ZmcpError("too_large", `${tool}: ${err.message}`);
    if (err.code === ErrorCode.ConnectionClosed) {
      // An HTTP server's lost connection says why (attach-http.ts); a stdio server's, that it exited.
      const http = typeof (err.data as { delivered?: unknown } | undefined)?.delivered === "boolean";
      return new ZmcpError("tool_failed", `${tool}: ${http ? err.message : "the MCP server exited during the call"}`);
    }
    return new ZmcpError("tool_failed", `${tool}: ${err.message}`);
  }
  // An answer over the HTTP body cap (attach-http.ts) is too_large, as a native tool's result over the message cap is.
  if (err instanceof ZmcpError && err.code === "too_large") return new ZmcpError("too_large", `${tool}: ${err.message}`);
  return new ZmcpError("tool_failed", `${tool}: ${err instanceof Error ? err.message : String(err)}`);
}

/** A listing's every page (capped at 100 pages, as tools are). */
export async function listPages<P extends { nextCursor?: string | undefined }, T>(list: (params: { cursor?: string }) => Promise<P>, items: (page: P) => T[]): Promise<T[]> {
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

/** Waits for the server while it restarts: resolves with the running one, or rejects `busy` at `deadline` / `cancelled` on abort. */
export type ReadyFn = (deadline: number, signal: AbortSignal) => Promise<Child>;
