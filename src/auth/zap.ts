/**
 * The ZAP handler (ZeroMQ RFC 27) that admits CURVE clients by public key, and renames each
 * admitted peer to the Z85 text of its key.
 *
 * The rename is what lets the broker route with no table: a ZAP reply whose metadata holds
 * the property `Identity` sets the peer's routing id on the ROUTER, whatever id the peer
 * asked for. So the sender id that the ROUTER prepends to every message is the sender's
 * authenticated key and cannot be spoofed (guarded by test/broker.test.ts). An agent's direct-link
 * listener (agent/listener.ts) runs one too, in a zmq.Context of its own (one handler per context).
 */
import * as zmq from "zeromq";
import type { Logger } from "../support/log.js";
import type { LogThrottle } from "../support/log-throttle.js";
import { receiveLoop } from "../support/receive-loop.js";
import { SocketWriter } from "../support/writer.js";
import { z85Encode } from "../wire/z85.js";
import { describeThrown } from "../errors.js";

/** The ZAP domain set on the broker socket. ZAP fails open without a non-empty, enforced domain. */
export const ZAP_DOMAIN = "zmcp";
const ZAP_ENDPOINT = "inproc://zeromq.zap.01";

/**
 * libzmq (4.3.5, curve_server.cpp) sends the ZAP request, reads the reply at once if it is
 * already there, and only then parses the client's own INITIATE metadata, which holds the
 * routing id the client asked for. A reply that is already there is thus overridden by the
 * client's claim. Measured here: about 1 connection in 40 got its self-chosen id when the
 * handler answered at once, none in thousands with the reply deferred a few ms. So the reply
 * waits; honest agents also ask for their own key as routing id, so the order cannot hurt
 * them, and a spoofer who still won the race could not open or forge sealed traffic.
 */
const REPLY_DELAY_MS = 3;

/** ZAP metadata: 1 byte name length, name, 4-byte big-endian value length, value. */
export function encodeZapMetadata(props: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(props)) {
    const n = Buffer.from(name, "ascii");
    const v = Buffer.from(value, "utf8");
    const len = Buffer.alloc(4);
    len.writeUInt32BE(v.length);
    parts.push(Buffer.from([n.length]), n, len, v);
  }
  return Buffer.concat(parts);
}

export class ZapHandler {
  readonly #socket: zmq.Router;
  readonly #writer: SocketWriter;
  #closed = false;

  private constructor(
    socket: zmq.Router,
    private readonly isAllowed: (key: string) => boolean,
    private readonly log: Logger,
    private readonly throttle: LogThrottle | undefined,
    private readonly admitting: ((key: string) => Promise<number>) | undefined,
  ) {
    this.#socket = socket;
    this.#writer = new SocketWriter(socket);
  }

  /** Binds the handler in `context`. Must run before the broker's socket binds. */
  /**
   * `admitting` is told each admitted key before its approval is sent and may hold the approval
   * for the ms it returns (the broker uses it to warn a connection about to be displaced).
   */
  static async start(
    context: zmq.Context,
    isAllowed: (key: string) => boolean,
    log: Logger,
    throttle?: LogThrottle,
    admitting?: (key: string) => Promise<number>,
  ): Promise<ZapHandler> {
    const socket = new zmq.Router({ context, linger: 0 });
    await socket.bind(ZAP_ENDPOINT);
    const handler = new ZapHandler(socket, isAllowed, log, throttle, admitting);
    void handler.#run();
    return handler;
  }

  #run(): Promise<void> {
    return receiveLoop(
      this.#socket,
      () => this.#closed,
      (frames) => this.#answer(frames),
      (what, err) => this.log.error(`zap ${what} failed`, { error: describeThrown(err) }),
    );
  }

  /** Decides one ZAP request and schedules its reply. */
  #answer(frames: Buffer[]): void {
    const [addr, , version, requestId, domain, , , mechanism, clientKey] = frames;
    if (!addr || !requestId) return; // not a ZAP request; nothing to answer
    let status = "400";
    let text = "denied";
    let userId = "";
    let metadata: Buffer = Buffer.alloc(0);
    let extraDelay: Promise<number> = Promise.resolve(0);
    if (version?.toString() !== "1.0") {
      status = "500";
      text = "unsupported ZAP version";
    } else if (domain?.toString() !== ZAP_DOMAIN || mechanism?.toString() !== "CURVE" || clientKey?.length !== 32) {
      text = "CURVE in the zmcp domain is required";
    } else {
      const key = z85Encode(clientKey);
      if (this.isAllowed(key)) {
        status = "200";
        text = "OK";
        userId = key;
        metadata = encodeZapMetadata({ Identity: key });
        if (this.admitting) extraDelay = this.admitting(key).catch(() => 0);
      } else {
        // Anyone who knows the broker's public key can cause this, with fresh keys each time:
        // one line per interval in all, naming the latest key, with a count of the others.
        if (this.throttle) this.throttle.write("warn", "handshake refused: key not in allowlist", "", { key });
        else this.log.warn("handshake refused: key not in allowlist", { key });
      }
    }
    // Deferred on purpose, without holding up the next request: see REPLY_DELAY_MS.
    const reply = [addr, "", "1.0", requestId, status, text, userId, metadata];
    void extraDelay.then((extra) =>
      setTimeout(() => {
        if (this.#closed) return;
        this.#writer.send(reply).catch((err) => {
          if (!this.#closed) this.log.error("zap reply failed", { error: describeThrown(err) });
        });
      }, REPLY_DELAY_MS + extra),
    );
  }

  close(): void {
    this.#closed = true;
    this.#socket.close();
  }
}
