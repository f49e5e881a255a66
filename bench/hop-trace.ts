/**
 * Preloaded into a process (`node --import dist/bench/hop-trace.js`) by `roundtrip --hops`:
 * records when each zeromq.js DEALER or ROUTER send is called and each receive resolves, on one
 * clock shared by every process of the machine (CLOCK_MONOTONIC), and writes them on exit to
 * `$ZMCP_HOP_TRACE_DIR/<pid>.json`. Nothing else changes: a measuring tool, never loaded by zmcp.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as zmq from "zeromq";

const MAX = 1_000_000;
const times = new Float64Array(MAX);
const ops = new Uint8Array(MAX); // 1 send, 2 receive
let n = 0;
const now = () => Number(process.hrtime.bigint()) / 1000;

for (const Socket of [zmq.Dealer, zmq.Router]) {
  const send = Socket.prototype.send;
  const receive = Socket.prototype.receive;
  // The prototype's methods are read-only properties: defined over, not assigned.
  Object.defineProperty(Socket.prototype, "send", {
    configurable: true,
    value: function (this: zmq.Dealer, message: Parameters<zmq.Dealer["send"]>[0]) {
      if (n < MAX) (times[n] = now()), (ops[n++] = 1);
      return send.call(this, message);
    },
  });
  Object.defineProperty(Socket.prototype, "receive", {
    configurable: true,
    value: function (this: zmq.Dealer) {
      return receive.call(this).then((frames) => {
        if (n < MAX) (times[n] = now()), (ops[n++] = 2);
        return frames;
      });
    },
  });
}

/** What this process recorded so far. */
export function recorded(): { times: Float64Array; ops: Uint8Array } {
  return { times: times.subarray(0, n), ops: ops.subarray(0, n) };
}

let written = false;
function dump(): void {
  const dir = process.env["ZMCP_HOP_TRACE_DIR"];
  if (written || !dir) return;
  written = true;
  writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ argv: process.argv.slice(1), times: Array.from(times.subarray(0, n)), ops: Array.from(ops.subarray(0, n)) }));
}
process.on("exit", dump);
process.on("SIGTERM", () => {
  dump();
  if (process.listenerCount("SIGTERM") === 1) process.exit(0); // nobody else handles it: exit as the signal would have
});
