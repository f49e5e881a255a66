/**
 * Resources and prompts an agent offers (the MCP notions of the same names), the built-in
 * tools that serve them, and the caller's side of those built-ins.
 *
 * The built-ins are `resources/list`, `resources/templates/list`, `resources/read`,
 * `prompts/list`, `prompts/get` and `completion/complete` (argument completion for a prompt
 * or a resource template that has a `complete` function). They are authorized like `tools/list`: a valid token when
 * the agent checks tokens, no scope to call the built-in itself. Each resource and prompt then
 * needs a scope of its own, checked per item, as a tool's is:
 *
 * - a resource `read:<uri>` (default), or the spec's `scope`;
 * - a resource template: listed when the token covers `read:<uriTemplate>`, and a read of a
 *   URI it matches needs `read:<that uri>` (so a token `read:file:///docs/*` covers both the
 *   template `file:///docs/{name}` and every read under it), or the spec's fixed `scope`;
 * - a prompt `prompt:<name>` (default), or the spec's `scope`;
 * - a completion: the scope that lists the prompt or template it is about.
 *
 * Listings are filtered by the token (as `tools/list` is); a read or get that the token does
 * not cover is answered `token_scope` before the resource or prompt is looked up, so that a
 * caller learns nothing of what it may not read.
 *
 * A read or get resolves to a {@link RegisteredTool} that the handler runs like any tool
 * (validation, idempotency, concurrency, deadline, result schema, sendable check): this file
 * adds no second run path.
 */
import { z } from "zod";
import { checkScopeToken, scopeCovers } from "../auth/tokens.js";
import type { VerifiedToken } from "../auth/token-verifier.js";
import { ConfigError, ZmcpError } from "../errors.js";
import { checkSendable } from "../wire/sendable.js";
import type { Answer } from "./idempotency.js";
import type { RegisteredTool, ToolContext } from "./tools.js";
import { failure } from "./failure.js";

/** The built-in tools of this part. */
export const CATALOG_BUILTINS = {
  resources: "resources/list",
  templates: "resources/templates/list",
  read: "resources/read",
  prompts: "prompts/list",
  getPrompt: "prompts/get",
  complete: "completion/complete",
} as const;
const catalogNames: ReadonlySet<string> = new Set(Object.values(CATALOG_BUILTINS));
export function isCatalogBuiltin(name: string): boolean {
  return catalogNames.has(name);
}

/** Entries per page of a listing built-in (a `nextCursor` says there is more). */
export const CATALOG_PAGE_SIZE = 100;
/** Pages a caller follows before it gives up on a listing. */
const MAX_PAGES = 100;
const MAX_URI_CHARS = 4096;
const MAX_NAME_CHARS = 256;

// ---- shapes on the wire (MCP's, so that the bridge passes them as they are) ---------------

const Annotations = z.record(z.string(), z.unknown());

export const ResourceInfoSchema = z.object({
  uri: z.string().max(MAX_URI_CHARS),
  name: z.string().max(MAX_NAME_CHARS),
  title: z.string().optional(),
  description: z.string().optional(),
  mimeType: z.string().optional(),
  size: z.number().optional(),
  annotations: Annotations.optional(),
});
export type ResourceInfo = z.infer<typeof ResourceInfoSchema>;

export const ResourceTemplateInfoSchema = z.object({
  uriTemplate: z.string().max(MAX_URI_CHARS),
  name: z.string().max(MAX_NAME_CHARS),
  title: z.string().optional(),
  description: z.string().optional(),
  mimeType: z.string().optional(),
  annotations: Annotations.optional(),
});
export type ResourceTemplateInfo = z.infer<typeof ResourceTemplateInfoSchema>;

