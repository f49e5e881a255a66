/**
 * Reading capability tokens (auth/tokens.ts writes them): the TokenVerifier checks a token's
 * signature (by `kid`, several authorities trusted during a rotation), times, lifetime and
 * audience once and caches the result, then per request its binding to the sender's key,
 * revocation (deny list) and scope. Every refusal is a ProtocolError with a `token_*` code.
 */
import { verify as verifySignature, type KeyObject } from "node:crypto";
import { z } from "zod";
import { DenyList } from "./denylist.js";
import { ConfigError, ProtocolError } from "../errors.js";
import { loadJwkFile, parseAuthorityJwk, publicJwkOf, publicKeyObject, type AuthorityJwk } from "./jwk.js";
import { silentLogger, type Logger } from "../support/log.js";
import { DEFAULT_RELOAD_INTERVAL_MS, watchPath } from "../support/watch.js";
import { isZ85Key } from "../wire/z85.js";
import { RecencyMap } from "../support/recency-map.js";
import { B64U, CNF_KEY, DEFAULT_AUDIENCE, DEFAULT_CLOCK_SKEW_MS, MAX_TOKEN_CHARS, MAX_TOKEN_TTL_S, scopeCovers } from "./tokens.js";

/** Slack on `exp - iat` for issuers whose two claims straddle a second boundary. */
const LIFETIME_ROUNDING_MS = 1000;


const JwtHeaderSchema = z.looseObject({
  // RFC 8037 names the algorithm EdDSA; RFC 9864 adds the fully specified Ed25519.
  alg: z.enum(["EdDSA", "Ed25519"]),
  kid: z.string().min(1).max(256).optional(),
  typ: z.string().max(64).optional(),
  crit: z.never().optional(), // no extension is understood, so none may be critical
});

const ClaimsSchema = z.looseObject({
  iss: z.string().max(256).optional(),
  sub: z.string().min(1).max(256),
  aud: z.union([z.string().max(256), z.array(z.string().max(256)).max(32)]).optional(),
  exp: z.number().finite(),
  nbf: z.number().finite().optional(),
  iat: z.number().finite().optional(),
  jti: z.string().min(1).max(256),
  scope: z.string().max(MAX_TOKEN_CHARS),
  cnf: z.looseObject({ [CNF_KEY]: z.string().refine(isZ85Key, { message: "not a 40-character Z85 key" }) }),
});

/** A token whose signature, times and audience checked out. Frozen: shared by every request that carries it. */
export interface VerifiedToken {
  readonly sub: string;
  readonly iss: string | undefined;
  readonly aud: readonly string[];
  readonly jti: string;
  readonly scopes: readonly string[];
  /** The curve key (Z85) the token is bound to. */
  readonly key: string;
  /** The authority key that signed it. */
  readonly kid: string;
  /** Expiry, ms since the epoch. */
  readonly exp: number;
  /** Not before, ms since the epoch, if set. */
  readonly nbf: number | undefined;
  readonly iat: number | undefined;
  /** Every claim as decoded (including ones zmcp does not use). */
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Reads a token's claims WITHOUT checking anything (for a holder looking at its own token). */
export function decodeTokenUnverified(token: string): Record<string, unknown> | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || !B64U.test(parts[1]!)) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    return claims !== null && typeof claims === "object" && !Array.isArray(claims) ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Trusted authority keys: a path (JWK or JWK Set file), a public JWK, or a list of them. */
export type AuthorityInput = string | AuthorityJwk | ReadonlyArray<string | AuthorityJwk>;

