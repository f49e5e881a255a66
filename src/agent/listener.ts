/**
 * The callee's side of direct links (docs/PROTOCOL.md §18): an opt-in CURVE ROUTER of the
 * agent's own (server key = the agent's key) that callers who learned its endpoint dial
 * instead of going through a broker.
 *
 * It admits keys by the broker's rules, with the broker's pieces: the same allowlist reader
 * (a certificate directory or a key list) and the same ZAP handler, whose `Identity` rename
 * makes the ROUTER's routing id of every peer its CURVE-authenticated key. So the frames a
 * listener receives, `[key, header, body]`, are exactly what a broker hands an agent, and go
 * through the same inbound checks and handler (tokens included): a direct request is a normal
 * request that arrived on another socket.
 *
 * ZeroMQ allows one ZAP handler per context (`inproc://zeromq.zap.01`), and a process may run
 * a broker and a listening agent (tests do): each listener has a zmq.Context of its own.
 */
import * as zmq from "zeromq";
import { DenyList } from "../auth/denylist.js";
import { RateLimiter, type RateLimitOptions } from "../auth/ratelimit.js";
import { readAllowlist } from "../auth/allowlist.js";
import { ZAP_DOMAIN, ZapHandler } from "../auth/zap.js";
import { ConfigError, describeThrown } from "../errors.js";
import type { Logger } from "../support/log.js";
import type { LogThrottle } from "../support/log-throttle.js";
import { receiveLoop } from "../support/receive-loop.js";
import { SocketWriter } from "../support/writer.js";
import { DEFAULT_RELOAD_INTERVAL_MS, watchPath } from "../support/watch.js";
import { nackHeader } from "../wire/broker-replies.js";
import { decodeHeader, type Header } from "../wire/envelope.js";
import { SOCKET_MESSAGE_SIZE_FACTOR } from "../wire/limits.js";
import type { Frames, Transport } from "./transport.js";

export interface ListenerOptions {
  /** Where to bind, e.g. `tcp://127.0.0.1:0` (an ephemeral port). */
  endpoint: string;
  publicKey: string;
  secretKey: string;
  /** Who may connect: a certificate directory or a list of Z85 keys (auth/allowlist.ts). */
  allow: string | string[];
  /** A deny list file (auth/denylist.ts, watched): its keys are refused at the handshake and on every message. */
  denyList: string | undefined;
  maxMessageBytes: number;
  /**
   * Token bucket per caller key, the broker's `--rate` (auth/ratelimit.ts): a request above it is
   * refused `nack rate_limited` on the link before its body is opened. Undefined: no limit.
   */
  rateLimit: RateLimitOptions | undefined;
  log: Logger;
  throttle: LogThrottle;
}

/** What arrived on the listener, and how to answer on the same link. */
export interface DirectArrival {
  /** The listener the request came in on: answers go back through it (responder.ts). */
  via: ReplyVia;
}

/** An answer path other than the broker: the inbound checks and the responder use it. */
export interface ReplyVia {
  /** False for a key not (or no longer) admitted: its requests are refused `forbidden`. */
  admits(key: string): boolean;
  /** Sends `[header, body]` to `peer` on this link; rejects when the peer is gone (EHOSTUNREACH) or full (EAGAIN). */
  sendTo(peer: string, frames: Frames): Promise<void>;
}

/** Counters of a listener (read by tests and `agent.direct`). */
export interface ListenerStats {
  /** Requests received on the listener. */
  received: number;
  /** Messages dropped before the inbound checks (not 3 frames): garbage from a connected peer. */
  dropped: number;
  /** Answers that could not go back on the link and went through the broker. */
  rerouted: number;
  /** Requests refused `rate_limited` (listenRateLimit) before their body was opened. */
  rateLimited: number;
}

