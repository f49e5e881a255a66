/**
 * `expose`'s resources and prompts: mesh agents' `resources/*` and `prompts/*` built-ins
 * (src/agent/resources.ts) shown to MCP clients.
 *
 * Naming follows the tools' (expose.ts): when names are prefixed, a prompt `p` of the target
 * labelled `bob` is `bob__p`, and a resource (or template) URI `u` is `zmcp://bob/u`: the label
 * tells the bridge where a read goes, also for a URI the client expanded from a template (the
 * prefix has no `{`). Contents read back carry the exposed URI. Unprefixed, names and URIs are
 * the agents' own; a read goes to the target that listed the URI, or whose template matches
 * it, first target first.
 *
 * Listings are asked of every target at each client listing (no cache: a stateless HTTP
 * exchange sees what the mesh offers now), each within `listTimeout`; a target that does not
 * answer is left out and logged. Pages are cut as the tools' are (the cursor is the offset).
 *
 * Errors: the mesh's `unknown_tool` (no such resource or prompt) is MCP's resource-not-found
 * (-32002) for reads and InvalidParams for prompts; `invalid_args` and `token_scope` are
 * InvalidParams; what kept an answer from coming is as for tools (toMcpError).
 */
import {
  CompleteRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type CompleteResult,
  type GetPromptResult,
  type Prompt,
  type ReadResourceResult,
  type Resource,
  type ResourceTemplate,
} from "@modelcontextprotocol/sdk/types.js";
import type { Agent } from "../agent/agent.js";
import { uriTemplateMatcher } from "../agent/resources.js";
import { RemoteError, type ZmcpError } from "../errors.js";
import type { Logger } from "../support/log.js";
import type { ExposeTarget } from "./expose.js";
import type { HandlerHost } from "./expose-2026.js";

/** The MCP error code for a resource that is not there (the specification's -32002). */
export const RESOURCE_NOT_FOUND = -32002;

export interface CatalogOptions {
  agent: Agent;
  targets: ExposeTarget[];
  prefixed: boolean;
  separator: string;
  timeout: number;
  listTimeout: number;
  pageSize: number;
  log: Logger;
  page: <T>(items: T[], cursor: string | undefined, size: number) => { items: T[]; nextCursor?: string };
}

const URI_SCHEME = "zmcp://";

/** What the subscriptions (expose-subscriptions.ts) need of the catalog: the exposed listings, and where an exposed URI goes. */
export interface CatalogAccess {
  resources(): Promise<Array<{ target: ExposeTarget; resource: Resource }>>;
  templates(): Promise<Array<{ target: ExposeTarget; template: ResourceTemplate; original: string }>>;
  prompts(): Promise<Array<{ target: ExposeTarget; prompt: Prompt; original: string }>>;
  /** An exposed URI → its target and the agent's URI; throws McpError RESOURCE_NOT_FOUND. */
  routeUri(uri: string): Promise<{ target: ExposeTarget; uri: string }>;
}

