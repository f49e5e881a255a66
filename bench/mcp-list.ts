/**
 * What one `tools/list` of a large mesh costs the bridge (issue 10): `zmq-mcp expose` over
 * 400 targets x 40 tools, listed `--rounds` times, against a stand-in agent that answers at
 * once (so only the bridge's own work is measured). Prints the longest the event loop was
 * held during each listing (the largest gap between the ticks of a 1 ms interval timer;
 * `monitorEventLoopDelay` records nothing while the loop is held for the whole listing) and
 * the heap after each listing (after a full GC with --expose-gc).
 *
 *   npm run build && node --expose-gc dist/bench/mcp-list.js [--peers 400] [--tools 40] [--rounds 5] [--distinct]
 *
 * `--distinct` gives every tool of every peer its own output schema (a hostile mesh);
 * otherwise the peers run the same software and share 40 schemas.
 */
import { parseArgs } from "node:util";
import type { Agent, ToolInfo } from "../src/agent/agent.js";
import { generateCertificate } from "../src/auth/certs.js";
import { MeshExposer } from "../src/mcp/expose.js";

const { values } = parseArgs({
  options: { peers: { type: "string", default: "400" }, tools: { type: "string", default: "40" }, rounds: { type: "string", default: "5" }, distinct: { type: "boolean", default: false } },
});
const peers = Number(values.peers);
const tools = Number(values.tools);
const rounds = Number(values.rounds);
const keys = Array.from({ length: peers }, () => generateCertificate().publicKey);
const index = new Map(keys.map((k, i) => [k, i]));

function listing(key: string): ToolInfo[] {
  const peer = index.get(key)!;
  return Array.from({ length: tools }, (_, i) => {
    const n = values.distinct ? peer * tools + i : i;
    return {
      name: `tool_${i}`,
      description: `tool ${i}`,
      inputSchema: { type: "object", properties: { n: { type: "number" }, s: { type: "string" } }, required: ["n"] },
      outputSchema: { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", properties: { total: { type: "number", minimum: n }, items: { type: "array", items: { type: "string", maxLength: 100 + n } } } },
      job: false,
    };
  });
}

const agent = { nameOf: () => undefined, resolve: (to: string) => to, listTools: async (to: string) => listing(to) } as unknown as Agent;
const exposer = new MeshExposer({ agent, targets: keys, refreshInterval: 0 });
const gc = (globalThis as { gc?: () => void }).gc;
const heap = () => {
  gc?.();
  return Math.round(process.memoryUsage().heapUsed / 1048576);
};
console.log(`peers=${peers} tools=${tools} distinct=${values.distinct} gc=${gc ? "yes" : "no (run with --expose-gc)"}; heap at start ${heap()} MiB`);
for (let r = 1; r <= rounds; r++) {
  let last = performance.now();
  let held = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    held = Math.max(held, now - last);
    last = now;
  }, 1);
  const started = performance.now();
  const routes = await exposer.refresh();
  const ms = performance.now() - started;
  // One more tick, so a loop held until the end of the listing is counted.
  await new Promise((resolve) => setTimeout(resolve, 5));
  clearInterval(ticker);
  console.log(`round ${r}: ${routes.size} tools in ${ms.toFixed(0)} ms; event loop held at most ${held.toFixed(0)} ms; heap ${heap()} MiB`);
}
await exposer.close();
