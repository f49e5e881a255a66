/**
 * Direct links (docs/PROTOCOL.md §18, README "Direct links"): a callee that listens tells its
 * endpoint through `link/endpoint`; a caller with `direct: true` then sends its requests to that
 * key straight there, and falls back to the broker, with the same request id, when the link fails.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { startBrokerProcess, startWorker, type BrokerProcess, type WorkerProcess } from "../support/process.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";
import { metricSum, parsePrometheusText } from "../../src/support/metrics.js";

let fx: CertFixture | undefined;
const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

/** Calls until one has gone over a direct link (the endpoint is learned in the background). */
async function untilDirect(alice: Agent, to: string, tool = "echo", args: unknown = { x: 0 }): Promise<void> {
  await waitFor(async () => {
    await alice.call(to, tool, args);
    return (alice.direct.links?.sent ?? 0) > 0;
  }, 10_000, "a call over the direct link");
}

describe("direct links, in process", () => {
  async function mesh(bobOptions: Parameters<typeof connectAgent>[3] = {}): Promise<{ broker: Broker; alice: Agent; bob: Agent; runs: Map<string, number> }> {
    fx = tempCerts("alice", "bob");
    fx.addService("echo");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0", ...bobOptions });
    stops.push(() => bob.close());
    const runs = new Map<string, number>();
    bob
      .tool("echo", { input: z.object({ x: z.number() }) }, ({ x }, ctx) => {
        runs.set(ctx.requestId, (runs.get(ctx.requestId) ?? 0) + 1);
        return { x };
      })
      .tool("slow", { input: z.object({ ms: z.number() }) }, async ({ ms }) => {
        runs.set("slow", (runs.get("slow") ?? 0) + 1); // every run, whatever its request id
        await new Promise((r) => setTimeout(r, ms));
        return { ms };
      })
      .tool("steps", { job: true, input: z.object({ n: z.number() }) }, async ({ n }, ctx) => {
        for (let i = 1; i <= n; i++) {
          await new Promise((r) => setTimeout(r, 20));
          ctx.progress({ progress: i, total: n });
        }
        return { n };
      });
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 500 });
    stops.push(() => alice.close());
    return { broker, alice, bob, runs };
  }

  it("binds an ephemeral port and tells it through link/endpoint", async () => {
    const { alice, bob } = await mesh();
    expect(bob.direct.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(bob.direct.endpoint).not.toMatch(/:0$/);
    // The built-in as any caller sees it (through the broker: alice has no link to bob yet).
    expect(await alice.call("bob", "link/endpoint")).toEqual({ endpoint: bob.direct.endpoint });
    // A callee that does not listen answers null: the caller keeps to the broker.
    expect(await bob.call("alice", "link/endpoint")).toEqual({ endpoint: null });
  });

  it("once learned, calls, jobs, progress and polls go over the link: the broker forwards nothing more", async () => {
    const { broker, alice, bob, runs } = await mesh();
    await untilDirect(alice, "bob");
    const routed = broker.stats.routed;
    for (let i = 1; i <= 20; i++) expect(await alice.call("bob", "echo", { x: i })).toEqual({ x: i });
    const job = await alice.start("bob", "steps", { n: 3 });
    const progress: number[] = [];
    job.on("progress", (p: { progress: number }) => progress.push(p.progress));
    expect(await job.result).toEqual({ n: 3 });
    expect((await alice.poll("bob", job.id)).status).toBe("done");
    expect(broker.stats.routed).toBe(routed); // nothing of the above went through the broker
    expect(progress.length).toBeGreaterThan(0);
    expect(bob.direct.listener!.received).toBeGreaterThanOrEqual(22);
    expect(alice.direct.links).toMatchObject({ opened: 1, fallbacks: 0, open: 1 });
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    // The same counters as Prometheus metrics (README "Metrics").
    const sent = metricSum(parsePrometheusText(await alice.metrics.metrics()), "zmcp_agent_direct_sent_total");
    expect(sent).toBe(alice.direct.links!.sent);
    expect(metricSum(parsePrometheusText(await bob.metrics.metrics()), "zmcp_agent_direct_received_total")).toBe(bob.direct.listener!.received);
  });

  it("a call to svc:NAME still goes through the broker", async () => {
    const { broker, alice, bob } = await mesh();
    await bob.serve("echo");
    await untilDirect(alice, "bob");
    const routed = broker.stats.routed;
    expect(await alice.call("svc:echo", "echo", { x: 7 })).toEqual({ x: 7 });
    expect(broker.stats.routed).toBeGreaterThan(routed);
  });

  it("a direct attempt unanswered within linkTimeout goes through the broker with the same request id: the tool runs once", async () => {
    const { broker, alice, runs } = await mesh();
    await untilDirect(alice, "bob");
    const routed = broker.stats.routed;
    // 1,500 ms > linkTimeout 500: the link hears nothing meanwhile, so the attempt is resent
    // through the broker, where bob's answer cache joins the run already in progress.
    expect(await alice.call("bob", "slow", { ms: 1500 })).toEqual({ ms: 1500 });
    expect(broker.stats.routed).toBeGreaterThan(routed);
    expect(alice.direct.links).toMatchObject({ fallbacks: 1, failures: { timeout: 1 } });
    expect(runs.get("slow")).toBe(1);
  });

  it("a slow tool on a link that carries other traffic waits on the link: no resend through the broker", async () => {
    const { broker, alice, runs } = await mesh();
    await untilDirect(alice, "bob");
    const routed = broker.stats.routed;
    const slow = alice.call("bob", "slow", { ms: 1500 }); // 3 × linkTimeout
    let busy = true;
    const chatter = (async () => {
      for (let x = 1; busy; x++) {
        await alice.call("bob", "echo", { x });
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    expect(await slow).toEqual({ ms: 1500 });
    busy = false;
    await chatter;
    expect(broker.stats.routed).toBe(routed);
    expect(alice.direct.links).toMatchObject({ fallbacks: 0, failures: {}, open: 1 });
    expect(runs.get("slow")).toBe(1);
  });

  it("the callee's listener closed: the link fails and calls go through the broker, none lost", async () => {
    fx = tempCerts("alice", "bob");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    let bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0" });
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }));
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 500 });
    stops.push(() => alice.close());
    await untilDirect(alice, "bob");
    await bob.close();
    bob = await connectAgent(fx, "bob", broker.endpoint); // the same key, not listening
    stops.push(() => bob.close());
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x: -x }));
    for (let i = 1; i <= 10; i++) expect(await alice.call("bob", "echo", { x: i })).toEqual({ x: -i });
    expect(alice.direct.links!.open).toBe(0);
    expect(Object.keys(alice.direct.links!.failures).length).toBeGreaterThan(0);
  });

  it("LRU: at most directLinks links, the least recently used closed", async () => {
    fx = tempCerts("alice", "bob", "carol");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    for (const name of ["bob", "carol"]) {
      const a = await connectAgent(fx, name, broker.endpoint, { listen: "tcp://127.0.0.1:0" });
      a.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }));
      stops.push(() => a.close());
    }
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, directLinks: 1 });
    stops.push(() => alice.close());
    await untilDirect(alice, "bob");
    const sent = alice.direct.links!.sent;
    await waitFor(async () => {
      await alice.call("carol", "echo", { x: 1 });
      return alice.direct.links!.sent > sent;
    }, 10_000, "a direct call to carol");
    expect(alice.direct.links!.open).toBe(1);
    expect(alice.direct.links!.opened).toBe(2);
  });
});

