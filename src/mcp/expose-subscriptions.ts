/**
 * `expose`'s resource subscriptions and list-changed notifications, for an MCP client on a
 * long-lived connection (stdio).
 *
 * - `resources/subscribe` to an exposed resource: the bridge reads it at once (the read's scope
 *   is checked as for `resources/read`, and the contents' digest is the baseline), then
 *   re-reads every subscribed resource each `interval` and sends
 *   `notifications/resources/updated` when the digest changed (or the resource went away).
 *   `resources/unsubscribe` stops that. At most `maxSubscriptions` at once.
 * - Every `listInterval` (and on {@link ExposeSubscriptions.recheck}, which the CLI runs on
 *   SIGHUP) the targets' resources, templates and prompts are listed again;
 *   `notifications/resources/list_changed` / `notifications/prompts/list_changed` go out when
 *   a listing differs from the previous one. (`notifications/tools/list_changed` comes from the
 *   tool listing's own refresh: expose-tools.ts.)
 *
 * How a mesh agent signals an update: by what its `resources/read` returns. No new wire
 * element (docs/PROTOCOL.md §9.1): the agent keeps no subscriber state (no per-client table,
 * nothing lost when it restarts, no job slot held per subscription), `svc:` replicas and
 * attached MCP servers need nothing, and Python or older agents work as they are. The price is
 * one read per subscribed resource per interval, bounded by `maxSubscriptions`; a read that
 * brings no answer (timeout, no route) says nothing, so an outage is not reported as a change.
 *
 * Stateless HTTP (`expose --http`) offers neither subscriptions nor list-changed: under the
 * 2025 Streamable HTTP a server notifies outside a request only on a session's GET stream,
 * which a stateless server does not have; the 2026-07-28 protocol's `subscriptions/listen`
 * (a long-lived request whose stream carries these notifications) is the way there, and
 * {@link ExposeSubscriptions} is its source once the bridge speaks that version.
 */
import { createHash } from "node:crypto";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { ErrorCode, McpError, SubscribeRequestSchema, UnsubscribeRequestSchema, type ServerCapabilities } from "@modelcontextprotocol/sdk/types.js";
import type { Agent } from "../agent/agent.js";
import { describeThrown, RemoteError } from "../errors.js";
import type { Logger } from "../support/log.js";
import { catalogError, RESOURCE_NOT_FOUND, type CatalogAccess } from "./expose-catalog.js";
import type { ExposeTarget } from "./expose-tools.js";

export const SUBSCRIPTION_DEFAULTS = {
  /** Re-read subscribed resources this often, ms; 0 = no subscriptions. */
  interval: 5_000,
  /** Most resources subscribed at once (each costs one read per interval). */
  maxSubscriptions: 100,
} as const;

export interface SubscriptionOptions {
  agent: Agent;
  /** Re-read subscribed resources this often, ms; 0 = subscriptions not offered. */
  interval: number;
  /** Re-list resources, templates and prompts this often, ms; 0 = never (then no list-changed). */
  listInterval: number;
  maxSubscriptions: number;
  /** Deadline of one read or listing, ms. */
  timeout: number;
  log: Logger;
}

/** Digest of a value's JSON: what "changed" means. */
const digestOf = (value: unknown) => createHash("sha256").update(JSON.stringify(value)).digest("base64url");
/** The digest of a resource that is no longer there. */
const GONE = "gone";

interface Watched {
  target: ExposeTarget;
  /** The agent's URI (the exposed one is the key). */
  uri: string;
  digest: string;
}

/** The subscriptions and catalog watch of one long-lived MCP server. */
export class ExposeSubscriptions {
  readonly #o: SubscriptionOptions;
  readonly #watched = new Map<string, Watched>();
  #server: Server | undefined;
  #catalog: CatalogAccess | undefined;
  #lists: { resources?: string; prompts?: string } = {};
  #timers: NodeJS.Timeout[] = [];
  #polling: Promise<void> | undefined;
  #listing: Promise<void> | undefined;
  #closed = false;

  constructor(options: SubscriptionOptions) {
    this.#o = options;
  }

