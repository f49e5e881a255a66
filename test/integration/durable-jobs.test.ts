/**
 * Durable jobs (docs/DURABLE.md): a job started durable on an offline runner waits in the store;
 * a caller that restarted re-attaches to a job whose id it kept (`agent.job(to, id)`) and gets
 * its result; the job's end event to the caller that had gone was stored for it.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { ConfigError, ZmcpError } from "../../src/errors.js";
import type { StoredNotice } from "../../src/store/caller.js";
import { z85Decode } from "../../src/wire/z85.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { sleep, waitFor } from "../support/wait.js";

describe.skipIf(!redisAvailable)("durable jobs", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  let broker: Broker;
  const agents: Agent[] = [];
  let ran = 0;
  const connect = async (name: string) => {
    const a = await connectAgent(fx, name, broker.endpoint);
    agents.push(a);
    return a;
  };
  const startBob = async () => {
    const bob = await connect("bob");
    bob.tool("slow", { input: z.strictObject({ n: z.number() }), job: true }, async ({ n }) => {
      ran++;
      await sleep(1500);
      return { twice: 2 * n };
    });
    return bob;
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

  it("a caller that restarted re-attaches to its job by id and gets the result; the end event was stored for it meanwhile", async () => {
    await startBob();
    const first = await connect("alice");
    const job = await first.start("bob", "slow", { n: 21 }, { durable: true, timeout: 10_000 });
    const id = job.id;
    await first.close(); // the caller process "restarts": the job's end event has nobody to go to
    await waitFor(() => ran === 1 && broker.durable!.stats.stored >= 1, 10_000, "the end event stored for the absent caller");
    const again = await connect("alice");
    const reattached = again.job("bob", id);
    expect(await reattached.result).toEqual({ twice: 42 });
    expect(ran).toBe(1);
    await waitFor(() => broker.durable!.stats.delivered >= 1, 5000, "the stored event delivered on reconnect");
  }, 30_000);

  it("the stored end event alone brings the result to a re-attached job: its runner is gone by then, so no poll can", async () => {
    const bob = await startBob();
    const first = await connect("alice");
    const job = await first.start("bob", "slow", { n: 4 }, { durable: true, timeout: 10_000 });
    await first.close();
    await waitFor(() => ran === 1 && broker.durable!.stats.stored >= 1, 10_000, "the end event stored");
    await bob.close(); // the runner leaves: polls are answered no_route from now on
    const delivered = broker.durable!.stats.delivered;
    const again = await connect("alice");
    await waitFor(() => broker.durable!.stats.delivered > delivered, 10_000, "the stored event delivered at connect, before job() is called");
    await sleep(100);
    expect(await again.job("bob", job.id).result).toEqual({ twice: 8 });
  }, 30_000);

  it("a job started durable while its runner is offline is stored, runs once when the runner starts, and its result reaches the caller", async () => {
    const alice = await connect("alice");
    const stored: StoredNotice[] = [];
    const started = alice.start("bob", "slow", { n: 5 }, { durable: true, timeout: 20_000, onStored: (s) => stored.push(s) });
    await waitFor(() => stored.length === 1, 5000, "stored");
    await sleep(1000);
    await startBob();
    const job = await started;
    expect(await job.result).toEqual({ twice: 10 });
    expect(ran).toBe(1);
  }, 30_000);

  it("re-attaching with an id that names no runner is a config error; an unknown job fails unknown_job", async () => {
    await startBob();
    const alice = await connect("alice");
    const thrown = (() => {
      try {
        alice.job("bob", "not-a-job-id");
      } catch (e) {
        return e;
      }
    })();
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).code).toBe("config");
    const bobKey = fx.key("bob");
    const unknown = alice.job("bob", "0".repeat(32) + Buffer.from(z85Decode(bobKey)).toString("hex")) // a well-formed id (hex: random part + runner key) bob never issued;
    const err = await unknown.result.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ZmcpError);
    expect((err as ZmcpError).code).toBe("unknown_job");
  }, 20_000);
});
