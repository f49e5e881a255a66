/** A raw CURVE DEALER for tests that must send exactly the frames they choose. */
import * as zmq from "zeromq";
import { encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header, type InnerDraft } from "../../src/wire/envelope.js";
import { Sealer } from "../../src/wire/seal.js";
import type { CertFixture } from "./certs.js";

export interface RawPeer {
  socket: zmq.Dealer;
  sealer: Sealer;
  /** Builds `[header, sealed body]` from this peer to `to`, as the SDK would. */
  frames(to: string, draft: InnerDraft, headerPatch?: Partial<Header>): [Uint8Array, Uint8Array];
  /** Receives one message or throws after `timeoutMs`. */
  receive(timeoutMs?: number): Promise<Buffer[]>;
  close(): void;
}

export async function rawPeer(fx: CertFixture, name: string, endpoint: string, options: { routingId?: string } = {}): Promise<RawPeer> {
  const cert = fx.certs[name]!;
  const socket = new zmq.Dealer({
    curveServerKey: fx.key("broker"),
    curvePublicKey: cert.publicKey,
    curveSecretKey: cert.secretKey,
    linger: 0,
    receiveTimeout: 3000,
    ...(options.routingId ? { routingId: options.routingId } : {}),
  });
  const handshake = (async () => {
    for await (const event of socket.events) if (event.type === "handshake") return;
  })();
  socket.connect(endpoint);
  await handshake;
  const sealer = new Sealer(cert.secretKey);
  return {
    socket,
    sealer,
    frames(to, draft, headerPatch = {}) {
      const header: Header = { v: PROTOCOL_VERSION, k: draft.t, id: newId(), to, exp: Date.now() + 5000, ...headerPatch };
      const headerBytes = encodeHeader(header);
      return [headerBytes, sealer.seal(to, encodeInner(draft, headerBytes))];
    },
    async receive(timeoutMs = 3000) {
      socket.receiveTimeout = timeoutMs;
      return socket.receive();
    },
    close: () => socket.close(),
  };
}

/** Receives until `timeoutMs` of silence (at most 10,000 messages); returns the frames seen. */
export async function drain(peer: RawPeer, timeoutMs = 400): Promise<Buffer[][]> {
  const got: Buffer[][] = [];
  for (let i = 0; i < 10_000; i++) {
    try {
      got.push(await peer.receive(timeoutMs));
    } catch {
      return got;
    }
  }
  return got;
}