describe("direct links, real processes", () => {
  let broker: BrokerProcess | undefined;
  let bob: WorkerProcess | undefined;

  async function start(): Promise<Agent> {
    fx = tempCerts("alice", "bob");
    broker = await startBrokerProcess(fx);
    stops.push(() => broker!.stop());
    bob = await startWorker(fx, "bob", [broker.endpoint], { args: ["--listen", "tcp://127.0.0.1:0"] });
    stops.push(() => bob!.stop());
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 500, timeout: 15_000 });
    stops.push(() => alice.close());
    await untilDirect(alice, "bob", "work", { n: 0 });
    return alice;
  }

  it("a broker frozen with SIGSTOP: calls over the link are still answered", async () => {
    const alice = await start();
    broker!.kill("SIGSTOP");
    try {
      for (let n = 1; n <= 10; n++) expect(await alice.call("bob", "work", { n }, { timeout: 3000 })).toEqual({ n });
    } finally {
      broker!.kill("SIGCONT");
    }
  });

  it("the callee frozen (SIGSTOP) mid-call: the direct attempt times out, the broker carries the same request, and after SIGCONT the tool has run once", async () => {
    const alice = await start();
    const before = (await alice.call("bob", "report", {})) as { executions: number; duplicates: number };
    const call = alice.call("bob", "work", { n: 42, ms: 300 }, { timeout: 15_000 });
    await new Promise((r) => setTimeout(r, 50)); // the request is on the link, the tool running
    bob!.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 1500)); // past linkTimeout (500): resent through the broker
    bob!.kill("SIGCONT");
    expect(await call).toEqual({ n: 42 });
    const after = (await alice.call("bob", "report", {})) as { executions: number; duplicates: number };
    expect(after.executions - before.executions).toBe(1);
    expect(after.duplicates).toBe(0);
    expect(alice.direct.links!.fallbacks).toBeGreaterThanOrEqual(1);
  });

  it("the callee SIGKILLed and restarted without listening: calls go through the broker, none lost, none run twice", async () => {
    const alice = await start();
    let stopped = false;
    const results: Array<Promise<unknown>> = [];
    const loop = (async () => {
      for (let n = 1; !stopped && n <= 400; n++) {
        results.push(alice.call("bob", "work", { n }).then((r) => expect(r).toEqual({ n })));
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    bob!.kill("SIGKILL");
    await bob!.exited;
    // Not listening now; tools registered before any request is read (see worker.ts).
    bob = await startWorker(fx!, "bob", [broker!.endpoint], { args: ["--connect-timeout", "0"] });
    await new Promise((r) => setTimeout(r, 500));
    stopped = true;
    await loop;
    await Promise.all(results); // every call answered (by one process or the other)
    expect(results.length).toBeGreaterThan(20);
    const report = (await alice.call("bob", "report", {})) as { duplicates: number };
    expect(report.duplicates).toBe(0); // the restarted process ran nothing twice
    expect(alice.direct.links!.fallbacks + Object.keys(alice.direct.links!.failures).length).toBeGreaterThan(0);
  });
});
