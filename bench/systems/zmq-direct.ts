/**
 * The sealed direct floor: a caller DEALER straight to the responder's ROUTER, CURVE on the
 * connection and a libsodium secretbox over each body both ways (src/wire/seal.ts, the seal zmcp
 * uses), and nothing else: no header, no envelope, no replay or answer cache, no validation.
 * What a zmcp direct link (`zmcp-direct`) would cost if all of zmcp's own per-call work were
 * free, measured in the same run: issue 12's direct targets sit between NATS and this floor, so
 * `zmcp-direct ÷ this` is the share of a direct call that is zmcp's JavaScript, beside what the
 * binding, libzmq, CURVE and the seal cost (the issue's own table measured such a prototype at
 * 0.69 × NATS's p50 and 1.19 × its throughput).
 *
 * Frames: the caller sends `[sealed payload]`; the ROUTER receives `[routing id, sealed]`, opens
 * it, seals the same bytes back, and sends `[routing id, sealed]`. One caller, one responder,
 * FIFO pipes: echoes are matched to calls in order, their size checked after opening.
 */
import * as zmq from "zeromq";
import { generateCertificate } from "../../src/auth/certs.js";
import { receiveLoop } from "../../src/support/receive-loop.js";
import { SocketWriter } from "../../src/support/writer.js";
import { Sealer } from "../../src/wire/seal.js";
import { startWorker } from "../proc.js";
import type { Client, Service, WorkerConfig } from "../types.js";
import { nodeCaller, stopAll, type SystemSpec } from "./spec.js";

interface Keys {
  responderPublic: string;
  responderSecret: string;
  callerPublic: string;
  callerSecret: string;
}

export const zmqDirectSealed: SystemSpec = {
  id: "zmq-direct-sealed",
  title: "zeromq.js direct+CURVE+seal",
  describe: "caller DEALER straight to the responder's ROUTER, CURVE + a libsodium secretbox each way, no zmcp code: the sealed direct floor",
  async start() {
    const responderCert = generateCertificate();
    const callerCert = generateCertificate();
    const keys: Keys = { responderPublic: responderCert.publicKey, responderSecret: responderCert.secretKey, callerPublic: callerCert.publicKey, callerSecret: callerCert.secretKey };
    const responder = await startWorker("zmq-direct-sealed", "responder", { keys });
    const endpoint = String(responder.info["endpoint"]);
    return {
      brokers: [],
      responder,
      caller: () => nodeCaller("zmq-direct-sealed", { keys, endpoint }),
      stop: () => stopAll([responder]),
    };
  },
  roles: {
    async responder(config: WorkerConfig): Promise<Service> {
      const keys = config["keys"] as Keys;
      const router = new zmq.Router({ linger: 0, sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000, curveServer: true, curvePublicKey: keys.responderPublic, curveSecretKey: keys.responderSecret });
      await router.bind("tcp://127.0.0.1:*");
      const sealer = new Sealer(keys.responderSecret);
      const writer = new SocketWriter(router);
      let closed = false;
      // Receive errors and bodies that do not open are ignored: a benchmark role stops only when closed.
      const loop = receiveLoop(router, () => closed, (frames) => {
        if (frames.length !== 2) return;
        const [id, body] = frames as [Buffer, Buffer];
        let plain: Uint8Array;
        try {
          plain = sealer.openInPlace(keys.callerPublic, body);
        } catch {
          return;
        }
        void writer.send([id, sealer.seal(keys.callerPublic, plain)]).catch(() => undefined);
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

    async caller(config: WorkerConfig): Promise<Client> {
      const keys = config["keys"] as Keys;
      const dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000, curveServerKey: keys.responderPublic, curvePublicKey: keys.callerPublic, curveSecretKey: keys.callerSecret });
      const handshake = (async () => {
        for await (const event of dealer.events) if (event.type === "handshake") return;
      })();
      dealer.connect(String(config["endpoint"]));
      await handshake;
      const sealer = new Sealer(keys.callerSecret);
      const writer = new SocketWriter(dealer);
      const waiting: Array<{ size: number; resolve: () => void; reject: (err: Error) => void }> = [];
      let closed = false;
      const loop = receiveLoop(dealer, () => closed, (frames) => {
        const next = waiting.shift();
        if (!next) return;
        let size = -1;
        try {
          size = sealer.openInPlace(keys.responderPublic, frames[0]!).length;
        } catch {
          // counted below as a wrong echo
        }
        if (size === next.size) next.resolve();
        else next.reject(new Error(`echo of ${size} bytes for a call of ${next.size}`));
      }, () => undefined);
      return {
        call(payload) {
          return new Promise<void>((resolve, reject) => {
            const entry = { size: payload.length, resolve, reject };
            waiting.push(entry);
            writer.send([sealer.seal(keys.responderPublic, payload)]).catch((err: Error) => {
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
  },
};
