/**
 * `zmq-mcp expose --http --oauth-issuer URL`: the bridge as an OAuth 2.1 resource server, as
 * the MCP authorization specification asks of an HTTP MCP server.
 *
 * - A request carries `Authorization: Bearer <JWT access token>`. The token's signature is
 *   checked against the issuer's JWKS (found through its RFC 8414 authorization server
 *   metadata, or its OpenID configuration), with asymmetric algorithms only (no `none`, no
 *   HS256: a public key must never be usable as an HMAC secret); `iss` must be the issuer;
 *   `aud` must name this resource (RFC 8707: the bridge's canonical URL unless an audience is
 *   configured), so that a token minted for another server is refused here; `exp`/`nbf` with
 *   a small clock skew; and the required scopes must all be granted (`scope`, or `scp`).
 * - Without a token, or with one that fails a check: 401 with
 *   `WWW-Authenticate: Bearer resource_metadata="<metadata URL>"` (plus `error="invalid_token"`
 *   when a token was sent). A valid token without a required scope: 403 with
 *   `error="insufficient_scope"` and the scopes needed.
 * - The RFC 9728 protected resource metadata is served without a token, at
 *   `/.well-known/oauth-protected-resource` and at the path-suffixed form
 *   `/.well-known/oauth-protected-resource/mcp`.
 * - The issuer unreachable while no keys are known: 503 with Retry-After, not 401 (the
 *   client's token may be fine; a 401 would send it through a new authorization that cannot
 *   succeed either). Keys already fetched keep verifying tokens while the issuer is down.
 *
 * Bounds: the issuer's documents are fetched with a deadline and a size cap; the JWKS is kept
 * for `jwksMaxAge` and refetched at most once per `jwksCooldown` on an unknown `kid` (a flood
 * of tokens with made-up kids costs the issuer one request per cooldown), and a failed
 * discovery is retried no sooner than the cooldown either.
 */
import type { IncomingMessage } from "node:http";
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { ConfigError, describeThrown } from "../errors.js";
import { silentLogger, type Logger } from "../support/log.js";
import { isLoopback } from "./http.js";

export interface OAuthOptions {
  /** The authorization server's issuer identifier (an https URL; http only on loopback). */
  issuer: string;
  /**
   * The audience a token must name. Default: the canonical resource URL (`resource`), as
   * RFC 8707 resource indicators make it.
   */
  audience?: string;
  /** The canonical URL of the MCP endpoint, as clients dial it. Default: the URL the bridge listens on. */
  resource?: string;
  /** Scopes every token must grant (all of them). Default none. */
  scopes?: string[];
  /** Clock skew allowed on `exp`/`nbf`, seconds. Default 60. */
  clockSkew?: number;
  /** Deadline of one fetch from the issuer, ms. Default 5,000. */
  fetchTimeout?: number;
  /** How long fetched keys are used before they are fetched again, ms. Default 600,000. */
  jwksMaxAge?: number;
  /** Least time between two fetches of the issuer's keys or metadata, ms. Default 30,000. */
  jwksCooldown?: number;
}

export const OAUTH_DEFAULTS = {
  clockSkew: 60,
  fetchTimeout: 5_000,
  jwksMaxAge: 600_000,
  jwksCooldown: 30_000,
} as const;

/** Signature algorithms accepted: asymmetric only. */
export const OAUTH_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];
/** Largest issuer document (metadata or JWKS) read, bytes. */
const MAX_DOCUMENT_BYTES = 256 * 1024;
/** Most keys kept from one JWKS. */
const MAX_KEYS = 64;
const METADATA_PATH = "/.well-known/oauth-protected-resource";

/** The outcome of checking one request: the token's claims, or the answer to send instead. */
export type OAuthCheck =
  | { ok: true; claims: JWTPayload }
  | { ok: false; status: 401 | 403 | 503; message: string; headers: Record<string, string> };

/** Why the issuer's keys could not be had (an issuer problem, not the token's). */
class IssuerUnavailable extends Error {}

/** Throws ConfigError for an issuer URL that is not https (http is allowed on loopback, for tests and local issuers). */
export function checkIssuerUrl(issuer: string): URL {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new ConfigError(`--oauth-issuer ${JSON.stringify(issuer)} is not a URL`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url.hostname))) {
    throw new ConfigError(`--oauth-issuer must be an https URL (http only on a loopback address): ${issuer}`);
  }
  if (url.search || url.hash) throw new ConfigError(`--oauth-issuer has no query or fragment (RFC 8414): ${issuer}`);
  return url;
}

