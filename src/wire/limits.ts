/**
 * Every cap and lifetime the wire defines, in one place: sizes a receiver refuses past, lengths
 * of the strings a message carries, and how long the broker's own replies live. The schemas
 * (envelope.ts, services.ts), the agent and the broker read them from here.
 */

/** Hard cap on the header frame; a real header is under 150 bytes. */
export const MAX_HEADER_BYTES = 512;
/** Default cap on a whole message (header + body), bytes. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
/**
 * Longest nack text, UTF-8 bytes: with it a nack stays well under {@link MAX_HEADER_BYTES},
 * whatever the refused message held (a longer one would be dropped by its recipient).
 */
export const MAX_NACK_MSG_BYTES = 256;
/** Deepest nesting accepted inside a decoded message. */
export const MAX_DEPTH = 32;
/** A header's `to` and `as` (a Z85 key, `svc:NAME` or `svc:NAME/KEY`), characters. */
export const MAX_ADDRESS_CHARS = 128;
/** A tool's name, characters. */
export const MAX_TOOL_NAME_CHARS = 256;
/** A job id, characters (the runner's key is inside it). */
export const MAX_JOB_ID_CHARS = 128;
/** An error's code and message, characters. */
export const MAX_ERROR_CODE_CHARS = 64;
export const MAX_ERROR_MESSAGE_CHARS = 4096;
/** A progress message, characters. */
export const MAX_PROGRESS_MESSAGE_CHARS = 4096;
/** A capability token inside a request, characters. */
export const MAX_TOKEN_CHARS = 8192;
/** A request's W3C trace context (`tc`): its `traceparent` (55 in version 00) and `tracestate` (W3C: at most 32 members), characters. */
export const MAX_TRACEPARENT_CHARS = 128;
export const MAX_TRACESTATE_CHARS = 512;
/** How long the broker's acks, nacks and notices live (`exp` = now + this), ms. */
export const BROKER_REPLY_LIFETIME_MS = 60_000;
/**
 * libzmq's own cap (ZMQ_MAXMSGSIZE), as a multiple of `maxMessageBytes`: above it the socket
 * drops the connection rather than buffer it; below it an oversized message gets `too_large`.
 */
export const SOCKET_MESSAGE_SIZE_FACTOR = 4;