export const ResourceContentsSchema = z.union([
  z.object({ uri: z.string(), mimeType: z.string().optional(), text: z.string() }),
  z.object({ uri: z.string(), mimeType: z.string().optional(), blob: z.string() }),
]);
export type ResourceContents = z.infer<typeof ResourceContentsSchema>;
export const ReadResourceResultSchema = z.object({ contents: z.array(ResourceContentsSchema) });
export type ReadResourceResult = z.infer<typeof ReadResourceResultSchema>;

export const PromptArgumentSchema = z.object({ name: z.string().max(MAX_NAME_CHARS), description: z.string().optional(), required: z.boolean().optional() });
export type PromptArgument = z.infer<typeof PromptArgumentSchema>;
export const PromptInfoSchema = z.object({
  name: z.string().max(MAX_NAME_CHARS),
  title: z.string().optional(),
  description: z.string().optional(),
  arguments: z.array(PromptArgumentSchema).optional(),
});
export type PromptInfo = z.infer<typeof PromptInfoSchema>;

/** A prompt message: a role and one MCP content block (`{type: "text", text}`, image, resource, ...). */
export const PromptMessageSchema = z.object({ role: z.enum(["user", "assistant"]), content: z.looseObject({ type: z.string() }) });
export type PromptMessage = z.infer<typeof PromptMessageSchema>;
export const GetPromptResultSchema = z.object({ description: z.string().optional(), messages: z.array(PromptMessageSchema) });
export type GetPromptResult = z.infer<typeof GetPromptResultSchema>;

export const CompleteResultSchema = z.object({
  completion: z.object({ values: z.array(z.string()).max(100), total: z.number().int().nonnegative().optional(), hasMore: z.boolean().optional() }),
});
export type CompleteResult = z.infer<typeof CompleteResultSchema>;

/** What a completion is about: a prompt (by name) or a resource template (by its URI template). */
export type CompletionRef = { type: "ref/prompt"; name: string } | { type: "ref/resource"; uri: string };
const CompleteArgs = z.strictObject({
  ref: z.discriminatedUnion("type", [
    z.object({ type: z.literal("ref/prompt"), name: z.string().min(1).max(MAX_NAME_CHARS) }),
    z.object({ type: z.literal("ref/resource"), uri: z.string().min(1).max(MAX_URI_CHARS) }),
  ]),
  argument: z.object({ name: z.string().max(MAX_NAME_CHARS), value: z.string().max(MAX_URI_CHARS) }),
  context: z.object({ arguments: z.record(z.string(), z.string()).optional() }).optional(),
});

/**
 * Suggests values for one argument of a prompt (or variable of a resource template), given
 * what is typed so far and the other arguments already chosen. Returns at most 100 values
 * (MCP's cap; more are cut, and `hasMore` set), or MCP's `{values, total?, hasMore?}`.
 */
export type Completer = (
  argument: { name: string; value: string },
  context: { arguments: Record<string, string> },
  ctx: ToolContext,
) => string[] | CompleteResult["completion"] | Promise<string[] | CompleteResult["completion"]>;

const ListArgs = z.strictObject({ cursor: z.string().max(64).optional() });
const ReadArgs = z.strictObject({ uri: z.string().min(1).max(MAX_URI_CHARS) });
const GetArgs = z.strictObject({ name: z.string().min(1).max(MAX_NAME_CHARS), arguments: z.record(z.string(), z.string()).optional() });

// ---- registration -----------------------------------------------------------------------

/** What a resource reader learns: the tool context, plus the values of a template's variables. */
export interface ResourceContext extends ToolContext {
  /** `{name}` → value, for a resource registered with a URI template; empty otherwise. */
  params: Record<string, string>;
}

export interface ResourceSpec {
  /** Short name (default: the URI or template). */
  name?: string;
  title?: string;
  description?: string;
  mimeType?: string;
  size?: number;
  /** MCP resource annotations (`audience`, `priority`, `lastModified`), passed on as they are. */
  annotations?: Record<string, unknown>;
  /** A fixed scope instead of `read:<uri>` (see the file header). */
  scope?: string;
  /** Completion of a template's variables (`completion/complete` with a `ref/resource`). */
  complete?: Completer;
}

