/**
 * The caller's side of direct links (docs/PROTOCOL.md §18): learn a callee's listener endpoint
 * once (the built-in `link/endpoint`, asked through the broker), dial it with a CURVE DEALER
 * whose server key is the callee's key (the key the caller addressed, so CURVE itself proves
 * who answers), and send later requests to that key there. Bounded: at most `directLinks`
 * links (least recently used closed first), idle ones closed after `directIdle`.
 *
 * A link is used only once its handshake completed. When it fails (handshake refused, peer
 * gone, send EAGAIN, a link silent for `linkTimeout` while a request waits, a forged answer)
 * the attempt goes through the broker at once with the same request id, so the callee's answer
 * cache (idempotency.ts) runs the tool at most once, and the link is marked bad for
 * `linkBackoff` (then its endpoint is learned afresh: a restarted callee may listen elsewhere,
 * or not at all). A link in use is re-confirmed through the broker every `linkBackoff` and
 * closed unless the broker still gives its endpoint: it never outlives the callee's admission.
 */
import * as zmq from "zeromq";
import { RateLimiter, type RateLimitOptions } from "../auth/ratelimit.js";
import { ConfigError, describeThrown, ForgedAnswerError, remoteError, TimeoutError, ZmcpError } from "../errors.js";
import { readCounter, readGauge, readLabelledCounter, type Registry } from "../support/metrics.js";
import { receiveLoop } from "../support/receive-loop.js";
import { RecencyMap } from "../support/recency-map.js";
import { SocketWriter } from "../support/writer.js";
import { decodeHeader, idKey } from "../wire/envelope.js";
import { SOCKET_MESSAGE_SIZE_FACTOR } from "../wire/limits.js";
import type { AgentCore } from "./core.js";
import type { InboundPath } from "./inbound.js";
import type { ListenerStats } from "./listener.js";
import type { Frames } from "./transport.js";

/** Defaults of the direct-link options (AGENT_DEFAULTS holds them too, for the README table). */
export const DIRECT_DEFAULTS = Object.freeze({
  /** Open links at most; past it the least recently used one closes. */
  directLinks: 64,
  /** A link unused this long closes, ms. */
  directIdle: 60_000,
  /** A request waiting on a link that carries nothing at all this long goes through the broker (same request id), ms. */
  linkTimeout: 2_000,
  /** A link that failed is not tried again for this long; a link in use is re-confirmed through the broker this often, ms. */
  linkBackoff: 30_000,
});

export interface DirectLinkOptions {
  directLinks: number;
  directIdle: number;
  linkTimeout: number;
  linkBackoff: number;
}

/** Counters of the caller's links (read by tests and `agent.direct`). */
export interface DirectLinkStats {
  /** Requests sent on a direct link. */
  sent: number;
  /** Attempts that went through the broker after their link failed. */
  fallbacks: number;
  /** Links that completed a handshake. */
  opened: number;
  /**
   * Links marked bad, by reason: `connect` (nothing listens), `handshake` (the listener refused
   * this key, or does not hold the key asked), `disconnect`, `send` (EAGAIN), `timeout` (no
   * answer and nothing else heard within linkTimeout), `forged` (an answer not from the key asked),
   * `unconfirmed` (the broker, asked again every linkBackoff while the link is in use, no longer
   * gives this endpoint: the callee revoked, gone from the broker, or listening elsewhere).
   */
  failures: Partial<Record<LinkFailure, number>>;
}

export type LinkFailure = "connect" | "handshake" | "disconnect" | "send" | "timeout" | "forged" | "unconfirmed";

/** A listener's `rate_limited` refusal of request `key` on the link to `from`; false when it refuses nothing of ours pending to `from`. */
export type LinkNackHandler = (key: string, from: string, err: Error) => boolean;

/** Asks `key`, through the broker, where it listens (`link/endpoint`); null when it does not. */
export type EndpointAsker = (key: string, timeout: number) => Promise<string | null>;

