/**
 * A service declared durable by its replicas (`agent.serve(name, { durable: true })`, the
 * heartbeat's `dur`, docs/DURABLE.md): a broker with a store queues every request to it, so a
 * caller that marks nothing durable still reaches a replica that was down when it called.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { built, spawnChild, type Child } from "../support/process.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { waitFor } from "../support/wait.js";

describe.skipIf(!redisAvailable)("a service declared durable", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  let broker: Broker;
  let replicas: Child[] = [];
  let alice: Agent | undefined;

  beforeEach(async () => {
    fx = tempCerts("alice", "r1");
    fx.addService("summarize");
    redis = await startRedis();
    broker = await startBroker(fx, { store: redis.url, storeVisibility: 3000 });
  });
  afterEach(async () => {
    await alice?.close();
    await Promise.all(replicas.map((r) => r.stop()));
    replicas = [];
    await broker.close();
    await redis.dispose();
    fx.cleanup();
  });

  it("a plain call to it while its only replica is down is queued, answered when the replica is back, and runs once", async () => {
    const start = async () => {
      const child = await spawnChild(built("examples/replica.js"), ["--broker", broker.endpoint, "--cert", fx.secretPath("r1"), "--certs", fx.dir, "--service", "summarize", "--durable", "--log-runs"], "replica ready");
      replicas.push(child);
      return child;
    };
    const first = await start(); // declares the service durable in its heartbeat
    await waitFor(() => broker.services()["summarize"]?.length === 1, 10_000, "the replica in the directory");
    first.kill("SIGKILL");
    await waitFor(() => broker.services()["summarize"] === undefined, 10_000, "the replica gone from the directory");

    alice = await connectAgent(fx, "alice", broker.endpoint);
    const call = alice.call("svc:summarize", "summarize", { text: "held for a replica" }, { timeout: 30_000 }); // no `durable`
    await waitFor(() => broker.durable!.stats.stored === 1, 10_000, "the request stored in the service's queue");
    // Down past the replica's start grace (2 s): the request is stamped well before the replica
    // process starts, which a plain request may not be; a declared service's replica accepts it.
    await new Promise((r) => setTimeout(r, 3000));

    const second = await start();
    const result = (await call) as { replica: string; words: number };
    expect(result).toMatchObject({ replica: fx.key("r1"), words: 4 });
    const ran = (c: Child) => c.logs.filter((l) => l["msg"] === "ran").length;
    expect(ran(first) + ran(second)).toBe(1);
    await waitFor(() => broker.durable!.stats.served === 1, 5000, "the plain answer retired the request from the queue");
    // Past the visibility timeout, nothing is handed out again: it ran once.
    await new Promise((r) => setTimeout(r, 3500));
    expect(ran(second)).toBe(1);
    // Taken at the first hand-out: not refused `busy` by the replica and queued again by a retry.
    expect(broker.durable!.stats.stored).toBe(1);
    expect(broker.durable!.stats.dispatched).toBe(1);
  }, 60_000);
});