/** What a reader returns: MCP's `{contents}`, or a string (one text content with the spec's mimeType). */
export type ResourceReader = (uri: string, ctx: ResourceContext) => ReadResourceResult | string | Promise<ReadResourceResult | string>;

export interface PromptSpec {
  title?: string;
  description?: string;
  /** The arguments, all strings (MCP's model); a `required` one missing is `invalid_args`. */
  arguments?: PromptArgument[];
  /** A fixed scope instead of `prompt:<name>`. */
  scope?: string;
  /** Completion of the arguments (`completion/complete` with a `ref/prompt`). */
  complete?: Completer;
}

/** What a prompt getter returns: MCP's `{description?, messages}`, or a string (one user text message). */
export type PromptGetter = (args: Record<string, string>, ctx: ToolContext) => GetPromptResult | string | Promise<GetPromptResult | string>;

interface RegisteredResource {
  info: ResourceInfo;
  scope: string | undefined;
  reader: ResourceReader;
}
interface RegisteredTemplate {
  info: ResourceTemplateInfo;
  match: (uri: string) => Record<string, string> | undefined;
  scope: string | undefined;
  reader: ResourceReader;
  complete: Completer | undefined;
}
interface RegisteredPrompt {
  info: PromptInfo;
  scope: string;
  getter: PromptGetter;
  complete: Completer | undefined;
}

/** The default scope of a read of `uri`. */
export function readScope(uri: string): string {
  return `read:${uri}`;
}
/** The default scope of a prompt. */
export function promptScope(name: string): string {
  return `prompt:${name}`;
}

/** True when `uri` is an RFC 6570 template (has a `{...}` expression). */
export function isUriTemplate(uri: string): boolean {
  return /\{[^{}]+\}/.test(uri);
}

/**
 * A matcher for the URI template forms MCP servers use: `{var}` (one segment: no `/`, `?`,
 * `#`), `{+var}` and `{#var}` (anything). Other operators match like `{+var}` for their first
 * variable. Throws ConfigError for an unbalanced brace.
 */
export function uriTemplateMatcher(template: string): (uri: string) => Record<string, string> | undefined {
  const parts = templateParts(template);
  return (uri) => {
    // Left to right with indexOf, no regex: linear in the URI's length whatever the template (a
    // backtracking regex of three `{var}` groups took 14 s on a 4,000-character URI, and a
    // caller without any read scope could send one).
    const params: Record<string, string> = {};
    let pos = 0;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (part.literal !== undefined) {
        if (!uri.startsWith(part.literal, pos)) return undefined;
        pos += part.literal.length;
        continue;
      }
      const following = parts[i + 1];
      const next = following?.literal;
      let end: number;
      // Another variable right after (`{id}{?q}`): this one ends at the query, if any.
      if (following !== undefined && next === undefined) end = uri.includes("?", pos) ? uri.indexOf("?", pos) : uri.length;
      else if (next === undefined) end = uri.length;
      else if (i + 1 === parts.length - 1) {
        if (!uri.endsWith(next) || uri.length - next.length < pos) return undefined;
        end = uri.length - next.length;
      } else end = uri.indexOf(next, pos);
      if (end < 0) return undefined;
      const value = decodeValue(uri.slice(pos, end), part.simple);
      if (value === undefined) return undefined;
      params[part.name!] = value;
      pos = end;
    }
    return pos === uri.length ? params : undefined;
  };
}

interface TemplatePart {
  literal?: string;
  name?: string;
  /** `{var}`, `{.var}`, `{/var}`: one segment, no `/`, `?` or `#` even percent-encoded. */
  simple: boolean;
}

