/**
 * The agent's counters (plain numbers bumped on hot paths) and the Prometheus metrics that
 * read them at scrape time (support/metrics.ts).
 */
import { latencyHistogram, readCounter, readGauge, readLabelledCounter, type Registry } from "../support/metrics.js";

/** Counters, for tests and operators; `agent.metrics` serves them to Prometheus. */
export interface AgentStats {
  /** Calls made (`call`), and those that failed, by code (local or remote). */
  calls: number;
  callFailures: Partial<Record<string, number>>;
  /**
   * Resends after a timed-out attempt that the retry budget held back (the call waited for its
   * attempts' answers instead, retry.ts), and answers to timed-out attempts taken as their call's.
   */
  retriesHeld: number;
  lateAnswers: number;
  /** Requests received from peers, and those answered with an error, by code. */
  requests: number;
  requestFailures: Partial<Record<string, number>>;
  /** Messages dropped (nothing to answer, or an answer refused), by reason; see {@link DropReason}. */
  dropped: Partial<Record<DropReason, number>>;
  /** Job progress listeners (the caller's own code) that threw; the job and the agent go on. */
  listenerErrors: number;
  /** CURVE handshakes with a broker completed, and connections lost. */
  connects: number;
  disconnects: number;
  /** Redials after the broker was silent for 3 × `heartbeatInterval` (support/liveness.ts). */
  redials: number;
  /**
   * Events (docs/EVENTS.md): publications sent; publications received and opened; what this
   * agent's subscriptions missed (sequence jumps and full queues, summed over subscriptions);
   * subscription handlers that threw or rejected (caught; delivery goes on).
   */
  published: number;
  publications: number;
  publicationGaps: number;
  publicationHandlerErrors: number;
}

/**
 * Why the agent dropped a message. Open: other parts of the agent add their own reasons.
 * - `frames`, `sender`, `header`: not a well-formed message from a broker
 * - `unsolicited`: a response or job event that answers nothing pending
 * - `nack`: a broker refusal of nothing pending
 * - `bad_seal`: a response or job event not sealed by the party asked (forged), see answerer.ts
 * - `invalid_answer`: an answer sealed by the right party whose content the caller cannot read
 *   (a `jobs/poll` state of the wrong shape); the call or job fails with `bad_frame`
 * - `refused`: a response or event that failed a check after opening (replay, expired, kind)
 * - `broker_header`: a broker's own message (nack, ack) with an invalid header
 * - publications (docs/EVENTS.md): `unsolicited` (no subscription matches), `bad_seal` (the
 *   sealer refused it, or its publisher is not who sent it), `refused` (replay, expired),
 *   `backlog` (too many being opened), or the sealer's code (`unavailable`, `token_scope`)
 */
export type DropReason =
  | "frames"
  | "sender"
  | "header"
  | "unsolicited"
  | "nack"
  | "bad_seal"
  | "invalid_answer"
  | "refused"
  | "broker_header"
  | (string & {});

export function newAgentStats(): AgentStats {
  return { calls: 0, callFailures: {}, retriesHeld: 0, lateAnswers: 0, requests: 0, requestFailures: {}, dropped: {}, listenerErrors: 0, connects: 0, disconnects: 0, redials: 0, published: 0, publications: 0, publicationGaps: 0, publicationHandlerErrors: 0 };
}

/** Adds one to `counts[key]`. */
export function bump<K extends string>(counts: Partial<Record<K, number>>, key: K): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** What the registry reads besides the counters: gauges of the agent's parts. */
export interface AgentGauges {
  handlersRunning(): number;
  jobsRunning(): number;
  callsPending(): number;
  answers(): { entries: number; bytes: number; bodiesDropped: number };
}

/** Registers the agent's metrics on `registry`; returns the call-latency histogram the caller feeds. */
export function registerAgentMetrics(r: Registry, s: AgentStats, gauges: AgentGauges): ReturnType<typeof latencyHistogram> {
  readCounter(r, "zmcp_agent_calls_total", "Calls made", () => s.calls);
  readLabelledCounter(r, "zmcp_agent_call_failures_total", "Calls that failed, by error code (local or remote)", "code", () => entries(s.callFailures));
  readCounter(r, "zmcp_agent_retries_held_total", "Resends after a timed-out attempt held back by the retry budget (the call waited for its answer instead)", () => s.retriesHeld);
  readCounter(r, "zmcp_agent_late_answers_total", "Answers to an attempt that had timed out, taken as their call's answer", () => s.lateAnswers);
  readCounter(r, "zmcp_agent_requests_total", "Requests received from peers", () => s.requests);
  readLabelledCounter(r, "zmcp_agent_request_failures_total", "Requests answered with an error, by code", "code", () => entries(s.requestFailures));
  readGauge(r, "zmcp_agent_handlers_running", "Tool handlers running now (jobs included)", gauges.handlersRunning);
  readGauge(r, "zmcp_agent_jobs_running", "Jobs running now", gauges.jobsRunning);
  readGauge(r, "zmcp_agent_calls_pending", "Requests waiting for an answer (each attempt of a call)", gauges.callsPending);
  readGauge(r, "zmcp_agent_answer_cache_entries", "Answers remembered for retries (idempotency), dropped bodies included", () => gauges.answers().entries);
  readGauge(r, "zmcp_agent_answer_cache_bytes", "Bytes of the answers remembered for retries (bounded by answerLimits)", () => gauges.answers().bytes);
  readCounter(r, "zmcp_agent_answer_bodies_dropped_total", "Remembered answers whose body was dropped to stay within answerLimits (a retry of one gets tool_failed)", () => gauges.answers().bodiesDropped);
  readLabelledCounter(r, "zmcp_agent_messages_dropped_total", "Messages dropped with a log line, by reason", "reason", () => entries(s.dropped));
  readCounter(r, "zmcp_agent_listener_errors_total", "Job progress listeners that threw (caught; the job goes on)", () => s.listenerErrors);
  readCounter(r, "zmcp_agent_publications_sent_total", "Publications sent (docs/EVENTS.md)", () => s.published);
  readCounter(r, "zmcp_agent_publications_received_total", "Publications received and opened", () => s.publications);
  readCounter(r, "zmcp_agent_publication_gaps_total", "Publications the subscriptions missed (sequence jumps and full queues)", () => s.publicationGaps);
  readCounter(r, "zmcp_agent_publication_handler_errors_total", "Subscription handlers that threw or rejected (caught)", () => s.publicationHandlerErrors);
  readCounter(r, "zmcp_agent_broker_connects_total", "CURVE handshakes with a broker completed", () => s.connects);
  readCounter(r, "zmcp_agent_broker_disconnects_total", "Connections to a broker lost", () => s.disconnects);
  return latencyHistogram(r, "zmcp_agent_call_duration_seconds", "Call latency, from call() to its outcome (retries included)");
}

function entries(counts: Partial<Record<string, number>>): Array<[string, number]> {
  return Object.entries(counts) as Array<[string, number]>;
}

/** A message dropped on purpose, with its reason: thrown inside the inbound checks only. */
export class Dropped extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message);
  }
}
