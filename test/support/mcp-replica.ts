/**
 * A stateless MCP server (the official SDK's McpServer) served over the mesh transport, for
 * the tests of MCP over the mesh: one replica of `svc:<service>` (and reachable as its own
 * agent). Its tools say which replica answered; `echo` logs `echo start` before it waits, so
 * a test can kill the replica while a request is in flight on it.
 *
 *   node dist/test/support/mcp-replica.js --broker EP --cert FILE --certs DIR --name NAME [--service S]
 */
import { parseArgs } from "node:util";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { Agent } from "../../src/agent/agent.js";
import { createLogger } from "../../src/support/log.js";
import { MeshServerTransport } from "../../src/mcp/transport.js";

const { values } = parseArgs({
  options: { broker: { type: "string" }, cert: { type: "string" }, certs: { type: "string" }, name: { type: "string" }, service: { type: "string" } },
});
const name = values.name ?? "replica";
const log = createLogger("info", undefined, { service: "mcp-replica", replica: name });
const agent = await Agent.connect({ broker: values.broker!, cert: values.cert!, certs: values.certs!, log });
const server = new McpServer({ name: "mcp-replica", version: "1.0.0" });
server.registerTool(
  "echo",
  { description: "Echoes text after delayMs, naming the replica", inputSchema: { text: z.string(), delayMs: z.number().int().min(0).max(10_000).optional() } },
  async ({ text, delayMs }) => {
    log.info("echo start", { text });
    await new Promise((resolve) => setTimeout(resolve, delayMs ?? 0));
    return { content: [{ type: "text", text: `${name}:${text}` }] };
  },
);
server.registerTool("count", { description: "Counts to n with progress", inputSchema: { n: z.number().int().min(1).max(20) } }, async ({ n }, extra) => {
  for (let i = 1; i <= n; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    await extra.sendNotification({ method: "notifications/progress", params: { progressToken: extra._meta?.progressToken ?? 0, progress: i, total: n } });
  }
  return { content: [{ type: "text", text: `${name}:counted ${n}` }] };
});
await server.connect(new MeshServerTransport({ agent, log }));
if (values.service) await agent.serve(values.service);
log.info("replica ready", { publicKey: agent.publicKey });
const stop = () => void server.close().finally(() => agent.close().finally(() => process.exit(0)));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
