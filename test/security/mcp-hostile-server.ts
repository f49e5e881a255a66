/**
 * A hostile stdio MCP server (SDK v1), for `attach` under attack (mcp-adversarial-attach.test.ts).
 * It counts the listings it is asked for and, on request, floods its client:
 * - `storm {kind, n}`: n `notifications/<kind>/list_changed` at once (kind: tools, resources, prompts);
 * - `forge {n}`: n responses to request ids it was never sent, and n progress notifications for
 *   progress tokens that are not anyone's;
 * - `stats`: how many tools/list, resources/list, resources/templates/list and prompts/list it answered.
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  CallToolRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const counts = { tools: 0, resources: 0, templates: 0, prompts: 0 };
const server = new Server({ name: "hostile", version: "1.0.0" }, { capabilities: { tools: { listChanged: true }, resources: { listChanged: true }, prompts: { listChanged: true } } });
const transport = new StdioServerTransport();
const object = { type: "object" as const, properties: {} };

server.setRequestHandler(ListToolsRequestSchema, async () => {
  counts.tools++;
  return {
    tools: [
      { name: "storm", inputSchema: { type: "object" as const, properties: { kind: { type: "string" }, n: { type: "number" } } } },
      { name: "forge", inputSchema: { type: "object" as const, properties: { n: { type: "number" } } } },
      { name: "stats", inputSchema: object },
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
server.setRequestHandler(CallToolRequestSchema, async (request) => {
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