function templateParts(template: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  const literal = (text: string) => {
    if (text === "") return;
    const last = parts[parts.length - 1];
    if (last?.literal !== undefined) last.literal += text;
    else parts.push({ literal: text, simple: false });
  };
  let rest = template;
  while (rest.length > 0) {
    const open = rest.indexOf("{");
    if (open < 0) {
      if (rest.includes("}")) throw new ConfigError(`URI template ${JSON.stringify(template)} has an unbalanced }`);
      literal(rest);
      break;
    }
    const close = rest.indexOf("}", open);
    if (close < 0 || rest.slice(0, open).includes("}")) throw new ConfigError(`URI template ${JSON.stringify(template)} has an unbalanced brace`);
    literal(rest.slice(0, open));
    const expr = rest.slice(open + 1, close);
    const op = /^[+#./;?&]/.test(expr) ? expr[0]! : "";
    const name = (op ? expr.slice(1) : expr).split(",")[0]!.replace(/[*]|:\d+$/g, "");
    if (op === "#" || op === "." || op === "/") literal(op);
    parts.push({ name, simple: op === "" || op === "." || op === "/" });
    rest = rest.slice(close + 1);
  }
  return parts;
}

/**
 * A variable's value, percent-decoded; undefined when it must not match: a one-segment variable
 * holding `/`, `?` or `#` (raw or encoded), or any value that is or holds a `.`/`..` segment, so
 * that a scope such as `read:file:///docs/*` cannot be left through `..` (readers must still
 * confine paths themselves).
 */
function decodeValue(raw: string, simple: boolean): string | undefined {
  if (simple && /[/?#]/.test(raw)) return undefined;
  let value: string;
  try {
    value = decodeURIComponent(raw);
  } catch {
    value = raw;
  }
  if (simple && /[/?#]/.test(value)) return undefined;
  if (hasDotSegment(value)) return undefined;
  return value;
}

/** True when a `/`-separated segment of `path` is `.` or `..` (RFC 3986 §5.2.4 would remove them). */
export function hasDotSegment(path: string): boolean {
  return path.split("/").some((segment) => segment === "." || segment === "..");
}

/** The resources, resource templates and prompts of an agent, and its five built-ins. */
export class CatalogRegistry {
  readonly #resources = new Map<string, RegisteredResource>();
  readonly #templates = new Map<string, RegisteredTemplate>();
  readonly #prompts = new Map<string, RegisteredPrompt>();

  /**
   * Offers a resource (a URI) or resource template (a URI with `{...}`). Throws ConfigError
   * for an empty or too long URI, one already offered, or a bad scope.
   */
  addResource(uri: string, spec: ResourceSpec, reader: ResourceReader): void {
    if (typeof uri !== "string" || uri.length === 0 || uri.length > MAX_URI_CHARS) throw new ConfigError(`resource URI must be 1 to ${MAX_URI_CHARS} characters`);
    if (typeof reader !== "function") throw new ConfigError("a resource needs a reader function");
    if (spec.scope !== undefined) checkScopeToken(spec.scope);
    if (spec.annotations !== undefined) {
      // Listed to every caller: what a caller could not read is refused here, not at each listing.
      try {
        checkSendable(spec.annotations, "annotations", 5); // message → result → resources → entry → annotations
      } catch (err) {
        throw new ConfigError(`resource ${JSON.stringify(uri.slice(0, 256))}: ${(err as Error).message}`);
      }
    }
    const name = (spec.name ?? uri).slice(0, MAX_NAME_CHARS);
    const common = {
      name,
      ...(spec.title === undefined ? {} : { title: spec.title }),
      ...(spec.description === undefined ? {} : { description: spec.description }),
      ...(spec.mimeType === undefined ? {} : { mimeType: spec.mimeType }),
      ...(spec.annotations === undefined ? {} : { annotations: spec.annotations }),
    };
    if (isUriTemplate(uri)) {
      if (this.#templates.has(uri)) throw new ConfigError(`resource template ${JSON.stringify(uri)} is already registered`);
      this.#templates.set(uri, { info: { uriTemplate: uri, ...common }, match: uriTemplateMatcher(uri), scope: spec.scope, reader, complete: spec.complete });
    } else {
      if (this.#resources.has(uri)) throw new ConfigError(`resource ${JSON.stringify(uri)} is already registered`);
      this.#resources.set(uri, { info: { uri, ...common, ...(spec.size === undefined ? {} : { size: spec.size }) }, scope: spec.scope, reader });
    }
  }

  /** Withdraws a resource or template (by the URI or template it was offered as). */
  removeResource(uri: string): boolean {
    return this.#resources.delete(uri) || this.#templates.delete(uri);
  }

  /** Offers a prompt. Throws ConfigError for a bad or taken name, or a bad scope. */
  addPrompt(name: string, spec: PromptSpec, getter: PromptGetter): void {
    if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_CHARS) throw new ConfigError(`prompt name must be 1 to ${MAX_NAME_CHARS} characters`);
    if (typeof getter !== "function") throw new ConfigError("a prompt needs a getter function");
    if (this.#prompts.has(name)) throw new ConfigError(`prompt ${JSON.stringify(name)} is already registered`);
    const scope = spec.scope ?? promptScope(name);
    checkScopeToken(scope);
    const args = spec.arguments === undefined ? undefined : z.array(PromptArgumentSchema).parse(spec.arguments);
    const info: PromptInfo = {
      name,
      ...(spec.title === undefined ? {} : { title: spec.title }),
      ...(spec.description === undefined ? {} : { description: spec.description }),
      ...(args === undefined ? {} : { arguments: args }),
    };
    this.#prompts.set(name, { info, scope, getter, complete: spec.complete });
  }

  removePrompt(name: string): boolean {
    return this.#prompts.delete(name);
  }

  /**
   * A built-in request of this part (already authorized as a built-in, arguments decoded):
   * undefined when `tool` is not one of it; an answer for a listing or a refusal; or, for a
   * read or get, the tool the handler runs.
   */
  resolve(tool: string, args: unknown, grant: VerifiedToken | undefined): Answer | RegisteredTool | undefined {
    if (!isCatalogBuiltin(tool)) return undefined;
    const covers = (scope: string) => !grant || scopeCovers(grant.scopes, scope);
    switch (tool) {
      case CATALOG_BUILTINS.resources:
      case CATALOG_BUILTINS.templates:
      case CATALOG_BUILTINS.prompts: {
        const parsed = ListArgs.safeParse(args ?? {});
        if (!parsed.success) return failure("invalid_args", `${tool}: ${z.prettifyError(parsed.error)}`);
        const key = tool === CATALOG_BUILTINS.resources ? "resources" : tool === CATALOG_BUILTINS.templates ? "resourceTemplates" : "prompts";
        const all =
          tool === CATALOG_BUILTINS.resources
            ? [...this.#resources.values()].filter((r) => covers(r.scope ?? readScope(r.info.uri))).map((r) => r.info)
            : tool === CATALOG_BUILTINS.templates
              ? [...this.#templates.values()].filter((t) => covers(t.scope ?? readScope(t.info.uriTemplate))).map((t) => t.info)
              : [...this.#prompts.values()].filter((p) => covers(p.scope)).map((p) => p.info);
        const start = parsed.data.cursor === undefined ? 0 : Number(parsed.data.cursor);
        if (!Number.isInteger(start) || start < 0 || start > all.length) return failure("invalid_args", `${tool}: invalid cursor (list again from the start)`);
        const end = Math.min(all.length, start + CATALOG_PAGE_SIZE);
        return { st: "ok", result: { [key]: all.slice(start, end), ...(end < all.length ? { nextCursor: String(end) } : {}) } };
      }
      case CATALOG_BUILTINS.read: {
        const parsed = ReadArgs.safeParse(args);
        if (!parsed.success) return failure("invalid_args", `${tool}: ${z.prettifyError(parsed.error)}`);
        const uri = parsed.data.uri;
        const found = this.#findResource(uri);
        // The scope is checked before "not found": a caller learns nothing of what it may not read.
        const scope = found?.scope ?? readScope(uri);
        if (!covers(scope)) return failure("token_scope", `token scope does not cover ${JSON.stringify(scope)}`);
        if (!found) return failure("unknown_tool", `no resource ${JSON.stringify(uri)}`);
        const { reader, params, mimeType } = found;
        return readTool(uri, reader, params, mimeType);
      }
      case CATALOG_BUILTINS.complete: {
        const parsed = CompleteArgs.safeParse(args);
        if (!parsed.success) return failure("invalid_args", `${tool}: ${z.prettifyError(parsed.error)}`);
        const { ref, argument, context } = parsed.data;
        const target = ref.type === "ref/prompt" ? this.#prompts.get(ref.name) : this.#templates.get(ref.uri);
        const scope = ref.type === "ref/prompt" ? (target?.scope ?? promptScope(ref.name)) : (target?.scope ?? readScope(ref.uri));
        if (!covers(scope)) return failure("token_scope", `token scope does not cover ${JSON.stringify(scope)}`);
        if (!target) return failure("unknown_tool", ref.type === "ref/prompt" ? `no prompt ${JSON.stringify(ref.name)}` : `no resource template ${JSON.stringify(ref.uri)}`);
        // No completer: no suggestions (as MCP servers answer), not an error.
        if (!target.complete) return { st: "ok", result: { completion: { values: [] } } };
        return completeTool(scope, target.complete, argument, context?.arguments ?? {});
      }
      default: {
        const parsed = GetArgs.safeParse(args);
        if (!parsed.success) return failure("invalid_args", `${tool}: ${z.prettifyError(parsed.error)}`);
        const { name, arguments: given = {} } = parsed.data;
        const prompt = this.#prompts.get(name);
        const scope = prompt?.scope ?? promptScope(name);
        if (!covers(scope)) return failure("token_scope", `token scope does not cover ${JSON.stringify(scope)}`);
        if (!prompt) return failure("unknown_tool", `no prompt ${JSON.stringify(name)}`);
        const missing = (prompt.info.arguments ?? []).filter((a) => a.required && given[a.name] === undefined).map((a) => a.name);
        if (missing.length > 0) return failure("invalid_args", `${name}: missing required argument(s) ${missing.join(", ")}`);
        return promptTool(name, prompt.getter);
      }
    }
  }

  #findResource(uri: string): { reader: ResourceReader; scope: string | undefined; params: Record<string, string>; mimeType: string | undefined } | undefined {
    const r = this.#resources.get(uri);
    if (r) return { reader: r.reader, scope: r.scope, params: {}, mimeType: r.info.mimeType };
    for (const t of this.#templates.values()) {
      const params = t.match(uri);
      if (params) return { reader: t.reader, scope: t.scope, params, mimeType: t.info.mimeType };
    }
    return undefined;
  }
}

/** A read as a tool run: the reader, its string shorthand expanded, the result checked. */
function readTool(uri: string, reader: ResourceReader, params: Record<string, string>, mimeType: string | undefined): RegisteredTool {
  return {
    info: { name: CATALOG_BUILTINS.read, description: "", inputSchema: {}, job: false },
    input: z.unknown(),
    output: ReadResourceResultSchema,
    scope: readScope(uri),
    handler: async (_args: unknown, ctx: ToolContext) => {
      const result = await reader(uri, { ...ctx, params });
      if (typeof result === "string") return { contents: [{ uri, text: result, ...(mimeType === undefined ? {} : { mimeType }) }] };
      return result;
    },
  };
}

function completeTool(scope: string, complete: Completer, argument: { name: string; value: string }, args: Record<string, string>): RegisteredTool {
  return {
    info: { name: CATALOG_BUILTINS.complete, description: "", inputSchema: {}, job: false },
    input: z.unknown(),
    output: CompleteResultSchema,
    scope,
    handler: async (_args: unknown, ctx: ToolContext) => {
      const out = await complete(argument, { arguments: args }, ctx);
      const list = Array.isArray(out) ? { values: out } : out;
      if (!Array.isArray(list?.values)) return list; // refused by the output schema: tool_failed
      if (list.values.length <= 100) return { completion: list };
      return { completion: { ...list, values: list.values.slice(0, 100), hasMore: true, total: list.total ?? list.values.length } };
    },
  };
}

function promptTool(name: string, getter: PromptGetter): RegisteredTool {
  return {
    info: { name: CATALOG_BUILTINS.getPrompt, description: "", inputSchema: {}, job: false },
    input: GetArgs,
    output: GetPromptResultSchema,
    scope: promptScope(name),
    handler: async (args: unknown, ctx: ToolContext) => {
      const result = await getter((args as z.infer<typeof GetArgs>).arguments ?? {}, ctx);
      if (typeof result === "string") return { messages: [{ role: "user", content: { type: "text", text: result } }] };
      return result;
    },
  };
}

// ---- the caller's side ------------------------------------------------------------------

/** What the caller side needs: one request with retries (Caller.request), its result. */
export type CatalogRequest = (tool: string, args: unknown) => Promise<unknown>;

function parseAnswer<T>(schema: z.ZodType<T>, result: unknown, tool: string): T {
  const parsed = schema.safeParse(result);
  if (!parsed.success) throw new ZmcpError("bad_frame", `invalid ${tool} answer: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** Every page of a listing built-in, followed within {@link MAX_PAGES}. */
async function listAll<T>(request: CatalogRequest, tool: string, key: string, item: z.ZodType<T>): Promise<T[]> {
  const schema = z.object({ [key]: z.array(item), nextCursor: z.string().optional() });
  const out: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const answer = parseAnswer(schema, await request(tool, cursor === undefined ? {} : { cursor }), tool) as Record<string, unknown>;
    out.push(...(answer[key] as T[]));
    cursor = answer["nextCursor"] as string | undefined;
    if (cursor === undefined) return out;
  }
  throw new ZmcpError("bad_frame", `${tool}: more than ${MAX_PAGES} pages`);
}

export function listResources(request: CatalogRequest): Promise<ResourceInfo[]> {
  return listAll(request, CATALOG_BUILTINS.resources, "resources", ResourceInfoSchema);
}
export function listResourceTemplates(request: CatalogRequest): Promise<ResourceTemplateInfo[]> {
  return listAll(request, CATALOG_BUILTINS.templates, "resourceTemplates", ResourceTemplateInfoSchema);
}
export function listPrompts(request: CatalogRequest): Promise<PromptInfo[]> {
  return listAll(request, CATALOG_BUILTINS.prompts, "prompts", PromptInfoSchema);
}
export async function readResource(request: CatalogRequest, uri: string): Promise<ReadResourceResult> {
  return parseAnswer(ReadResourceResultSchema, await request(CATALOG_BUILTINS.read, { uri }), CATALOG_BUILTINS.read);
}
export async function complete(
  request: CatalogRequest,
  ref: CompletionRef,
  argument: { name: string; value: string },
  context: Record<string, string> = {},
): Promise<CompleteResult["completion"]> {
  const args = { ref, argument, ...(Object.keys(context).length > 0 ? { context: { arguments: context } } : {}) };
  return parseAnswer(CompleteResultSchema, await request(CATALOG_BUILTINS.complete, args), CATALOG_BUILTINS.complete).completion;
}

export async function getPrompt(request: CatalogRequest, name: string, args: Record<string, string> = {}): Promise<GetPromptResult> {
  return parseAnswer(GetPromptResultSchema, await request(CATALOG_BUILTINS.getPrompt, { name, arguments: args }), CATALOG_BUILTINS.getPrompt);
}
