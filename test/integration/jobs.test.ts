import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { decodeHeader, newId } from "../../src/wire/envelope.js";
import { RemoteError, TimeoutError, ZmcpError } from "../../src/errors.js";
import { addReferenceTools } from "../../examples/reference-agent.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { rejectsWith } from "../support/assert.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";
import { rawPeer } from "../support/raw-peer.js";
import { decode } from "@msgpack/msgpack";


describe("discovery, jobs, idempotency, deadlines", () => {
  let fx: CertFixture;
  let broker: Broker;
  let alice: Agent;
  let bob: Agent;
  let carol: Agent;
  let runs: Record<string, number>;
  beforeEach(async () => {
    runs = {};
    fx = tempCerts("alice", "bob", "carol", "mallory");
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint, { jobTtl: 300, maxConcurrency: 4 });
    addReferenceTools(bob, "bob");
    const count = (name: string) => (runs[name] = (runs[name] ?? 0) + 1);
    bob
      .tool("slow", { input: z.object({ ms: z.number() }) }, async ({ ms }) => {
        count("slow");
        await new Promise((r) => setTimeout(r, ms));
        return { slept: ms };
      })
      .tool("block", { input: z.object({ ms: z.number() }) }, ({ ms }) => {
        const until = Date.now() + ms;
        while (Date.now() < until); // holds bob's event loop on purpose
        return "unblocked";
      })
      .tool("count", { input: z.object({}) }, () => count("count"))
      .tool(
        "ticker",
        { description: "A short job", input: z.object({ ticks: z.number().int().min(1) }), job: true },
        async ({ ticks }, ctx) => {
          count("ticker");
          for (let i = 1; i <= ticks; i++) {
            await new Promise((r) => setTimeout(r, 30));
            ctx.progress({ progress: i, total: ticks });
          }
          return { ticks };
        },
      );
    alice = await connectAgent(fx, "alice", broker.endpoint, { jobPollInterval: 0 });
    carol = await connectAgent(fx, "carol", broker.endpoint);
  });
  afterEach(async () => {
    await Promise.all([alice.close(), bob.close(), carol.close()]);
    await broker.close();
    fx.cleanup();
  });

  it("tools/list describes each tool with its JSON Schema", async () => {
    const tools = await alice.listTools("bob");
    const sum = tools.find((t) => t.name === "batch_sum")!;
    expect(sum.job).toBe(false);
    expect(sum.inputSchema).toMatchObject({ type: "object", properties: { numbers: { type: "array", minItems: 1, items: { type: "number" } } }, required: ["numbers"] });
    expect(sum.outputSchema).toMatchObject({ properties: { count: { type: "integer" }, total: { type: "number" } } });
    expect(tools.find((t) => t.name === "start_long_task")).toMatchObject({ job: true, inputSchema: { properties: { seconds: { minimum: 1, maximum: 20 } } } });
    expect(tools.map((t) => t.name)).not.toContain("tools/list");
  });

  it("a job runs to completion by polling", async () => {
    const job = await alice.start("bob", "ticker", { ticks: 3 });
    expect(job.id).toMatch(/^[0-9a-f]{32}/);
    const first = await alice.poll("bob", job.id);
    expect(first.status).toBe("running");
    const done = await waitFor(async () => {
      const s = await alice.poll("bob", job.id);
      return s.status === "done" ? s : undefined;
    }, 5000, "job done");
    expect(done).toMatchObject({ job_id: job.id, status: "done", result: { ticks: 3 }, progress: { progress: 3, total: 3 } });
  });

  it("a job's progress and end are pushed", async () => {
    const job = await alice.start("bob", "ticker", { ticks: 4 });
    const seen: number[] = [];
    job.on("progress", (p) => seen.push(p.progress));
    expect(await job.result).toEqual({ ticks: 4 });
    expect(seen.length).toBeGreaterThan(0);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    // call() on a job tool waits for the end too
    expect(await alice.call("bob", "ticker", { ticks: 1 })).toEqual({ ticks: 1 });
  });

  it("a job can be cancelled; its result rejects with cancelled", async () => {
    const job = await alice.start("bob", "start_long_task", { seconds: 20, payload: { x: 1 } });
    const state = await job.cancel();
    expect(state.status).toBe("cancelled");
    await rejectsWith(job.result, RemoteError, "cancelled");
    expect((await alice.poll("bob", job.id)).status).toBe("cancelled");
  });

  it("an unknown job → unknown_job; another caller's poll or cancel → forbidden", async () => {
    await rejectsWith(alice.poll("bob", "0".repeat(32) + bob.publicKey), RemoteError, "unknown_job");
    const job = await alice.start("bob", "ticker", { ticks: 2 });
    await rejectsWith(carol.poll("bob", job.id), RemoteError, "forbidden");
    await rejectsWith(carol.call("bob", "jobs/cancel", { job_id: job.id }), RemoteError, "forbidden");
    await rejectsWith(carol.call("bob", "poll_job", { job_id: job.id }), RemoteError, "forbidden");
    expect(await job.result).toEqual({ ticks: 2 });
  });

  it("a finished job is forgotten after its TTL", async () => {
    const job = await alice.start("bob", "ticker", { ticks: 1 });
    await job.result;
    expect((await alice.poll("bob", job.id)).status).toBe("done");
    await new Promise((r) => setTimeout(r, 400)); // bob's jobTtl is 300 ms
    await rejectsWith(alice.poll("bob", job.id), RemoteError, "unknown_job");
  });

  it("the reference protocol's demo: start_long_task, then poll_job to completion", async () => {
    const started = (await alice.start("bob", "start_long_task", { seconds: 1, payload: { hello: "world" } })).id;
    const final = await waitFor(async () => {
      const s = (await alice.call("bob", "poll_job", { job_id: started })) as { status: string };
      return s.status !== "running" ? s : undefined;
    }, 5000, "long task");
    expect(final).toMatchObject({ status: "done", result: { payload: { hello: "world" }, seconds: 1 } });
  });

  it("a request retried with the same id runs the tool once and gets the first answer", async () => {
    const m = await rawPeer(fx, "mallory", broker.endpoint);
    try {
      const draft = { t: "req" as const, ts: Date.now(), rid: newId(), tool: "count", args: {} };
      const answers = [];
      for (let i = 0; i < 3; i++) {
        await m.socket.send(m.frames(fx.key("bob"), { ...draft, ts: Date.now() })); // fresh message id each time
        const [, header, body] = await m.receive();
        answers.push(decode(m.sealer.open(fx.key("bob"), body!)) as { st: string; result: unknown });
        expect(decodeHeader(header!).k).toBe("res");
      }
      expect(runs["count"]).toBe(1);
      expect(answers.map((a) => a.result)).toEqual([1, 1, 1]);
    } finally {
      m.close();
    }
    // Through the SDK: each attempt times out before the tool ends, so it retries; still one run.
    expect(await alice.call("bob", "slow", { ms: 600 }, { timeout: 5000, retry: { attemptTimeout: 150 } })).toEqual({ slept: 600 });
    expect(runs["slow"]).toBe(1);
  });

  it("an expired request is refused without running the tool", async () => {
    const m = await rawPeer(fx, "mallory", broker.endpoint);
    try {
      // bob is held for 300 ms; a request with a 50 ms deadline reaches it late.
      await m.socket.send(m.frames(fx.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "block", args: { ms: 300 } }));
      await m.socket.send(m.frames(fx.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "count", args: {} }, { exp: Date.now() + 50 }));
      const codes: string[] = [];
      for (let i = 0; i < 2; i++) {
        const [, , body] = await m.receive();
        const answer = decode(m.sealer.open(fx.key("bob"), body!)) as { st: string; error?: { code: string } };
        codes.push(answer.error?.code ?? answer.st);
      }
      expect(codes.sort()).toEqual(["expired", "ok"]);
      expect(runs["count"]).toBeUndefined();
    } finally {
      m.close();
    }
  });

  it("bounded concurrency: past maxConcurrency new work gets busy; with retries it gets through later", async () => {
    const slow = Array.from({ length: 4 }, () => alice.call("bob", "slow", { ms: 400 }));
    await waitFor(() => (runs["slow"] ?? 0) >= 4, 3000, "4 running");
    await rejectsWith(carol.call("bob", "count", {}, { retry: false }), RemoteError, "busy");
    expect(await carol.call("bob", "count", {}, { timeout: 5000 })).toBe(1); // retried until a slot freed
    await Promise.all(slow);
  });

  it("deadlines: an unanswered call times out, retries included", async () => {
    await rejectsWith(alice.call("bob", "slow", { ms: 2000 }, { timeout: 300 }), TimeoutError, "timeout");
  });
});
