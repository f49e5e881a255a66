/**
 * The broker's counters (plain numbers bumped on the routing path) and the Prometheus
 * metrics that read them at scrape time (support/metrics.ts).
 */
import type { WireCode } from "../errors.js";
import type { DurableStats } from "../store/durable.js";
import { readCounter, readGauge, readGaugeSeries, readLabelledCounter, type Registry } from "../support/metrics.js";
import type { PeerInfo } from "./peers.js";

/** Counters, for tests and operators. */
export interface BrokerStats {
  /**
   * Messages received; each is then routed, refused, or (a service heartbeat) acknowledged:
   * received = routed + Σ refused + heartbeats + internalErrors + published.
   * With a durable store, received + durable.delivered = that sum + durable.stored (a stored
   * message counts as routed when it is delivered).
   */
  received: number;
  routed: number;
  bytes: number;
  refused: Partial<Record<WireCode, number>>;
  /** Nacks that could not be delivered either (sender gone or full). */
  nacksLost: number;
  /** Service heartbeats acknowledged. */
  heartbeats: number;
  /**
   * Publications accepted for fan-out (docs/EVENTS.md), the copies forwarded to subscribers,
   * and the copies not forwarded, by reason: `busy` (the subscriber's queue was full), `no_route`
   * (not connected), `silent` (unheard past the heartbeat timeout), `revoked` (no longer admitted).
   * A dropped copy is not answered: the subscriber counts it from the sequence numbers.
   */
  published: number;
  fanout: number;
  /** busy, no_route, silent, revoked: a live copy; quota, full, unavailable: a durable subscriber's copy the store refused (store/durable.ts fanOut). */
  fanoutDropped: Partial<Record<"busy" | "no_route" | "silent" | "revoked" | "quota" | "full" | "unavailable", number>>;
  /** Messages that hit a bug in the broker (logged); expected to stay 0. */
  internalErrors: number;
  /**
   * Handshakes of a key that was connected already: the older connection was told `displaced`
   * (a broker notice) before the new one took its route.
   */
  takeovers: number;
  /**
   * Handshakes of a key whose older connection was silent longer than a heartbeat interval (most
   * likely the same process redialling): told `displaced` all the same, but not a takeover.
   */
  reconnects: number;
  /** Connections told their key was revoked or removed (`revoked` notice). */
  revocationNotices: number;
  /** Connections accepted (TCP), CURVE handshakes completed, connections closed. */
  accepted: number;
  handshakes: number;
  disconnected: number;
  /** Failed handshakes by reason (`auth`: key refused; `protocol`: not ZMTP/CURVE, or garbage; `other`). */
  handshakeFailures: Partial<Record<"auth" | "protocol" | "other", number>>;
}

export function newBrokerStats(): BrokerStats {
  return { received: 0, routed: 0, bytes: 0, refused: {}, nacksLost: 0, heartbeats: 0, published: 0, fanout: 0, fanoutDropped: {}, internalErrors: 0, takeovers: 0, reconnects: 0, revocationNotices: 0, accepted: 0, handshakes: 0, disconnected: 0, handshakeFailures: {} };
}

/** What the registry reads besides the counters: gauges of the broker's parts. */
export interface BrokerGauges {
  rateLimitedNow(): number;
  rateLimitedEpisodes(): number;
  logLinesSuppressed(): number;
  allowedKeys(): number;
  serviceReplicas(): number;
  /** Topic patterns in the subscription directory, and the keys holding them. */
  subscriptions(): number;
  subscribers(): number;
  durableSubscriptions(): number;
  /** The store-and-forward counters, when a store is configured. */
  durable(): DurableStats | undefined;
  /** Peers heard within the heartbeat timeout (peers.ts). */
  connectedPeers(): PeerInfo[];
}

