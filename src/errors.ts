/**
 * The one place where zmcp's errors are named.
 *
 * Every error carries a stable string `code`. Codes listed in {@link WIRE_CODES} may travel
 * on the wire (a broker or a peer sends them back); the others are raised locally only.
 */

/** Codes that a broker or an agent may send back to a caller. */
export const WIRE_CODES = [
  "no_route", // destination not connected (broker: EHOSTUNREACH)
  "busy", // destination's queue full, or agent at its concurrency limit
  "too_large", // message or frame above the configured cap
  "bad_frame", // wrong frame count, undecodable or invalid header/message
  "expired", // message past its deadline
  "bad_seal", // box did not open, or header not bound to the body
  "replay", // message id seen before, or timestamp outside the replay window
  "unknown_tool",
  "invalid_args",
  "tool_failed",
  "unsupported_version",
  "forbidden", // sender's key no longer admitted by the broker; a job polled by another caller; an unproven service
  "unknown_job", // no such job, or forgotten after its TTL
  "cancelled", // the job was cancelled
  // Authorization (see src/auth/tokens.ts and docs/SECURITY.md), answered by the called agent:
  "token_missing", // request carries no capability token and the recipient requires one
  "token_invalid", // token malformed, bad signature, unknown kid or untrusted authority
  "token_expired", // token past its exp (beyond the recipient's clock skew)
  "token_not_yet_valid", // token before its nbf (beyond the recipient's clock skew)
  "token_audience", // token's aud does not name the recipient's audience
  "token_key_mismatch", // token bound (cnf) to another curve key than the sender's
  "token_scope", // token's scope does not cover the tool called
  "revoked", // token id or key on the deny list (agent), or sender key revoked (broker)
  "rate_limited", // sender above its rate at the broker (token bucket per key)
  "unavailable", // broker: a durable message could not be stored, the durable store is unreachable (docs/DURABLE.md)
  "displaced", // broker notice: another connection with this agent's key took its route (agent/connection.ts)
] as const;
export type WireCode = (typeof WIRE_CODES)[number];

/** Codes raised locally, never sent. */
export const LOCAL_CODES = [
  "timeout", // no answer within the call's deadline
  "aborted", // the caller's AbortSignal fired
  "closed", // the agent was closed with the call pending
  "config", // invalid option or argument
  "cert", // certificate or key file (JWK) unreadable or invalid
  "unknown_peer", // a name that no certificate in the directory maps to a key
  "handshake_failed", // the broker refused this agent's key (not in its allowlist), or the server key is not the broker's
  "unreachable", // nothing listens at the broker endpoint (connection refused)
  "token_unavailable", // the token provider failed, or gave no usable token, and none is left
  "circuit_open", // the destination's circuit breaker is open: its last calls failed (src/agent/circuit.ts)
] as const;
export type LocalCode = (typeof LOCAL_CODES)[number];

export type ErrorCode = WireCode | LocalCode;

const wireCodes: ReadonlySet<string> = new Set(WIRE_CODES);
export function isWireCode(code: unknown): code is WireCode {
  return typeof code === "string" && wireCodes.has(code);
}

/** Base class: every error zmcp throws or rejects with is one of these. */
export class ZmcpError extends Error {
  override name = "ZmcpError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The `{code, message}` shape used on the wire and by `zmq-call` on stderr. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/**
 * An error that came back over the wire, from the broker (`origin: "broker"`) or from the
 * peer that was called (`origin: "peer"`).
 */
export class RemoteError extends ZmcpError {
  override name = "RemoteError";
  constructor(
    code: WireCode,
    message: string,
    readonly origin: "broker" | "peer",
  ) {
    super(code, `${origin === "broker" ? "broker" : "peer"}: ${message}`);
  }
}

/** The call's deadline passed before an answer came. */
export class TimeoutError extends ZmcpError {
  override name = "TimeoutError";
  constructor(message: string) {
    super("timeout", message);
  }
}

/**
 * Answers came back, but none sealed by the party that was asked (code `bad_seal`): a forged
 * response or job event, from a compromised broker or a peer that learnt the request's id.
 * Raised by the caller once the real answer did not come either.
 */
export class ForgedAnswerError extends ZmcpError {
  override name = "ForgedAnswerError";
  constructor(message: string) {
    super("bad_seal", message);
  }
}

/** Invalid option or file given to a constructor or CLI: thrown at construction. */
export class ConfigError extends ZmcpError {
  override name = "ConfigError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("config", message, options);
  }
}

/** A certificate file that cannot be read or parsed. */
export class CertError extends ZmcpError {
  override name = "CertError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("cert", message, options);
  }
}

/**
 * A check failed on an incoming message. Thrown inside the decode path only; the receiver
 * turns it into a wire answer with the same code.
 */
export class ProtocolError extends ZmcpError {
  override name = "ProtocolError";
  /** Always a wire code: a ProtocolError is what a peer is told. */
  declare readonly code: WireCode;
  constructor(code: WireCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Why a publication did not open (src/events, docs/EVENTS.md): one value per check. */
export type EventSealFailure =
  | "malformed" // not the body layout (format byte, lengths, truncated)
  | "credential" // the publisher's credential is malformed or not signed by the topic's distributor
  | "credential_topic" // the credential is for another topic
  | "credential_epoch" // the credential is for another epoch than the body's
  | "credential_member" // the credential names another key than the one the broker says sent it
  | "credential_expired" // the credential expired (beyond the clock skew allowed)
  | "seal" // the box does not open with the epoch's key
  | "header" // the box opens but was sealed for other header bytes or another topic
  | "signature" // the publisher's signature does not verify with the credential's signing key
  | "data"; // the payload is not readable msgpack

/**
 * A publication that does not open (code `bad_seal`), with the check that failed in `reason`:
 * raised by an event sealer's `open` (src/events/group-keys.ts), never sent on the wire.
 */
export class EventSealError extends ProtocolError {
  override name = "EventSealError";
  constructor(
    readonly reason: EventSealFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super("bad_seal", message, options);
  }
}

/** `{code, message}` from the wire → RemoteError; an unknown code (a newer peer) is kept readable. */
export function remoteError(body: { code: string; message: string } | undefined, origin: "broker" | "peer"): RemoteError {
  if (!body) return new RemoteError("bad_frame", "error answer without an error", origin);
  if (isWireCode(body.code)) return new RemoteError(body.code, body.message, origin);
  return new RemoteError("tool_failed", `${body.code}: ${body.message}`, origin);
}

/**
 * The text of anything thrown, without throwing: `String()` of a null-prototype object, a
 * Proxy or an object whose `toString` throws raises a TypeError of its own, which used to
 * escape the handler's catch and kill the agent.
 */
export function describeThrown(err: unknown): string {
  try {
    if (err instanceof Error) return String(err.message);
    return String(err);
  } catch {
    try {
      return `a thrown ${Object.prototype.toString.call(err)}`;
    } catch {
      return "an unprintable thrown value";
    }
  }
}
