/**
 * The agent's connection to its broker(s): one CURVE DEALER, its writer queue and receive
 * loop, the handshake, liveness (a `hb` every interval, a redial when the broker went silent:
 * support/liveness.ts) and the broker's own messages: acks, nacks and notices.
 */
import { SOCKET_MESSAGE_SIZE_FACTOR } from "../wire/limits.js";
import * as zmq from "zeromq";
import { ConfigError, remoteError, ZmcpError, type RemoteError, describeThrown } from "../errors.js";
import { AckWatch } from "../support/liveness.js";
import type { Logger } from "../support/log.js";
import type { LogThrottle } from "../support/log-throttle.js";
import { receiveLoop } from "../support/receive-loop.js";
import { SocketWriter } from "../support/writer.js";
import { decodeHeader, idKey, type Header } from "../wire/envelope.js";
import { bump, type AgentStats } from "./stats.js";
import type { Frames, Transport } from "./transport.js";

/** What the connection hands on, and whom it asks. */
export interface ConnectionEvents {
  /** A message from a peer (or anything not from the broker itself): the inbound checks. */
  onPeer(frames: Buffer[]): void;
  /** A broker's ack of a heartbeat; false when it acknowledges nothing pending. */
  onAck(key: string): boolean;
  /** The broker stored a durable message of ours (`ack {code: "stored"}`, docs/DURABLE.md); false when it names nothing pending. */
  onStored(key: string): boolean;
  /** A broker's refusal of a message we sent; false when it refuses nothing pending. */
  onNack(key: string, err: RemoteError): boolean;
  /** A broker notice (`displaced`, `revoked`): this connection will receive nothing more. */
  onNotice(err: RemoteError, message: string | undefined): void;
  /** Time to show liveness (every `heartbeatInterval`, and after each handshake). */
  onLivenessTick(handshake: boolean): void;
}

export interface ConnectionOptions {
  serverKey: string;
  publicKey: string;
  secretKey: string;
  endpoints: string[];
  maxMessageBytes: number;
  heartbeatInterval: number;
  log: Logger;
  throttle: LogThrottle;
  stats: AgentStats;
}

export class Connection implements Transport {
  readonly #socket: zmq.Dealer;
  readonly #writer: SocketWriter;
  readonly #options: ConnectionOptions;
  readonly #events: ConnectionEvents;
  #watch: AckWatch | undefined;
  #liveTimer: NodeJS.Timeout | undefined;
  #loop: Promise<void> = Promise.resolve();
  #closed = false;
  #handshake: { resolve: () => void; reject: (err: Error) => void } | undefined;
  /** Endpoints that refused a connection / ever connected, while the first handshake is awaited. */
  readonly #refused = new Set<string>();
  readonly #connected = new Set<string>();