export function registerBrokerMetrics(r: Registry, s: BrokerStats, g: BrokerGauges): void {
  readCounter(r, "zmcp_broker_messages_received_total", "Messages received from peers", () => s.received);
  readCounter(r, "zmcp_broker_messages_routed_total", "Messages forwarded to their recipient", () => s.routed);
  readCounter(r, "zmcp_broker_routed_bytes_total", "Bytes (header + body) forwarded", () => s.bytes);
  readLabelledCounter(r, "zmcp_broker_messages_refused_total", "Messages refused with a nack, by error code", "code", () => Object.entries(s.refused) as Array<[string, number]>);
  readCounter(r, "zmcp_broker_nacks_lost_total", "Nacks that could not be delivered (sender gone or its queue full)", () => s.nacksLost);
  readCounter(r, "zmcp_broker_service_heartbeats_total", "Service heartbeats acknowledged", () => s.heartbeats);
  readCounter(r, "zmcp_broker_internal_errors_total", "Messages that hit a broker bug (logged)", () => s.internalErrors);
  readCounter(r, "zmcp_broker_connections_accepted_total", "TCP connections accepted", () => s.accepted);
  readCounter(r, "zmcp_broker_peers_connected_total", "CURVE handshakes completed (peers connected)", () => s.handshakes);
  readCounter(r, "zmcp_broker_peers_disconnected_total", "Connections closed, whether their handshake completed or not (not a gauge: see zmcp_broker_connected_peers)", () => s.disconnected);
  readLabelledCounter(r, "zmcp_broker_handshake_failures_total", "Failed handshakes by reason (auth: key refused; protocol: not CURVE or garbage)", "reason", () => Object.entries(s.handshakeFailures) as Array<[string, number]>);
  readGauge(r, "zmcp_broker_rate_limited_senders", "Sender keys whose rate-limit bucket is empty now", g.rateLimitedNow);
  readCounter(r, "zmcp_broker_rate_limited_senders_total", "Times a sender key started being refused rate_limited", g.rateLimitedEpisodes);
  readCounter(r, "zmcp_broker_takeovers_total", "Handshakes of a key already connected: the older connection was told it is displaced", () => s.takeovers);
  readCounter(r, "zmcp_broker_reconnects_total", "Handshakes of a key whose older connection was silent (a redial, not a takeover); the old one was told it is displaced", () => s.reconnects);
  readCounter(r, "zmcp_broker_revocation_notices_total", "Connections told their key was revoked or removed", () => s.revocationNotices);
  readCounter(r, "zmcp_broker_log_lines_suppressed_total", "Log lines a peer caused that were skipped by the log rate limit (summarised with a count)", g.logLinesSuppressed);
  readCounter(r, "zmcp_broker_durable_stored_total", "Durable messages stored for a recipient that could not take them", () => g.durable()?.stored ?? 0);
  readCounter(r, "zmcp_broker_durable_delivered_total", "Stored messages delivered", () => g.durable()?.delivered ?? 0);
  readCounter(r, "zmcp_broker_durable_expired_total", "Stored messages deleted unsent at their exp", () => g.durable()?.expired ?? 0);
  readCounter(r, "zmcp_broker_durable_full_total", "Durable messages refused busy because a store bound was reached", () => g.durable()?.full ?? 0);
  readCounter(r, "zmcp_broker_durable_quota_total", "Durable messages refused busy because their sender's share of the store was used up", () => g.durable()?.quota ?? 0);
readCounter(r, "zmcp_broker_durable_publications_stored_total", "Copies of publications stored for durable subscribers (one per subscriber; also in durable_stored)", () => g.durable()?.publicationsStored ?? 0);
  readGauge(r, "zmcp_broker_durable_subscriptions", "Durable subscriptions (key, pattern) this broker knows, from heartbeats and the store", () => g.durableSubscriptions());
    readCounter(r, "zmcp_broker_durable_unavailable_total", "Durable messages refused because the store was unreachable", () => g.durable()?.unavailable ?? 0);
  readGauge(r, "zmcp_broker_allowed_keys", "Keys in the allowlist", g.allowedKeys);
  // Peers connected now: bounded by the allowlist, and a peer's series is gone once it is silent.
  readGauge(r, "zmcp_broker_connected_peers", "Peers connected now: keys heard within the heartbeat timeout", () => g.connectedPeers().length);
  readGaugeSeries(r, "zmcp_broker_peer_last_heard_seconds", "Seconds since each connected peer was last heard, by key and certificate name", ["key", "name"], () =>
    g.connectedPeers().map((p): [string[], number] => [[p.key, p.name ?? ""], p.lastHeardMs / 1000]),
  );
  readGauge(r, "zmcp_broker_service_replicas", "Live service replicas in the directory", g.serviceReplicas);
  readCounter(r, "zmcp_broker_publications_total", "Publications accepted for fan-out", () => s.published);
  readCounter(r, "zmcp_broker_publication_copies_total", "Copies of publications forwarded to subscribers", () => s.fanout);
  readLabelledCounter(r, "zmcp_broker_publication_copies_dropped_total", "Copies of publications not forwarded, by reason (busy: the subscriber's queue was full)", "reason", () => Object.entries(s.fanoutDropped) as Array<[string, number]>);
  readGauge(r, "zmcp_broker_subscription_patterns", "Topic patterns in the subscription directory", g.subscriptions);
  readGauge(r, "zmcp_broker_subscribers", "Keys with at least one subscription", g.subscribers);
}
