/**
 * `zmq-mcp expose`, the tool listing: which mesh agents and services are exposed, under which
 * names, and which of their tools make valid MCP tools. Kept apart from the call path
 * (expose-calls.ts) and the server wiring (expose.ts) because a peer's listing is untrusted
 * input with its own rules: once-per-tool capped warnings, name clashes, schema size caps, and
 * yielding to the event loop while thousands of tools are checked.
 */
import { ErrorCode, McpError, ToolSchema, type Tool } from "@modelcontextprotocol/sdk/types.js";
import type { Agent, ToolInfo } from "../agent/agent.js";
import { ConfigError, type ZmcpError } from "../errors.js";
import type { Logger } from "../support/log.js";
import { isZ85Key } from "../wire/z85.js";
import { canonicalJson, type SchemaCache } from "./schemas.js";
import { isMcpBindingTool } from "./transport.js";

/** Separator between a target's label and a tool's name in prefixed names: `bob__batch_sum`. */
export const NAME_SEPARATOR = "__";

/** One mesh agent or service whose tools are exposed. */
export interface ExposeTarget {
  /** What the bridge calls: a certificate name, a Z85 key, or `svc:NAME`. */
  address: string;
  /** Prefix of its tools' names when names are prefixed (letters, digits, `_`, `.`, `-`). */
  label: string;
}

/** An exposed name: the target it goes to, the mesh tool there, and the MCP tool advertised for it. */
export interface Route {
  target: ExposeTarget;
  info: ToolInfo;
  tool: Tool;
}

/** Warnings about skipped tools per listing; the rest are counted in one summary line. */
const SKIP_WARNINGS_PER_LISTING = 20;
/** Skipped tools remembered so that each is warned about once, not at every refresh. */
const SKIPS_REMEMBERED = 10_000;
/** Synchronous work between two yields to the event loop while a listing is turned into tools, ms. */
const SLICE_MS = 10;

export const LABEL = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * `bob`, `svc:summarize`, a Z85 key, or `label=address` → target. The label defaults to the
 * name (`svc:summarize` → `svc_summarize`) or, for a key, its first 8 characters made safe.
 */
export function parseTarget(spec: string, nameOf?: (key: string) => string | undefined): ExposeTarget {
  if (spec.length === 0) throw new ConfigError("empty target");
  if (!isZ85Key(spec)) {
    const eq = spec.indexOf("=");
    if (eq > 0 && LABEL.test(spec.slice(0, eq)) && eq < spec.length - 1) return { label: spec.slice(0, eq), address: spec.slice(eq + 1) };
  }
  const named = isZ85Key(spec) ? (nameOf?.(spec) ?? spec.slice(0, 8)) : spec;
  return { address: spec, label: named.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) };
}

export interface ToolListingOptions {
  agent: Agent;
  targets: ExposeTarget[];
  prefixed: boolean;
  listTimeout: number;
  /** Whether an output schema compiles, and the size cap of every schema. */
  schemas: SchemaCache;
  log: Logger;
  /** Called (and awaited) when the exposed tools changed since a previous listing; not after the first. */
  onChanged: () => Promise<void>;
}

/** The targets' tools as MCP tools, re-listed on demand (one listing at a time). */
export class ToolListing {
  readonly #o: ToolListingOptions;
  /** `target\0tool\0reason` of the skipped tools already warned about. */
  readonly #warnedSkips = new Set<string>();
  /** Last successful listing of each target (kept while a target does not answer). */
  readonly #listed = new Map<string, ToolInfo[]>();
  #routes = new Map<string, Route>();
  #signature = "";
  #refreshing: Promise<Map<string, Route>> | undefined;
  #refreshedAt = -Infinity;

  constructor(options: ToolListingOptions) {
    this.#o = options;
  }

  /** The exposed names as of the last listing. */
  get routes(): Map<string, Route> {
    return this.#routes;
  }

  /** When the last listing ended (performance.now(), a monotonic clock; -Infinity before the first). */
  get refreshedAt(): number {
    return this.#refreshedAt;
  }