export interface TokenVerifierOptions {
  /** Trusted authority public keys, selected by each token's `kid` (several at once during rotation). */
  authority: AuthorityInput;
  /** The audience this recipient answers to; a token's `aud` must name it. Default `"mesh"`. */
  audience?: string;
  /** Clock difference tolerated on `exp` and `nbf`, ms. Default 30,000. */
  clockSkew?: number;
  /**
   * Longest token lifetime accepted, seconds (the issuer's default cap, {@link MAX_TOKEN_TTL_S}).
   * A token is refused (`token_invalid`) when `exp - iat` exceeds it, or when `exp` lies further
   * than this (plus `clockSkew`) past now: a leaked token then dies within this time whatever its
   * signer wrote. Raise it together with the issuer's `maxTtl`. Default 300.
   */
  maxTokenLifetime?: number;
  /** Revoked token ids and keys: a deny list file (watched) or a {@link DenyList}. */
  denyList?: string | DenyList;
  /** Verified tokens kept (least recently used dropped first). Default 10,000. */
  cacheSize?: number;
  /** Re-read authority and deny list files when they change. Default true. */
  watch?: boolean;
  /** Polling interval of watched files, ms. Default 1,000. */
  reloadInterval?: number;
  log?: Logger;
}

interface TrustedKey {
  jwk: AuthorityJwk;
  key: KeyObject;
}

/**
 * Checks tokens for one recipient: signature (by `kid`), times, audience, then per request
 * the binding to the sender's key, revocation and scope. Every refusal is a ProtocolError
 * whose code travels back to the caller.
 */
export class TokenVerifier {
  readonly audience: string;
  readonly clockSkew: number;
  /** Longest lifetime accepted, ms. */
  readonly maxTokenLifetime: number;
  readonly #sources: ReadonlyArray<string | AuthorityJwk>;
  readonly #cacheSize: number;
  readonly #log: Logger;
  readonly #denyList: DenyList | undefined;
  readonly #ownsDenyList: boolean;
  readonly #stops: Array<() => void> = [];
  #keys: Map<string, TrustedKey>;
  readonly #cache: RecencyMap<string, VerifiedToken>;

