/**
 * The agent SDK: one DEALER socket, one curve key. An agent offers tools (arguments checked
 * with zod), calls other agents' tools, runs long tools as jobs, and may serve as a replica of
 * a named service. Every payload is sealed end to end.
 *
 * This class is a facade: it wires the parts, each with one job (connection, inbound checks,
 * caller, job follower, tools, handler, responder, replica, directory, stats), and closes them.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import { loadCertificate, loadSecretCertificate, type Certificate } from "../auth/certs.js";
import { TokenSource } from "../auth/token-source.js";
import { ConfigError, ZmcpError } from "../errors.js";
import { withDeadline } from "../support/deadline.js";
import type { Logger } from "../support/log.js";
import { LogThrottle } from "../support/log-throttle.js";
import { newRegistry, type Registry } from "../support/metrics.js";
import { Sealer } from "../wire/seal.js";
import { isZ85Key } from "../wire/z85.js";
import type { Caller } from "./caller.js";
import { registerCircuitMetrics } from "./circuit.js";
import { AliveMark, markPath } from "./alive-mark.js";
import { Connection } from "./connection.js";
import type { AgentCore } from "./core.js";
import { DirectLinks, registerDirectMetrics, type DirectLinkStats } from "./direct-links.js";
import { Directory } from "./directory.js";
import { Listener, type ListenerStats } from "./listener.js";
import type { JobFollower } from "./follower.js";
import type { Handler } from "./handler.js";
import type { Inbound } from "./inbound.js";
import { createParts } from "./parts.js";
import type { Job, JobState } from "./jobs.js";
import { AGENT_DEFAULTS, resolveAgentOptions, type AgentOptions, type CallOptions, type ResolvedAgentOptions } from "./options.js";
import type { Replica } from "./replica.js";
import type { EventKeyContext } from "../events/sealer.js";
import { Publisher } from "./publisher.js";
import { Subscriber, type PublicationHandler, type SubscribeOptions, type Subscription } from "./subscriber.js";
import { newAgentStats, registerAgentMetrics, type AgentStats } from "./stats.js";
import * as catalog from "./resources.js";
import type { CompleteResult, CompletionRef, GetPromptResult, PromptGetter, PromptInfo, PromptSpec, ReadResourceResult, ResourceInfo, ResourceReader, ResourceSpec, ResourceTemplateInfo } from "./resources.js";
import { BUILTIN_TOOLS, ToolRegistry, type ToolHandler, type ToolInfo, type ToolSpec } from "./tools.js";

export type { AgentOptions, CallOptions } from "./options.js";
export type { AgentStats, DropReason } from "./stats.js";
export type { Gaps, Publication, PublicationHandler, SubscribeOptions, Subscription } from "./subscriber.js";
export type { ToolAnnotations, ToolContext, ToolHandler, ToolInfo, ToolSpec } from "./tools.js";

interface AgentEvents {
  publisher: Publisher;
  subscriber: Subscriber;
  close(): void;
}

function noEvents(what: string): ConfigError {
  return new ConfigError(`${what}() needs the \`events\` option (an events sealer factory, docs/EVENTS.md); this agent was connected without one`);
}

/** Call latencies kept for the histogram until `metrics` is first read (the most recent win). */
const EARLY_LATENCIES = 10_000;

