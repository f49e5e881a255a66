/**
 * A stdio MCP server built on `@modelcontextprotocol/server` 2.x that speaks only the
 * 2026-07-28 era (`serveStdio` with `legacy: "reject"`: a 2025 `initialize` is refused with
 * -32022), for the attach tests. `--both` serves the 2025 era too.
 */
import { McpServer } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { z } from "zod";

serveStdio(
  () => {
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
  },
  { legacy: process.argv.includes("--both") ? "serve" : "reject" },
);
