/**
 * Capability tokens: compact JWTs signed with Ed25519 (`alg: "EdDSA"`, RFC 8037) by an
 * authority key (see jwk.ts), so that any JWT library can read and check them.
 *
 * Claims: `iss`, `sub`, `aud`, `iat`, `nbf` (jittered a few seconds back), `exp`, `jti`,
 * `scope` (space-separated, RFC 8693 §4.2) and the confirmation claim
 * `cnf: {"zmcp:key": "<Z85 curve public key>"}` (RFC 7800 §3.1 allows new confirmation
 * members; a Z85 key compares as-is with the sender key the broker authenticated, and reads
 * the same as in the `.key` files). A stolen token is useless without the curve secret key.
 *
 * Verification uses node:crypto (~0.1 ms per Ed25519 verify, against ~8 ms in tweetnacl),
 * and a verified token is cached until it expires, so a caller's token costs one signature
 * check per recipient per lifetime, not one per message.
 *
 * This file writes tokens (TokenIssuer) and holds the format's rules (scopes, claims, limits);
 * token-verifier.ts reads them.
 */
import { isPattern, isTopic as isTopicName } from "../events/topics.js";
import { randomBytes, sign as signData, type KeyObject } from "node:crypto";
import { ConfigError } from "../errors.js";
import { loadAuthorityPrivateKey, parseAuthorityJwk, privateKeyObject, type AuthorityJwk } from "./jwk.js";
import { isZ85Key } from "../wire/z85.js";

/** Default token lifetime, seconds. */
export const DEFAULT_TOKEN_TTL_S = 300;
/** Longest lifetime issued unless the issuer raises `maxTtl`, seconds. */
export const MAX_TOKEN_TTL_S = 300;
/** Default audience, in tokens issued and expected by recipients. */
export const DEFAULT_AUDIENCE = "mesh";
export const DEFAULT_ISSUER = "zmcp";
/** Default clock difference tolerated on `exp` and `nbf`, ms. */
export const DEFAULT_CLOCK_SKEW_MS = 30_000;
/** Longest token accepted, characters (the request field's cap). */
export const MAX_TOKEN_CHARS = 8192;
/** Name of the confirmation member that binds a token to a curve key. */
export const CNF_KEY = "zmcp:key";

// RFC 6749 §3.3 scope-token: printable ASCII but space, `"` and `\`.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,256}$/;
export const B64U = /^[A-Za-z0-9_-]+$/;

/** Throws ConfigError unless `scope` is one valid scope token (e.g. `call:jobs.*`). */
export function checkScopeToken(scope: string): void {
  if (typeof scope !== "string" || !SCOPE_TOKEN.test(scope)) {
    throw new ConfigError(`scope ${JSON.stringify(scope)} must be 1 to 256 printable characters without spaces, quotes or backslashes`);
  }
}

/**
 * True when one of `granted` covers `required`: equal, or a granted scope ending in `*`
 * whose prefix starts `required` (`call:jobs.*` covers `call:jobs.submit`, `call:*` covers
 * every `call:` scope, `*` covers all). A `*` anywhere else is an ordinary character.
 *
 * Topic scopes (`pub:TOPIC`, `sub:TOPIC`, docs/EVENTS.md) differ: a granted scope of the same
 * kind is read as a topic pattern, `*` one dotted token and `>` one or more trailing ones
 * (`sub:docs.>` covers `sub:docs.a.b` and the pattern `sub:docs.*`; `sub:docs.*` covers
 * `sub:docs.a` only). So a grant means what the same pattern means in a subscription, and a
 * grant read the other way fails closed (`sub:docs*` covers nothing: not a pattern). Other
 * grants still cover them by the rule above (`*`, `sub*`).
 */
export function scopeCovers(granted: readonly string[], required: string): boolean {
  const kind = topicScopeKind(required);
  for (const g of granted) {
    if (g === required) return true;
    if (kind !== undefined && g.startsWith(kind)) {
      if (topicPatternCovers(g.slice(kind.length), required.slice(kind.length))) return true;
      continue;
    }
    if (g.endsWith("*") && required.startsWith(g.slice(0, -1))) return true;
  }
  return false;
}

/** The scope prefixes whose rest is a topic or topic pattern. */
export const TOPIC_SCOPE_KINDS = ["pub:", "sub:"] as const;

function topicScopeKind(scope: string): (typeof TOPIC_SCOPE_KINDS)[number] | undefined {
  return TOPIC_SCOPE_KINDS.find((k) => scope.startsWith(k));
}

/**
 * True for a dotted topic (`docs.indexed`), or with `wildcards` a pattern too (`docs.*`,
 * `docs.>`). The rules are the publish-subscribe side's own (src/events/topics.ts), so a scope
 * names exactly what can be published or subscribed to.
 */
export function isTopic(topic: string, wildcards = false): boolean {
  return wildcards ? isPattern(topic) : isTopicName(topic);
}

/**
 * True when every topic that `required` matches, `granted` matches too (both topics or
 * patterns; anything that is not one covers nothing and is covered by nothing).
 */
export function topicPatternCovers(granted: string, required: string): boolean {
  if (!isTopic(granted, true) || !isTopic(required, true)) return false;
  const g = granted.split(".");
  const r = required.split(".");
  for (let i = 0; i < g.length; i++) {
    const gt = g[i]!;
    if (gt === ">") return r.length > i; // one or more tokens left, whatever they are
    const rt = r[i];
    if (rt === undefined) return false;
    if (gt === "*") {
      if (rt === ">") return false; // `>` may stand for several tokens; `*` for one
      continue;
    }
    if (rt !== gt) return false; // a literal covers only itself, not `*` or `>`
  }
  return r.length === g.length;
}

