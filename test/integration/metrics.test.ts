import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError, TimeoutError, ZmcpError } from "../../src/errors.js";
import { metricSum, parsePrometheusText, scrapeMetrics, serveMetrics } from "../../src/support/metrics.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { spawnBroker } from "../support/process.js";
import { waitFor } from "../support/wait.js";

async function values(registry: { metrics(): Promise<string> }): Promise<Map<string, number>> {
  return parsePrometheusText(await registry.metrics());
}

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${cls.name}(${code})`).toBeInstanceOf(cls);
  expect((err as ZmcpError).code).toBe(code);
}

describe("metrics", () => {
  let fx: CertFixture;
  const brokers: Broker[] = [];
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
    fx?.cleanup();
  });

  it("broker and agent count routed, refused by code, peers, calls, failures by code and latency", async () => {
    fx = tempCerts("alice", "bob");
    const broker = await startBroker(fx);
    brokers.push(broker);
    const bob = await connectAgent(fx, "bob", broker.endpoint);
    const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
    agents.push(bob, alice);
    let release: (() => void) | undefined;
    bob
      .tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }))
      .tool("slow", { input: z.object({}) }, () => new Promise((r) => setTimeout(() => r("late"), 300)))
      .tool("hold", { input: z.object({}) }, () => new Promise<string>((r) => (release = () => r("done"))));

    for (let i = 0; i < 5; i++) expect(await alice.call("bob", "echo", { x: i })).toEqual({ x: i });
    await rejectsWith(alice.call("bob", "nope", {}), RemoteError, "unknown_tool");
    await rejectsWith(alice.call("0000000000000000000000000000000000000000", "echo", {}), RemoteError, "no_route");
    await rejectsWith(alice.call("bob", "slow", {}, { timeout: 50 }), TimeoutError, "timeout");
    await rejectsWith(alice.call("bob", "slow", {}, { timeout: 50 }), TimeoutError, "timeout");

    // A handler in flight shows in jobs_running.
    const held = alice.call("bob", "hold", {});
    // "slow" runs give their slot back at their callers' deadline: wait for "hold" itself to run.
    await waitFor(async () => release !== undefined && (await values(bob.metrics)).get("zmcp_agent_handlers_running") === 1, 5000, "handlers_running = 1");
    release!();
    expect(await held).toBe("done");

    const b = await values(broker.metrics);
    // 5 echo + unknown_tool + 2 timeouts (answered late or not) + hold, each a request and a response
    expect(b.get("zmcp_broker_messages_routed_total")).toBeGreaterThanOrEqual(2 * 7);
    expect(b.get('zmcp_broker_messages_refused_total{code="no_route"}')).toBe(1);
    // Agents also send liveness heartbeats (src/support/liveness.ts), acknowledged, not routed.
    expect(b.get("zmcp_broker_messages_received_total")).toBe(
      b.get("zmcp_broker_messages_routed_total")! + metricSum(b, "zmcp_broker_messages_refused_total") + b.get("zmcp_broker_service_heartbeats_total")!,
    );
    expect(b.get("zmcp_broker_routed_bytes_total")).toBeGreaterThan(0);
    expect(b.get("zmcp_broker_peers_connected_total")).toBe(2);
    expect(b.get("zmcp_broker_allowed_keys")).toBe(3);

    const a = await values(alice.metrics);
    expect(a.get("zmcp_agent_calls_total")).toBeGreaterThanOrEqual(10);
    expect(a.get('zmcp_agent_call_failures_total{code="unknown_tool"}')).toBe(1);
    expect(a.get('zmcp_agent_call_failures_total{code="no_route"}')).toBe(1);
    expect(a.get('zmcp_agent_call_failures_total{code="timeout"}')).toBe(2);
    expect(a.get('zmcp_agent_call_duration_seconds_count{status="ok"}')).toBeGreaterThanOrEqual(6);
    expect(a.get('zmcp_agent_call_duration_seconds_count{status="error"}')).toBeGreaterThanOrEqual(2);
    // Observed before metrics were first read (kept in a ring, failures stored negative): the two 50 ms timeouts' seconds, not their sign.
    expect(a.get('zmcp_agent_call_duration_seconds_sum{status="error"}')).toBeGreaterThanOrEqual(0.09);
    expect(a.get('zmcp_agent_call_duration_seconds_sum{status="error"}')).toBeLessThan(30);
    expect(a.get('zmcp_agent_call_duration_seconds_bucket{le="+Inf",status="ok"}')).toBe(a.get('zmcp_agent_call_duration_seconds_count{status="ok"}'));
    expect(a.get("zmcp_agent_broker_connects_total")).toBe(1);
    expect(a.get("zmcp_agent_calls_pending")).toBe(0);

    const bv = await values(bob.metrics);
    expect(bv.get("zmcp_agent_requests_total")).toBeGreaterThanOrEqual(8);
    expect(bv.get('zmcp_agent_request_failures_total{code="unknown_tool"}')).toBe(1);
    expect(bv.get("zmcp_agent_handlers_running")).toBe(0);
    expect(bv.get("zmcp_agent_jobs_running")).toBe(0);

    // Disconnects are counted by the broker.
    await bob.close();
    await waitFor(async () => (await values(broker.metrics)).get("zmcp_broker_peers_disconnected_total") === 1, 5000, "disconnect counted");
  });

  it("several brokers and agents in one process keep separate registries", async () => {
    fx = tempCerts("alice");
    const one = await startBroker(fx);
    const two = await startBroker(fx);
    brokers.push(one, two);
    const alice = await connectAgent(fx, "alice", one.endpoint, { retry: false });
    agents.push(alice);
    await rejectsWith(alice.call("0000000000000000000000000000000000000000", "x", {}), RemoteError, "no_route");
    expect((await values(one.metrics)).get('zmcp_broker_messages_refused_total{code="no_route"}')).toBe(1);
    expect((await values(two.metrics)).get('zmcp_broker_messages_refused_total{code="no_route"}')).toBeUndefined();
    expect(one.metrics).not.toBe(two.metrics);
  });

  it("counts rate-limited senders (now, and streaks) once per refusal streak", async () => {
    fx = tempCerts("alice");
    const broker = await startBroker(fx, { rateLimit: { perSecond: 1, burst: 2 } });
    brokers.push(broker);
    const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
    agents.push(alice);
    const codes: string[] = [];
    for (let i = 0; i < 6; i++) codes.push(await alice.call("0000000000000000000000000000000000000000", "x", {}).then(() => "ok", (e: ZmcpError) => e.code));
    expect(codes.slice(0, 2)).toEqual(["no_route", "no_route"]);
    expect(codes.slice(2)).toEqual(["rate_limited", "rate_limited", "rate_limited", "rate_limited"]);
    const v = await values(broker.metrics);
    expect(v.get('zmcp_broker_messages_refused_total{code="rate_limited"}')).toBe(4);
    expect(v.get("zmcp_broker_rate_limited_senders")).toBe(1);
    expect(v.get("zmcp_broker_rate_limited_senders_total")).toBe(1);
  });

  it("zmq-broker --metrics serves Prometheus text with process metrics; other paths are 404", async () => {
    fx = tempCerts("alice");
    const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir, "--metrics", "127.0.0.1:0"]);
    try {
      const url = String(broker.logs.find((l) => l["msg"] === "ready")!["metrics"]);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
      agents.push(alice);
      await rejectsWith(alice.call("0000000000000000000000000000000000000000", "x", {}), RemoteError, "no_route");
      const res = await fetch(url);
      expect(res.headers.get("content-type")).toContain("text/plain");
      const text = await res.text();
      expect(text).toContain("# TYPE zmcp_broker_messages_refused_total counter");
      const v = parsePrometheusText(text);
      expect(v.get('zmcp_broker_messages_refused_total{code="no_route"}')).toBe(1);
      expect(v.get("process_resident_memory_bytes")).toBeGreaterThan(1024 * 1024);
      expect(v.get("nodejs_active_handles_total")).toBeGreaterThan(0);
      expect((await fetch(url.replace("/metrics", "/other"))).status).toBe(404);
    } finally {
      await Promise.all(agents.splice(0).map((a) => a.close()));
      expect(await broker.stop("SIGTERM")).toBe(0);
    }
  });

  it("serveMetrics refuses a bad address with ConfigError, and serves an agent's registry", async () => {
    fx = tempCerts("alice");
    const broker = await startBroker(fx);
    brokers.push(broker);
    const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
    agents.push(alice);
    await rejectsWith(serveMetrics(alice.metrics, "nonsense"), ZmcpError, "config");
    const server = await serveMetrics(alice.metrics, "127.0.0.1:0");
    try {
      await rejectsWith(alice.call("0000000000000000000000000000000000000000", "x", {}, { timeout: 2000 }), RemoteError, "no_route");
      const v = await scrapeMetrics(server.url);
      expect(v.get('zmcp_agent_call_failures_total{code="no_route"}')).toBe(1);
      await rejectsWith(alice.call("0000000000000000000000000000000000000000", "x", {}, { timeout: 2000 }), RemoteError, "no_route");
      expect((await scrapeMetrics(server.url)).get('zmcp_agent_call_failures_total{code="no_route"}')).toBe(2);
    } finally {
      await server.close();
    }
  });
});
