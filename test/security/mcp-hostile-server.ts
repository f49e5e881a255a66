/**
 * A hostile stdio MCP server (SDK v1), for `attach` under attack (mcp-adversarial-attach.test.ts).
 * It counts the listings it is asked for and, on request, floods its client:
 * - `storm {kind, n}`: n `notifications/<kind>/list_changed` at once (kind: tools, resources, prompts);
 * - `forge {n}`: n responses to request ids it was never sent, and n progress notifications for
 *   progress tokens that are not anyone's;
 * - `stats`: how many tools/list, resources/list, resources/templates/list and prompts/list it answered,
 *   and how many tasks/get and tasks/cancel;
 * - `forever` (task-only, 2025 experimental tasks): its task is created and then stays `working`
 *   for ever, whatever is asked (`pollInterval` 10 ms).
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  CallToolRequestSchema,
  CancelTaskRequestSchema,
  GetTaskRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const counts = { tools: 0, resources: 0, templates: 0, prompts: 0, taskGets: 0, taskCancels: 0 };
const server = new Server(
  { name: "hostile", version: "1.0.0" },
  { capabilities: { tools: { listChanged: true }, resources: { listChanged: true }, prompts: { listChanged: true }, tasks: { cancel: {}, requests: { tools: { call: {} } } } } },
);
const forever = (taskId: string) => ({ taskId, status: "working" as const, ttl: null, createdAt: new Date(0).toISOString(), lastUpdatedAt: new Date().toISOString(), pollInterval: 10 });
const transport = new StdioServerTransport();
const object = { type: "object" as const, properties: {} };

server.setRequestHandler(ListToolsRequestSchema, async () => {
  counts.tools++;
  return {
    tools: [
      { name: "storm", inputSchema: { type: "object" as const, properties: { kind: { type: "string" }, n: { type: "number" } } } },
      { name: "forge", inputSchema: { type: "object" as const, properties: { n: { type: "number" } } } },
      { name: "stats", inputSchema: object },
      { name: "forever", inputSchema: object, execution: { taskSupport: "required" as const } },
    ],
  };
});
server.setRequestHandler(ListResourcesRequestSchema, async () => {
  counts.resources++;
  return { resources: [{ uri: "hostile://one", name: "one" }] };
});
server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => {
  counts.templates++;
  return { resourceTemplates: [] };
});
server.setRequestHandler(ListPromptsRequestSchema, async () => {
  counts.prompts++;
  return { prompts: [] };
});
server.setRequestHandler(GetTaskRequestSchema, async (request) => {
  counts.taskGets++;
  return forever(request.params.taskId);
});
server.setRequestHandler(CancelTaskRequestSchema, async (request) => {
  counts.taskCancels++;
  // A cancel is acknowledged, and changes nothing: the task goes on "working".
  return forever(request.params.taskId);
});
server.setRequestHandler(CallToolRequestSchema, async (request) => {
  if (request.params.name === "forever") return { task: forever(`forever-${Date.now()}`) };
  const args = (request.params.arguments ?? {}) as { kind?: string; n?: number };
  const n = Math.min(Math.max(0, Math.floor(args.n ?? 0)), 100_000);
  if (request.params.name === "storm") {
    const method = `notifications/${args.kind ?? "tools"}/list_changed` as "notifications/tools/list_changed";
    for (let i = 0; i < n; i++) void server.notification({ method });
    return { content: [{ type: "text", text: `sent ${n}` }] };
  }
  if (request.params.name === "forge") {
    for (let i = 0; i < n; i++) {
      void transport.send({ jsonrpc: "2.0", id: 1_000_000 + i, result: { content: [{ type: "text", text: "for nobody" }] } });
      void transport.send({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1_000_000 + i, progress: 1 } });
    }
    return { content: [{ type: "text", text: `forged ${n}` }] };
  }
  if (request.params.name === "stats") return { content: [{ type: "text", text: JSON.stringify(counts) }], structuredContent: { ...counts } };
  throw new Error(`no tool ${request.params.name}`);
});

await server.connect(transport);