export class Agent {
  readonly publicKey: string;
  readonly log: Logger;
  /**
   * Resolves once the agent is closed: with undefined after {@link Agent.close}, or with the
   * error that closed it otherwise: `displaced` (another connection with this key took its
   * route at a broker) or `revoked` (the broker no longer admits this key). Never rejects.
   */
  readonly closed: Promise<ZmcpError | undefined>;
  readonly stats: AgentStats = newAgentStats();
  #metrics: Registry | undefined;
  /**
   * Call latencies (s) observed before `metrics` was first read, fed into it then; bounded: a
   * ring of the most recent (a signed value: negative for a failed call), no allocation per call.
   */
  #earlyLatencies: Float64Array | undefined = new Float64Array(EARLY_LATENCIES);
  #earlyCount = 0;
  #observeLatency: (ok: boolean, seconds: number) => void = (ok, seconds) => {
    // -0 is not told apart from 0, so a failure is stored one below its negated value.
    this.#earlyLatencies![this.#earlyCount++ % EARLY_LATENCIES] = ok ? seconds : -seconds - 1;
  };
  #closedWith!: (reason: ZmcpError | undefined) => void;
  /** Why the agent closed; undefined while open (and after close(), whose reason is `closed`). */
  #closeReason: ZmcpError | undefined;
  #closed = false;
  readonly #closing = new AbortController();
  readonly #options: ResolvedAgentOptions;
  readonly #directory: Directory;
  readonly #tools = new ToolRegistry();
  readonly #connection: Connection;
  readonly #caller: Caller;
  readonly #follower: JobFollower;
  readonly #handler: Handler;
  readonly #replica: Replica;
  readonly #inbound: Inbound;
  #aliveMark: AliveMark | undefined;
  /** Direct links (docs/PROTOCOL.md §18): this agent's listener (`listen`) and its links to others (`direct`). */
  #listener: Listener | undefined;
  readonly #links: DirectLinks | undefined;
  /** Publish-subscribe, when the `events` option gave a sealer (docs/EVENTS.md). */
  readonly #events: AgentEvents | undefined;

  private constructor(options: ResolvedAgentOptions, cert: Required<Certificate>, serverKey: string) {
    this.publicKey = cert.publicKey;
    this.log = options.log;
    this.closed = new Promise((resolve) => (this.#closedWith = resolve));
    this.#options = options;
    this.#directory = new Directory(options.certs, this.log);
    let connection: Connection | undefined;
    const throttle = new LogThrottle(this.log, options.logInterval);
    const core: AgentCore = {
      publicKey: cert.publicKey,
      sealer: new Sealer(cert.secretKey),
      options,
      transport: { send: (frames) => connection!.send(frames) },
      directory: this.#directory,
      stats: this.stats,
      log: this.log,
      throttle,
      tokenSource: options.token === undefined ? undefined : new TokenSource(options.token, this.log),
      closing: this.#closing.signal,
      closedWith: () => this.#closeReason,
      directEndpoint: (peer) => (this.#listener?.admits(peer) ? (options.direct.listenAnnounce ?? this.#listener.endpoint) : undefined),
      isClosed: () => this.#closed,
    };
    const parts = createParts(core, serverKey, this.#tools);
    ({ handler: this.#handler, caller: this.#caller, follower: this.#follower, replica: this.#replica, inbound: this.#inbound } = parts);
    parts.observeLatency = (ok, seconds) => this.#observeLatency(ok, seconds);
    if (options.direct.direct) {
      // Asked through the broker, never on the link itself: once per callee, again after a
      // failed link's backoff, and every linkBackoff while a link is in use (the broker's
      // admission, a revocation included, is re-confirmed: direct-links.ts).
      const ask = (key: string, timeout: number) =>
        this.#caller.request(key, BUILTIN_TOOLS.endpoint, {}, { timeout, retry: false, circuit: false }, true).then((a) => {
          const result = a.response.result as { endpoint?: unknown } | null | undefined;
          return typeof result?.endpoint === "string" ? result.endpoint : null;
        });
      this.#links = this.#caller.links = new DirectLinks(core, cert.secretKey, options.direct, ask, (frames, path) => this.#inbound.accept(frames, path), (key, from, err) => this.#caller.nackedOnLink(key, from, err));
    }
    connection = new Connection(
      {
        serverKey,
        publicKey: cert.publicKey,
        secretKey: cert.secretKey,
        endpoints: options.endpoints,
        maxMessageBytes: options.maxMessageBytes,
        heartbeatInterval: options.heartbeatInterval,
        log: this.log,
        throttle,
        stats: this.stats,
      },
      {
        onPeer: (frames) => this.#inbound.accept(frames),
        onAck: (key) => this.#replica.acked(key),
        onStored: (key) => this.#caller.stored(key),
        onNack: (key, err) => this.#caller.nacked(key, err) || this.#replica.refused(key, err),
        onNotice: (err, message) => {
          // This connection will receive nothing more. Staying up would look alive while every
          // call to this key fails, so the agent closes, loudly.
          this.log.error(err.code === "displaced" ? "displaced: another process connected with this agent's key" : "revoked: the broker no longer admits this agent's key", {
            key: this.publicKey,
            message,
          });
          void this.#shutdown(err);
        },
        onLivenessTick: (handshake) => this.#replica.livenessTick(handshake, this.#connection.keepsLiveness),
      },
    );
    this.#connection = connection;
    this.#events = options.events && this.#startEvents(options.events, core);
    // After the parts: the inbound checks have read the previous process's mark (alive-mark.ts).
    if (options.stateDir !== undefined) {
      const mark = new AliveMark(markPath(options.stateDir, cert.publicKey));
      try {
        mark.start();
      } catch (err) {
        throw new ConfigError(`stateDir ${options.stateDir} cannot be written: ${(err as Error).message}`, { cause: err });
      }
      this.#aliveMark = mark;
    }
  }

  /** Builds the events sealer with what it may use of this agent, and the publisher and subscriber over it. */
  #startEvents(factory: NonNullable<ResolvedAgentOptions["events"]>, core: AgentCore): AgentEvents {
    const context: EventKeyContext = {
      publicKey: core.publicKey,
      call: (to, tool, args, options = {}) => this.#caller.call(to, tool, args, { ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }), ...(options.signal ? { signal: options.signal } : {}) }),
      signal: this.#closing.signal,
    };
    const sealer = factory(context);
    const subscriber = new Subscriber(core, sealer, (waitMs) => this.#replica.heartbeat(waitMs, true), AGENT_DEFAULTS.serveTimeout);
    this.#replica.subscriptions = () => subscriber.patterns();
    this.#replica.durableSubscriptions = () => subscriber.durablePatterns();
    this.#inbound.publications = (peer, header, headerBytes, body, stale) => subscriber.accept(peer, header, headerBytes, body, stale);
    this.#inbound.durableTopic = (topic) => subscriber.durableMatches(topic);
    return {
      publisher: new Publisher(core, sealer),
      subscriber,
      close: () => {
        subscriber.close();
        try {
          sealer.close();
        } catch (err) {
          this.log.warn("events sealer failed to close", { error: String(err) });
        }
      },
    };
  }

  /**
   * Prometheus metrics of this agent (a registry of its own, read from `stats` at scrape time;
   * serve it with `zmcp/metrics`). Created, and prom-client loaded, on first access.
   */
  get metrics(): Registry {
    if (this.#metrics) return this.#metrics;
    const registry = (this.#metrics = newRegistry());
    const latency = registerAgentMetrics(registry, this.stats, {
      handlersRunning: () => this.#handler.active,
      jobsRunning: () => this.#handler.jobs.running,
      callsPending: () => this.#caller.pending,
      answers: () => this.#handler.answers,
    });
    registerCircuitMetrics(registry, this.#caller.circuits, (destination) => this.#directory.nameOf(destination));
    registerDirectMetrics(registry, () => this.direct);
    this.#observeLatency = (ok, seconds) => (ok ? latency.ok : latency.error).observe(seconds);
    const early = this.#earlyLatencies;
    const n = Math.min(this.#earlyCount, EARLY_LATENCIES);
    for (let i = this.#earlyCount - n; early && i < this.#earlyCount; i++) {
      const v = early[i % EARLY_LATENCIES]!;
      this.#observeLatency(v >= 0, v >= 0 ? v : -v - 1);
    }
    this.#earlyLatencies = undefined;
    return registry;
  }

  /** Connects to the broker(s) and, unless `connectTimeout` is 0, waits for the CURVE handshake. */
  static async connect(options: AgentOptions): Promise<Agent> {
    const resolved = resolveAgentOptions(options);
    const cert = typeof options.cert === "string" ? loadSecretCertificate(options.cert) : options.cert;
    let serverKey = options.serverKey;
    if (!serverKey) {
      if (!options.certs) throw new ConfigError("serverKey or certs (holding broker.key) is required");
      const brokerCert = join(options.certs, "broker.key");
      if (!existsSync(brokerCert)) throw new ConfigError(`no serverKey given and ${brokerCert} does not exist`);
      serverKey = loadCertificate(brokerCert).publicKey;
    }
    if (!isZ85Key(serverKey)) throw new ConfigError("serverKey must be a 40-character Z85 key");

    const agent = new Agent(resolved, cert, serverKey);
    agent.#handler.connecting();
    const { connectTimeout, endpoints } = resolved;
    try {
      const { listen, listenAllow, listenDenyList, listenRateLimit } = resolved.direct;
      if (listen !== undefined) {
        agent.#listener = await Listener.start(
          { endpoint: listen, publicKey: cert.publicKey, secretKey: cert.secretKey, allow: listenAllow!, denyList: listenDenyList, rateLimit: listenRateLimit, maxMessageBytes: resolved.maxMessageBytes, log: agent.log, throttle: new LogThrottle(agent.log, resolved.logInterval) },
          (frames, via) => agent.#inbound.accept(frames, { kind: "listener", via }),
        );
      }
      const handshake = agent.#connection.open(connectTimeout > 0);
      if (connectTimeout > 0) await withDeadline(handshake, connectTimeout, `no CURVE handshake with ${endpoints.join(", ")} within ${connectTimeout} ms`);
    } catch (err) {
      await agent.close();
      throw err;
    }
    // A macrotask later, so that tools registered right after `await Agent.connect(...)` are
    // registered by then (handler.ts: until this, a request for an unknown tool is `busy`).
    setImmediate(() => agent.#handler.ready());
    return agent;
  }

  /**
   * Direct links (README "Direct links"): the endpoint this agent listens at (`listen`), and
   * counters of its listener and of its links to other agents (`direct: true`).
   */
  get direct(): { endpoint: string | undefined; listener: Readonly<ListenerStats> | undefined; links: Readonly<DirectLinkStats> & { open: number; known: number } | undefined } {
    const links = this.#links;
    return { endpoint: this.#listener?.endpoint, listener: this.#listener?.stats, links: links && { ...links.stats, open: links.size, known: links.known } };
  }

  /** The certificate name of a key, if known. */
  nameOf(key: string): string | undefined {
    return this.#directory.nameOf(key);
  }

  /** A name (from `certs`) or a Z85 key → Z85 key. Throws ZmcpError(unknown_peer). */
  resolve(to: string): string {
    return this.#directory.resolve(to);
  }

  /** Offers a tool. Its arguments are validated with `spec.input` before `handler` runs. */
  tool<I extends z.ZodType, O extends z.ZodType | undefined = undefined>(name: string, spec: ToolSpec<I, O>, handler: ToolHandler<I, O>): this {
    this.#tools.add(name, spec, handler);
    return this;
  }

  /**
   * Withdraws a tool: it leaves `tools/list` and new requests for it are answered
   * `unknown_tool`; runs already started finish. Returns false if no such tool was offered.
   */
  removeTool(name: string): boolean {
    return this.#tools.remove(name);
  }

  /**
   * Calls `tool` on `to` (a certificate name, a Z85 key, or `svc:NAME`) and resolves with its
   * result; for a job tool, with the job's result. Retries on `busy`, `no_route` and lost
   * answers within the deadline (the callee runs the tool once). Rejects with RemoteError (the
   * broker's or the peer's code), TimeoutError, or ZmcpError(aborted | closed | unknown_peer |
   * too_large | invalid_args).
   */
  call(to: string, tool: string, args: unknown = {}, options: CallOptions = {}): Promise<unknown> {
    return this.#caller.call(to, tool, args, options);
  }

  /**
   * Starts a job tool and returns its handle at once: `await job.result`,
   * `job.on("progress", ...)`, `job.cancel()`. The options' timeout covers the start only.
   */
  start(to: string, tool: string, args: unknown = {}, options: CallOptions = {}): Promise<Job> {
    return this.#caller.start(to, tool, args, options);
  }

  /** Polls a job started by this agent on `to` (the same address it was started on). */
  poll(to: string, jobId: string, options: CallOptions = {}): Promise<JobState> {
    return this.#caller.jobRequest(BUILTIN_TOOLS.poll, to, jobId, options);
  }

  /**
   * Re-attaches to a job this agent's key started on `to` (an id kept across a restart, say):
   * a handle fed by the runner's events (stored ones included, docs/DURABLE.md) and by polls,
   * the first at once. Throws ZmcpError(config) for an id that names no runner; the job fails
   * `unknown_job` when the runner no longer knows it (past its jobTtl).
   */
  job(to: string, jobId: string): Job {
    return this.#follower.job(to, jobId);
  }

  /** The tools `to` offers (its built-in `tools/list`), filtered by what this agent's token covers. */
  listTools(to: string, options: CallOptions = {}): Promise<ToolInfo[]> {
    return this.#caller.listTools(to, options);
  }

  // ---- resources and prompts (resources.ts) ----------------------------------------------

  /**
   * Offers a resource at `uri`, or a resource template when `uri` has `{...}` expressions
   * (`notes://{id}`: the reader gets `ctx.params.id`). Served by the built-ins
   * `resources/list`, `resources/templates/list` and `resources/read`; a read needs the scope
   * `read:<uri>` (or `spec.scope`) when tokens are checked.
   */
  resource(uri: string, spec: ResourceSpec, reader: ResourceReader): this {
    this.#tools.catalog.addResource(uri, spec, reader);
    return this;
  }

  /** Withdraws a resource or template. Returns false if none was offered under `uri`. */
  removeResource(uri: string): boolean {
    return this.#tools.catalog.removeResource(uri);
  }

  /** Offers a prompt, served by `prompts/list` and `prompts/get` (scope `prompt:<name>`, or `spec.scope`). */
  prompt(name: string, spec: PromptSpec, getter: PromptGetter): this {
    this.#tools.catalog.addPrompt(name, spec, getter);
    return this;
  }

  /** Withdraws a prompt. Returns false if no such prompt was offered. */
  removePrompt(name: string): boolean {
    return this.#tools.catalog.removePrompt(name);
  }

  /** The resources `to` offers (every page of its `resources/list`), filtered by this agent's token. */
  listResources(to: string, options: CallOptions = {}): Promise<ResourceInfo[]> {
    return catalog.listResources(this.#catalogRequest(to, options));
  }

  /** The resource templates `to` offers (`resources/templates/list`). */
  listResourceTemplates(to: string, options: CallOptions = {}): Promise<ResourceTemplateInfo[]> {
    return catalog.listResourceTemplates(this.#catalogRequest(to, options));
  }

  /** Reads a resource of `to` (`resources/read`). Rejects like {@link call}: a resource not offered is RemoteError(unknown_tool). */
  readResource(to: string, uri: string, options: CallOptions = {}): Promise<ReadResourceResult> {
    return catalog.readResource(this.#catalogRequest(to, options), uri);
  }

  /** The prompts `to` offers (`prompts/list`). */
  listPrompts(to: string, options: CallOptions = {}): Promise<PromptInfo[]> {
    return catalog.listPrompts(this.#catalogRequest(to, options));
  }

  /** Gets a prompt of `to` with its arguments (`prompts/get`). */
  getPrompt(to: string, name: string, args: Record<string, string> = {}, options: CallOptions = {}): Promise<GetPromptResult> {
    return catalog.getPrompt(this.#catalogRequest(to, options), name, args);
  }

  /**
   * Asks `to` for completions of one argument of a prompt, or one variable of a resource
   * template (`completion/complete`); `context` holds the arguments already chosen.
   */
  complete(
    to: string,
    ref: CompletionRef,
    argument: { name: string; value: string },
    context: Record<string, string> = {},
    options: CallOptions = {},
  ): Promise<CompleteResult["completion"]> {
    return catalog.complete(this.#catalogRequest(to, options), ref, argument, context);
  }

  #catalogRequest(to: string, options: CallOptions): catalog.CatalogRequest {
    return (tool, args) => this.#caller.call(to, tool, args, options);
  }

  /**
   * Serves as a replica of service `name`: callers address `svc:NAME` and the broker hands
   * their requests to a live replica. `cert` is the service's secret certificate, shared by
   * its replicas (default `<certs>/svc-NAME.key_secret`); the broker admits the replica only
   * if it proves it holds that key. Resolves once the broker has accepted the announcement.
   * With `durable: true` the service is declared durable (docs/DURABLE.md): a broker with a
   * store queues every request to `svc:NAME` in the service's work queue, `dur` or not, so
   * requests made while no replica is up wait for one. A broker older than this field refuses
   * the announcement `bad_frame` (serve rejects): durability is never silently dropped.
   */
  serve(name: string, options: { cert?: string | Required<Certificate>; timeout?: number; durable?: boolean } = {}): Promise<void> {
    return this.#replica.serve(name, options);
  }

  // ---- events: publish-subscribe (publisher.ts, subscriber.ts, docs/EVENTS.md) ------------

  /**
   * Publishes `data` on `topic` (dotted tokens, no wildcards), sealed with the topic's group key
   * by the `events` sealer, to every subscriber the broker knows now: at most once, no answer.
   * Resolves once sent. Rejects with ConfigError (no `events` option, an invalid topic),
   * ZmcpError(invalid_args) (a value subscribers could not read), ZmcpError(too_large), or the
   * sealer's error (`token_scope`, `unavailable`, ...).
   */
  publish(topic: string, data: unknown): Promise<void> {
    if (!this.#events) return Promise.reject(noEvents("publish"));
    return this.#events.publisher.publish(topic, data);
  }

  /**
   * Subscribes `handler` to `pattern` (`*`: one token, `>`: one or more trailing tokens). The
   * sealer joins the pattern first (a refusal rejects), then the broker is told and has
   * acknowledged when this resolves. Each subscription has a bounded queue; what it misses is
   * counted in `subscription.gaps`. Rejects with ConfigError (no `events` option, an invalid
   * pattern, more than 256 patterns), the sealer's error, or the broker's refusal.
   */
  subscribe(pattern: string, handler: PublicationHandler, options: SubscribeOptions = {}): Promise<Subscription> {
    if (!this.#events) return Promise.reject(noEvents("subscribe"));
    return this.#events.subscriber.subscribe(pattern, handler, options);
  }

  /**
   * The state of a job this agent runs, as `caller` may see it (for tools that expose polling
   * under their own name, like the reference protocol's `poll_job`). Throws ZmcpError(unknown_job | forbidden).
   */
  jobState(jobId: string, caller: string): JobState {
    return { ...this.#handler.jobs.get(jobId, caller) };
  }

  /** Closes the socket; pending calls reject with `closed`, running handlers and jobs see `signal` fire. */
  async close(): Promise<void> {
    return this.#shutdown(undefined);
  }

  async #shutdown(reason: ZmcpError | undefined): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    this.#closedWith(reason);
    this.#closing.abort();
    this.#aliveMark?.stop();
    this.#handler.close();
    this.#events?.close();
    const closed = reason ?? new ZmcpError("closed", "agent closed");
    this.#caller.close(closed);
    this.#replica.close(closed);
    this.#follower.close(closed);
    await Promise.all([this.#connection.close(), this.#listener?.close(), this.#links?.close()]);
  }
}
