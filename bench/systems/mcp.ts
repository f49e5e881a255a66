/**
 * MCP: the official TypeScript SDK over Streamable HTTP in stateless mode (a fresh server
 * and transport per request, `sessionIdGenerator: undefined`, as in the SDK's stateless
 * example), `tools/call` of an echo tool. The server is also the responder: MCP has no broker.
 *
 * The server uses `node:http` directly rather than the example's express app, which only
 * makes MCP faster than what most deployments run.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { z } from "zod";
import { startWorker } from "../proc.js";
import type { Client, Service, WorkerConfig } from "../types.js";
import { nodeCaller, stopAll, type SystemSpec } from "./spec.js";

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

export const mcp: SystemSpec = {
  id: "mcp",
  title: "MCP Streamable HTTP",
  describe: "@modelcontextprotocol/sdk, Streamable HTTP stateless, tools/call of an echo tool (no broker: the server echoes)",
  async check() {
    try {
      await import("@modelcontextprotocol/sdk/server/mcp.js");
      return undefined;
    } catch {
      return "@modelcontextprotocol/sdk is not installed (npm install)";
    }
  },
  async start() {
    const server = await startWorker("mcp", "server", {});
    const url = String(server.info["url"]);
    return {
      brokers: [server],
      caller: () => nodeCaller("mcp", { url }),
      stop: () => stopAll([server]),
    };
  },
  roles: {
    async server(): Promise<Service> {
      const { McpServer } = await import("@modelcontextprotocol/sdk/server/mcp.js");
      const { StreamableHTTPServerTransport } = await import("@modelcontextprotocol/sdk/server/streamableHttp.js");
      const newServer = () => {
        const server = new McpServer({ name: "bench-echo", version: "1.0.0" });
        server.registerTool("echo", { description: "returns its argument", inputSchema: { data: z.string() } }, ({ data }) => ({
          content: [{ type: "text", text: data }],
        }));
        return server;
      };
      const http = createServer((req, res) => {
        if (req.method !== "POST" || req.url !== "/mcp") {
          res.writeHead(405).end();
          return;
        }
        void (async () => {
          const server = newServer();
          try {
            // No sessionIdGenerator: stateless mode (the option left out equals `undefined`).
            const transport = new StreamableHTTPServerTransport({});
            res.on("close", () => {
              void transport.close();
              void server.close();
            });
            await server.connect(transport);
            await transport.handleRequest(req, res, await readJson(req));
          } catch (err) {
            if (!res.headersSent) res.writeHead(500).end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32603, message: String(err) }, id: null }));
          }
        })();
      });
      http.keepAliveTimeout = 60_000;
      await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
      const port = (http.address() as AddressInfo).port;
      return {
        info: { url: `http://127.0.0.1:${port}/mcp` },
        async close() {
          http.closeAllConnections();
          await new Promise((resolve) => http.close(resolve));
        },
      };
    },
    async caller(config: WorkerConfig): Promise<Client> {
      const { Client: McpClient } = await import("@modelcontextprotocol/sdk/client/index.js");
      const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
      const client = new McpClient({ name: "bench-caller", version: "1.0.0" });
      await client.connect(new StreamableHTTPClientTransport(new URL(String(config["url"]))));
      return {
        async call(payload) {
          const result = await client.callTool({ name: "echo", arguments: { data: payload.toString("latin1") } }, undefined, { timeout: 10_000 });
          const content = result.content as Array<{ type: string; text?: string }> | undefined;
          const text = content?.[0]?.text;
          if (text?.length !== payload.length) throw new Error(`echo of ${text?.length} characters for a call of ${payload.length}`);
        },
        async close() {
          await client.close();
        },
      };
    },
  },
};
