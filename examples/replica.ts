/**
 * A replica of a service: its own agent key, plus the service key it shares with the other
 * replicas. Callers address `svc:NAME` and never learn which replica answers (except that
 * these tools tell, for the demo and tests).
 *
 *   node dist/examples/replica.js --cert certs/worker-1.key_secret --service summarize
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { Agent } from "../src/index.js";

const { values } = parseArgs({
  options: {
    broker: { type: "string", multiple: true },
    cert: { type: "string" },
    certs: { type: "string", default: "certs" },
    service: { type: "string", default: "summarize" },
    "work-ms": { type: "string", default: "0" },
    /** Log one line per run of a tool (`{"msg":"ran",...}`), so tests can count executions. */
    "log-runs": { type: "boolean", default: false },
    /** Agent option `startGrace`, ms (default 2,000). */
    "start-grace": { type: "string" },
    /** Agent option `stateDir`: keep an "alive until" mark so a restart refuses replays. */
    "state-dir": { type: "string" },
    /** Declare the service durable: a broker with a store queues every request to it (docs/DURABLE.md). */
    durable: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help || !values.cert) {
  process.stdout.write("usage: replica --cert certs/NAME.key_secret [--broker tcp://127.0.0.1:5555 ...] [--certs certs] [--service summarize] [--work-ms 0] [--log-runs] [--start-grace ms] [--state-dir DIR] [--durable]\n");
  process.exit(values.help ? 0 : 2);
}
const workMs = Number(values["work-ms"]);
const agent = await Agent.connect({
  broker: values.broker ?? ["tcp://127.0.0.1:5555"],
  cert: values.cert,
  certs: values.certs,
  ...(values["start-grace"] === undefined ? {} : { startGrace: Number(values["start-grace"]) }),
  ...(values["state-dir"] === undefined ? {} : { stateDir: values["state-dir"] }),
});
let served = 0;
agent
  .tool("summarize", { description: "Word and character counts of a text", input: z.strictObject({ text: z.string() }) }, async ({ text }, ctx) => {
    served++;
    if (values["log-runs"]) process.stderr.write(JSON.stringify({ level: "info", msg: "ran", tool: "summarize", requestId: ctx.requestId, from: ctx.from }) + "\n");
    if (workMs > 0) await new Promise((r) => setTimeout(r, workMs));
    return { replica: agent.publicKey, served, words: text.split(/\s+/).filter(Boolean).length, chars: text.length };
  })
  .tool(
    "long_summary",
    { description: "A job version of summarize", input: z.strictObject({ text: z.string(), seconds: z.number().min(0).max(20) }), job: true },
    async ({ text, seconds }, ctx) => {
      for (let i = 1; i <= Math.ceil(seconds * 4); i++) {
        await new Promise((r) => setTimeout(r, 250));
        ctx.progress({ progress: i / 4, total: seconds });
      }
      return { replica: agent.publicKey, words: text.split(/\s+/).filter(Boolean).length };
    },
  );
await agent.serve(values.service, { durable: values.durable });
process.stderr.write(JSON.stringify({ level: "info", msg: "replica ready", service: values.service, publicKey: agent.publicKey }) + "\n");
const stop = () => void agent.close().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