/** The places an issuer's metadata may be: RFC 8414's (path inserted after /.well-known/), then OpenID Connect's (path appended). */
export function issuerMetadataUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname === "/" ? "" : url.pathname.replace(/\/$/, "");
  return [`${url.origin}/.well-known/oauth-authorization-server${path}`, `${url.origin}${path}/.well-known/openid-configuration`];
}

/** Reads a JSON document of at most MAX_DOCUMENT_BYTES from `url` within `timeout` ms. */
async function fetchJson(url: string, timeout: number): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeout), redirect: "error", headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const reader = response.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = await reader?.read();
    if (!next || next.done) break;
    size += next.value.byteLength;
    if (size > MAX_DOCUMENT_BYTES) {
      await reader?.cancel();
      throw new Error(`${url}: larger than ${MAX_DOCUMENT_BYTES} bytes`);
    }
    chunks.push(next.value);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
}

/** The granted scopes of a token: `scope` (space-separated, RFC 9068) or `scp` (a list or a string). */
export function grantedScopes(claims: JWTPayload): Set<string> {
  const raw = claims["scope"] ?? claims["scp"];
  const list = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(" ") : [];
  return new Set(list.filter((s): s is string => typeof s === "string" && s.length > 0));
}

const quoted = (value: string) => `"${value.replace(/["\\]/g, "")}"`;

/** Checks bearer access tokens for one HTTP endpoint and describes it (RFC 9728). */
export class OAuthResourceServer {
  readonly issuer: string;
  readonly scopes: readonly string[];
  readonly #audience: string | undefined;
  #resource: string | undefined;
  readonly #clockSkew: number;
  readonly #fetchTimeout: number;
  readonly #maxAge: number;
  readonly #cooldown: number;
  readonly #log: Logger;
  #keys: { get: JWTVerifyGetKey; at: number } | undefined;
  #jwksUri: string | undefined;
  #lastFetch = -Infinity;
  #lastError: string | undefined;
  #inflight: Promise<void> | undefined;