  /** What the server declares: subscribe only when offered, listChanged only when re-listing. */
  capabilities(): Pick<ServerCapabilities, "resources" | "prompts"> {
    const listChanged = this.#o.listInterval > 0;
    return { resources: { subscribe: this.#o.interval > 0, listChanged }, prompts: { listChanged } };
  }

  /** The subscribed exposed URIs. */
  get subscribed(): string[] {
    return [...this.#watched.keys()];
  }

  /** Adds the subscribe/unsubscribe handlers to `server` (the one notifications go to), whose listings `catalog` gives. */
  attach(server: Server, catalog: CatalogAccess): void {
    this.#server = server;
    this.#catalog = catalog;
    if (this.#o.interval <= 0) return;
    server.setRequestHandler(SubscribeRequestSchema, async (request, extra) => {
      const exposed = request.params.uri;
      if (this.#watched.has(exposed)) return {};
      const max = this.#o.maxSubscriptions;
      if (this.#watched.size >= max) throw new McpError(ErrorCode.InvalidRequest, `at most ${max} resource subscriptions at once; unsubscribe from one first`);
      const route = await this.#catalog!.routeUri(exposed);
      let digest: string;
      try {
        digest = digestOf((await this.#o.agent.readResource(route.target.address, route.uri, { timeout: this.#o.timeout, signal: extra.signal })).contents);
      } catch (err) {
        // Refused as the read would be: what one may not read, one may not watch.
        throw catalogError(err, `resource ${exposed}`, RESOURCE_NOT_FOUND);
      }
      // Checked again: other subscriptions may have been added while this one read.
      if (this.#watched.size >= max) throw new McpError(ErrorCode.InvalidRequest, `at most ${max} resource subscriptions at once; unsubscribe from one first`);
      this.#watched.set(exposed, { target: route.target, uri: route.uri, digest });
      return {};
    });
    server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
      this.#watched.delete(request.params.uri);
      return {};
    });
  }

  /** Starts the timers (and takes the first listing, the baseline of list-changed). */
  start(): void {
    if (this.#closed || !this.#catalog) return;
    if (this.#o.interval > 0) this.#timers.push(setInterval(() => void this.pollResources(), this.#o.interval).unref());
    if (this.#o.listInterval > 0) {
      this.#timers.push(setInterval(() => void this.checkLists(), this.#o.listInterval).unref());
      void this.checkLists();
    }
  }

  /** Re-reads the subscribed resources and re-lists the catalog now (SIGHUP). */
  async recheck(): Promise<void> {
    if (!this.#catalog) return;
    await Promise.all([this.pollResources(), this.#o.listInterval > 0 ? this.checkLists() : undefined]);
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#watched.clear();
  }

  /** One round of re-reading the subscribed resources; a round still running is joined, not doubled. */
  pollResources(): Promise<void> {
    this.#polling ??= this.#pollRound().finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  async #pollRound(): Promise<void> {
    await Promise.all(
      [...this.#watched].map(async ([exposed, w]) => {
        let digest: string;
        try {
          digest = digestOf((await this.#o.agent.readResource(w.target.address, w.uri, { timeout: this.#o.timeout })).contents);
        } catch (err) {
          // Gone is a change (the client re-reads and learns it); no answer says nothing.
          if (err instanceof RemoteError && err.code === "unknown_tool") digest = GONE;
          else {
            this.#o.log.debug("subscribed resource not read", { uri: exposed, error: describeThrown(err) });
            return;
          }
        }
        // Unsubscribed (or re-subscribed) meanwhile: this round's read is not news for it.
        if (this.#watched.get(exposed) !== w || digest === w.digest) return;
        w.digest = digest;
        await this.#notify(() => this.#server!.sendResourceUpdated({ uri: exposed }));
      }),
    );
  }

  /** One round of re-listing; a round still running is joined. */
  checkLists(): Promise<void> {
    this.#listing ??= this.#listRound().finally(() => (this.#listing = undefined));
    return this.#listing;
  }

  async #listRound(): Promise<void> {
    const [resources, templates, prompts] = await Promise.all([this.#catalog!.resources(), this.#catalog!.templates(), this.#catalog!.prompts()]);
    const next = { resources: digestOf([resources.map((r) => r.resource), templates.map((t) => t.template)]), prompts: digestOf(prompts.map((p) => p.prompt)) };
    const before = this.#lists;
    this.#lists = next;
    if (before.resources !== undefined && before.resources !== next.resources) await this.#notify(() => this.#server!.sendResourceListChanged());
    if (before.prompts !== undefined && before.prompts !== next.prompts) await this.#notify(() => this.#server!.sendPromptListChanged());
  }

  async #notify(send: () => Promise<void>): Promise<void> {
    if (this.#closed || !this.#server) return;
    // A client gone away is not an error of the bridge's: the connection's close ends the bridge.
    await send().catch((err: unknown) => this.#o.log.debug("notification not sent", { error: describeThrown(err) }));
  }
}
