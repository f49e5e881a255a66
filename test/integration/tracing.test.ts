/**
 * Distributed tracing (issue 16): W3C trace context travels inside the sealed request, and the
 * spans of calls, handled requests and jobs form one trace across three agents: A calls B, B
 * calls C from inside its handler. OpenTelemetry's in-memory exporter collects the spans.
 */
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { decodeInner, encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { ProtocolError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";

const SpanKind = { INTERNAL: 0, SERVER: 1, CLIENT: 2 };

describe("one trace across three agents", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  let fx: CertFixture;
  let broker: Broker;
  let a: Agent;
  let b: Agent;
  let c: Agent;
  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(provider);
    fx = tempCerts("alice", "bob", "carol");
    broker = await startBroker(fx);
    a = await connectAgent(fx, "alice", broker.endpoint);
    b = await connectAgent(fx, "bob", broker.endpoint);
    c = await connectAgent(fx, "carol", broker.endpoint);
    c.tool("leaf", { input: z.object({ n: z.number() }) }, ({ n }) => ({ leaf: n * 2 }));
    b.tool("middle", { input: z.object({ n: z.number() }) }, async ({ n }) => ({ middle: await b.call("carol", "leaf", { n }) }));
    b.tool("chain_job", { input: z.object({ n: z.number() }), job: true }, async ({ n }, ctx) => {
      ctx.progress({ progress: 1, total: 1 });
      return { job: await b.call("carol", "leaf", { n }) };
    });
  });
  beforeEach(() => exporter.reset());
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await c?.close();
    await broker?.close();
    fx?.cleanup();
    trace.disable();
    context.disable();
    await provider.shutdown();
  });

  const find = (spans: ReadableSpan[], name: string, kind: number) => {
    const found = spans.filter((s) => s.name === name && s.kind === kind);
    expect(found, `${name} (kind ${kind}) in ${spans.map((s) => s.name).join(", ")}`).toHaveLength(1);
    return found[0]!;
  };
  const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

  it("A calls B, B calls C inside its handler: every span shares A's trace id, each the child of the one before", async () => {
    const root = trace.getTracer("test").startSpan("workflow");
    const out = await context.with(trace.setSpan(context.active(), root), () => a.call("bob", "middle", { n: 21 }));
    root.end();
    expect(out).toEqual({ middle: { leaf: 42 } });
    const spans = await waitFor(() => (exporter.getFinishedSpans().length >= 5 ? exporter.getFinishedSpans() : undefined), 5000, "5 spans");
    const aCall = find(spans, "zmcp.call middle", SpanKind.CLIENT);
    const bHandle = find(spans, "zmcp.handle middle", SpanKind.SERVER);
    const bCall = find(spans, "zmcp.call leaf", SpanKind.CLIENT);
    const cHandle = find(spans, "zmcp.handle leaf", SpanKind.SERVER);
    const traceId = root.spanContext().traceId;
    for (const span of [aCall, bHandle, bCall, cHandle]) expect(span.spanContext().traceId).toBe(traceId);
    expect(parentOf(aCall)).toBe(root.spanContext().spanId);
    expect(parentOf(bHandle)).toBe(aCall.spanContext().spanId);
    expect(parentOf(bCall)).toBe(bHandle.spanContext().spanId);
    expect(parentOf(cHandle)).toBe(bCall.spanContext().spanId);
    // The parents across agents came in the messages (remote contexts), not from this process's async context.
    expect(bHandle.parentSpanContext?.isRemote).toBe(true);
    expect(cHandle.parentSpanContext?.isRemote).toBe(true);
    expect(bHandle.attributes).toMatchObject({ "rpc.system": "zmcp", "rpc.method": "middle", "zmcp.from.key": a.publicKey, "zmcp.from.name": "alice", "zmcp.status": "ok" });
    expect(aCall.attributes).toMatchObject({ "rpc.method": "middle", "zmcp.to": "bob", "zmcp.peer.key": b.publicKey });
  });

  it("a job has its span, child of the request that started it; what it calls joins the trace; failures are marked", async () => {
    const job = await a.start("bob", "chain_job", { n: 5 });
    expect(await job.result).toEqual({ job: { leaf: 10 } });
    const spans = await waitFor(
      () => (exporter.getFinishedSpans().some((s) => s.name === "zmcp.job chain_job") && exporter.getFinishedSpans().some((s) => s.name === "zmcp.handle leaf") ? exporter.getFinishedSpans() : undefined),
      5000,
      "the job's spans",
    );
    const start = find(spans, "zmcp.call chain_job", SpanKind.CLIENT);
    const handle = find(spans, "zmcp.handle chain_job", SpanKind.SERVER);
    const run = find(spans, "zmcp.job chain_job", SpanKind.INTERNAL);
    const leaf = find(spans, "zmcp.handle leaf", SpanKind.SERVER);
    expect(handle.attributes["zmcp.status"]).toBe("accepted");
    expect(parentOf(handle)).toBe(start.spanContext().spanId);
    expect(parentOf(run)).toBe(handle.spanContext().spanId);
    expect(run.attributes["zmcp.job.id"]).toBe(job.id);
    expect(leaf.spanContext().traceId).toBe(start.spanContext().traceId);

    exporter.reset();
    await expect(a.call("bob", "middle", { n: "x" }, { retry: false })).rejects.toMatchObject({ code: "invalid_args" });
    const failed = await waitFor(() => exporter.getFinishedSpans().find((s) => s.name === "zmcp.call middle"), 5000, "the failed call's span");
    expect(failed.status.code).toBe(2); // ERROR
    expect(failed.attributes["zmcp.error.code"]).toBe("invalid_args");
  });
});

describe("the tc field of the inner request (PROTOCOL §8.1)", () => {
  const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: "x".repeat(40), exp: Date.now() + 1000 };
  const headerBytes = encodeHeader(header);
  const base = { t: "req" as const, ts: Date.now(), rid: newId(), tool: "t", args: {} };

  it("is read when well-formed", () => {
    const tc = { traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01`, tracestate: "vendor=x" };
    const inner = decodeInner(encodeInner({ ...base, tc }, headerBytes), headerBytes, 1 << 20);
    expect(inner).toMatchObject({ t: "req", tc });
  });

  it("is refused bad_frame when malformed (strict schema: unknown keys, wrong types, too long)", () => {
    for (const tc of [{ traceparent: 5 }, { traceparent: "00", extra: 1 }, { traceparent: "x".repeat(129) }, "00-abc"]) {
      let caught: unknown;
      try {
        decodeInner(encodeInner({ ...base, tc } as never, headerBytes), headerBytes, 1 << 20);
      } catch (err) {
        caught = err;
      }
      expect(caught, JSON.stringify(tc)).toBeInstanceOf(ProtocolError);
      expect(caught).toMatchObject({ code: "bad_frame" });
    }
  });
});