  constructor(options: OAuthOptions, log: Logger = silentLogger) {
    checkIssuerUrl(options.issuer);
    // Compared as given with the tokens' iss and the metadata's issuer (RFC 8414 §3.3: exact match).
    this.issuer = options.issuer;
    this.#audience = options.audience;
    this.#resource = options.resource;
    if (options.resource !== undefined) {
      try {
        new URL(options.resource);
      } catch {
        throw new ConfigError(`--oauth-resource ${JSON.stringify(options.resource)} is not a URL`);
      }
    }
    this.scopes = [...new Set(options.scopes ?? [])];
    for (const s of this.scopes) if (!/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s)) throw new ConfigError(`--oauth-scope ${JSON.stringify(s)}: not a scope token (RFC 6749 §3.3)`);
    this.#clockSkew = options.clockSkew ?? OAUTH_DEFAULTS.clockSkew;
    this.#fetchTimeout = options.fetchTimeout ?? OAUTH_DEFAULTS.fetchTimeout;
    this.#maxAge = options.jwksMaxAge ?? OAUTH_DEFAULTS.jwksMaxAge;
    this.#cooldown = options.jwksCooldown ?? OAUTH_DEFAULTS.jwksCooldown;
    this.#log = log;
  }

  /** The canonical URL of the endpoint; given, or set once the listener's address is known. */
  get resource(): string {
    if (this.#resource === undefined) throw new ConfigError("the OAuth resource URL is not known before the listener starts");
    return this.#resource;
  }

  /** Called by serveHttp with the URL it listens on, when no resource URL was configured. */
  setDefaultResource(url: string): void {
    this.#resource ??= url;
  }

  get audience(): string {
    return this.#audience ?? this.resource;
  }

  /** Paths where the metadata is served, for an endpoint at `mcpPath`. */
  metadataPaths(mcpPath: string): Set<string> {
    const resourcePath = new URL(this.resource).pathname;
    return new Set([METADATA_PATH, `${METADATA_PATH}${resourcePath === "/" ? "" : resourcePath}`, `${METADATA_PATH}${mcpPath}`]);
  }

  /** The URL clients are pointed at in WWW-Authenticate (the path-suffixed form RFC 9728 §3.1 describes). */
  get metadataUrl(): string {
    const url = new URL(this.resource);
    return `${url.origin}${METADATA_PATH}${url.pathname === "/" ? "" : url.pathname}`;
  }

  /** The RFC 9728 protected resource metadata. */
  metadata(): Record<string, unknown> {
    return {
      resource: this.resource,
      authorization_servers: [this.issuer],
      bearer_methods_supported: ["header"],
      ...(this.scopes.length > 0 ? { scopes_supported: [...this.scopes] } : {}),
      resource_name: "zmq-mcp expose",
    };
  }

  /** Checks the request's bearer token. Never throws: every failure is an answer. */
  async check(req: IncomingMessage): Promise<OAuthCheck> {
    const header = req.headers.authorization;
    const m = header === undefined ? null : /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
    if (!m) {
      // RFC 6750 §3.1: no error code when the request carried no token at all.
      return this.#unauthorized(header === undefined ? undefined : "malformed Authorization header", header === undefined ? "no bearer token" : "malformed Authorization header");
    }
    let claims: JWTPayload;
    try {
      claims = await this.#verify(m[1]!);
    } catch (err) {
      if (err instanceof IssuerUnavailable) {
        return { ok: false, status: 503, message: `the token issuer is unavailable: ${err.message}`, headers: { "retry-after": String(Math.ceil(this.#cooldown / 1000)) } };
      }
      return this.#unauthorized(reasonOf(err), reasonOf(err));
    }
    // Who the token names is the owner of its tasks (tokenIdentity): a name that is not a string
    // (RFC 7519 §4.1.2: StringOrURI) would be stringified into someone else's ("7" for 7).
    for (const claim of ["sub", "client_id"]) {
      if (claims[claim] !== undefined && typeof claims[claim] !== "string") return this.#unauthorized(`claim ${claim} invalid (not a string)`, `claim ${claim} invalid (not a string)`);
    }
    const granted = grantedScopes(claims);
    const missing = this.scopes.filter((s) => !granted.has(s));
    if (missing.length > 0) {
      return {
        ok: false,
        status: 403,
        message: `insufficient scope: needs ${this.scopes.join(" ")}`,
        headers: {
          "www-authenticate": `Bearer error="insufficient_scope", scope=${quoted(this.scopes.join(" "))}, resource_metadata=${quoted(this.metadataUrl)}, error_description=${quoted(`missing ${missing.join(" ")}`)}`,
        },
      };
    }
    return { ok: true, claims };
  }

  #unauthorized(error: string | undefined, message: string): OAuthCheck {
    const parts = [`resource_metadata=${quoted(this.metadataUrl)}`];
    if (this.scopes.length > 0) parts.push(`scope=${quoted(this.scopes.join(" "))}`);
    if (error !== undefined) parts.push(`error="invalid_token"`, `error_description=${quoted(error)}`);
    return { ok: false, status: 401, message: `Unauthorized: ${message}`, headers: { "www-authenticate": `Bearer ${parts.join(", ")}` } };
  }

  async #verify(token: string): Promise<JWTPayload> {
    const options = { issuer: this.issuer, audience: this.audience, algorithms: OAUTH_ALGORITHMS, clockTolerance: this.#clockSkew, requiredClaims: ["exp"] };
    const keys = await this.#currentKeys();
    try {
      return (await jwtVerify(token, keys, options)).payload;
    } catch (err) {
      // A key the issuer has rotated in since the last fetch: fetch again (once per cooldown) and retry.
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
      if (!(await this.#refresh(false))) throw err;
      return (await jwtVerify(token, this.#keys!.get, options)).payload;
    }
  }

  /** The keys to verify with: fetched at first use and when older than `jwksMaxAge`. */
  async #currentKeys(): Promise<JWTVerifyGetKey> {
    // Ages and cooldowns on the monotonic clock: a wall clock jumped back an hour must not stop
    // key refetches (a rotated-in key refused) for that hour, nor keep keys past their age.
    const now = performance.now();
    if (this.#keys && now - this.#keys.at < this.#maxAge) return this.#keys.get;
    await this.#refresh(this.#keys === undefined);
    // Stale keys still verify while the issuer cannot be reached (refresh kept them).
    if (this.#keys) return this.#keys.get;
    throw new IssuerUnavailable(this.#lastError ?? "no keys yet");
  }

  /**
   * Fetches the issuer's metadata (once) and its JWKS, at most once per cooldown; concurrent
   * callers share one fetch. Resolves true when new keys were fetched.
   */
  async #refresh(first: boolean): Promise<boolean> {
    if (this.#inflight) {
      await this.#inflight;
      return this.#lastError === undefined;
    }
    if (performance.now() - this.#lastFetch < this.#cooldown) {
      if (first && !this.#keys) throw new IssuerUnavailable(this.#lastError ?? "cooling down");
      return false;
    }
    this.#lastFetch = performance.now();
    this.#inflight = this.#fetchKeys().finally(() => (this.#inflight = undefined));
    await this.#inflight;
    return this.#lastError === undefined;
  }

  async #fetchKeys(): Promise<void> {
    try {
      this.#jwksUri ??= await this.#discover();
      const jwks = (await fetchJson(this.#jwksUri, this.#fetchTimeout)) as JSONWebKeySet;
      if (typeof jwks !== "object" || jwks === null || !Array.isArray(jwks.keys)) throw new Error(`${this.#jwksUri}: not a JWK Set`);
      // Only signing keys of the accepted kinds, and a bounded number of them.
      const keys = jwks.keys.filter((k) => k && typeof k === "object" && k.kty !== "oct" && (k.use === undefined || k.use === "sig")).slice(0, MAX_KEYS);
      this.#keys = { get: createLocalJWKSet({ keys }), at: performance.now() };
      this.#lastError = undefined;
      this.#log.info("oauth: issuer keys fetched", { issuer: this.issuer, keys: keys.length });
    } catch (err) {
      this.#lastError = describeThrown(err);
      this.#log.warn("oauth: cannot fetch the issuer's keys", { issuer: this.issuer, error: this.#lastError });
    }
  }

  /** The issuer's `jwks_uri`, from the first metadata document that answers and names this issuer. */
  async #discover(): Promise<string> {
    const problems: string[] = [];
    for (const url of issuerMetadataUrls(this.issuer)) {
      try {
        const doc = (await fetchJson(url, this.#fetchTimeout)) as Record<string, unknown>;
        // RFC 8414 §3.3: metadata naming another issuer must not be used (it could point at anyone's keys).
        if (doc["issuer"] !== this.issuer) throw new Error(`${url}: names issuer ${JSON.stringify(doc["issuer"])}`);
        const jwksUri = doc["jwks_uri"];
        if (typeof jwksUri !== "string") throw new Error(`${url}: no jwks_uri`);
        checkIssuerUrl(jwksUri);
        return jwksUri;
      } catch (err) {
        problems.push(describeThrown(err));
      }
    }
    throw new Error(`no usable metadata for issuer ${this.issuer}: ${problems.join("; ")}`);
  }
}

/**
 * The identity a verified token names, as the owner of the 2026 tasks it creates: its issuer
 * and its `sub` (the resource owner, or the client itself for a client_credentials token,
 * RFC 9068 §2.2), else its `client_id`; undefined when it names neither (such a token owns no
 * tasks: a job tool runs as a plain call). The kind of name is part of the identity, so a
 * client whose `client_id` equals a user's `sub` is not that user; the parts are encoded
 * unambiguously (JSON), since `sub` may hold any character. check() has refused non-string names.
 */
export function tokenIdentity(claims: JWTPayload): string | undefined {
  const sub = claims.sub;
  const clientId = claims["client_id"];
  const named = typeof sub === "string" && sub !== "" ? ["sub", sub] : typeof clientId === "string" && clientId !== "" ? ["client_id", clientId] : undefined;
  return named === undefined ? undefined : JSON.stringify([claims.iss ?? "", ...named]);
}

/** A short, safe reason for a refused token (logged, and sent as error_description). */
function reasonOf(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return "token expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} invalid (${err.reason})`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return "signature algorithm not accepted";
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "no issuer key matches the token";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "signature invalid";
  if (err instanceof joseErrors.JOSEError) return `invalid token (${err.code})`;
  return "invalid token";
}
