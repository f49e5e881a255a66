/**
 * A worker agent for the reliability scenarios, run as its own process so that it can be
 * killed, frozen (SIGSTOP) and restarted with the same key:
 *
 *   node dist/test/reliability/worker.js --cert certs/bob.key_secret --certs certs \
 *     --broker tcp://127.0.0.1:5555 [--broker ...] [--metrics 127.0.0.1:0] [--clock-offset ms]
 *
 * Tools: `spin` (blocks the event loop for `ms`), `work` and the job `long` (count their executions per request id, so a test can prove that no request ran
 * twice), `report` (those counts), `call_peer` (calls another agent from this process, to test
 * a caller whose clock is skewed). `--probe name/tool` makes one call once connected and logs
 * its outcome (`{"msg":"probe"}`), for peers that cannot be reached to be asked. `--clock-offset` shifts this process's Date.now, to play a
 * host whose clock is wrong. Prints `{"msg":"agent ready", metrics}` on stderr when connected.
 */
import { parseArgs } from "node:util";
import { collectDefaultMetrics } from "prom-client";
import { z } from "zod";
import { Agent } from "../../src/agent/agent.js";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { serveMetrics, type MetricsServer } from "../../src/support/metrics.js";
import { createLogger } from "../../src/support/log.js";

const { values } = parseArgs({
  options: {
    broker: { type: "string", multiple: true, default: ["tcp://127.0.0.1:5555"] },
    cert: { type: "string", default: "certs/bob.key_secret" },
    certs: { type: "string", default: "certs" },
    name: { type: "string", default: "worker" },
    metrics: { type: "string" },
    "clock-offset": { type: "string" },
    heartbeat: { type: "string" },
    probe: { type: "string" },
    /** Agent option `listen` (direct links): the bound endpoint is in the ready line (`direct`). */
    listen: { type: "string" },
    /**
     * Agent option `connectTimeout` (default 15,000). 0 registers the tools before any request
     * can be read (the ready line then comes before the handshake): for a restart under load.
     */
    "connect-timeout": { type: "string" },
    /** Agent option `startGrace`, ms (clock-skew scenarios: a skew larger than the default 2 s). */
    "start-grace": { type: "string" },
  },
});

const offset = Number(values["clock-offset"] ?? 0);
if (offset) {
  const realNow = Date.now;
  Date.now = () => realNow() + offset;
}

/** Executions per request id: a request that runs twice shows up in `duplicates`. */
const executions = new Map<string, number>();
let total = 0;

const agent = await Agent.connect({
  broker: values.broker,
  cert: values.cert,
  certs: values.certs,
  connectTimeout: Number(values["connect-timeout"] ?? 15_000),
  log: createLogger("warn"),
  ...(values.heartbeat ? { heartbeatInterval: Number(values.heartbeat) } : {}),
  ...(values.listen ? { listen: values.listen } : {}),
  ...(values["start-grace"] ? { startGrace: Number(values["start-grace"]) } : {}),
});
agent
  .tool("work", { input: z.strictObject({ n: z.number(), ms: z.number().min(0).max(60_000).optional(), pad: z.string().optional() }) }, async ({ n, ms }, ctx) => {
    total++;
    executions.set(ctx.requestId, (executions.get(ctx.requestId) ?? 0) + 1);
    if (ms) await new Promise((r) => setTimeout(r, ms));
    return { n };
  })
  .tool("long", { job: true, input: z.strictObject({ ms: z.number().min(0).max(600_000), steps: z.number().int().min(1).max(100).default(5) }) }, async ({ ms, steps }, ctx) => {
    total++;
    executions.set(ctx.requestId, (executions.get(ctx.requestId) ?? 0) + 1);
    for (let i = 1; i <= steps; i++) {
      await new Promise((r) => setTimeout(r, ms / steps));
      if (ctx.signal.aborted) throw new ZmcpError("tool_failed", "cancelled");
      ctx.progress({ progress: i, total: steps });
    }
    return { steps };
  })
  // Blocks the event loop (a CPU-bound handler): libzmq's I/O thread keeps running, so the
  // agent's input backs up while JavaScript reads nothing.
  .tool("spin", { input: z.strictObject({ ms: z.number().min(0).max(30_000) }) }, ({ ms }) => {
    const end = Date.now() + ms;
    while (Date.now() < end);
    return { ms };
  })
  .tool("report", { input: z.strictObject({}) }, () => {
    let duplicates = 0;
    for (const count of executions.values()) if (count > 1) duplicates += count - 1;
    return { executions: total, distinct: executions.size, duplicates };
  })
  .tool(
    "call_peer",
    { input: z.strictObject({ to: z.string(), tool: z.string(), args: z.unknown(), timeout: z.number().positive() }) },
    async ({ to, tool, args, timeout }) => {
      try {
        return { ok: await agent.call(to, tool, args ?? {}, { timeout }) };
      } catch (err) {
        const e = err as ZmcpError;
        return { error: { class: e.constructor.name, code: e.code, origin: err instanceof RemoteError ? err.origin : null, message: e.message } };
      }
    },
  );

let metrics: MetricsServer | undefined;
if (values.metrics) {
  collectDefaultMetrics({ register: agent.metrics });
  metrics = await serveMetrics(agent.metrics, values.metrics);
}
process.stderr.write(JSON.stringify({ level: "info", msg: "agent ready", name: values.name, publicKey: agent.publicKey, metrics: metrics?.url, offset, direct: agent.direct.endpoint }) + "\n");
if (values.probe) {
  const [to, tool] = values.probe.split("/") as [string, string];
  const outcome = await agent.call(to, tool, {}, { timeout: 3000 }).then(
    (result) => ({ ok: result }),
    (err: ZmcpError) => ({ error: { class: err.constructor.name, code: err.code, origin: err instanceof RemoteError ? err.origin : null } }),
  );
  process.stderr.write(JSON.stringify({ level: "info", msg: "probe", ...outcome }) + "\n");
}
// Displaced by another process with this key, or revoked: the agent closed itself (and logged
// why); the process ends with it rather than run on deaf.
void agent.closed.then(async (reason) => {
  if (!reason) return;
  process.stderr.write(JSON.stringify({ level: "error", msg: "agent closed", code: reason.code, message: reason.message }) + "\n");
  await metrics?.close();
  process.exit(3);
});
const stop = () => void Promise.all([agent.close(), metrics?.close()]).then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
