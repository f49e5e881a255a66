/**
 * An MCP server (the official SDK v1's McpServer) served over Streamable HTTP on 127.0.0.1,
 * stateful (a session per `initialize`, as the SDK's example server does), for the tests of
 * `zmq-mcp attach --url`. A request naming a session this process does not know gets 404, as
 * the specification asks: what a client sees after the server restarted.
 *
 *   node dist/test/support/mcp-http-server.js --port N [--token-file FILE]
 *
 * With `--token-file`, every request must carry `Authorization: Bearer <the file's token>`
 * (401 otherwise). Its tools: `echo` (says which process answered), `calls` (counts the calls
 * it got: not idempotent), `slow` (progress steps); a resource `web://motd`, a template
 * `web://note/{id}`, a prompt `greet`. `POST /forget` forgets every session. Logs JSON lines on stderr, `mcp http ready` with the port.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import { parseArgs } from "node:util";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const { values } = parseArgs({ options: { port: { type: "string" }, "token-file": { type: "string" } } });
const token = values["token-file"] ? readFileSync(values["token-file"], "utf8").trim() : undefined;
const log = (msg: string, fields: Record<string, unknown> = {}) => process.stderr.write(`${JSON.stringify({ level: "info", msg, ...fields })}\n`);
let calls = 0;

function mcpServer(): McpServer {
  const server = new McpServer({ name: "http-test", version: "1.0.0" });
  server.registerTool("echo", { description: "Echoes text with the server's pid", inputSchema: { text: z.string() }, annotations: { readOnlyHint: true } }, async ({ text }) => ({
    content: [{ type: "text", text: `${process.pid}:${text}` }],
    structuredContent: { pid: process.pid, text },
  }));
  server.registerTool("calls", { description: "Counts its calls (not idempotent)", inputSchema: {} }, async () => {
    calls++;
    log("calls", { calls });
    return { content: [{ type: "text", text: String(calls) }] };
  });
  server.registerTool("slow", { description: "Reports progress n times", inputSchema: { n: z.number().int().min(1).max(20) } }, async ({ n }, extra) => {
    for (let i = 1; i <= n; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const progressToken = extra._meta?.progressToken;
      if (progressToken !== undefined) await extra.sendNotification({ method: "notifications/progress", params: { progressToken, progress: i, total: n } });
    }
    return { content: [{ type: "text", text: `slow ${n}` }] };
  });
  server.registerResource("motd", "web://motd", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "hello over http" }] }));
  server.registerResource("note", new ResourceTemplate("web://note/{id}", { list: undefined }), { mimeType: "text/plain" }, async (uri, { id }) => ({
    contents: [{ uri: uri.href, mimeType: "text/plain", text: `note ${String(id)}` }],
  }));
  server.registerPrompt("greet", { argsSchema: { name: z.string() } }, ({ name }) => ({ messages: [{ role: "user", content: { type: "text", text: `Greet ${name}.` } }] }));
  return server;
}

const sessions = new Map<string, StreamableHTTPServerTransport>();

async function body(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text === "" ? undefined : JSON.parse(text);
}

const http = createServer((req, res) => {
  void (async () => {
    if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
      log("refused: bad bearer", { got: req.headers.authorization === undefined ? "none" : "other" });
      res.writeHead(401, { "content-type": "application/json", "www-authenticate": "Bearer" }).end(JSON.stringify({ error: "unauthorized" }));
      return;
    }
    if (req.url === "/forget") {
      // The test's stand-in for a restart behind a proxy: every session forgotten (404 from now on).
      sessions.clear();
      res.writeHead(200).end();
      return;
    }
    const parsed = req.method === "POST" ? await body(req) : undefined;
    const sid = req.headers["mcp-session-id"];
    let transport = typeof sid === "string" ? sessions.get(sid) : undefined;
    if (typeof sid === "string" && !transport) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null }));
      return;
    }
    if (!transport) {
      if (req.method !== "POST" || !isInitializeRequest(parsed)) {
        res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: "No session" }, id: null }));
        return;
      }
      const created = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => void sessions.set(id, created) });
      created.onclose = () => {
        if (created.sessionId) sessions.delete(created.sessionId);
      };
      await mcpServer().connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, parsed);
  })().catch((err: Error) => {
    log("request failed", { error: err.message });
    if (!res.headersSent) res.writeHead(500).end();
  });
});
http.listen(Number(values.port ?? 0), "127.0.0.1", () => {
  const address = http.address();
  log("mcp http ready", { port: typeof address === "object" && address ? address.port : null, pid: process.pid });
});
const stop = () => {
  http.closeAllConnections();
  http.close(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
