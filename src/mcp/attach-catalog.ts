/**
 * `zmq-mcp attach`, the resource and prompt mirror: the server's resources, resource
 * templates and prompts registered on the agent (added, changed, withdrawn at each listing),
 * and mesh `resources/read`, `prompts/get` and `completion/complete` passed to the server.
 * Kept apart from the tool mirror (attach-tools.ts): these are extras, listed only when the
 * server has the capability, and a server that fails to list them still serves its tools.
 */
import type { Prompt, Resource, ResourceTemplate } from "@modelcontextprotocol/sdk/types.js";
import type { Agent, ToolContext } from "../agent/agent.js";
import type { CompleteResult, Completer, CompletionRef, GetPromptResult, ReadResourceResult } from "../agent/resources.js";
import type { Logger } from "../support/log.js";
import type { AttachOptions } from "./attach.js";
import { listPages, meshError, type Child, type ReadyFn } from "./attach-server.js";

export interface CatalogMirrorOptions {
  agent: Agent;
  options: AttachOptions;
  log: Logger;
  ready: ReadyFn;
  /** Whether the attachment is closed (a listing that ends after close registers nothing). */
  closed: () => boolean;
}

/** The server's resources, resource templates and prompts on the agent. */
export class CatalogMirror {
  readonly #agent: Agent;
  readonly #options: AttachOptions;
  readonly #log: Logger;
  readonly #ready: ReadyFn;
  readonly #closed: () => boolean;
  /** Resource URIs and templates, and prompt names, registered on the agent → their signature. */
  readonly #resources = new Map<string, string>();
  readonly #prompts = new Map<string, string>();

  constructor(o: CatalogMirrorOptions) {
    this.#agent = o.agent;
    this.#options = o.options;
    this.#log = o.log;
    this.#ready = o.ready;
    this.#closed = o.closed;
  }

