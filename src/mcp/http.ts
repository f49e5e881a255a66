/**
 * `zmq-mcp expose --http`: the exposed mesh tools over stateless Streamable HTTP.
 *
 * Every POST is one exchange with a fresh MCP server and a fresh SDK
 * `StreamableHTTPServerTransport` without session ids, sharing the exposer's listing: nothing
 * is kept between requests, so several `expose --http` processes behind any balancer serve
 * one client. GET (a standalone event stream) and DELETE (a session's end) are answered 405:
 * there are no sessions, and nothing to push outside a request.
 *
 * Each POST is served in the era its body claims (http-eras.ts): a 2026-07-28 request by the
 * 2.x SDK's handler over a 2.x server, anything else by the v1 exchange below.
 *
 * A bearer token is required on every request: either shared tokens (compared in constant
 * time: both sides are hashed to equal length first; several may be given, each an identity of
 * its own, the owner of the 2026 tasks it creates), or, with `oauth`, JWT access tokens of an
 * OAuth issuer checked by oauth.ts (which also serves the RFC 9728 metadata; the identity is the
 * token's issuer and subject). The listener binds loopback unless `allowPublic` is set.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { AuthInfo } from "@modelcontextprotocol/server";
import { ConfigError, describeThrown } from "../errors.js";
import { silentLogger, type Logger } from "../support/log.js";
import type { MeshExposer } from "./expose.js";
import { tokenIdentity, type OAuthResourceServer } from "./oauth.js";
import { BodyError, eraRouter } from "./http-eras.js";

/** Shortest bearer token accepted: a guessable token would be the only thing between the network and the mesh. */
export const MIN_HTTP_TOKEN_LENGTH = 16;

export interface HttpExposeOptions {
  exposer: MeshExposer;
  /** Address to bind, e.g. `127.0.0.1`. A non-loopback address needs `allowPublic`. */
  host: string;
  /** Port; 0 picks a free one (see the returned `url`). */
  port: number;
  /**
   * The bearer token clients must send (`Authorization: Bearer <token>`), at least 16
   * characters; or several, one per client: each token is an identity (2026 tasks are bound
   * to the token that created them). Exactly one of `token` and `oauth`.
   */
  token?: string | readonly string[];
  /** Accept OAuth access tokens of this resource server's issuer instead of shared tokens (oauth.ts). */
  oauth?: OAuthResourceServer;
  /** Allow binding an address other than loopback. Default false. */
  allowPublic?: boolean;
  /** The endpoint's path. Default `/mcp`. */
  path?: string;
  log?: Logger;
}

