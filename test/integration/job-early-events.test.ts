/**
 * A runner may push a job's first event right behind its `accepted` answer, before the caller
 * has adopted the job (Caller.start awaits the answer, then adopts). That event used to be
 * dropped as unsolicited and seen only at the next poll (2 s), or never with polls off; the
 * follower now keeps it (bounded) until the job is adopted. Found by the MCP `subscriptions/listen`
 * binding, whose acknowledgement is such a first event.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";

describe("a job's first event, pushed right behind its accepted answer", () => {
  let fx: CertFixture;
  let broker: Broker;
  let alice: Agent;
  let bob: Agent;
  beforeEach(async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint);
    bob.tool("eager", { input: z.object({ n: z.number() }), job: true }, async ({ n }, ctx) => {
      ctx.progress({ progress: 1, message: `first of ${n}` }); // at once, behind the accepted answer
      await new Promise((r) => setTimeout(r, 300));
      ctx.progress({ progress: 2 });
      return { n };
    });
    // Polls off: an event lost here would be lost for good (the result still comes by its push).
    alice = await connectAgent(fx, "alice", broker.endpoint, { jobPollInterval: 0 });
  });
  afterEach(async () => {
    await alice?.close();
    await bob?.close();
    await broker?.close();
    fx.cleanup();
  });

  it("is delivered to the job, in order, for every one of 20 jobs started at once; nothing is dropped", async () => {
    const seen = new Map<number, number[]>();
    const jobs = await Promise.all(
      Array.from({ length: 20 }, async (_, n) => {
        const job = await alice.start("bob", "eager", { n });
        const list: number[] = [];
        seen.set(n, list);
        job.on("progress", (p) => list.push(p.progress));
        return job;
      }),
    );
    expect((await Promise.all(jobs.map((j) => j.result))).map((r) => (r as { n: number }).n)).toEqual([...Array(20).keys()]);
    await waitFor(() => [...seen.values()].every((l) => l.length === 2), 5000, "both progress steps of every job");
    for (const list of seen.values()) expect(list).toEqual([1, 2]);
    expect(alice.stats.dropped).toEqual({});
  });
});
