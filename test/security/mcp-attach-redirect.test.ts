/**
 * `attach --url`: the bridge never follows a redirect. A server answering 307 to another origin
 * had the POST, its body and every custom header (an API key) re-sent there (found by a review:
 * undici strips only Authorization across origins). Now the exchange fails and nothing reaches
 * the redirect's target.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { InFlight } from "../../src/mcp/attach-http.js";

const servers: Server[] = [];
async function serve(handler: (req: IncomingMessage, body: string, res: import("node:http").ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => handler(req, body, res));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe("attach --url and redirects", () => {
  it("a 307 to another origin fails the exchange; the target never sees the body or the headers", async () => {
    const reached: Array<{ headers: IncomingMessage["headers"]; body: string }> = [];
    const target = await serve((req, body, res) => {
      reached.push({ headers: req.headers, body });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
    const redirecting = await serve((_req, _body, res) => res.writeHead(307, { location: target }).end());
    const fetcher = new InFlight().fetch(1 << 20);
    const sent = fetcher(redirecting, { method: "POST", headers: { "x-api-key": "SECRET", "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { arguments: { card: "4111" } } }) });
    await expect(sent).rejects.toThrow();
    expect(reached).toEqual([]);
  });

  it("an answer without a redirect still passes", async () => {
    const plain = await serve((_req, _body, res) => res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}'));
    const res = await new InFlight().fetch(1 << 20)(plain, { method: "POST", body: "{}" });
    expect(await res.json()).toEqual({ ok: true });
  });
});