/**
 * Endpoints a callee may announce: a plain destination a DEALER can dial, bounded: `tcp://HOST:PORT`
 * (a host name, an IPv4 address or a bracketed IPv6 one) or `ipc://PATH`. Nothing else of libzmq's
 * connect syntax: `tcp://SOURCE;DESTINATION` would let the callee choose the caller's own side of
 * the connection (the local address and port it binds), which the adversarial review found
 * accepted (test/security/direct-adversarial-endpoint.test.ts).
 */
const ENDPOINT = /^(?:tcp:\/\/(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,240}):[0-9]{1,5}|ipc:\/\/[^\s;]{1,250})$/;

/**
 * Callees whose endpoint (or its absence) is remembered at most, least recently used forgotten:
 * one entry per key ever called, and a caller may be told to call any Z85 key (an MCP bridge's
 * client): unbounded, that grew without end (the adversarial review). Forgetting one costs one
 * more `link/endpoint` through the broker; a link whose entry was forgotten is re-confirmed.
 */
export const MAX_KNOWN = 10_000;

/**
 * What is known of one callee: its endpoint (null: none), or that it is being asked, until when
 * it holds. An endpoint holds `linkBackoff`: then, while its link is in use, the broker is asked
 * again (`confirming`), because the broker's admission is what a link must not outlive: a callee
 * revoked there (a stolen key that ignores the broker's notice) keeps its listener up, and a
 * link to it would otherwise carry requests, tokens included, for as long as the caller calls.
 */
interface Known {
  endpoint: string | null | "asking";
  until: number;
  confirming?: boolean;
}

/** One CURVE DEALER to one callee's listener. */
export class Link {
  state: "connecting" | "up" | "bad" = "connecting";
  lastUsed = Date.now();
  /** Messages received on this link: a link that hears nothing while a request waits is suspect. */
  heard = 0;
  /** `rate_limited` refusals on this link that named no request of ours to this callee (ignored). */
  rateNacksUnmatched = 0;
  readonly #socket: zmq.Dealer;
  readonly #writer: SocketWriter;
  #loop: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(
    readonly key: string,
    readonly endpoint: string,
    core: AgentCore,
    secretKey: string,
    private readonly onFail: (link: Link, why: LinkFailure, detail: string) => void,
    onUp: (link: Link) => void,
    accept: (frames: Buffer[], path: InboundPath) => void,
    onNack: LinkNackHandler,
  ) {
    this.#socket = new zmq.Dealer({
      curveServerKey: key, // the callee's key: CURVE fails unless the listener holds its secret
      curvePublicKey: core.publicKey,
      curveSecretKey: secretKey,
      routingId: core.publicKey,
      linger: 0,
      immediate: true, // no queueing toward a connection that is not up: EAGAIN, then the broker
      sendTimeout: 0,
      maxMessageSize: SOCKET_MESSAGE_SIZE_FACTOR * core.options.maxMessageBytes,
    });
    this.#writer = new SocketWriter(this.#socket);
    const from = Buffer.from(key, "latin1");
    void this.#watch(onUp);
    this.#socket.connect(endpoint);
    // What the callee sends is `[header, body]`; the inbound checks read the sender's key first,
    // which on a link is the server key CURVE authenticated (a broker stamps it on its path).
    this.#loop = receiveLoop(
      this.#socket,
      () => this.#closed,
      (frames) => {
        this.heard++;
        if (this.#nacked(frames, onNack)) return;
        accept([from, ...frames], { kind: "link" });
      },
      (what, err) => core.log.error(`direct link ${what} failed`, { error: describeThrown(err) }),
    );
  }

  /**
   * The listener's own refusal, `[nack rate_limited, ""]` (listener.ts), the one nack a link
   * carries: it fails the request it names as a broker's `rate_limited` does (final: back off;
   * the link stays, it is healthy). True when it was such a nack (handled); anything else,
   * another nack included, goes to the inbound checks, which drop what a link may not carry.
   */
  #nacked(frames: Buffer[], onNack: LinkNackHandler): boolean {
    if (frames.length !== 2 || frames[1]!.length !== 0) return false;
    let header;
    try {
      header = decodeHeader(frames[0]!);
    } catch {
      return false;
    }
    if (header.k !== "nack" || header.code !== "rate_limited" || !header.re) return false;
    const err = remoteError({ code: "rate_limited", message: header.msg ?? "refused by the callee's listener" }, "broker");
    if (!onNack(idKey(header.re), this.key, err)) this.rateNacksUnmatched++;
    return true;
  }

  send(frames: Frames): Promise<void> {
    this.lastUsed = Date.now();
    return this.#writer.send(frames);
  }

  async #watch(onUp: (link: Link) => void): Promise<void> {
    try {
      for await (const event of this.#socket.events) {
        if (this.#closed) return;
        if (event.type === "handshake") {
          this.state = "up";
          onUp(this);
        } else if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol" || event.type === "handshake:error:other") {
          this.onFail(this, "handshake", `${event.type} at ${event.address}: the listener refused this key, or does not hold the key asked`);
        } else if (event.type === "connect:retry" && this.state === "connecting") {
          this.onFail(this, "connect", `nothing listens at ${event.address}`);
        } else if (event.type === "disconnect" && this.state === "up") {
          this.onFail(this, "disconnect", `disconnected from ${event.address}`);
        }
      }
    } catch {
      // the observer ends when the socket closes
    }
  }

  close(): Promise<void> {
    if (this.#closed) return this.#loop;
    this.#closed = true;
    this.state = "bad";
    this.#socket.close();
    return this.#loop;
  }
}

