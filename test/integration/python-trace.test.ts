/**
 * TypeScript calls Python with tracing on: a TypeScript caller with an OpenTelemetry SDK seals
 * its trace context into every request (`tc`, PROTOCOL §8.1); the Python agent must accept the
 * field (it records no spans of its own), or every traced call to it fails `bad_frame`.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { PYTHON, PYTHON_PEER, pythonProblem } from "../support/python.js";

const PEER = PYTHON_PEER;
const problem = pythonProblem("python-trace");

describe.skipIf(problem !== undefined)("TypeScript → Python with tracing on", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  let fx: CertFixture;
  let broker: Broker;
  let caller: Agent;
  let stopPeer: () => Promise<void> = async () => undefined;

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(provider);
    fx = tempCerts("tscaller", "py");
    broker = await startBroker(fx);
    caller = await connectAgent(fx, "tscaller", broker.endpoint);
    const proc = spawn(PYTHON, [PEER, "serve", broker.endpoint, fx.secretPath("py"), fx.dir], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    stopPeer = async () => {
      proc.stdin!.end();
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    };
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`python peer not ready: ${stderr}`)), 20_000);
      void exited.then(() => reject(new Error(`python peer exited: ${stderr}`)));
      createInterface({ input: proc.stdout! }).on("line", (line) => {
        if ((JSON.parse(line) as { msg: string }).msg === "ready") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }, 30_000);

  afterAll(async () => {
    await stopPeer();
    await caller?.close();
    await broker?.close();
    fx?.cleanup();
    trace.disable();
    context.disable();
    await provider.shutdown();
  });

  it("a traced call (trace context in the sealed request) is answered, and its client span ends OK", async () => {
    const parent = trace.getTracer("test").startSpan("root");
    const result = await context.with(trace.setSpan(context.active(), parent), () => caller.call("py", "py_add", { a: 2, b: 40 }, { retry: false, circuit: false }));
    parent.end();
    expect(result).toEqual({ sum: 42, by: "python" });
    const span = exporter.getFinishedSpans().find((s) => s.name === "zmcp.call py_add");
    expect(span, exporter.getFinishedSpans().map((s) => s.name).join(", ")).toBeDefined();
    expect(span!.status.code).not.toBe(2); // SpanStatusCode.ERROR
    expect(span!.spanContext().traceId).toBe(parent.spanContext().traceId);
  }, 30_000);
});