  constructor(options: ConnectionOptions, events: ConnectionEvents) {
    this.#options = options;
    this.#events = events;
    this.#socket = new zmq.Dealer({
      curveServerKey: options.serverKey,
      curvePublicKey: options.publicKey,
      curveSecretKey: options.secretKey,
      // The broker renames every peer to its key anyway (auth/zap.ts); asking for the same id
      // makes that hold even if libzmq applies our request after the broker's.
      routingId: options.publicKey,
      linger: 0,
      // Queue only to brokers with a live connection (ZMQ_IMMEDIATE). Otherwise, connected to
      // several brokers, the DEALER keeps round-robining into the pipe of a dead one, where
      // every other request and response waits for a reconnect that never comes.
      immediate: true,
      // No ZMTP heartbeats (support/liveness.ts): the `hb` messages of #keepAlive do their work.
      // Above the cap plus headroom libzmq drops the connection rather than buffer it.
      maxMessageSize: SOCKET_MESSAGE_SIZE_FACTOR * options.maxMessageBytes,
    });
    this.#writer = new SocketWriter(this.#socket);
  }

  /** True once liveness is on: the broker must hear from us even without services. */
  get keepsLiveness(): boolean {
    return this.#watch !== undefined;
  }

  send(frames: Frames): Promise<void> {
    return this.#writer.send(frames);
  }

  /**
   * Dials every endpoint and starts receiving. With `waitForHandshake`, resolves once a CURVE
   * handshake completed (a refused one rejects with ZmcpError(handshake_failed)).
   * Throws ZmcpError(config) when an endpoint cannot be dialled.
   */
  open(waitForHandshake: boolean): Promise<void> {
    const handshake = waitForHandshake
      ? new Promise<void>((resolve, reject) => {
          this.#handshake = { resolve, reject };
        })
      : Promise.resolve();
    this.#keepAlive();
    void this.#watchEvents();
    const { endpoints } = this.#options;
    try {
      for (const endpoint of endpoints) this.#socket.connect(endpoint);
    } catch (err) {
      throw new ConfigError(`cannot connect to ${endpoints.join(", ")}: ${(err as Error).message}`, { cause: err });
    }
    this.#loop = receiveLoop(
      this.#socket,
      () => this.#closed,
      (frames) => this.#receive(frames),
      (what, err) => this.#options.log.error(what === "receive" ? "receive failed" : "dispatch failed", { error: describeThrown(err) }),
    );
    return handshake;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#liveTimer);
    this.#socket.close();
    await this.#loop;
  }

  /** Anything from a broker shows the connection is alive; its own messages stop here. */
  #receive(frames: Buffer[]): void {
    if (frames.length === 3) {
      this.#watch?.acked();
      if (frames[0]!.length === 0) return this.#fromBroker(frames[1]!);
    }
    this.#events.onPeer(frames);
  }

  /** The broker's own answers: acks (a heartbeat accepted), nacks (a message refused), notices. */
  #fromBroker(headerBytes: Buffer): void {
    const { throttle, stats } = this.#options;
    let header: Header;
    try {
      header = decodeHeader(headerBytes);
    } catch (err) {
      bump(stats.dropped, "broker_header");
      return throttle.write("warn", "dropped invalid message from broker", "", { error: describeThrown(err) });
    }
    const key = header.re ? idKey(header.re) : undefined;
    if (header.k === "ack" && header.code === "stored" && key) {
      // A durable request kept for an offline recipient: its call waits until its deadline. One
      // whose call has ended meanwhile (answered, aborted) is no drop.
      this.#events.onStored(key);
      return;
    }
    if (header.k === "ack") {
      if (!key || !this.#events.onAck(key)) bump(stats.dropped, "unsolicited");
      return;
    }
    const err = remoteError({ code: header.code ?? "bad_frame", message: header.msg ?? "refused by broker" }, "broker");
    if (key && this.#events.onNack(key, err)) return;
    if (!key && (err.code === "displaced" || err.code === "revoked")) return this.#events.onNotice(err, header.msg);
    bump(stats.dropped, "nack");
    // A peer can make the broker refuse our messages at will (busy, no_route): one line per code per interval.
    throttle.write("warn", "broker refused a message", err.code, { code: err.code, message: header.msg });
  }

  /**
   * Liveness with the broker (support/liveness.ts): a tick every `heartbeatInterval`, and a
   * redial of every endpoint when nothing at all came from a broker for 3 × the interval.
   */
  #keepAlive(): void {
    const { heartbeatInterval: interval, endpoints, log, stats } = this.#options;
    if (!(interval > 0)) return;
    const watch = (this.#watch = new AckWatch(3 * interval));
    this.#liveTimer = setInterval(() => {
      if (this.#closed) return;
      this.#events.onLivenessTick(false);
      if (!watch.expired()) return;
      stats.redials++;
      log.warn("broker silent; redialling", { silentMs: 3 * interval, endpoints });
      for (const endpoint of endpoints) {
        try {
          this.#socket.disconnect(endpoint);
        } catch {
          // not connected right now; connect below is what matters
        }
        try {
          this.#socket.connect(endpoint);
        } catch (err) {
          log.error("redial failed", { endpoint, error: describeThrown(err) });
        }
      }
    }, interval).unref();
  }

  async #watchEvents(): Promise<void> {
    const { log, stats } = this.#options;
    try {
      for await (const event of this.#socket.events) {
        if (event.type === "handshake") {
          stats.connects++;
          this.#watch?.acked();
          this.#handshake?.resolve();
          this.#handshake = undefined;
          log.debug("connected", { address: event.address });
          // A restarted broker learns our services at once, and that we keep liveness.
          this.#events.onLivenessTick(true);
        } else if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol" || event.type === "handshake:error:other") {
          // Seen with zeromq 6 / libzmq 4.3.5: a key the broker's allowlist refuses gives
          // `handshake:error:auth` (a ZAP denial); a wrong server key (a stale broker.key) makes
          // the broker drop the connection unanswered, seen here as `handshake:error:other`.
          const hint =
            event.type === "handshake:error:auth"
              ? "the broker refused this agent's key: is it in the broker's allowlist (--allow)?"
              : "the broker closed the connection during the CURVE handshake: is the server key (serverKey, or <certs>/broker.key) the running broker's public key?";
          const err = new ZmcpError("handshake_failed", `broker at ${event.address}: ${hint} (${event.type})`);
          this.#handshake?.reject(err);
          this.#handshake = undefined;
          log.warn("handshake failed", { address: event.address, type: event.type });
        } else if (event.type === "connect") {
          this.#refused.delete(event.address);
          this.#connected.add(event.address);
        } else if (event.type === "connect:retry" && this.#handshake && !this.#connected.has(event.address)) {
          // Nothing listens at an endpoint (connection refused): say so at once, rather than
          // let a caller wait out its connect timeout for a generic `timeout`.
          this.#refused.add(event.address);
          if (this.#refused.size >= this.#options.endpoints.length) {
            this.#handshake.reject(new ZmcpError("unreachable", `no broker is listening at ${[...this.#refused].join(", ")} (connection refused)`));
            this.#handshake = undefined;
          }
        } else if (event.type === "disconnect") {
          stats.disconnects++;
          log.debug("disconnected", { address: event.address });
        }
      }
    } catch {
      // the observer ends when the socket closes
    }
  }
}
