/**
 * The tools an agent offers: their specs and handlers, the JSON Schemas `tools/list`
 * advertises, the scope each needs, and the names reserved for built-in tools.
 *
 * zod is a peer dependency (`^4`): the SDK validates with the schema's own methods, but derives
 * JSON Schema with zod 4's `z.toJSONSchema`, which reads zod 4 internals (`_zod`). A zod 3
 * schema (the `zod@3` package, or `zod/v3`) has none, so it used to be advertised as a bare
 * `{type: "object"}`: MCP clients and LLMs were told nothing of its fields. It is refused at
 * registration instead, with the fix in the message.
 */
import { MAX_TOOL_NAME_CHARS } from "../wire/limits.js";
import { z } from "zod";
import { checkScopeToken, defaultToolScope, scopeCovers } from "../auth/tokens.js";
import { type VerifiedToken } from "../auth/token-verifier.js";
import { ConfigError } from "../errors.js";
import type { Progress } from "../wire/envelope.js";
import { CatalogRegistry, isCatalogBuiltin } from "./resources.js";

/** Built-in tools every agent answers. */
export const BUILTIN_TOOLS = {
  list: "tools/list",
  poll: "jobs/poll",
  cancel: "jobs/cancel",
  /** A direct link's endpoint, or null (docs/PROTOCOL.md §18; agent/direct-links.ts). */
  endpoint: "link/endpoint",
} as const;
const builtinNames: ReadonlySet<string> = new Set(Object.values(BUILTIN_TOOLS));
export function isBuiltinTool(name: string): boolean {
  return builtinNames.has(name) || isCatalogBuiltin(name); // resources/*, prompts/*: resources.ts
}

/** What a tool handler learns about the call. */
export interface ToolContext {
  /** The caller's Z85 key, as authenticated by the broker's CURVE handshake. */
  from: string;
  /** The caller's certificate name, if its public certificate is in `certs`. */
  fromName: string | undefined;
  /** Hex request id (stable across retries). */
  requestId: string;
  /** The request's deadline, ms since the epoch (for a job: when it was accepted). */
  deadline: number;
  /** Fires when the agent closes, when the caller's deadline passes (plain calls), or when the job is cancelled. */
  signal: AbortSignal;
  /** The caller's verified token, when this agent checks tokens and the request carried one. */
  token: VerifiedToken | undefined;
  /** The job id, for a tool registered with `job: true`. */
  jobId: string | undefined;
  /**
   * Reports progress to the caller of a job (pushed, and kept for polls); a no-op for other
   * tools. Throws TypeError for what a caller could not read (not a `{progress, total?,
   * message?}` object of finite numbers), whatever the tool.
   */
  progress(progress: Progress): void;
}

export interface ToolSpec<I extends z.ZodType, O extends z.ZodType | undefined = undefined> {
  description?: string;
  /** Arguments schema; a request whose arguments fail it is answered `invalid_args`. */
  input: I;
  /** Result schema; a result that fails it is answered `tool_failed`. */
  output?: O;
  /** Run as a job: answer `accepted` with a job id at once, push progress and the end. */
  job?: boolean;
  /**
   * Scope a caller's token must cover (wildcards like `call:jobs.*` in tokens). Default `call:<name>`.
   * `null`: none of its own, as for the built-ins: a verified token (when this agent checks them)
   * reaches the handler, which checks `ctx.token`'s scopes against its arguments itself (the
   * event key distributor: `sub:TOPIC` / `pub:TOPIC` of the topic asked, src/events/distributor.ts).
   */
  scope?: string | null;
  /** JSON Schema advertised by `tools/list` instead of the one derived from `input` (e.g. a wrapped MCP tool's). */
  inputSchema?: Record<string, unknown>;
  /** JSON Schema of the result advertised by `tools/list` instead of the one derived from `output` (not checked here). */
  outputSchema?: Record<string, unknown>;
  /** MCP tool annotations, carried in `tools/list` (hints for a client: nothing here enforces them). */
  annotations?: ToolAnnotations;
}

