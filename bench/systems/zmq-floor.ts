/**
 * zeromq.js floor: a bare DEALER → ROUTER → DEALER relay, no envelope, no crypto. What any
 * zeromq.js broker costs before it does anything useful. `zmq-floor-curve` is the same relay
 * with CURVE on every connection (no ZAP): libzmq's own encryption cost, apart from zmcp's.
 *
 * Frames: caller sends `[to, body]`; the relay sends `[to, from, body]`; the responder
 * receives `[from, body]` and sends `[from, body]` back the same way. With one relay and one
 * responder every pipe is FIFO, so the caller matches echoes to calls in order.
 */
import * as zmq from "zeromq";
import { generateCertificate } from "../../src/auth/certs.js";
import { receiveLoop } from "../../src/support/receive-loop.js";
import { SocketWriter } from "../../src/support/writer.js";
import { startWorker } from "../proc.js";
import type { Client, Service, WorkerConfig } from "../types.js";
import { nodeCaller, stopAll, type SystemSpec } from "./spec.js";

const RESPONDER_ID = "responder";
const PROBE = Buffer.from("P");

interface Curve {
  serverPublic: string;
  serverSecret: string;
  clientPublic: string;
  clientSecret: string;
}

/** CURVE options for a relay socket, or none. */
function curveOptions(config: WorkerConfig, side: "server" | "client"): Partial<zmq.SocketOptions<zmq.Router>> & Partial<zmq.SocketOptions<zmq.Dealer>> {
  const c = config["curve"] as Curve | undefined;
  if (!c) return {};
  return side === "server"
    ? { curveServer: true, curvePublicKey: c.serverPublic, curveSecretKey: c.serverSecret }
    : { curveServerKey: c.serverPublic, curvePublicKey: c.clientPublic, curveSecretKey: c.clientSecret };
}

function floorSystem(id: string, title: string, describe: string, curve: boolean): SystemSpec {
  return {
    id,
    title,
    describe,
    async start() {
      let keys: Curve | undefined;
      if (curve) {
        const server = generateCertificate();
        const client = generateCertificate();
        keys = { serverPublic: server.publicKey, serverSecret: server.secretKey, clientPublic: client.publicKey, clientSecret: client.secretKey };
      }
      const base = keys ? { curve: keys } : {};
      const broker = await startWorker(id, "broker", base);
      const endpoint = String(broker.info["endpoint"]);
      const responder = await startWorker(id, "responder", { ...base, endpoint }).catch(async (err) => {
        await broker.stop();
        throw err;
      });
      return {
        brokers: [broker],
        responder,
        caller: () => nodeCaller(id, { ...base, endpoint }),
        stop: () => stopAll([responder, broker]),
      };
    },
    roles: floorRoles,
  };
}

const floorRoles: SystemSpec["roles"] = {
  async broker(config: WorkerConfig): Promise<Service> {
    const router = new zmq.Router({ linger: 0, sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000, ...curveOptions(config, "server") });
    await router.bind("tcp://127.0.0.1:*");
    let closed = false;
    // Receive errors are ignored: a benchmark role stops only when closed.
    const loop = receiveLoop(router, () => closed, async (frames) => {
      if (frames.length !== 3) return;
      const [from, to, body] = frames as [Buffer, Buffer, Buffer];
      try {
        await router.send([to, from, body]);
      } catch {
        // no such peer yet: dropped, the caller's probe retries
      }
    }, () => undefined);
    return {
      info: { endpoint: router.lastEndpoint },
      async close() {
        closed = true;
        router.close();
        await loop;
      },
    };
  },

  async responder(config: WorkerConfig): Promise<Service> {
    const dealer = new zmq.Dealer({ routingId: RESPONDER_ID, linger: 0, sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000, ...curveOptions(config, "client") });
    dealer.connect(String(config["endpoint"]));
    let closed = false;
    // Receive errors are ignored: a benchmark role stops only when closed.
    const loop = receiveLoop(dealer, () => closed, async (frames) => {
      try {
        await dealer.send(frames);
      } catch {
        // relay gone
      }
    }, () => undefined);
    return {
      async close() {
        closed = true;
        dealer.close();
        await loop;
      },
    };
  },

  async caller(config: WorkerConfig): Promise<Client> {
    const dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000, ...curveOptions(config, "client") });
    dealer.connect(String(config["endpoint"]));
    const writer = new SocketWriter(dealer);
    const waiting: Array<{ size: number; resolve: () => void; reject: (err: Error) => void }> = [];
    let probed: (() => void) | undefined;
    let closed = false;
    // Receive errors are ignored: a benchmark role stops only when closed.
    const loop = receiveLoop(dealer, () => closed, (frames) => {
      const body = frames[1];
      if (body?.length === 1) {
        probed?.();
        return;
      }
      const next = waiting.shift();
      if (!next) return;
      if (body?.length === next.size) next.resolve();
      else next.reject(new Error(`echo of ${body?.length} bytes for a call of ${next.size}`));
    }, () => undefined);
    // Until the responder has connected, the relay drops what it cannot route: probe first.
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 10_000;
      probed = resolve;
      const tick = () => {
        if (!probed) return;
        if (Date.now() > deadline) return reject(new Error("no echo from the responder within 10 s"));
        void writer.send([RESPONDER_ID, PROBE]).catch(() => undefined);
        setTimeout(tick, 100);
      };
      tick();
    });
    probed = undefined;
    return {
      call(payload) {
        return new Promise<void>((resolve, reject) => {
          const entry = { size: payload.length, resolve, reject };
          waiting.push(entry);
          writer.send([RESPONDER_ID, payload]).catch((err: Error) => {
            const i = waiting.indexOf(entry);
            if (i >= 0) waiting.splice(i, 1);
            reject(err);
          });
        });
      },
      async close() {
        closed = true;
        dealer.close();
        await loop;
      },
    };
  },
};

export const zmqFloor = floorSystem("zmq-floor", "zeromq.js floor", "bare zeromq.js DEALER→ROUTER→DEALER relay, no envelope, no crypto", false);
export const zmqFloorCurve = floorSystem(
  "zmq-floor-curve",
  "zeromq.js floor+CURVE",
  "the zeromq.js floor with CURVE on every connection (no ZAP): libzmq's encryption alone",
  true,
);