export class Listener implements ReplyVia {
  readonly stats: ListenerStats = { received: 0, dropped: 0, rerouted: 0, rateLimited: 0 };
  /** The bound endpoint (the port chosen for `:0`), announced to callers by `link/endpoint`. */
  readonly endpoint: string;
  readonly #context: zmq.Context;
  readonly #socket: zmq.Router;
  readonly #writer: SocketWriter;
  readonly #zap: ZapHandler;
  readonly #deny: DenyList | undefined;
  readonly #limiter: RateLimiter | undefined;
  /** Re-read when the certificate directory changes (#watchAllow): shared with the ZAP rule. */
  readonly #allowed: { keys: ReadonlySet<string> };
  #unwatchAllow: (() => void) | undefined;
  readonly #options: ListenerOptions;
  #loop: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: ListenerOptions, context: zmq.Context, socket: zmq.Router, zap: ZapHandler, allowed: { keys: ReadonlySet<string> }, deny: DenyList | undefined) {
    this.#options = options;
    this.#allowed = allowed;
    this.#context = context;
    this.#socket = socket;
    this.#zap = zap;
    this.#deny = deny;
    this.#writer = new SocketWriter(socket);
    this.#limiter = options.rateLimit && new RateLimiter(options.rateLimit);
    this.endpoint = socket.lastEndpoint ?? options.endpoint;
  }

  /** Binds the listener; `accept` gets `[key, header, body]` for the inbound checks. Throws ConfigError. */
  static async start(options: ListenerOptions, accept: (frames: Buffer[], via: ReplyVia) => void): Promise<Listener> {
    const { log, throttle } = options;
    const allowed: { keys: ReadonlySet<string> } = { keys: readAllowlist(options.allow, log).keys };
    const deny = options.denyList === undefined ? undefined : DenyList.open(options.denyList, { log });
    const context = new zmq.Context();
    let zap: ZapHandler;
    try {
      zap = await ZapHandler.start(context, (key) => allowed.keys.has(key) && !deny?.hasKey(key), log, throttle); // `allowed.keys` as re-read (#watchAllow)
    } catch (err) {
      deny?.close();
      throw new ConfigError(`listen: cannot start the ZAP handler: ${(err as Error).message}`, { cause: err });
    }
    const socket = new zmq.Router({
      context,
      curveServer: true,
      curvePublicKey: options.publicKey,
      curveSecretKey: options.secretKey,
      zapDomain: ZAP_DOMAIN,
      zapEnforceDomain: true, // fail closed, as the broker
      handover: true, // a caller that reconnects takes its key's route over at once
      mandatory: true, // a caller gone: EHOSTUNREACH, and the answer goes through the broker
      sendTimeout: 0, // a caller not reading: EAGAIN at once, and the answer goes through the broker
      maxMessageSize: SOCKET_MESSAGE_SIZE_FACTOR * options.maxMessageBytes,
      linger: 0,
    });
    try {
      await socket.bind(options.endpoint);
    } catch (err) {
      zap.close();
      socket.close();
      deny?.close();
      throw new ConfigError(`listen: cannot bind ${options.endpoint}: ${(err as Error).message}`, { cause: err });
    }
    const listener = new Listener(options, context, socket, zap, allowed, deny);
    listener.#watchAllow();
    listener.#loop = receiveLoop(
      socket,
      () => listener.#closed,
      (frames) => listener.#receive(frames, accept),
      (what, err) => log.error(`listener ${what} failed`, { error: describeThrown(err) }),
    );
    return listener;
  }

  /** The ZAP handler's rule, asked again on every request: a key revoked since its handshake is refused. */
  admits(key: string): boolean {
    return this.#allowed.keys.has(key) && !this.#deny?.hasKey(key);
  }

  /**
   * A certificate directory is re-read when it changes (a `.key` file added or removed), as the
   * broker re-reads its allowlist: a key removed there (a retired or compromised agent, docs/
   * SECURITY.md §6) is refused at its next handshake and on its next request here too, instead
   * of being admitted until this agent restarts. A directory that cannot be read keeps the
   * previous list (logged). A list of keys given in code does not change.
   */
  #watchAllow(): void {
    const allow = this.#options.allow;
    if (typeof allow !== "string") return;
    const { log } = this.#options;
    this.#unwatchAllow = watchPath(allow, DEFAULT_RELOAD_INTERVAL_MS, () => {
      if (this.#closed) return;
      try {
        this.#allowed.keys = readAllowlist(allow, log).keys;
        log.info("listener allowlist reloaded", { keys: this.#allowed.keys.size });
      } catch (err) {
        log.error("listener allowlist unreadable; the previous one stays", { error: describeThrown(err) });
      }
    });
  }

  sendTo(peer: string, frames: Frames): Promise<void> {
    return this.#writer.send([peer, ...frames]).catch((err: unknown) => {
      this.stats.rerouted++;
      throw err;
    });
  }

  #receive(frames: Buffer[], accept: (frames: Buffer[], via: ReplyVia) => void): void {
    // A connected peer's garbage (any frame count but [header, body]) is counted and dropped; a
    // well-formed message goes through every inbound check like one from a broker.
    if (frames.length !== 3) {
      this.stats.dropped++;
      this.#options.throttle.write("warn", "listener dropped a message with a wrong frame count", frames[0]?.toString("latin1") ?? "", { from: frames[0]?.toString("latin1"), frames: frames.length });
      return;
    }
    this.stats.received++;
    // The broker's `--rate` does not see a link: without this bucket, an admitted key could make
    // this agent open (X25519 + XSalsa20-Poly1305) as many requests as it sends. Checked on the
    // authenticated key before anything is opened, the broker's way (broker.ts #route).
    const peer = frames[0]!.toString("latin1");
    if (this.#limiter && !this.#limiter.take(peer)) return this.#refuseRate(peer, frames[1]!);
    accept(frames, this);
  }

  /**
   * Refuses a request above the rate as a broker does: `[nack rate_limited, empty body]`, `re` its
   * id (when its header decodes), unsealed, so the refusal costs no crypto; the caller's link
   * takes it as the broker's (direct-links.ts), and the call fails `rate_limited` (back off).
   */
  #refuseRate(peer: string, headerBytes: Buffer): void {
    const limiter = this.#limiter!;
    this.stats.rateLimited++;
    let header: Header | undefined;
    try {
      header = decodeHeader(headerBytes);
    } catch {
      // no id to refuse: the nack refuses nothing pending at the caller, and is counted there
    }
    const msg = `above ${limiter.perSecond} messages/s (burst ${limiter.burst}) on this agent's listener`;
    this.#options.throttle.write("warn", "listener refused", `rate_limited ${peer}`, { from: peer, code: "rate_limited", message: msg });
    this.#writer.send([peer, nackHeader(peer, "rate_limited", msg, header?.id), ""]).catch(() => {
      // a caller not reading (EAGAIN) or gone: nothing more is owed to a key above its rate
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unwatchAllow?.();
    this.#zap.close();
    this.#socket.close();
    this.#deny?.close();
    await this.#loop;
  }

  /** The zmq.Context of this listener alone (one ZAP handler per context: see the top). */
  get context(): zmq.Context {
    return this.#context;
  }
}