/** Adds the resource and prompt handlers to `server` (which must declare the `resources` and `prompts` capabilities). */
export function addCatalogHandlers(server: HandlerHost, o: CatalogOptions): CatalogAccess {
  const byLabel = new Map(o.targets.map((t) => [t.label, t]));
  const exposedUri = (t: ExposeTarget, uri: string) => (o.prefixed ? `${URI_SCHEME}${t.label}/${uri}` : uri);
  const exposedName = (t: ExposeTarget, name: string) => (o.prefixed ? `${t.label}${o.separator}${name}` : name);

  /** Every target's listing (those that answer), in target order. */
  async function each<T>(what: string, list: (t: ExposeTarget) => Promise<T[]>): Promise<Array<[ExposeTarget, T[]]>> {
    const out = await Promise.all(
      o.targets.map(async (t): Promise<[ExposeTarget, T[]]> => {
        try {
          return [t, await list(t)];
        } catch (err) {
          const e = err as ZmcpError;
          // An agent without these built-ins (the Python client's, an older one) offers none: not worth a warning each listing.
          if (e.code === "unknown_tool") o.log.debug(`${what}: not offered`, { target: t.address });
          else o.log.warn(`${what} failed`, { target: t.address, code: e.code, message: e.message });
          return [t, []];
        }
      }),
    );
    return out;
  }
  const opts = () => ({ timeout: o.listTimeout });

  async function resources(): Promise<Array<{ target: ExposeTarget; resource: Resource }>> {
    const seen = new Set<string>();
    const out: Array<{ target: ExposeTarget; resource: Resource }> = [];
    for (const [target, list] of await each("resources/list", (t) => o.agent.listResources(t.address, opts()))) {
      for (const r of list) {
        const uri = exposedUri(target, r.uri);
        if (seen.has(uri)) continue; // unprefixed clash: the first target keeps it, as for tools
        seen.add(uri);
        out.push({ target, resource: { ...(r as Resource), uri, _meta: { "zmcp/target": target.address, "zmcp/uri": r.uri } } });
      }
    }
    return out;
  }

  async function templates(): Promise<Array<{ target: ExposeTarget; template: ResourceTemplate; original: string }>> {
    const seen = new Set<string>();
    const out: Array<{ target: ExposeTarget; template: ResourceTemplate; original: string }> = [];
    for (const [target, list] of await each("resources/templates/list", (t) => o.agent.listResourceTemplates(t.address, opts()))) {
      for (const r of list) {
        const uriTemplate = exposedUri(target, r.uriTemplate);
        if (seen.has(uriTemplate)) continue;
        seen.add(uriTemplate);
        out.push({ target, original: r.uriTemplate, template: { ...(r as ResourceTemplate), uriTemplate, _meta: { "zmcp/target": target.address } } });
      }
    }
    return out;
  }

  async function prompts(): Promise<Array<{ target: ExposeTarget; prompt: Prompt; original: string }>> {
    const seen = new Set<string>();
    const out: Array<{ target: ExposeTarget; prompt: Prompt; original: string }> = [];
    for (const [target, list] of await each("prompts/list", (t) => o.agent.listPrompts(t.address, opts()))) {
      for (const p of list) {
        const name = exposedName(target, p.name);
        if (seen.has(name)) continue;
        seen.add(name);
        out.push({ target, original: p.name, prompt: { ...(p as Prompt), name, _meta: { "zmcp/target": target.address, "zmcp/prompt": p.name } } });
      }
    }
    return out;
  }

  /** An exposed URI → the target and the agent's URI. */
  async function routeUri(uri: string): Promise<{ target: ExposeTarget; uri: string }> {
    if (o.prefixed) {
      if (uri.startsWith(URI_SCHEME)) {
        const rest = uri.slice(URI_SCHEME.length);
        const slash = rest.indexOf("/");
        const target = slash > 0 ? byLabel.get(rest.slice(0, slash)) : undefined;
        if (target) return { target, uri: rest.slice(slash + 1) };
      }
      throw new McpError(RESOURCE_NOT_FOUND, `Resource ${uri} not found`, { uri });
    }
    if (o.targets.length === 1) return { target: o.targets[0]!, uri };
    const listed = (await resources()).find((r) => r.resource.uri === uri);
    if (listed) return { target: listed.target, uri };
    const matched = (await templates()).find((t) => uriTemplateMatcher(t.original)(uri) !== undefined);
    if (matched) return { target: matched.target, uri };
    throw new McpError(RESOURCE_NOT_FOUND, `Resource ${uri} not found`, { uri });
  }

  async function routePrompt(name: string): Promise<{ target: ExposeTarget; name: string }> {
    if (o.prefixed) {
      const at = name.indexOf(o.separator);
      const target = at > 0 ? byLabel.get(name.slice(0, at)) : undefined;
      if (target) return { target, name: name.slice(at + o.separator.length) };
    } else if (o.targets.length === 1) {
      return { target: o.targets[0]!, name };
    } else {
      const found = (await prompts()).find((p) => p.prompt.name === name);
      if (found) return { target: found.target, name: found.original };
    }
    throw new McpError(ErrorCode.InvalidParams, `Prompt ${name} not found`);
  }

  addCompletion(server, o, {
    prompt: routePrompt,
    // A template is named by its exposed URI template: prefixed, the label says where it goes; unprefixed, the target that lists it.
    template: async (uri) => {
      if (!o.prefixed) {
        const found = o.targets.length === 1 ? { target: o.targets[0]! } : (await templates()).find((t) => t.original === uri);
        if (found) return { target: found.target, uri };
      }
      if (uri.startsWith(URI_SCHEME)) {
        const rest = uri.slice(URI_SCHEME.length);
        const slash = rest.indexOf("/");
        const target = slash > 0 ? byLabel.get(rest.slice(0, slash)) : undefined;
        if (target) return { target, uri: rest.slice(slash + 1) };
      }
      throw new McpError(ErrorCode.InvalidParams, `Resource template ${uri} not found`);
    },
  });
  server.setRequestHandler(ListResourcesRequestSchema, async (request) => {
    const { items, nextCursor } = o.page((await resources()).map((r) => r.resource), request.params?.cursor, o.pageSize);
    return { resources: items, ...(nextCursor === undefined ? {} : { nextCursor }) };
  });
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async (request) => {
    const { items, nextCursor } = o.page((await templates()).map((t) => t.template), request.params?.cursor, o.pageSize);
    return { resourceTemplates: items, ...(nextCursor === undefined ? {} : { nextCursor }) };
  });
  server.setRequestHandler(ListPromptsRequestSchema, async (request) => {
    const { items, nextCursor } = o.page((await prompts()).map((p) => p.prompt), request.params?.cursor, o.pageSize);
    return { prompts: items, ...(nextCursor === undefined ? {} : { nextCursor }) };
  });
  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra): Promise<ReadResourceResult> => {
    const route = await routeUri(request.params.uri);
    try {
      const result = await o.agent.readResource(route.target.address, route.uri, { timeout: o.timeout, signal: extra.signal });
      // Contents about the URI asked for carry the exposed URI back; others (a server may add some) get the target's prefix.
      return { contents: result.contents.map((c) => ({ ...c, uri: c.uri === route.uri ? request.params.uri : exposedUri(route.target, c.uri) })) };
    } catch (err) {
      throw catalogError(err, `resource ${request.params.uri}`, RESOURCE_NOT_FOUND);
    }
  });
  server.setRequestHandler(GetPromptRequestSchema, async (request, extra): Promise<GetPromptResult> => {
    const route = await routePrompt(request.params.name);
    try {
      return (await o.agent.getPrompt(route.target.address, route.name, request.params.arguments ?? {}, { timeout: o.timeout, signal: extra.signal })) as GetPromptResult;
    } catch (err) {
      throw catalogError(err, `prompt ${request.params.name}`, ErrorCode.InvalidParams);
    }
  });
  return { resources, templates, prompts, routeUri };
}

