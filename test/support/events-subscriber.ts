/**
 * A subscriber agent as its own process (so a test can SIGSTOP it, or kill it), with the PSK
 * test sealer (events-psk.ts):
 *
 *   node dist/test/support/events-subscriber.js --cert C --certs DIR --broker EP --pattern P [--heartbeat ms]
 *
 * Logs `{"msg":"subscriber ready"}` on stderr once subscribed, then `{"msg":"counts", delivered,
 * gaps, last}` every 100 ms whenever they changed (and once a second anyway).
 */
import { parseArgs } from "node:util";
import { Agent } from "../../src/agent/agent.js";
import { createLogger } from "../../src/support/log.js";
import { pskEvents } from "./events-psk.js";

const { values } = parseArgs({
  options: {
    broker: { type: "string" },
    cert: { type: "string" },
    certs: { type: "string" },
    pattern: { type: "string" },
    heartbeat: { type: "string" },
  },
});

const agent = await Agent.connect({
  broker: values.broker!,
  cert: values.cert!,
  certs: values.certs!,
  connectTimeout: 15_000,
  log: createLogger("warn"),
  events: pskEvents(),
  ...(values.heartbeat ? { heartbeatInterval: Number(values.heartbeat) } : {}),
});
let last = 0;
const sub = await agent.subscribe(values.pattern!, (event) => {
  last = event.sequence;
});
const line = (msg: string, extra: Record<string, unknown> = {}) => process.stderr.write(`${JSON.stringify({ msg, ...extra })}\n`);
line("subscriber ready");
let said = "";
let saidAt = 0;
setInterval(() => {
  const now = { delivered: sub.delivered, gaps: sub.gaps.total, last };
  const text = JSON.stringify(now);
  if (text === said && Date.now() - saidAt < 1000) return;
  said = text;
  saidAt = Date.now();
  line("counts", now);
}, 100);
const stop = () => void agent.close().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
