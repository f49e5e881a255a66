/**
 * Second adversarial pass on issue 12, durable job events kept for later (follower.ts
 * keepForJob, store/orphans.ts). A caller that restarted receives the end events stored for it
 * at connect, before it can re-attach; they are kept unopened per RUNNER key. Re-attaching to
 * one job (`agent.job(to, id)`) takes every kept event of that runner and hands it back to the
 * inbound checks, where it is opened (in place, now) and delivered: the events of the runner's
 * OTHER jobs, not adopted yet, are dropped `unsolicited`. Re-attaching to the second job then
 * finds nothing kept; with its runner gone no poll can answer either, so its result is lost and
 * the job fails only after jobLostAfter. Not caused by opening in place (the old copy-open lost
 * them too), but found on this path; the in-place open makes "put it back" impossible as the
 * frames are plaintext once opened.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { sleep, waitFor } from "../support/wait.js";

describe.skipIf(!redisAvailable)("hotpath2-attack: two durable jobs of one runner re-attached after a restart", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  let broker: Broker;
  const agents: Agent[] = [];
  let ran = 0;
  const connect = async (name: string, options = {}) => {
    const a = await connectAgent(fx, name, broker.endpoint, options);
    agents.push(a);
    return a;
  };

  beforeEach(async () => {
    fx = tempCerts("alice", "bob");
    redis = await startRedis();
    broker = await startBroker(fx, { store: redis.url });
    ran = 0;
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker.close();
    await redis.dispose();
    fx.cleanup();
  });

  it("each re-attached job gets its stored end event (the first job() used to consume and drop the second job's)", async () => {
    const bob = await connect("bob");
    bob.tool("slow", { input: z.strictObject({ n: z.number() }), job: true }, async ({ n }) => {
      ran++;
      await sleep(800);
      return { twice: 2 * n };
    });
    const first = await connect("alice");
    const a = await first.start("bob", "slow", { n: 1 }, { durable: true, timeout: 10_000 });
    const b = await first.start("bob", "slow", { n: 2 }, { durable: true, timeout: 10_000 });
    await first.close();
    await waitFor(() => ran === 2 && broker.durable!.stats.stored >= 2, 10_000, "both end events stored for the absent caller");
    await bob.close(); // the runner leaves: only the stored events can bring the results
    const delivered = broker.durable!.stats.delivered;
    const again = await connect("alice", { jobLostAfter: 3000 });
    await waitFor(() => broker.durable!.stats.delivered >= delivered + 2, 10_000, "both stored events delivered at connect");
    await sleep(100);
    expect(await again.job("bob", a.id).result).toEqual({ twice: 2 });
    const second = again.job("bob", b.id).result.then(
      (r) => r,
      (err: Error) => `failed: ${err.message}`,
    );
    expect(await second).toEqual({ twice: 4 });
  }, 30_000);
});
