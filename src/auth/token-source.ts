/**
 * The caller's side of tokens: where an agent gets the token it attaches to its requests,
 * and when it asks for a new one.
 *
 * A provider function is asked again once less than min(20% of the token's lifetime, 30 s)
 * remains. Until half of that margin is left the current token is still sent while the new
 * one is fetched in the background; past it, calls wait for the new one. So an agent on
 * 5-minute tokens changes tokens about 30 s before expiry, and no call goes out with a token
 * about to lapse in transit.
 */
import { ZmcpError, describeThrown } from "../errors.js";
import { silentLogger, type Logger } from "../support/log.js";
import { decodeTokenUnverified } from "./token-verifier.js";

/** A fixed token, or a function that returns a fresh one (e.g. from an issuing service). */
export type TokenProvider = string | (() => Promise<string> | string);

/** Fraction of a token's lifetime left when a new one is fetched. */
export const REFRESH_FRACTION = 0.2;
/** ...but never more than this, ms, before expiry. */
export const MAX_REFRESH_MARGIN_MS = 30_000;

interface Current {
  token: string;
  /** Expiry, ms since the epoch. */
  exp: number;
  /** From here on, fetch a new token in the background. */
  refreshAt: number;
  /** From here on, wait for the new token. */
  mustRefreshAt: number;
}

export class TokenSource {
  readonly #provider: TokenProvider;
  readonly #log: Logger;
  #current: Current | undefined;
  #inflight: Promise<string> | undefined;

  constructor(provider: TokenProvider, log: Logger = silentLogger) {
    this.#provider = provider;
    this.#log = log;
  }

  /**
   * The token to attach now. A fixed token is returned as given (an expired one is for the
   * recipient to refuse). Rejects with ZmcpError(token_unavailable) when the provider fails
   * and no unexpired token is left.
   */
  async get(now = Date.now()): Promise<string> {
    const provider = this.#provider;
    if (typeof provider === "string") return provider;
    const current = this.#current;
    if (current && now < current.refreshAt) return current.token;
    if (current && now < current.mustRefreshAt) {
      this.#refresh(provider).catch((err) => this.#log.warn("token refresh failed; still using the current token", { error: describeThrown(err) }));
      return current.token;
    }
    try {
      return await this.#refresh(provider);
    } catch (err) {
      if (current && Date.now() < current.exp) {
        this.#log.warn("token refresh failed; using the current token until it expires", { error: describeThrown(err) });
        return current.token;
      }
      throw err;
    }
  }

  #refresh(provider: () => Promise<string> | string): Promise<string> {
    // One request to the provider at a time, shared by every call waiting for it.
    this.#inflight ??= (async () => {
      try {
        let token: unknown;
        try {
          token = await provider();
        } catch (err) {
          throw new ZmcpError("token_unavailable", `token provider failed: ${describeThrown(err)}`, { cause: err });
        }
        if (typeof token !== "string") throw new ZmcpError("token_unavailable", "token provider returned no string");
        this.#current = schedule(token);
        return token;
      } finally {
        this.#inflight = undefined;
      }
    })();
    return this.#inflight;
  }
}

function schedule(token: string): Current {
  const claims = decodeTokenUnverified(token);
  const exp = claims?.["exp"];
  if (typeof exp !== "number" || !Number.isFinite(exp)) throw new ZmcpError("token_unavailable", "token from the provider has no exp claim");
  const expMs = exp * 1000;
  const iat = claims?.["iat"] ?? claims?.["nbf"];
  const lifetime = typeof iat === "number" && iat < exp ? expMs - iat * 1000 : MAX_REFRESH_MARGIN_MS / REFRESH_FRACTION;
  const margin = Math.min(REFRESH_FRACTION * lifetime, MAX_REFRESH_MARGIN_MS);
  return { token, exp: expMs, refreshAt: expMs - margin, mustRefreshAt: expMs - margin / 2 };
}
