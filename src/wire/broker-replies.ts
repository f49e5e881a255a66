/**
 * The broker's own messages: `[empty from, header, empty body]`, the empty sender frame telling
 * an agent the broker itself speaks. An ack answers a heartbeat; a nack refuses a message
 * (`re` names it); a nack without `re` is a notice (`displaced`, `revoked`) about the connection.
 */
import type { WireCode } from "../errors.js";
import { clipUtf8, encodeHeader, newId, PROTOCOL_VERSION, type Header } from "./envelope.js";
import { BROKER_REPLY_LIFETIME_MS, MAX_NACK_MSG_BYTES } from "./limits.js";

/** The header frame of a nack to `to` (a refusal when `re` is given, a notice otherwise); `msg` clipped to fit. */
export function nackHeader(to: string, code: WireCode, msg: string, re?: Uint8Array, now = Date.now()): Uint8Array {
  const header: Header = { v: PROTOCOL_VERSION, k: "nack", id: newId(), to, exp: now + BROKER_REPLY_LIFETIME_MS, code, msg: clipUtf8(msg, MAX_NACK_MSG_BYTES) };
  if (re) header.re = re;
  return encodeHeader(header);
}

/** The header frame of an ack of heartbeat `re`. */
export function ackHeader(to: string, re: Uint8Array, now = Date.now()): Uint8Array {
  return encodeHeader({ v: PROTOCOL_VERSION, k: "ack", id: newId(), to, exp: now + BROKER_REPLY_LIFETIME_MS, re });
}

/** What the ROUTER sends for one of these: the peer's routing id, the empty sender, the header, an empty body. */
export function brokerFrames(routingId: Buffer | string, header: Uint8Array): Array<Buffer | string | Uint8Array> {
  return [routingId, "", header, ""];
}