/** Adds the `completion/complete` handler (the server must declare the `completions` capability). */
function addCompletion(server: HandlerHost, o: CatalogOptions, route: { prompt: (name: string) => Promise<{ target: ExposeTarget; name: string }>; template: (uri: string) => Promise<{ target: ExposeTarget; uri: string }> }): void {
  server.setRequestHandler(CompleteRequestSchema, async (request, extra): Promise<CompleteResult> => {
    const { ref, argument, context } = request.params;
    const routed = ref.type === "ref/prompt" ? await route.prompt(ref.name).then((r) => ({ target: r.target, ref: { type: "ref/prompt" as const, name: r.name } })) : await route.template(ref.uri).then((r) => ({ target: r.target, ref: { type: "ref/resource" as const, uri: r.uri } }));
    try {
      const completion = await o.agent.complete(routed.target.address, routed.ref, argument, context?.arguments ?? {}, { timeout: o.timeout, signal: extra.signal });
      return { completion };
    } catch (err) {
      throw catalogError(err, `completion of ${ref.type === "ref/prompt" ? ref.name : ref.uri}`, ErrorCode.InvalidParams);
    }
  });
}

/** A mesh answer refusing a read or get → the MCP error; anything else as for tools. */
export function catalogError(err: unknown, what: string, notFound: number): unknown {
  if (err instanceof RemoteError) {
    if (err.code === "unknown_tool") return new McpError(notFound, `${what} not found: ${err.message}`, { code: err.code });
    if (err.code === "invalid_args" || err.code === "token_scope") return new McpError(ErrorCode.InvalidParams, `${what}: ${err.code}: ${err.message}`, { code: err.code });
    return new McpError(ErrorCode.InternalError, `${what}: ${err.code}: ${err.message}`, { code: err.code });
  }
  return err;
}