/** MCP's tool annotations: hints about a tool's behaviour, for clients and models; never trusted for authorization. */
export interface ToolAnnotations {
  title?: string;
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

export const ToolAnnotationsSchema = z.object({
  title: z.string().max(1024).optional(),
  readOnlyHint: z.boolean().optional(),
  destructiveHint: z.boolean().optional(),
  idempotentHint: z.boolean().optional(),
  openWorldHint: z.boolean().optional(),
});

export type ToolHandler<I extends z.ZodType, O extends z.ZodType | undefined> = (
  args: z.output<I>,
  ctx: ToolContext,
) => Promise<O extends z.ZodType ? z.input<O> : unknown> | (O extends z.ZodType ? z.input<O> : unknown);

/** One entry of `tools/list`. */
export interface ToolInfo {
  name: string;
  description: string;
  /** JSON Schema of the arguments (zod 4 `z.toJSONSchema`). */
  inputSchema: Record<string, unknown>;
  outputSchema?: Record<string, unknown>;
  /** True when the tool runs as a job (answers `accepted`, then pushes its end). */
  job: boolean;
  annotations?: ToolAnnotations;
}

/** A `tools/list` entry as a caller reads it (the callee's ToolInfo; tool names capped as on the wire). */
export const ToolInfoSchema = z.object({
  name: z.string().max(MAX_TOOL_NAME_CHARS),
  description: z.string(),
  inputSchema: z.record(z.string(), z.unknown()),
  outputSchema: z.record(z.string(), z.unknown()).optional(),
  job: z.boolean(),
  // Hints only: a peer's malformed annotations are dropped, not a reason to refuse its whole listing.
  annotations: ToolAnnotationsSchema.optional().catch(undefined),
});

export interface RegisteredTool {
  info: ToolInfo;
  input: z.ZodType;
  output: z.ZodType | undefined;
  /** Undefined: no scope of its own (`scope: null`); the handler checks `ctx.token`. */
  scope: string | undefined;
  handler: (args: unknown, ctx: ToolContext) => unknown;
}

export class ToolRegistry {
  readonly #tools = new Map<string, RegisteredTool>();
  /** The agent's resources and prompts (resources.ts), served by built-ins next to tools/list. */
  readonly catalog = new CatalogRegistry();

  /** Throws ConfigError for a bad or reserved name, a name already offered, a bad scope, or a schema that is not zod 4. */
  add<I extends z.ZodType, O extends z.ZodType | undefined>(name: string, spec: ToolSpec<I, O>, handler: ToolHandler<I, O>): void {
    if (typeof name !== "string" || name.length === 0 || name.length > MAX_TOOL_NAME_CHARS) throw new ConfigError(`tool name must be 1 to ${MAX_TOOL_NAME_CHARS} characters`);
    if (isBuiltinTool(name)) throw new ConfigError(`tool name ${JSON.stringify(name)} is reserved`);
    if (this.#tools.has(name)) throw new ConfigError(`tool ${JSON.stringify(name)} is already registered`);
    const scope = spec.scope === null ? undefined : (spec.scope ?? defaultToolScope(name));
    if (scope !== undefined) checkScopeToken(scope);
    // Refused here, not advertised as {type: "object"} in tools/list.
    checkZodSchema(spec.input, `tool ${JSON.stringify(name)}: input`);
    if (spec.output !== undefined) checkZodSchema(spec.output, `tool ${JSON.stringify(name)}: output`);
    const info: ToolInfo = { name, description: spec.description ?? "", inputSchema: spec.inputSchema ?? toolJsonSchema(spec.input, "input"), job: spec.job ?? false };
    if (spec.outputSchema) info.outputSchema = spec.outputSchema;
    else if (spec.output) info.outputSchema = toolJsonSchema(spec.output, "output");
    if (spec.annotations !== undefined) {
      const annotations = ToolAnnotationsSchema.safeParse(spec.annotations);
      if (!annotations.success) throw new ConfigError(`tool ${JSON.stringify(name)}: bad annotations: ${z.prettifyError(annotations.error)}`);
      info.annotations = annotations.data as ToolAnnotations;
    }
    this.#tools.set(name, { info, input: spec.input, output: spec.output, scope, handler: handler as RegisteredTool["handler"] });
  }

  remove(name: string): boolean {
    return this.#tools.delete(name);
  }

  get(name: string): RegisteredTool | undefined {
    return this.#tools.get(name);
  }

  /** `tools/list`: the tools `grant` covers (all of them when no token is checked). */
  list(grant: VerifiedToken | undefined): ToolInfo[] {
    return [...this.#tools.values()].filter((t) => !grant || t.scope === undefined || scopeCovers(grant.scopes, t.scope)).map((t) => t.info);
  }
}

/** The zod versions whose schemas `agent.tool()` accepts (package.json's peer range). */
export const SUPPORTED_ZOD = "^4.0.0 (zod 4 and zod/mini; from zod 3.25, the zod/v4 entry)";

/** Throws ConfigError unless `schema` is a zod 4 schema. `what` names it in the message. */
export function checkZodSchema(schema: unknown, what: string): asserts schema is z.ZodType {
  if (typeof schema !== "object" || schema === null) throw new ConfigError(`${what} must be a zod schema, got ${schema === null ? "null" : typeof schema}`);
  if ("_zod" in schema) return;
  const zod3 = "_def" in schema && typeof (schema as { safeParse?: unknown }).safeParse === "function";
  throw new ConfigError(
    zod3
      ? `${what} is a zod 3 schema; zmcp reads zod ${SUPPORTED_ZOD}: import { z } from "zod" with zod 4 installed (its JSON Schema could not be advertised in tools/list)`
      : `${what} is not a zod schema (zod ${SUPPORTED_ZOD})`,
  );
}

/**
 * JSON Schema of a tool's input (`io: "input"`: what a caller may send, so a field with a
 * `.default()` is optional, and a transform is described by what it accepts) or output
 * (`io: "output"`: what the tool returns). Anything zod cannot express (a custom check, a
 * transform's output) becomes `{}` (any), never an error.
 */
export function toolJsonSchema(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  try {
    return z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<string, unknown>;
  } catch {
    return io === "input" ? { type: "object" } : {};
  }
}