  /**
   * Lists every target's tools (at once, each within `listTimeout`) and rebuilds the exposed
   * names. A target that does not answer keeps its last listing; if no target was ever
   * listed, rejects with an McpError. Tells a connected client when the list changed.
   */
  refresh(): Promise<Map<string, Route>> {
    this.#refreshing ??= this.#relist().finally(() => {
      this.#refreshing = undefined;
      this.#refreshedAt = performance.now();
    });
    return this.#refreshing;
  }

  async #relist(): Promise<Map<string, Route>> {
    const { agent, targets, log } = this.#o;
    const failures: string[] = [];
    await Promise.all(
      targets.map(async (target) => {
        try {
          this.#listed.set(target.address, await agent.listTools(target.address, { timeout: this.#o.listTimeout }));
        } catch (err) {
          const e = err as ZmcpError;
          failures.push(`${target.address}: ${e.code ?? "error"}: ${e.message}`);
          log.warn("tools/list failed", { target: target.address, code: e.code, message: e.message, kept: this.#listed.has(target.address) });
        }
      }),
    );
    if (this.#listed.size === 0) throw new McpError(ErrorCode.InternalError, `no target answered tools/list: ${failures.join("; ")}`);
    const routes = new Map<string, Route>();
    const skips = { warned: 0, more: 0 };
    // Thousands of tools are checked here: the event loop gets a turn every few ms, so calls
    // in flight and the MCP connection are served meanwhile.
    let sliceStart = performance.now();
    for (const target of targets) {
      for (const info of this.#listed.get(target.address) ?? []) {
        // The MCP-over-the-mesh binding's own tools carry JSON-RPC, not work for a model.
        if (isMcpBindingTool(info.name)) continue;
        if (performance.now() - sliceStart > SLICE_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
        const name = this.#o.prefixed ? `${target.label}${NAME_SEPARATOR}${info.name}` : info.name;
        const clash = routes.get(name);
        if (clash) {
          // Through the same once-per-tool, capped log as invalid tools: a peer chooses its tool names.
          this.#skip(target, info.name, `name clash: ${name} is kept from ${clash.target.address}`, skips);
          continue;
        }
        const tool = this.#toMcpTool(name, target, info);
        if (typeof tool === "string") {
          this.#skip(target, info.name, tool, skips);
          continue;
        }
        routes.set(name, { target, info, tool });
      }
    }
    if (skips.more > 0) log.warn("more tools skipped", { count: skips.more });
    const signature = JSON.stringify([...routes.values()].map((r) => r.tool));
    const previous = this.#signature;
    this.#routes = routes;
    this.#signature = signature;
    if (signature !== previous) {
      log.info("tools", { tools: [...routes.keys()] });
      // The first listing is no change: the client has not seen any list yet.
      if (previous !== "") await this.#o.onChanged();
    }
    return routes;
  }

  /**
   * The MCP tool for a mesh tool, or why it cannot be one. A peer's listing is untrusted: a
   * tool the MCP tool schema refuses would make the client refuse the whole `tools/list`
   * answer, so that one bad tool would hide every other.
   */
  #toMcpTool(name: string, target: ExposeTarget, info: ToolInfo): Tool | string {
    try {
      canonicalJson(info.inputSchema, this.#o.schemas.maxSchemaBytes);
    } catch (err) {
      return `input schema: ${(err as Error).message}`;
    }
    const tool: Tool = {
      name,
      description: info.description || `${info.name} on ${target.address}`,
      inputSchema: info.inputSchema["type"] === "object" ? (info.inputSchema as Tool["inputSchema"]) : { type: "object" },
      _meta: { "zmcp/target": target.address, "zmcp/tool": info.name, "zmcp/job": info.job },
    };
    const output = this.#outputSchema(info);
    if (output) tool.outputSchema = output;
    if (info.job) tool.execution = { taskSupport: "optional" };
    if (info.annotations) tool.annotations = { ...info.annotations };
    const checked = ToolSchema.safeParse(tool);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      return `not a valid MCP tool: ${issue ? `${issue.path.join(".") || "(tool)"}: ${issue.message}` : "refused by the MCP tool schema"}`;
    }
    return tool;
  }

  /** Logs a skipped tool once (not at every refresh), at most {@link SKIP_WARNINGS_PER_LISTING} lines per listing. */
  #skip(target: ExposeTarget, tool: string, reason: string, skips: { warned: number; more: number }): void {
    const key = `${target.address}\0${tool}\0${reason}`;
    if (this.#warnedSkips.has(key)) return;
    if (skips.warned >= SKIP_WARNINGS_PER_LISTING) {
      skips.more++;
      return;
    }
    if (this.#warnedSkips.size >= SKIPS_REMEMBERED) this.#warnedSkips.clear();
    this.#warnedSkips.add(key);
    skips.warned++;
    this.#o.log.warn("tool skipped", { target: target.address, tool: tool.slice(0, 256), reason: reason.slice(0, 512) });
  }

  /**
   * The result schema to advertise, if a client can use it: MCP wants an object schema, and
   * clients compile it (a draft-07 validator refuses a 2020-12 `$schema`, so it is dropped).
   */
  #outputSchema(info: ToolInfo): Tool["outputSchema"] | undefined {
    if (!info.outputSchema || info.outputSchema["type"] !== "object") return undefined;
    const { $schema: _ignored, ...schema } = info.outputSchema;
    // Compiled once per distinct schema (see schemas.ts); one that does not compile, or is too large, is left out.
    return this.#o.schemas.check(schema).ok ? (schema as Tool["outputSchema"]) : undefined;
  }
}

/**
 * One page of a listing. The cursor is opaque to clients; here it is the offset, base64url
 * JSON, so that it means the same in every process that lists the same targets (stateless
 * HTTP behind a balancer). A cursor that does not decode, or points past the end, is
 * InvalidParams, as the MCP specification asks.
 */
export function pageOf<T>(tools: T[], cursor: string | undefined, size: number): { items: T[]; nextCursor?: string } {
  let start = 0;
  if (cursor !== undefined) {
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    } catch {
      decoded = undefined;
    }
    const offset = typeof decoded === "object" && decoded !== null && !Array.isArray(decoded) ? (decoded as Record<string, unknown>)["o"] : undefined;
    if (typeof offset !== "number" || !Number.isInteger(offset) || offset < 0 || offset > tools.length) {
      throw new McpError(ErrorCode.InvalidParams, "invalid cursor (the listing may have changed: list again from the start)");
    }
    start = offset;
  }
  const end = size === 0 ? tools.length : Math.min(tools.length, start + size);
  const out: { items: T[]; nextCursor?: string } = { items: tools.slice(start, end) };
  if (end < tools.length) out.nextCursor = Buffer.from(JSON.stringify({ o: end }), "utf8").toString("base64url");
  return out;
}