export class DirectLinks {
  readonly stats: DirectLinkStats = { sent: 0, fallbacks: 0, opened: 0, failures: {} };
  /** Open links, least recently used first (a Map keeps insertion order; use re-inserts). */
  readonly #links = new Map<string, Link>();
  readonly #known = new RecencyMap<string, Known>(MAX_KNOWN);
  readonly #sweep: NodeJS.Timeout;
  #closed = false;

  constructor(
    private readonly core: AgentCore,
    private readonly secretKey: string,
    readonly options: DirectLinkOptions,
    private readonly ask: EndpointAsker,
    private readonly accept: (frames: Buffer[], path: InboundPath) => void,
    private readonly onNack: LinkNackHandler = () => false,
  ) {
    this.#sweep = setInterval(() => this.#closeIdle(), Math.max(100, Math.min(options.directIdle / 2, 10_000))).unref();
  }

  /** Open links now. */
  get size(): number {
    return this.#links.size;
  }

  /** Callees whose endpoint (or its absence) is remembered now (at most MAX_KNOWN). */
  get known(): number {
    return this.#known.size;
  }

  /**
   * A link ready to carry a request to `key` now, or undefined (the request goes through the
   * broker). Learns the endpoint and dials in the background, so a later request may go direct.
   */
  ready(key: string): Link | undefined {
    if (this.#closed) return undefined;
    const link = this.#links.get(key);
    if (link) {
      if (link.state !== "up") return undefined;
      this.#links.delete(key);
      this.#links.set(key, link); // most recently used last
      link.lastUsed = Date.now();
      let held = this.#known.get(key);
      if (held === undefined) this.#known.set(key, (held = { endpoint: link.endpoint, until: 0 })); // forgotten (MAX_KNOWN): confirmed now
      if (typeof held.endpoint === "string" && held.until <= link.lastUsed && !held.confirming) this.#confirm(key, link, held);
      return link;
    }
    const now = Date.now();
    const known = this.#known.get(key);
    if (known === undefined || (known.endpoint !== "asking" && known.until <= now)) {
      this.#learn(key);
      return undefined;
    }
    if (typeof known.endpoint === "string" && known.endpoint !== "asking") this.#dial(key, known.endpoint);
    return undefined;
  }

  /**
   * Watches a request sent on `link`: every `linkTimeout`, if nothing at all arrived on the link
   * meanwhile (no answer, no other call's answer, no event), the link is taken for dead and the
   * request fails with LinkSilentError (then it goes through the broker). A link that carries
   * traffic is alive, however slow the tool: the request waits on it for its own deadline, so a
   * loaded link is not doubled by resends through the broker.
   */
  watch(link: Link, pending: () => boolean | Error, fail: (err: Error) => void, settled: Promise<unknown>): void {
    const every = this.options.linkTimeout;
    let heard = link.heard;
    let timer: NodeJS.Timeout;
    const check = () => {
      const state = pending();
      if (state === false) return;
      // An answer on the link was refused as forged: the link is not to be trusted with this call.
      if (state instanceof Error) return fail(state);
      if (link.heard === heard) return fail(new LinkSilentError(`no answer and nothing else on the direct link to ${link.key} for ${every} ms`));
      heard = link.heard;
      timer = setTimeout(check, every);
    };
    timer = setTimeout(check, every);
    const stop = () => clearTimeout(timer);
    settled.then(stop, stop);
  }

  /**
   * An attempt on `link` failed with `err`: true if that is the link's failure (then it is
   * marked bad and the caller resends through the broker), false if it is the callee's answer
   * or the call's own deadline.
   */
  failed(link: Link, err: unknown): boolean {
    let why: LinkFailure;
    if (err instanceof LinkSendError) why = "send";
    else if (err instanceof LinkSilentError) why = "timeout";
    else if (err instanceof ForgedAnswerError) why = "forged";
    else return false;
    this.stats.fallbacks++;
    this.#fail(link, why, describeThrown(err));
    return true;
  }

  /** Counts a request sent on a link. */
  sent(): void {
    this.stats.sent++;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    const links = [...this.#links.values()];
    this.#links.clear();
    await Promise.all(links.map((l) => l.close()));
  }

  #learn(key: string): void {
    this.#known.set(key, { endpoint: "asking", until: Infinity });
    const { linkTimeout, linkBackoff } = this.options;
    this.ask(key, Math.max(linkTimeout, 1000)).then(
      (endpoint) => {
        if (this.#closed) return;
        const valid = typeof endpoint === "string" && ENDPOINT.test(endpoint) ? endpoint : null;
        // An endpoint is confirmed through the broker again after linkBackoff (#confirm); "none" is asked again after it.
        this.#known.set(key, { endpoint: valid, until: Date.now() + linkBackoff });
        if (valid !== null) this.#dial(key, valid);
      },
      (err: unknown) => {
        // A v1 peer that does not know `link/endpoint` answers unknown_tool: no link, quietly.
        if (this.#closed) return;
        this.#known.set(key, { endpoint: null, until: Date.now() + linkBackoff });
        if (!(err instanceof ZmcpError && err.code === "unknown_tool")) this.core.log.debug("direct link endpoint not learned", { to: key, error: describeThrown(err) });
      },
    );
  }

  /**
   * Asks the broker again where `key` listens while `link` to it is in use (the link keeps
   * carrying requests meanwhile, at most one ask at a time). The same endpoint: it holds another
   * linkBackoff. Anything else (none, another endpoint, a refusal such as `revoked` or
   * `no_route`): the link closes (`unconfirmed`) and calls go through the broker, whose word on
   * the callee then holds. No answer in time (a slow broker): asked again on the next use.
   */
  #confirm(key: string, link: Link, known: Known): void {
    known.confirming = true;
    this.ask(key, Math.max(this.options.linkTimeout, 1000)).then(
      (endpoint) => {
        known.confirming = false;
        if (this.#closed) return;
        if (endpoint === link.endpoint) {
          if (this.#known.get(key) === known) known.until = Date.now() + this.options.linkBackoff;
          return;
        }
        this.#fail(link, "unconfirmed", `the broker now gives ${endpoint === null ? "no endpoint" : endpoint} for ${key}`);
      },
      (err: unknown) => {
        known.confirming = false;
        if (this.#closed || err instanceof TimeoutError) return;
        this.#fail(link, "unconfirmed", `link/endpoint through the broker refused: ${describeThrown(err)}`);
      },
    );
  }

  #dial(key: string, endpoint: string): void {
    if (this.#links.has(key) || this.#closed) return;
    let link: Link;
    try {
      link = new Link(key, endpoint, this.core, this.secretKey, (l, why, detail) => this.#fail(l, why, detail), () => this.stats.opened++, this.accept, this.onNack);
    } catch (err) {
      // An endpoint libzmq cannot dial (a malformed address from the callee): no link.
      this.#known.set(key, { endpoint: null, until: Date.now() + this.options.linkBackoff });
      this.core.throttle.write("warn", "direct link endpoint not dialable", key, { to: key, endpoint, error: describeThrown(err) });
      return;
    }
    this.#links.set(key, link);
    while (this.#links.size > this.options.directLinks) {
      const [oldest, old] = this.#links.entries().next().value as [string, Link];
      this.#links.delete(oldest);
      void old.close();
    }
  }

  #fail(link: Link, why: LinkFailure, detail: string): void {
    if (link.state === "bad" && !this.#links.has(link.key)) return;
    this.stats.failures[why] = (this.stats.failures[why] ?? 0) + 1;
    this.core.throttle.write("warn", "direct link failed; using the broker", `${link.key} ${why}`, { to: link.key, name: this.core.directory.nameOf(link.key), endpoint: link.endpoint, why, detail });
    if (this.#links.get(link.key) === link) this.#links.delete(link.key);
    void link.close();
    // Not tried again before the backoff; then its endpoint is learned afresh.
    this.#known.set(link.key, { endpoint: null, until: Date.now() + this.options.linkBackoff });
  }

  #closeIdle(): void {
    const cutoff = Date.now() - this.options.directIdle;
    for (const [key, link] of this.#links) {
      if (link.lastUsed >= cutoff) continue;
      this.#links.delete(key);
      void link.close();
    }
  }
}

/** A link that carried nothing for `linkTimeout` while a request waited on it: the broker carries the request. */
export class LinkSilentError extends ZmcpError {
  override name = "LinkSilentError";
  constructor(message: string) {
    super("timeout", message);
  }
}

/** A request the link could not take (EAGAIN: not connected or not reading): the broker carries it. */
export class LinkSendError extends ZmcpError {
  override name = "LinkSendError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("unreachable", message, options);
  }
}

/** The AgentOptions of direct links (README "Direct links"; docs/PROTOCOL.md §18). */
export interface DirectAgentOptions {
  /**
   * Listen for direct links at this endpoint (`tcp://127.0.0.1:0`: an ephemeral port; the bound
   * one is `agent.direct.endpoint`), a CURVE ROUTER with this agent's key. Default: none.
   */
  listen?: string;
  /**
   * The endpoint told to callers, when it is not the bound one (a wildcard bind, NAT, a proxy in
   * front of the listener). Default: the bound endpoint.
   */
  listenAnnounce?: string;
  /** Who the listener admits: a certificate directory or Z85 keys. Default: `certs`. */
  listenAllow?: string | string[];
  /** A deny list file (keys refused at the handshake and on every request, re-read when it changes). Default: none. */
  listenDenyList?: string;
  /**
   * Token bucket per caller key on the listener, the broker's `rateLimit` / `--rate` (a link
   * bypasses the broker's): a request above it is refused `rate_limited` before it is opened,
   * and the caller's call fails `rate_limited` (back off). Default: none (no limit).
   */
  listenRateLimit?: RateLimitOptions;
  /** Send requests to a key over a direct link once its listener is known. Default false. */
  direct?: boolean;
  /** Open direct links at most (least recently used closed first). Default 64. */
  directLinks?: number;
  /** A direct link unused this long closes, ms. Default 60,000. */
  directIdle?: number;
  /**
   * A request waiting on a direct link that carries nothing at all for this long (no answer, no
   * other traffic) goes through the broker, same request id, ms. Default 2,000.
   */
  linkTimeout?: number;
  /** A failed direct link is not tried again for this long; a link in use is re-confirmed through the broker (`link/endpoint`) this often, ms. Default 30,000. */
  linkBackoff?: number;
}

export interface ResolvedDirectOptions extends DirectLinkOptions {
  listen: string | undefined;
  listenAnnounce: string | undefined;
  listenAllow: string | string[] | undefined;
  listenDenyList: string | undefined;
  listenRateLimit: RateLimitOptions | undefined;
  direct: boolean;
}

/** Applies DIRECT_DEFAULTS; throws ConfigError naming a bad value. */
export function resolveDirectOptions(o: DirectAgentOptions, certs: string | undefined): ResolvedDirectOptions {
  const d = DIRECT_DEFAULTS;
  const positive = (name: string, value: number) => {
    if (!(value > 0) || !Number.isFinite(value)) throw new ConfigError(`${name} must be a positive number (got ${String(value)})`);
    return value;
  };
  const listenAllow = o.listenAllow ?? certs;
  if (o.listen !== undefined && listenAllow === undefined) throw new ConfigError("listen needs listenAllow or certs: whom the listener admits");
  return {
    listen: o.listen,
    listenAnnounce: o.listenAnnounce,
    listenAllow,
    listenDenyList: o.listenDenyList,
    listenRateLimit: o.listenRateLimit && checkedRate(o.listenRateLimit),
    direct: o.direct ?? false,
    directLinks: Math.floor(positive("directLinks", o.directLinks ?? d.directLinks)),
    directIdle: positive("directIdle", o.directIdle ?? d.directIdle),
    linkTimeout: positive("linkTimeout", o.linkTimeout ?? d.linkTimeout),
    linkBackoff: positive("linkBackoff", o.linkBackoff ?? d.linkBackoff),
  };
}

/** Throws ConfigError now (at connect) for a bucket the listener's RateLimiter would refuse later. */
function checkedRate(o: RateLimitOptions): RateLimitOptions {
  try {
    new RateLimiter(o);
  } catch (err) {
    throw new ConfigError(`listenRateLimit: ${(err as Error).message}`, { cause: err });
  }
  return { ...o };
}

/** Direct-link metrics on the agent's registry, read at scrape time from `agent.direct`. */
export function registerDirectMetrics(r: Registry, read: () => { listener: Readonly<ListenerStats> | undefined; links: (Readonly<DirectLinkStats> & { open: number }) | undefined }): void {
  readCounter(r, "zmcp_agent_direct_sent_total", "Requests sent on a direct link", () => read().links?.sent ?? 0);
  readCounter(r, "zmcp_agent_direct_fallbacks_total", "Attempts sent through the broker after their direct link failed (same request id)", () => read().links?.fallbacks ?? 0);
  readLabelledCounter(r, "zmcp_agent_direct_link_failures_total", "Direct links marked bad, by reason", "reason", () => Object.entries(read().links?.failures ?? {}) as Array<[string, number]>);
  readGauge(r, "zmcp_agent_direct_links_open", "Direct links open now", () => read().links?.open ?? 0);
  readCounter(r, "zmcp_agent_direct_received_total", "Requests received on this agent's listener", () => read().listener?.received ?? 0);
  readCounter(r, "zmcp_agent_direct_listener_dropped_total", "Messages with a wrong frame count dropped by this agent's listener", () => read().listener?.dropped ?? 0);
  readCounter(r, "zmcp_agent_direct_rate_limited_total", "Requests this agent's listener refused rate_limited (listenRateLimit) before opening them", () => read().listener?.rateLimited ?? 0);
  readCounter(r, "zmcp_agent_direct_rerouted_total", "Answers that could not go back on the direct link and went through the broker", () => read().listener?.rerouted ?? 0);
}
