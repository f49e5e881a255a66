/**
 * `expose --http`: which era serves a POST. The body decides, with the SDK's own predicate
 * (`isLegacyRequest` of `@modelcontextprotocol/server` 2.x, the classification its
 * `createMcpHandler` routes on): a request carrying the 2026-07-28 `_meta` envelope claim goes
 * to the SDK's modern-only handler (`legacy: "reject"`) over a 2.x server (expose-2026.ts);
 * anything else (`initialize`, 2025 requests and notifications) to the SDK v1 stateless
 * exchange, as before. The modern handler answers its own validation ladder: an envelope
 * naming a revision it does not speak is -32022 (UnsupportedProtocolVersion), a malformed
 * one -32602, headers that disagree with the body -32020.
 *
 * The modern handler is fetch-shaped (web `Request`/`Response`); this module reads the Node
 * request's body once (bounded), builds the `Request`, and streams the `Response` back. When
 * the client goes away the response stream is cancelled, which ends the exchange (its server
 * is closed, its calls aborted, their mesh jobs cancelled), as on the 2025 side.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { createMcpHandler, isLegacyRequest, type AuthInfo, type McpHttpHandler } from "@modelcontextprotocol/server";
import type { Logger } from "../support/log.js";
import type { MeshExposer } from "./expose.js";

/** Largest request body read, bytes (the SDKs' own default). */
export const MAX_HTTP_BODY = 4 * 1024 * 1024;

/** A body that is not one JSON value, or too large: answered before any era is chosen. */
export class BodyError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "BodyError";
  }
}

export interface EraRouter {
  /**
   * Serves one authenticated POST: calls `legacy` with the parsed body for 2025-era traffic,
   * or answers it in the 2026-07-28 era. Throws BodyError for a body that cannot be parsed.
   */
  serve(req: IncomingMessage, res: ServerResponse, auth: AuthInfo, legacy: (parsedBody: unknown) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export function eraRouter(exposer: MeshExposer, log: Logger): EraRouter {
  const modern: McpHttpHandler = createMcpHandler(() => exposer.createModernServer(), {
    legacy: "reject",
    onerror: (err) => log.debug("2026-07-28 exchange", { error: err.message }),
  });
  return {
    async serve(req, res, auth, legacy) {
      const text = await readBody(req);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new BodyError(400, -32700, "Parse error: the request body is not valid JSON");
      }
      const controller = new AbortController();
      res.on("close", () => controller.abort());
      const request = new Request(`http://${req.headers.host ?? "localhost"}${req.url ?? "/"}`, {
        method: "POST",
        headers: headersOf(req),
        body: text,
        signal: controller.signal,
      });
      if (await isLegacyRequest(request, body)) return legacy(body);
      const response = await modern.fetch(request, { authInfo: auth, parsedBody: body });
      await sendResponse(response, res);
    },
    close: () => modern.close(),
  };
}

/**
 * The body, at most MAX_HTTP_BODY bytes kept. Past that the rest is read and dropped before the
 * 413 goes out: a client still sending when the connection closes under it sees a reset, not
 * the answer. (The server's request timeout bounds how long that may take.)
 */
async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_HTTP_BODY) chunks.push(chunk);
  }
  if (size > MAX_HTTP_BODY) throw new BodyError(413, -32000, `the request body is larger than ${MAX_HTTP_BODY} bytes`);
  return Buffer.concat(chunks).toString("utf8");
}

function headersOf(req: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  return headers;
}

/** Writes a web Response to a Node response, streaming its body (an SSE stream for a call with progress). */
async function sendResponse(response: Response, res: ServerResponse): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (response.body === null) {
    res.end();
    return;
  }
  const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
  // The client left: cancelling the stream ends the SDK's exchange (and aborts its calls).
  res.on("close", () => body.destroy());
  body.on("error", () => res.destroy());
  body.pipe(res);
}
