/**
 * The agent SDK: one DEALER socket, one curve key. An agent offers tools (arguments checked
 * with zod) and calls other agents' tools; every payload is sealed end to end.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as zmq from "zeromq";
import type { z } from "zod";
import { loadCertDirectory, loadCertificate, loadSecretCertificate, type Certificate, type CertDirectory } from "./certs.js";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  decodeHeader,
  decodeInner,
  encodeHeader,
  encodeInner,
  idKey,
  newId,
  PROTOCOL_VERSION,
  type ErrorBody,
  type Header,
  type InnerDraft,
  type Request,
  type Response,
} from "./envelope.js";
import { ConfigError, isWireCode, ProtocolError, RemoteError, TimeoutError, ZmcpError, type WireCode } from "./errors.js";
import { silentLogger, type Logger } from "./log.js";
import { PendingCalls } from "./pending.js";
import { DEFAULT_REPLAY_WINDOW_MS, ReplayGuard } from "./replay.js";
import { Sealer } from "./seal.js";
import { SocketWriter } from "./writer.js";
import { isZ85Key } from "./z85.js";

export interface AgentOptions {
  /** Broker endpoint(s), e.g. `tcp://127.0.0.1:5555`. With several, the agent connects to all. */
  broker: string | string[];
  /** The agent's secret certificate: a `.key_secret` path, or a loaded certificate. */
  cert: string | Required<Certificate>;
  /** Directory of public certificates: resolves names to keys, and holds `broker.key`. */
  certs?: string;
  /** The broker's Z85 public key. Default: read from `<certs>/broker.key`. */
  serverKey?: string;
  /** Wait this long (ms) for the first CURVE handshake; 0 returns without waiting. Default 10,000. */
  connectTimeout?: number;
  /** Default deadline of a call, ms. Default 30,000. */
  timeout?: number;
  /** Accepted clock difference with peers, ms (replay window). Default 60,000. */
  replayWindow?: number;
  /** Largest message sent or accepted (header + body), bytes. Default 1 MiB (the broker's default). */
  maxMessageBytes?: number;
  /** ZMTP heartbeat interval to the broker, ms (dead connections are dropped and redialled). Default 2,000. */
  heartbeatInterval?: number;
  log?: Logger;
}

export interface CallOptions {
  /** Deadline, ms from now; also sent to the broker and callee. Default: the agent's `timeout`. */
  timeout?: number;
  signal?: AbortSignal;
}

/** What a tool handler learns about the call. */
export interface ToolContext {
  /** The caller's Z85 key, as authenticated by the broker's CURVE handshake. */
  from: string;
  /** The caller's certificate name, if its public certificate is in `certs`. */
  fromName: string | undefined;
  /** Hex request id (stable across retries). */
  requestId: string;
  /** The request's deadline, ms since the epoch. */
  deadline: number;
  /** Fires when the agent closes. */
  signal: AbortSignal;
}

export interface ToolSpec<I extends z.ZodType, O extends z.ZodType | undefined = undefined> {
  description?: string;
  /** Arguments schema; a request whose arguments fail it is answered `invalid_args`. */
  input: I;
  /** Result schema; a result that fails it is answered `tool_failed`. */
  output?: O;
}

export type ToolHandler<I extends z.ZodType, O extends z.ZodType | undefined> = (
  args: z.output<I>,
  ctx: ToolContext,
) => Promise<O extends z.ZodType ? z.input<O> : unknown> | (O extends z.ZodType ? z.input<O> : unknown);

interface RegisteredTool {
  name: string;
  description: string;
  input: z.ZodType;
  output: z.ZodType | undefined;
  handler: (args: unknown, ctx: ToolContext) => unknown;
}

export class Agent {
  readonly publicKey: string;
  readonly log: Logger;
  readonly #socket: zmq.Dealer;
  readonly #writer: SocketWriter;
  readonly #sealer: Sealer;
  readonly #replay: ReplayGuard;
  readonly #pending = new PendingCalls<Response>();
  readonly #tools = new Map<string, RegisteredTool>();
  readonly #closing = new AbortController();
  readonly #certsDir: string | undefined;
  #directory: CertDirectory = { byName: new Map(), byKey: new Map() };
  readonly #defaultTimeout: number;
  readonly #maxMessageBytes: number;
  #loop: Promise<void> = Promise.resolve();
  #closed = false;
  #handshake: { resolve: () => void; reject: (err: Error) => void } | undefined;

