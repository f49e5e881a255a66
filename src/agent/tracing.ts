/**
 * Distributed tracing with `@opentelemetry/api`: a no-op unless the application installs an
 * OpenTelemetry SDK (a tracer provider, and a context manager for spans to nest across `await`).
 *
 * Spans (kinds as OpenTelemetry's RPC conventions): `zmcp.call <tool>` (CLIENT) for each
 * request a caller makes, retries included; `zmcp.handle <tool>` (SERVER) on the callee, from the
 * request's arrival to its first answer, with the caller's span as parent; `zmcp.job <tool>`
 * (INTERNAL), a job's run, child of the request that started it. A handler runs inside its
 * span's context, so the calls it makes join the same trace (A calls B, B calls C: one trace).
 *
 * The W3C trace context travels inside the sealed request (`tc: {traceparent, tracestate?}`,
 * PROTOCOL §8.1), never in the header: the broker and the wire see no trace ids. It is sent only
 * when the caller has a valid span context (an SDK is installed), so peers that predate `tc`
 * see no change unless the application turns tracing on.
 */
import { context, isSpanContextValid, SpanKind, SpanStatusCode, trace, type Context, type Span, type SpanContext } from "@opentelemetry/api";
import type { Request } from "../wire/envelope.js";
import { ZmcpError, describeThrown } from "../errors.js";

// A proxy: it delegates to whatever provider the application registers, before or after this loads.
const tracer = trace.getTracer("zmcp");

/** The inner request's `tc` field (PROTOCOL §8.1; envelope.ts RequestSchema): traceparent ≤ 128, tracestate ≤ 512. */
export type TraceContext = NonNullable<Request["tc"]>;

/** The SERVER spans this module started: only those are ended by {@link answerInSpan}. */
const serverSpans = new WeakSet<Span>();

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The `traceparent` of a span context (W3C Trace Context, version 00). */
export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** A `traceparent` (and `tracestate`) → a remote span context, or undefined when malformed. */
export function parseTraceContext(tc: TraceContext | undefined): SpanContext | undefined {
  if (!tc) return undefined;
  const m = TRACEPARENT.exec(tc.traceparent);
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5] !== undefined)) return undefined;
  const sc: SpanContext = { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16), isRemote: true };
  if (!isSpanContextValid(sc)) return undefined;
  if (tc.tracestate !== undefined) {
    const state = tc.tracestate;
    sc.traceState = {
      get: (key) => parseTraceState(state).get(key),
      set: () => sc.traceState!, // a received state is passed on as it came (see serialize)
      unset: () => sc.traceState!,
      serialize: () => state,
    };
  }
  return sc;
}

function parseTraceState(state: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const member of state.split(",")) {
    const cut = member.indexOf("=");
    if (cut > 0) entries.set(member.slice(0, cut).trim(), member.slice(cut + 1).trim());
  }
  return entries;
}

/** `{tc}` for a request draft when `span` carries a valid context, else `{}` (nothing sent). */
export function traceFields(span: Span): { tc?: TraceContext } {
  const sc = span.spanContext();
  if (!isSpanContextValid(sc)) return {};
  const tracestate = sc.traceState?.serialize();
  return { tc: { traceparent: formatTraceparent(sc), ...(tracestate ? { tracestate } : {}) } };
}

/** The caller's span of one request (all its attempts): a child of the active span. */
export function startCallSpan(tool: string, to: string, key: string): Span {
  return tracer.startSpan(`zmcp.call ${tool}`, {
    kind: SpanKind.CLIENT,
    attributes: { "rpc.system": "zmcp", "rpc.method": tool, "zmcp.to": to, "zmcp.peer.key": key },
  });
}

/** Ends `span` with the call's outcome: OK, or the error's code. Idempotent. */
export function endSpan(span: Span, err?: unknown): void {
  if (!span.isRecording()) return;
  if (err !== undefined) {
    const code = err instanceof ZmcpError ? err.code : "error";
    span.setAttribute("zmcp.error.code", code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: describeThrown(err) });
  }
  span.end();
}

/**
 * Runs the callee's handling of a request inside a SERVER span whose parent is the caller's
 * (from `tc`): what `fn` calls is part of the caller's trace. The span ends at the first answer
 * ({@link answerInSpan}), or when `fn` settles.
 */
export function inRequestSpan<T>(tool: string, from: string, nameOf: (key: string) => string | undefined, tc: TraceContext | undefined, fn: () => Promise<T>): Promise<T> {
  const remote = parseTraceContext(tc);
  // The parent is the caller's span or nothing: never whatever context the receive loop runs in.
  const parent: Context = remote ? trace.setSpanContext(context.active(), remote) : trace.deleteSpan(context.active());
  const span = tracer.startSpan(
    `zmcp.handle ${tool}`,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "zmcp", "rpc.method": tool, "zmcp.from.key": from } },
    parent,
  );
  if (!span.isRecording()) return fn();
  const fromName = nameOf(from); // only when traced: a miss costs a stat of the certs directory
  if (fromName !== undefined) span.setAttribute("zmcp.from.name", fromName);
  serverSpans.add(span);
  return context.with(trace.setSpan(parent, span), fn).then(
    (value) => {
      endSpan(span);
      return value;
    },
    (err: unknown) => {
      endSpan(span, err);
      throw err;
    },
  );
}

/** Marks the active SERVER span with the answer sent and ends it (the request is handled). */
export function answerInSpan(answer: { st: string; error?: { code: string; message: string } | undefined }): void {
  const span = trace.getActiveSpan();
  // Only a span of ours: the receive loop may run in a context the application made active.
  if (!span?.isRecording() || !serverSpans.has(span)) return;
  span.setAttribute("zmcp.status", answer.st);
  if (answer.st === "error" && answer.error) {
    span.setAttribute("zmcp.error.code", answer.error.code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: answer.error.message });
  }
  span.end();
}

/** Runs a job inside an INTERNAL span, child of the request that started it; ends with the job. */
export async function inJobSpan<T extends { answer: { st: string; error?: { code: string; message: string } | undefined } }>(tool: string, jobId: string, fn: () => Promise<T>): Promise<T> {
  const span = tracer.startSpan(`zmcp.job ${tool}`, { kind: SpanKind.INTERNAL, attributes: { "rpc.system": "zmcp", "rpc.method": tool, "zmcp.job.id": jobId } });
  if (!span.isRecording()) return fn();
  try {
    const ran = await context.with(trace.setSpan(context.active(), span), fn);
    const { answer } = ran;
    span.setAttribute("zmcp.status", answer.st);
    if (answer.st === "error" && answer.error) {
      span.setAttribute("zmcp.error.code", answer.error.code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: answer.error.message });
    }
    return ran;
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: describeThrown(err) });
    throw err;
  } finally {
    span.end();
  }
}