  /** The resource URIs and templates offered on the mesh. */
  get resources(): string[] {
    return [...this.#resources.keys()];
  }

  /** The prompt names offered on the mesh. */
  get prompts(): string[] {
    return [...this.#prompts.keys()];
  }

  /** Withdraws every resource, template and prompt from the agent. */
  clear(): void {
    for (const uri of this.#resources.keys()) this.#agent.removeResource(uri);
    this.#resources.clear();
    for (const name of this.#prompts.keys()) this.#agent.removePrompt(name);
    this.#prompts.clear();
  }

  /**
   * Lists the server's resources, resource templates and prompts (each kind only if the
   * server has the capability, and only if not turned off) and brings the agent's
   * registrations in line: added, changed (registered again), withdrawn.
   */
  async sync(child: Child): Promise<void> {
    const caps = child.client.getServerCapabilities() ?? {};
    const o = this.#options;
    const resources: Array<[string, Resource | ResourceTemplate]> = [];
    const prompts: Prompt[] = [];
    if (caps.resources && o.resources !== false) {
      for (const r of await listPages((cursor) => child.client.listResources(cursor), (p) => p.resources)) resources.push([r.uri, r]);
      for (const t of await listPages((cursor) => child.client.listResourceTemplates(cursor), (p) => p.resourceTemplates)) resources.push([t.uriTemplate, t]);
    }
    if (caps.prompts && o.prompts !== false) prompts.push(...(await listPages((cursor) => child.client.listPrompts(cursor), (p) => p.prompts)));
    if (this.#closed()) return;
    // Completion passes through when the server offers it (for prompts and templates alike).
    const completer = (ref: CompletionRef): { complete?: Completer } =>
      caps.completions ? { complete: (argument, context, ctx) => this.#complete(ref, argument, context.arguments, ctx) } : {};

    const seenResources = new Set<string>();
    for (const [uri, r] of resources) {
      if (seenResources.has(uri)) continue;
      seenResources.add(uri);
      const signature = JSON.stringify(r);
      if (this.#resources.get(uri) === signature) continue;
      if (this.#resources.delete(uri)) this.#agent.removeResource(uri);
      try {
        this.#agent.resource(
          uri,
          {
            name: r.name,
            ...(r.title === undefined ? {} : { title: r.title }),
            ...(r.description === undefined ? {} : { description: r.description }),
            ...(r.mimeType === undefined ? {} : { mimeType: r.mimeType }),
            ...("size" in r && typeof r.size === "number" ? { size: r.size } : {}),
            ...(r.annotations === undefined ? {} : { annotations: r.annotations as Record<string, unknown> }),
            ...("uriTemplate" in r ? completer({ type: "ref/resource", uri: uri }) : {}),
          },
          (target, ctx) => this.#read(target, ctx),
        );
        this.#resources.set(uri, signature);
      } catch (err) {
        this.#log.warn("resource skipped", { uri: uri.slice(0, 256), error: (err as Error).message });
      }
    }
    for (const uri of [...this.#resources.keys()]) {
      if (!seenResources.has(uri)) {
        this.#agent.removeResource(uri);
        this.#resources.delete(uri);
      }
    }

    const seenPrompts = new Set<string>();
    for (const p of prompts) {
      if (seenPrompts.has(p.name)) continue;
      seenPrompts.add(p.name);
      const signature = JSON.stringify(p);
      if (this.#prompts.get(p.name) === signature) continue;
      if (this.#prompts.delete(p.name)) this.#agent.removePrompt(p.name);
      try {
        this.#agent.prompt(
          p.name,
          {
            ...(p.title === undefined ? {} : { title: p.title }),
            ...(p.description === undefined ? {} : { description: p.description }),
            ...(p.arguments === undefined
              ? {}
              : {
                  arguments: p.arguments.map((a) => ({
                    name: a.name,
                    ...(a.description === undefined ? {} : { description: a.description }),
                    ...(a.required === undefined ? {} : { required: a.required }),
                  })),
                }),
            ...completer({ type: "ref/prompt", name: p.name }),
          },
          (args, ctx) => this.#getPrompt(p.name, args, ctx),
        );
        this.#prompts.set(p.name, signature);
      } catch (err) {
        this.#log.warn("prompt skipped", { prompt: p.name.slice(0, 256), error: (err as Error).message });
      }
    }
    for (const name of [...this.#prompts.keys()]) {
      if (!seenPrompts.has(name)) {
        this.#agent.removePrompt(name);
        this.#prompts.delete(name);
      }
    }
    if (resources.length + prompts.length > 0) this.#log.info("resources and prompts", { resources: this.#resources.size, prompts: [...this.#prompts.keys()] });
  }

  /** A mesh `resources/read` → the server's, within the caller's deadline (waiting for a restart). */
  async #read(uri: string, ctx: ToolContext): Promise<ReadResourceResult> {
    const child = await this.#ready(ctx.deadline, ctx.signal);
    try {
      return (await child.client.readResource({ uri }, { timeout: Math.max(1, ctx.deadline - Date.now()), signal: ctx.signal })) as ReadResourceResult;
    } catch (err) {
      throw meshError(err, uri);
    }
  }

  /** A mesh `completion/complete` → the server's. */
  async #complete(ref: CompletionRef, argument: { name: string; value: string }, args: Record<string, string>, ctx: ToolContext): Promise<CompleteResult["completion"]> {
    const child = await this.#ready(ctx.deadline, ctx.signal);
    try {
      const params = { ref, argument, ...(Object.keys(args).length > 0 ? { context: { arguments: args } } : {}) };
      return (await child.client.complete(params, { timeout: Math.max(1, ctx.deadline - Date.now()), signal: ctx.signal })).completion;
    } catch (err) {
      throw meshError(err, "completion/complete");
    }
  }

  /** A mesh `prompts/get` → the server's. */
  async #getPrompt(name: string, args: Record<string, string>, ctx: ToolContext): Promise<GetPromptResult> {
    const child = await this.#ready(ctx.deadline, ctx.signal);
    try {
      return (await child.client.getPrompt({ name, arguments: args }, { timeout: Math.max(1, ctx.deadline - Date.now()), signal: ctx.signal })) as GetPromptResult;
    } catch (err) {
      throw meshError(err, name);
    }
  }
}
