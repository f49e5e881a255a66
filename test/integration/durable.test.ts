/**
 * Durable delivery on a real redis-server (docs/DURABLE.md): messages wait for offline agents,
 * are delivered in order on any broker sharing the store, survive a broker SIGKILL and a Redis
 * restart (AOF), expire, are bounded, are stored sealed, and a store outage is a typed refusal.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { Redis } from "ioredis";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import type { StoredNotice } from "../../src/store/caller.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { startBrokerProcess, type BrokerProcess } from "../support/process.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { sleep, waitFor } from "../support/wait.js";

/** bob with an `echo` tool that counts runs per marker. */
async function startBob(fx: CertFixture, endpoint: string | string[], runs: Map<string, number>, order?: string[]): Promise<Agent> {
  const bob = await connectAgent(fx, "bob", endpoint);
  bob.tool("echo", { input: z.strictObject({ marker: z.string() }) }, ({ marker }) => {
    runs.set(marker, (runs.get(marker) ?? 0) + 1);
    order?.push(marker);
    return { marker };
  });
  return bob;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe.skipIf(!redisAvailable)("durable delivery (Redis Streams)", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  const agents: Agent[] = [];
  const brokers: Broker[] = [];
  const procs: BrokerProcess[] = [];
  const agent = async (name: string, endpoint: string | string[]) => {
    const a = await connectAgent(fx, name, endpoint);
    agents.push(a);
    return a;
  };
  const broker = async (options: Parameters<typeof startBroker>[1] = {}) => {
    const b = await startBroker(fx, { store: redis.url, ...options });
    brokers.push(b);
    return b;
  };

  beforeEach(async () => {
    fx = tempCerts("alice", "bob", "carol");
    redis = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
    await Promise.all(procs.splice(0).map((p) => p.stop()));
    await redis.dispose();
    fx.cleanup();
  });

  it("100 durable calls to an offline agent are stored, then all answered once it starts 5 s later; each tool ran once", async () => {
    const b = await broker();
    const alice = await agent("alice", b.endpoint);
    const stored: StoredNotice[] = [];
    const calls = Array.from({ length: 100 }, (_, i) =>
      alice.call("bob", "echo", { marker: `m${i}` }, { durable: true, timeout: 30_000, onStored: (n) => stored.push(n) }),
    );
    await waitFor(() => stored.length === 100, 10_000, "100 stored acks");
    expect(stored[0]).toMatchObject({ to: "bob", tool: "echo" });
    expect(b.durable!.stats.stored).toBe(100);
    await sleep(5000);
    const runs = new Map<string, number>();
    const order: string[] = [];
    agents.push(await startBob(fx, b.endpoint, runs, order));
    const results = await Promise.all(calls);
    expect(results).toEqual(Array.from({ length: 100 }, (_, i) => ({ marker: `m${i}` })));
    expect(runs.size).toBe(100);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    // Stored in call order, delivered in that order (one caller, one recipient).
    expect(order).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
    await waitFor(() => b.durable!.stats.delivered === 100, 5000, "100 deliveries counted");
  }, 60_000);

  it("stores sealed bytes only: the payloads' plaintext is nowhere in Redis (keys, values, AOF)", async () => {
    const b = await broker();
    const alice = await agent("alice", b.endpoint);
    const secret = "PLAINTEXT-CANARY-7f3a9c";
    const stored: StoredNotice[] = [];
    const calls = Array.from({ length: 5 }, (_, i) => alice.call("bob", "echo", { marker: `${secret}-${i}` }, { durable: true, timeout: 20_000, onStored: (n) => stored.push(n) }).catch((e: unknown) => e));
    await waitFor(() => stored.length === 5, 10_000, "stored");
    const client = new Redis(redis.url);
    try {
      const keys = await client.keys("*");
      expect(keys.length).toBeGreaterThan(0);
      let scanned = 0;
      for (const key of keys) {
        const type = await client.type(key);
        const dump = type === "stream" ? JSON.stringify(await client.xrangeBuffer(key, "-", "+")) + Buffer.concat((await client.xrangeBuffer(key, "-", "+")).flatMap(([, f]) => f)).toString("latin1") : String(await client.dumpBuffer(key));
        scanned += dump.length;
        expect(key.includes(secret)).toBe(false);
        expect(dump.includes(secret)).toBe(false);
      }
      expect(scanned).toBeGreaterThan(0);
      await client.call("BGREWRITEAOF");
      await sleep(500);
    } finally {
      client.disconnect();
    }
    for (const file of filesUnder(redis.dir)) expect(readFileSync(file).includes(Buffer.from(secret))).toBe(false);
    const runs = new Map<string, number>();
    agents.push(await startBob(fx, b.endpoint, runs));
    const results = await Promise.all(calls);
    expect(results.map((r) => (r as { marker: string }).marker)).toEqual(Array.from({ length: 5 }, (_, i) => `${secret}-${i}`));
  }, 40_000);
});