  private constructor(options: AgentOptions, cert: Required<Certificate>, serverKey: string) {
    this.publicKey = cert.publicKey;
    this.log = options.log ?? silentLogger;
    this.#certsDir = options.certs;
    this.#defaultTimeout = options.timeout ?? 30_000;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#sealer = new Sealer(cert.secretKey);
    this.#replay = new ReplayGuard(options.replayWindow ?? DEFAULT_REPLAY_WINDOW_MS);
    this.#socket = new zmq.Dealer({
      // libzmq applies the Identity the client announces after a ZAP reply that is already
      // waiting, so the broker's rename to this key could be undone; announcing the same id
      // makes the outcome the same in either order.
      routingId: cert.publicKey,
      curveServerKey: serverKey,
      curvePublicKey: cert.publicKey,
      curveSecretKey: cert.secretKey,
      linger: 0,
      heartbeatInterval: options.heartbeatInterval ?? 2000,
      heartbeatTimeout: 3 * (options.heartbeatInterval ?? 2000),
      // Above the cap plus headroom libzmq drops the connection rather than buffer it.
      maxMessageSize: 4 * this.#maxMessageBytes,
    });
    this.#writer = new SocketWriter(this.#socket);
    if (this.#certsDir) this.#reloadDirectory();
  }

  /** Connects to the broker and, unless `connectTimeout` is 0, waits for the CURVE handshake. */
  static async connect(options: AgentOptions): Promise<Agent> {
    const cert = typeof options.cert === "string" ? loadSecretCertificate(options.cert) : options.cert;
    let serverKey = options.serverKey;
    if (!serverKey) {
      if (!options.certs) throw new ConfigError("serverKey or certs (holding broker.key) is required");
      const brokerCert = join(options.certs, "broker.key");
      if (!existsSync(brokerCert)) throw new ConfigError(`no serverKey given and ${brokerCert} does not exist`);
      serverKey = loadCertificate(brokerCert).publicKey;
    }
    if (!isZ85Key(serverKey)) throw new ConfigError("serverKey must be a 40-character Z85 key");
    const endpoints = Array.isArray(options.broker) ? options.broker : [options.broker];
    if (endpoints.length === 0) throw new ConfigError("at least one broker endpoint is required");

    const agent = new Agent(options, cert, serverKey);
    const connectTimeout = options.connectTimeout ?? 10_000;
    const handshake =
      connectTimeout > 0
        ? new Promise<void>((resolve, reject) => {
            agent.#handshake = { resolve, reject };
          })
        : Promise.resolve();
    void agent.#watch();
    try {
      for (const endpoint of endpoints) agent.#socket.connect(endpoint);
    } catch (err) {
      await agent.close();
      throw new ConfigError(`cannot connect to ${endpoints.join(", ")}: ${(err as Error).message}`, { cause: err });
    }
    agent.#loop = agent.#run();
    if (connectTimeout > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(`no CURVE handshake with ${endpoints.join(", ")} within ${connectTimeout} ms`)), connectTimeout);
      });
      try {
        await Promise.race([handshake, timeout]);
      } catch (err) {
        await agent.close();
        throw err;
      } finally {
        clearTimeout(timer);
      }
    }
    return agent;
  }

  /** The certificate name of a key, if known. */
  nameOf(key: string): string | undefined {
    return this.#directory.byKey.get(key);
  }

  /** A name (from `certs`) or a Z85 key → Z85 key. Throws ZmcpError(unknown_peer). */
  resolve(to: string): string {
    if (isZ85Key(to)) return to;
    let key = this.#directory.byName.get(to);
    if (!key && this.#certsDir) {
      this.#reloadDirectory(); // a certificate may have been added since
      key = this.#directory.byName.get(to);
    }
    if (!key) throw new ZmcpError("unknown_peer", `no certificate named ${JSON.stringify(to)}${this.#certsDir ? ` in ${this.#certsDir}` : ""}`);
    return key;
  }

  /** Offers a tool. Its arguments are validated with `spec.input` before `handler` runs. */
  tool<I extends z.ZodType, O extends z.ZodType | undefined = undefined>(
    name: string,
    spec: ToolSpec<I, O>,
    handler: ToolHandler<I, O>,
  ): this {
    if (typeof name !== "string" || name.length === 0 || name.length > 256) throw new ConfigError("tool name must be 1 to 256 characters");
    if (this.#tools.has(name)) throw new ConfigError(`tool ${JSON.stringify(name)} is already registered`);
    this.#tools.set(name, {
      name,
      description: spec.description ?? "",
      input: spec.input,
      output: spec.output,
      handler: handler as (args: unknown, ctx: ToolContext) => unknown,
    });
    return this;
  }

  /**
   * Calls `tool` on the agent `to` (a certificate name or a Z85 key) and resolves with its
   * result. Rejects with RemoteError (the broker's or the peer's code), TimeoutError, or
   * ZmcpError(aborted | closed | unknown_peer | too_large | invalid_args).
   */
  async call(to: string, tool: string, args: unknown = {}, options: CallOptions = {}): Promise<unknown> {
    if (this.#closed) throw new ZmcpError("closed", "agent is closed");
    const key = this.resolve(to);
    const timeout = options.timeout ?? this.#defaultTimeout;
    if (!(timeout > 0)) throw new ConfigError("timeout must be a positive number of ms");
    const now = Date.now();
    const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: key, exp: now + timeout };
    const frames = this.#seal(key, header, { t: "req", ts: now, rid: newId(), tool, args });
    const pendingKey = idKey(header.id);
    const answer = this.#pending.add(pendingKey, timeout, options.signal, `call ${tool} on ${to}`);
    this.#writer.send(frames).catch((err) => {
      this.#pending.reject(pendingKey, new ZmcpError("closed", `send failed: ${(err as Error).message}`, { cause: err }));
    });
    const response = await answer;
    if (response.st === "error") throw remoteError(response.error, "peer");
    return response.result;
  }

  /** Closes the socket; pending calls reject with `closed`, running handlers see `signal` fire. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    this.#pending.rejectAll(new ZmcpError("closed", "agent closed"));
    this.#socket.close();
    await this.#loop;
  }

  #reloadDirectory(): void {
    try {
      this.#directory = loadCertDirectory(this.#certsDir!, (err) => this.log.warn("certificate skipped", { error: err.message }));
    } catch (err) {
      this.log.warn("certificate directory unreadable", { error: String(err) });
    }
  }

  /** Header + inner draft → `[header, sealed body]`. Throws ZmcpError(invalid_args | too_large). */
  #seal(to: string, header: Header, draft: InnerDraft): [Uint8Array, Uint8Array] {
    const headerBytes = encodeHeader(header);
    let plaintext: Uint8Array;
    try {
      plaintext = encodeInner(draft, headerBytes);
    } catch (err) {
      throw new ZmcpError("invalid_args", `cannot encode message: ${(err as Error).message}`, { cause: err });
    }
    const body = this.#sealer.seal(to, plaintext);
    const size = headerBytes.length + body.length;
    if (size > this.#maxMessageBytes) throw new ZmcpError("too_large", `message of ${size} bytes exceeds ${this.#maxMessageBytes}`);
    return [headerBytes, body];
  }

  async #watch(): Promise<void> {
    try {
      for await (const event of this.#socket.events) {
        if (event.type === "handshake") {
          this.#handshake?.resolve();
          this.#handshake = undefined;
          this.log.debug("connected", { address: event.address });
        } else if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol" || event.type === "handshake:error:other") {
          const err = new ZmcpError("handshake_failed", `broker at ${event.address} refused the handshake (${event.type}); is this key in its allowlist?`);
          this.#handshake?.reject(err);
          this.#handshake = undefined;
          this.log.warn("handshake failed", { address: event.address, type: event.type });
        } else if (event.type === "disconnect") {
          this.log.debug("disconnected", { address: event.address });
        }
      }
    } catch {
      // the observer ends when the socket closes
    }
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      let frames: Buffer[];
      try {
        frames = await this.#socket.receive();
      } catch (err) {
        if (this.#closed) return;
        this.log.error("receive failed", { error: String(err) });
        continue;
      }
      try {
        this.#dispatch(frames);
      } catch (err) {
        this.log.error("dispatch failed", { error: String(err) });
      }
    }
  }

  #dispatch(frames: Buffer[]): void {
    if (frames.length !== 3) return this.log.warn("dropped message with wrong frame count", { frames: frames.length });
    const [from, headerBytes, body] = frames as [Buffer, Buffer, Buffer];
    if (from.length === 0) return this.#onNack(headerBytes);
    const peer = from.toString("latin1");
    let header: Header;
    try {
      header = decodeHeader(headerBytes);
    } catch (err) {
      // Only a faulty broker forwards a header it could not read itself.
      return this.log.warn("dropped message with invalid header", { from: peer, error: String(err) });
    }
    try {
      const now = Date.now();
      if (header.exp < now) throw new ProtocolError("expired", "message is past its deadline");
      const size = headerBytes.length + body.length;
      if (size > this.#maxMessageBytes) throw new ProtocolError("too_large", `message of ${size} bytes exceeds ${this.#maxMessageBytes}`);
      const inner = decodeInner(this.#sealer.open(peer, body), headerBytes, this.#maxMessageBytes);
      if (inner.t !== (header.k === "req" ? "req" : header.k === "res" ? "res" : "")) {
        throw new ProtocolError("bad_frame", `header kind ${header.k} does not match message kind ${inner.t}`);
      }
      this.#replay.check(`${peer}:${idKey(header.id)}`, inner.ts, now);
      if (inner.t === "req") void this.#onRequest(peer, header, inner);
      else if (header.re) this.#pending.resolve(idKey(header.re), inner);
    } catch (err) {
      const code: WireCode = err instanceof ProtocolError ? (err.code as WireCode) : "bad_frame";
      const message = err instanceof Error ? err.message : String(err);
      if (this.log.enabled("debug")) this.log.debug("refused message", { from: peer, code, message });
      if (header.k === "req") this.#respond(peer, header, { st: "error", error: { code, message } }, Date.now() + 30_000);
      else if (header.k === "res" && header.re) this.#pending.reject(idKey(header.re), new RemoteError(code, message, "peer"));
    }
  }

  #onNack(headerBytes: Buffer): void {
    let header: Header;
    try {
      header = decodeHeader(headerBytes);
    } catch (err) {
      return this.log.warn("dropped invalid nack from broker", { error: String(err) });
    }
    const err = remoteError({ code: header.code ?? "bad_frame", message: header.msg ?? "refused by broker" }, "broker");
    if (header.re && this.#pending.reject(idKey(header.re), err)) return;
    this.log.warn("broker refused a message", { code: err.code, message: header.msg });
  }

  async #onRequest(peer: string, header: Header, request: Request): Promise<void> {
    const tool = this.#tools.get(request.tool);
    if (!tool) {
      return this.#respond(peer, header, { st: "error", error: { code: "unknown_tool", message: `no tool named ${JSON.stringify(request.tool)}` } });
    }
    const parsed = tool.input.safeParse(request.args);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      return this.#respond(peer, header, { st: "error", error: { code: "invalid_args", message: `${tool.name}: ${issues}` } });
    }
    const ctx: ToolContext = {
      from: peer,
      fromName: this.nameOf(peer),
      requestId: idKey(request.rid),
      deadline: header.exp,
      signal: this.#closing.signal,
    };
    try {
      let result = await tool.handler(parsed.data, ctx);
      if (tool.output) {
        const checked = tool.output.safeParse(result);
        if (!checked.success) throw new ZmcpError("tool_failed", `${tool.name} returned a result that fails its output schema`);
        result = checked.data;
      }
      this.#respond(peer, header, { st: "ok", result: result ?? null });
    } catch (err) {
      const code = err instanceof ZmcpError && isWireCode(err.code) ? err.code : "tool_failed";
      const message = err instanceof Error ? err.message : String(err);
      this.log.debug("tool failed", { tool: tool.name, code, message });
      this.#respond(peer, header, { st: "error", error: { code, message } });
    }
  }

  /** Sends a sealed response to `peer`; a result that cannot be encoded or is too large becomes an error. */
  #respond(peer: string, request: Header, draft: Omit<Response, "h" | "t" | "ts">, exp = Math.max(request.exp, Date.now() + 1000)): void {
    if (this.#closed) return;
    const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: peer, exp, re: request.id };
    let frames: [Uint8Array, Uint8Array];
    try {
      frames = this.#seal(peer, header, { t: "res", ts: Date.now(), ...draft });
    } catch (err) {
      const code = err instanceof ZmcpError && err.code === "too_large" ? "too_large" : "tool_failed";
      frames = this.#seal(peer, header, { t: "res", ts: Date.now(), st: "error", error: { code, message: `result not sendable: ${(err as Error).message}` } });
    }
    this.#writer.send(frames).catch((err) => this.log.warn("response not sent", { to: peer, error: String(err) }));
  }
}

function remoteError(body: ErrorBody | undefined, origin: "broker" | "peer"): RemoteError {
  if (!body) return new RemoteError("bad_frame", "error response without an error", origin);
  // An unknown code (a newer peer) is kept readable in the message rather than dropped.
  if (isWireCode(body.code)) return new RemoteError(body.code, body.message, origin);
  return new RemoteError("tool_failed", `${body.code}: ${body.message}`, origin);
}
