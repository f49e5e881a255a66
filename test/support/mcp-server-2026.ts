/**
 * A stdio MCP server built on `@modelcontextprotocol/server` 2.x that speaks only the
 * 2026-07-28 era (`serveStdio` with `legacy: "reject"`: a 2025 `initialize` is refused with
 * -32022), for the attach tests. `--both` serves the 2025 era too. `--http` serves it over
 * Streamable HTTP instead (2026-07-28 only), on a free port of 127.0.0.1 logged in its
 * `mcp http ready` line. `--tasks` serves (on stdio) a server that offers the 2026 tasks
 * extension (`io.modelcontextprotocol/tasks`, written by hand in test/support/mcp-tasks-2026.ts:
 * the 2.x SDK has none).
 */
import { createServer } from "node:http";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { z } from "zod";
import { buildTaskingServer, TaskStore } from "./mcp-tasks-2026.js";

function build(): McpServer {
  const server = new McpServer({ name: "modern-only", version: "1.0.0" });
  server.registerTool("shout", { description: "Upper-cases a text", inputSchema: z.object({ text: z.string() }), annotations: { readOnlyHint: true } }, async ({ text }) => ({
    content: [{ type: "text", text: text.toUpperCase() }],
    structuredContent: { loud: text.toUpperCase() },
  }));
  server.registerTool("slow", { description: "Waits, reporting progress", inputSchema: z.object({ steps: z.number().int().min(1).max(50) }) }, async ({ steps }, ctx) => {
    for (let i = 1; i <= steps; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const token = ctx.mcpReq._meta?.progressToken;
      if (token !== undefined) await ctx.mcpReq.notify({ method: "notifications/progress", params: { progressToken: token, progress: i, total: steps } });
    }
    return { content: [{ type: "text", text: `waited ${steps}` }] };
  });
  server.registerResource("motd", "modern://motd", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "hello from 2026" }] }));
  server.registerPrompt("greet", { argsSchema: z.object({ name: z.string() }) }, ({ name }) => ({ messages: [{ role: "user", content: { type: "text", text: `Greet ${name}.` } }] }));
  return server;
}

if (process.argv.includes("--tasks")) {
  const store = new TaskStore();
  serveStdio(() => buildTaskingServer(store), { legacy: "reject" });
} else if (process.argv.includes("--http")) {
  // Streamable HTTP on 127.0.0.1 (a free port, logged as `mcp http ready`), 2026-07-28 only:
  // the SDK's createMcpHandler refuses a 2025 initialize with HTTP 400 and -32022.
  const handler = createMcpHandler(build, { legacy: "reject" });
  const http = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
      const response = await handler.fetch(new Request(`http://127.0.0.1${req.url ?? "/"}`, { method: req.method ?? "GET", headers, ...(req.method === "POST" ? { body: Buffer.concat(chunks) } : {}) }));
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    })().catch(() => res.destroy());
  });
  http.listen(0, "127.0.0.1", () => {
    const address = http.address();
    process.stderr.write(`${JSON.stringify({ level: "info", msg: "mcp http ready", port: typeof address === "object" && address ? address.port : null })}\n`);
  });
  process.once("SIGTERM", () => http.close(() => process.exit(0)));
} else {
  serveStdio(build, { legacy: process.argv.includes("--both") ? "serve" : "reject" });
}
