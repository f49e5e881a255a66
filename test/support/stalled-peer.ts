/**
 * A peer that connects with an admitted key and then never reads: the hostile or wedged
 * consumer that fills the broker's queue toward it. Used by the broker trust tests and by
 * bench/stalled-reader-rss.ts.
 *
 *   node dist/test/support/stalled-peer.js --cert certs/mallory.key_secret --server-key <Z85> --broker tcp://127.0.0.1:5555 [--heartbeat ms]
 *
 * Prints `{"msg":"stalled peer ready"}` on stderr once its CURVE handshake is done.
 */
import { parseArgs } from "node:util";
import * as zmq from "zeromq";
import { loadSecretCertificate } from "../../src/auth/certs.js";

// Callers pass the key as `--server-key=KEY`: a Z85 key may start with "-", which parseArgs
// takes for an option when it comes as a separate argument.
const { values } = parseArgs({
  options: {
    cert: { type: "string" },
    "server-key": { type: "string" },
    broker: { type: "string" },
    /** ZMTP heartbeats on this side, ms: a peer may set them whatever the broker does. */
    heartbeat: { type: "string" },
  },
});
if (!values.cert || !values["server-key"] || !values.broker) throw new Error("--cert, --server-key and --broker are required");
const cert = loadSecretCertificate(values.cert);
const socket = new zmq.Dealer({
  curveServerKey: values["server-key"],
  curvePublicKey: cert.publicKey,
  curveSecretKey: cert.secretKey,
  routingId: cert.publicKey,
  receiveHighWaterMark: 1,
  linger: 0,
  ...(values.heartbeat ? { heartbeatInterval: Number(values.heartbeat), heartbeatTimeout: 3 * Number(values.heartbeat) } : {}),
});
for await (const event of (async function* () {
  socket.connect(values.broker!);
  yield* socket.events;
})()) {
  if (event.type === "handshake") break;
}
process.stderr.write(JSON.stringify({ level: "info", msg: "stalled peer ready", publicKey: cert.publicKey }) + "\n");
// Never receive. Stay up until killed.
setInterval(() => undefined, 1 << 30);
