/**
 * The floor zmcp is measured against: a bare DEALER → ROUTER → DEALER relay with no
 * envelope, no CURVE and no crypto. Run as two processes:
 *
 *   node dist/examples/bare-relay.js relay tcp://127.0.0.1:5599
 *   node dist/examples/bare-relay.js echo  tcp://127.0.0.1:5599
 *
 * Frames: caller sends [to, payload]; the relay forwards [to, from, payload]; the echo peer
 * answers [from, payload].
 */
import * as zmq from "zeromq";

const [mode, endpoint] = process.argv.slice(2);
if (!mode || !endpoint || !["relay", "echo"].includes(mode)) {
  process.stdout.write("usage: bare-relay relay|echo <endpoint>\n");
  process.exit(mode === "--help" || mode === "-h" ? 0 : 2);
}

if (mode === "relay") {
  const router = new zmq.Router({ linger: 0, mandatory: true });
  await router.bind(endpoint);
  process.stderr.write(JSON.stringify({ msg: "ready", endpoint: router.lastEndpoint }) + "\n");
  for await (const [from, to, payload] of router) {
    try {
      await router.send([to!, from!, payload!]);
    } catch {
      // a bare relay: unreachable peers are dropped (what zmcp's broker refuses to do)
    }
  }
} else {
  const dealer = new zmq.Dealer({ linger: 0, routingId: "echo" });
  dealer.connect(endpoint);
  process.stderr.write(JSON.stringify({ msg: "ready" }) + "\n");
  for await (const [from, payload] of dealer) await dealer.send([from!, payload!]);
}