/** The scope a tool requires by default. */
export function defaultToolScope(tool: string): string {
  return `call:${tool}`;
}

// ---------------------------------------------------------------------------------------
// Issuing

export interface IssueTokenOptions {
  /** Subject: the holder's name (e.g. its certificate name). */
  sub: string;
  /** The holder's curve public key, Z85: the token is valid only on messages from it. */
  key: string;
  /** Granted scopes: a space-separated string or a list (e.g. `call:batch_sum call:jobs.*`). */
  scope: string | readonly string[];
  /** Lifetime, seconds. Default 300. */
  ttl?: number;
  /** Audience(s). Default `"mesh"`. */
  aud?: string | readonly string[];
  /** Issuer. Default `"zmcp"`. */
  iss?: string;
  /** Token id. Default: 128 random bits, base64url. */
  jti?: string;
  /** Issue time, ms since the epoch. Default now. */
  now?: number;
}

export interface TokenIssuerOptions {
  /** Longest `ttl` accepted, seconds. Default 300: raise it only on purpose. */
  maxTtl?: number;
  /** `nbf` is set back by a random 1 to `nbfJitter` seconds (receivers whose clock lags). Default 5. */
  nbfJitter?: number;
}

/** Signs tokens with one authority's private key (loaded once). */
export class TokenIssuer {
  readonly kid: string;
  readonly #key: KeyObject;
  readonly #maxTtl: number;
  readonly #nbfJitter: number;

  /** @param authority the private JWK, or the path of the authority's `.jwk` file */
  constructor(authority: AuthorityJwk | string, options: TokenIssuerOptions = {}) {
    const jwk = typeof authority === "string" ? loadAuthorityPrivateKey(authority) : parseAuthorityJwk(authority, "authority JWK");
    this.#key = privateKeyObject(jwk);
    this.kid = jwk.kid;
    this.#maxTtl = options.maxTtl ?? MAX_TOKEN_TTL_S;
    this.#nbfJitter = options.nbfJitter ?? 5;
    if (!Number.isInteger(this.#maxTtl) || this.#maxTtl <= 0) throw new ConfigError("maxTtl must be a positive integer of seconds");
    if (!Number.isInteger(this.#nbfJitter) || this.#nbfJitter < 1) throw new ConfigError("nbfJitter must be an integer >= 1");
  }

  /** A compact JWT. Throws ConfigError on an invalid option (bad key, scope, ttl above `maxTtl`). */
  issue(options: IssueTokenOptions): string {
    const ttl = options.ttl ?? DEFAULT_TOKEN_TTL_S;
    if (!Number.isInteger(ttl) || ttl <= 0) throw new ConfigError("ttl must be a positive integer of seconds");
    if (ttl > this.#maxTtl) throw new ConfigError(`ttl ${ttl} s exceeds the maximum of ${this.#maxTtl} s (raise maxTtl / --max-ttl explicitly to allow it)`);
    if (typeof options.sub !== "string" || options.sub.length === 0 || options.sub.length > 256) throw new ConfigError("sub must be 1 to 256 characters");
    if (!isZ85Key(options.key)) throw new ConfigError("key must be a 40-character Z85 curve public key");
    const scopes = typeof options.scope === "string" ? options.scope.split(" ").filter((s) => s !== "") : [...options.scope];
    if (scopes.length === 0) throw new ConfigError("at least one scope is required");
    scopes.forEach(checkScopeToken);
    const aud = options.aud ?? DEFAULT_AUDIENCE;
    const auds = typeof aud === "string" ? [aud] : aud;
    if (auds.length === 0 || auds.some((a) => typeof a !== "string" || a.length === 0 || a.length > 256)) throw new ConfigError("aud must be 1 to 256 characters");
    const iat = Math.floor((options.now ?? Date.now()) / 1000);
    const jitter = 1 + (randomBytes(1)[0]! % this.#nbfJitter);
    const payload = {
      iss: options.iss ?? DEFAULT_ISSUER,
      sub: options.sub,
      aud: typeof aud === "string" ? aud : [...aud],
      iat,
      nbf: iat - jitter,
      exp: iat + ttl,
      jti: options.jti ?? randomBytes(16).toString("base64url"),
      scope: scopes.join(" "),
      cnf: { [CNF_KEY]: options.key },
    };
    const header = { alg: "EdDSA", typ: "JWT", kid: this.kid };
    const input = `${b64json(header)}.${b64json(payload)}`;
    const token = `${input}.${signData(null, Buffer.from(input, "ascii"), this.#key).toString("base64url")}`;
    if (token.length > MAX_TOKEN_CHARS) throw new ConfigError(`token of ${token.length} characters exceeds ${MAX_TOKEN_CHARS}`);
    return token;
  }
}

/** One-off {@link TokenIssuer.issue}; `maxTtl` raises the 300 s cap on purpose. */
export function createToken(options: IssueTokenOptions & TokenIssuerOptions & { authority: AuthorityJwk | string }): string {
  const issuerOptions: TokenIssuerOptions = {};
  if (options.maxTtl !== undefined) issuerOptions.maxTtl = options.maxTtl;
  if (options.nbfJitter !== undefined) issuerOptions.nbfJitter = options.nbfJitter;
  return new TokenIssuer(options.authority, issuerOptions).issue(options);
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}