  /** Throws ConfigError or CertError (unreadable or invalid authority keys or deny list). */
  constructor(options: TokenVerifierOptions) {
    this.audience = options.audience ?? DEFAULT_AUDIENCE;
    this.clockSkew = options.clockSkew ?? DEFAULT_CLOCK_SKEW_MS;
    this.#cacheSize = options.cacheSize ?? 10_000;
    const lifetime = options.maxTokenLifetime ?? MAX_TOKEN_TTL_S;
    if (!Number.isInteger(lifetime) || lifetime <= 0) throw new ConfigError("maxTokenLifetime must be a positive integer of seconds");
    this.maxTokenLifetime = lifetime * 1000;
    this.#log = options.log ?? silentLogger;
    if (typeof this.audience !== "string" || this.audience.length === 0) throw new ConfigError("audience must be a non-empty string");
    if (!(this.clockSkew >= 0) || !Number.isFinite(this.clockSkew)) throw new ConfigError("clockSkew must be a number of ms >= 0");
    if (!Number.isInteger(this.#cacheSize) || this.#cacheSize < 1) throw new ConfigError("cacheSize must be a positive integer");
    this.#cache = new RecencyMap(this.#cacheSize);
    const input = options.authority;
    this.#sources = typeof input === "string" || !Array.isArray(input) ? [input as string | AuthorityJwk] : [...(input as ReadonlyArray<string | AuthorityJwk>)];
    if (this.#sources.length === 0) throw new ConfigError("at least one authority key is required");
    this.#keys = this.#loadKeys();
    const watch = options.watch ?? true;
    const interval = options.reloadInterval ?? DEFAULT_RELOAD_INTERVAL_MS;
    if (typeof options.denyList === "string") {
      this.#denyList = DenyList.open(options.denyList, { watch, reloadInterval: interval, log: this.#log });
      this.#ownsDenyList = true;
    } else {
      this.#denyList = options.denyList;
      this.#ownsDenyList = false;
    }
    if (watch) {
      for (const source of this.#sources) {
        if (typeof source === "string") this.#stops.push(watchPath(source, interval, () => this.reloadAuthorities()));
      }
    }
  }

  /** Key ids currently trusted. */
  get kids(): string[] {
    return [...this.#keys.keys()];
  }

  get denyList(): DenyList | undefined {
    return this.#denyList;
  }

  /** Verified tokens in the cache. */
  get cached(): number {
    return this.#cache.size;
  }

  /**
   * Re-reads the authority key files. On failure the previous keys stay trusted and false is
   * returned. On success the cache is emptied, so tokens of a key no longer trusted stop working.
   */
  reloadAuthorities(): boolean {
    try {
      this.#keys = this.#loadKeys();
      this.#cache.clear();
      this.#log.info("authority keys reloaded", { kids: this.kids });
      return true;
    } catch (err) {
      this.#log.error("authority keys reload failed; keeping the previous ones", { error: (err as Error).message });
      return false;
    }
  }

  /**
   * Signature, `exp`/`nbf` (with `clockSkew`), lifetime (`maxTokenLifetime`) and audience.
   * Throws ProtocolError(token_invalid | token_expired | token_not_yet_valid | token_audience).
   */
  verify(token: string, now = Date.now()): VerifiedToken {
    const cached = this.#cache.peek(token);
    if (cached) {
      try {
        this.#checkTimes(cached, now);
      } catch (err) {
        this.#cache.delete(token);
        throw err;
      }
      this.#cache.set(token, cached); // the most recent now
      return cached;
    }
    const verified = this.#verifyUncached(token);
    this.#checkTimes(verified, now);
    if (!verified.aud.includes(this.audience)) {
      throw new ProtocolError("token_audience", `token is for ${JSON.stringify(verified.aud)}, not ${JSON.stringify(this.audience)}`);
    }
    this.#cache.set(token, verified);
    return verified;
  }

  /**
   * Everything a request needs: a token present and verified, bound to `from` (the sender key
   * the broker authenticated), not revoked, and covering `scope`. Throws ProtocolError with
   * the code to answer: token_missing, the codes of {@link verify}, token_key_mismatch,
   * revoked, token_scope. With `scope` undefined only the token itself is checked.
   */
  authorize(token: string | undefined, from: string, scope: string | undefined, now = Date.now()): VerifiedToken {
    if (token === undefined || token === "") throw new ProtocolError("token_missing", "a capability token is required");
    const verified = this.verify(token, now);
    if (verified.key !== from) throw new ProtocolError("token_key_mismatch", "token is bound to another key than the sender's");
    if (this.#denyList && (this.#denyList.hasJti(verified.jti) || this.#denyList.hasKey(verified.key))) {
      throw new ProtocolError("revoked", this.#denyList.hasJti(verified.jti) ? `token ${verified.jti} is revoked` : "sender key is revoked");
    }
    if (scope !== undefined && !scopeCovers(verified.scopes, scope)) throw new ProtocolError("token_scope", `token scope does not cover ${JSON.stringify(scope)}`);
    return verified;
  }

  /** Stops watching files. */
  close(): void {
    for (const stop of this.#stops.splice(0)) stop();
    if (this.#ownsDenyList) this.#denyList?.close();
  }

  #loadKeys(): Map<string, TrustedKey> {
    const keys = new Map<string, TrustedKey>();
    for (const source of this.#sources) {
      const jwks = typeof source === "string" ? loadJwkFile(source) : [parseAuthorityJwk(source, "authority JWK")];
      for (const jwk of jwks) {
        const existing = keys.get(jwk.kid);
        if (existing && existing.jwk.x !== jwk.x) throw new ConfigError(`two different authority keys share kid ${JSON.stringify(jwk.kid)}`);
        keys.set(jwk.kid, { jwk: publicJwkOf(jwk), key: publicKeyObject(jwk) });
      }
    }
    return keys;
  }

  #verifyUncached(token: string): VerifiedToken {
    const invalid = (why: string) => new ProtocolError("token_invalid", `token ${why}`);
    if (typeof token !== "string" || token.length > MAX_TOKEN_CHARS) throw invalid(`longer than ${MAX_TOKEN_CHARS} characters`);
    const parts = token.split(".");
    if (parts.length !== 3 || !parts.every((p) => B64U.test(p))) throw invalid("is not a compact JWS (three base64url parts)");
    const [h, p, s] = parts as [string, string, string];
    const header = JwtHeaderSchema.safeParse(parseJsonPart(h));
    if (!header.success) throw invalid(`header is not an EdDSA JWS header: ${z.prettifyError(header.error)}`);
    let trusted: TrustedKey | undefined;
    if (header.data.kid !== undefined) trusted = this.#keys.get(header.data.kid);
    else if (this.#keys.size === 1) trusted = this.#keys.values().next().value;
    if (!trusted) {
      throw invalid(header.data.kid === undefined ? "has no kid and several authorities are trusted" : `is signed by an untrusted authority (kid ${JSON.stringify(header.data.kid)})`);
    }
    const signature = Buffer.from(s, "base64url");
    if (signature.length !== 64 || !verifySignature(null, Buffer.from(`${h}.${p}`, "ascii"), trusted.key, signature)) {
      throw invalid("signature does not verify");
    }
    const claims = ClaimsSchema.safeParse(parseJsonPart(p));
    if (!claims.success) throw invalid(`claims are invalid: ${z.prettifyError(claims.error)}`);
    const c = claims.data;
    const aud = c.aud === undefined ? [] : typeof c.aud === "string" ? [c.aud] : c.aud;
    return Object.freeze({
      sub: c.sub,
      iss: c.iss,
      aud: Object.freeze([...aud]),
      jti: c.jti,
      scopes: Object.freeze(c.scope.split(" ").filter((x) => x !== "")),
      key: c.cnf[CNF_KEY],
      kid: trusted.jwk.kid,
      exp: c.exp * 1000,
      nbf: c.nbf === undefined ? undefined : c.nbf * 1000,
      iat: c.iat === undefined ? undefined : c.iat * 1000,
      claims: Object.freeze(c),
    });
  }

  #checkTimes(token: VerifiedToken, now: number): void {
    // Both checks: `exp - iat` catches a long-lived token at once, even one whose iat was
    // back-dated so that it looks short from now; `exp - now` catches one with no iat, or an
    // iat placed near exp (`exp: 1e308` with `iat: 1e308 - 1`). Codes: token_invalid, since no
    // compliant issuer makes such a token and refreshing or waiting will not help.
    const max = this.maxTokenLifetime;
    // One second of slack: issuers compute iat and exp from two clock reads, each floored to a
    // second (jose's setIssuedAt() and setExpirationTime("5m") can be 301 s apart).
    if (token.iat !== undefined && token.exp - token.iat > max + LIFETIME_ROUNDING_MS) {
      throw new ProtocolError("token_invalid", `token lifetime of ${seconds(token.exp - token.iat)} s exceeds the maximum of ${max / 1000} s`);
    }
    if (now - this.clockSkew >= token.exp) throw new ProtocolError("token_expired", `token expired at ${iso(token.exp)}`);
    if (token.nbf !== undefined && now + this.clockSkew < token.nbf) {
      throw new ProtocolError("token_not_yet_valid", `token is not valid before ${iso(token.nbf)}`);
    }
    // After the nbf check: a token from an issuer whose clock runs ahead is "not yet valid", as before.
    if (token.exp - now > max + this.clockSkew) {
      throw new ProtocolError("token_invalid", `token expires ${seconds(token.exp - now)} s from now, beyond the maximum lifetime of ${max / 1000} s`);
    }
  }
}

/** ms → seconds for a message, readable even for absurd values (1e308 s). */
function seconds(ms: number): string {
  const s = ms / 1000;
  return Number.isFinite(s) && Math.abs(s) < 1e12 ? String(Math.round(s)) : s.toExponential(2);
}

/** A claim time for a message; `toISOString` throws a RangeError on times past year 275760 (`nbf: 1e308`). */
function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `${seconds(ms)} s after the epoch` : d.toISOString();
}

function parseJsonPart(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
}