export interface HttpExpose {
  /** `http://host:port/mcp`. */
  url: string;
  /** Stops listening, ends the exchanges in flight (their mesh jobs are cancelled). */
  close(): Promise<void>;
}

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** `127.0.0.1:8080`, `[::1]:8080`, `localhost:0` → host and port; throws ConfigError. */
export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new ConfigError(`--http ${JSON.stringify(value)}: expected HOST:PORT, e.g. 127.0.0.1:8080`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

/** Throws ConfigError for a short token, or a non-loopback host without `allowPublic`. */
export function checkHttpSetup(options: { host: string; token?: string | readonly string[] | undefined; oauth?: unknown; allowPublic?: boolean }): void {
  const tokens: readonly unknown[] = options.token === undefined ? [] : typeof options.token === "string" ? [options.token] : options.token;
  if (options.oauth !== undefined) {
    if (options.token !== undefined) throw new ConfigError("give a shared HTTP bearer token or an OAuth issuer, not both");
  } else if (tokens.length === 0 || tokens.some((t) => typeof t !== "string" || t.length < MIN_HTTP_TOKEN_LENGTH)) {
    throw new ConfigError(`the HTTP bearer token must be at least ${MIN_HTTP_TOKEN_LENGTH} characters`);
  }
  if (!isLoopback(options.host) && !options.allowPublic) {
    throw new ConfigError(`refusing to serve MCP over HTTP on ${options.host}, which is not a loopback address; give --http-public to mean it (and put TLS in front)`);
  }
}

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

/** Serves `exposer` over stateless Streamable HTTP. Rejects with ConfigError for an unsafe setup. */
export async function serveHttp(options: HttpExposeOptions): Promise<HttpExpose> {
  const log = options.log ?? silentLogger;
  const path = options.path ?? "/mcp";
  checkHttpSetup(options);
  const expected = (options.token === undefined ? [] : typeof options.token === "string" ? [options.token] : [...options.token]).map(digest);
  const oauth = options.oauth;
  const live = new Set<Server>();
  const eras = eraRouter(options.exposer, log);

  /** The caller's identity (which token it sent), or undefined. */
  const authorized = (req: IncomingMessage): AuthInfo | undefined => {
    const header = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    // Hashing first makes both sides 32 bytes, so the comparison takes the same time whatever was
    // sent; every token is compared (no early exit), so the time does not tell which one matched.
    const sent = digest(m?.[1] ?? "");
    let match: Buffer | undefined;
    for (const e of expected) if (timingSafeEqual(sent, e)) match = e;
    if (m === null || match === undefined) return undefined;
    // The identity is derived from the token, not the token itself: it may be logged and compared.
    return { token: "", clientId: `bearer:${createHash("sha256").update(match).digest("hex").slice(0, 16)}`, scopes: [] };
  };

  const reject = (res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}, code = -32000) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    // The OAuth resource metadata (RFC 9728) is public: it is how a client learns where to get a token.
    if (oauth && oauth.metadataPaths(path).has(url.pathname) && (req.method === "GET" || req.method === "HEAD")) {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=300" });
      return res.end(req.method === "HEAD" ? undefined : JSON.stringify(oauth.metadata()));
    }
    if (url.pathname !== path) return reject(res, 404, `not found; the MCP endpoint is ${path}`);
    let auth: AuthInfo | undefined;
    if (oauth) {
      const checked = await oauth.check(req);
      if (!checked.ok) {
        log.warn("http request refused", { reason: checked.message, status: checked.status, remote: req.socket.remoteAddress });
        return reject(res, checked.status, checked.message, checked.headers);
      }
      // The identity (owner of 2026 tasks) is the token's issuer and subject (or client), hashed:
      // it may be logged. A token that names nobody has none (clientId "": it owns no tasks).
      const who = tokenIdentity(checked.claims);
      auth = { token: "", clientId: who === undefined ? "" : `oauth:${createHash("sha256").update(who).digest("hex").slice(0, 16)}`, scopes: [] };
    } else if (!(auth = authorized(req))) {
      log.warn("http request refused", { reason: "bad or missing bearer token", remote: req.socket.remoteAddress });
      return reject(res, 401, "Unauthorized", { "www-authenticate": 'Bearer realm="zmcp", error="invalid_token"' });
    }
    if (req.method !== "POST") return reject(res, 405, "stateless server: POST one JSON-RPC message per request", { allow: "POST" });
    // The era is the body's (http-eras.ts): 2026-07-28 requests are answered there; the rest here.
    await eras.serve(req, res, auth, async (parsedBody) => {
      const server = options.exposer.createStatelessServer();
      // No session id generator: the SDK's stateless mode (no Mcp-Session-Id, no session checks).
      const transport = new StreamableHTTPServerTransport({});
      live.add(server);
      res.on("close", () => {
        live.delete(server);
        // The exchange is over (answered, or the client went away): abort what still runs.
        void transport.close().catch(() => undefined);
        void server.close().catch(() => undefined);
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, parsedBody);
    });
  };

  const http: HttpServer = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof BodyError) {
        if (!res.headersSent) reject(res, err.status, err.message, {}, err.code);
        return;
      }
      log.error("http request failed", { error: describeThrown(err) });
      if (!res.headersSent) reject(res, 500, "internal error");
      else res.destroy();
    });
  });
  // A client that trickles its headers or body does not hold a socket for long: 10 s to send the
  // headers, 30 s to send the whole request (Node's limits on receiving it; a response, a job's
  // progress stream included, is not bound by them), and a cap on open connections (a review
  // held 2,200 stalled sockets open for over a minute).
  http.headersTimeout = 10_000;
  http.requestTimeout = 30_000;
  http.maxConnections = 1024;
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port, options.host, () => {
      http.off("error", reject);
      resolve();
    });
  });
  const address = http.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}${path}`;
  oauth?.setDefaultResource(url);
  return {
    url,
    async close() {
      await Promise.allSettled([...live].map((s) => s.close()));
      await eras.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
