/**
 * Who is connected to a broker, now: for the `zmcp_broker_connected_peers` gauges, the metrics
 * endpoint's `/peers` and `zmq-broker peers`.
 *
 * "Now" is what the broker heard (liveness.ts): every zmcp agent sends a `hb` at least every
 * heartbeat interval, so a key heard within the heartbeat timeout is connected, and one silent
 * longer is not (closed, killed, frozen). This is a gauge of the present, unlike the old
 * `peers_connected_total − peers_disconnected_total`: libzmq reports a disconnect for every
 * closed connection, handshake failed or not, and neither counter survives a restart, so that
 * difference went negative (and an event that fires before the broker's observer is attached,
 * right after the bind, is never seen). The broker cannot tie libzmq's connection events to a
 * key (they carry the TCP address only), and it needs no table for this: last-heard is kept anyway.
 */
import type { PeerLiveness } from "../support/liveness.js";

/** One connected peer. */
export interface PeerInfo {
  /** Z85 public key (the broker's routing id for it). */
  key: string;
  /** Its certificate name in the broker's allowlist directory, when there is one. */
  name: string | undefined;
  /** Ms since the broker last heard from it. */
  lastHeardMs: number;
  /** It sends `hb` (a zmcp agent); false for a peer that never promised liveness. */
  heartbeats: boolean;
}

/** The peers heard within the liveness timeout, most recently heard first. */
export function connectedPeers(liveness: PeerLiveness, names: ReadonlyMap<string, string>, now = performance.now()): PeerInfo[] {
  const peers: PeerInfo[] = [];
  for (const [key, heard] of liveness.recent(now)) peers.push({ key, name: names.get(key), lastHeardMs: Math.round(heard.silenceMs), heartbeats: heard.announces });
  return peers.sort((a, b) => a.lastHeardMs - b.lastHeardMs);
}
