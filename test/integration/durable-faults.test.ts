/**
 * Durable delivery under faults, on a real redis-server: a broker SIGKILLed with messages
 * stored, two brokers on one Redis, Redis SIGKILLed and restarted from its AOF, expiry, the
 * bounds, and Redis down at start and mid-stream (typed `unavailable`, live traffic unaffected,
 * one log line per outage, recovery).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { Redis } from "ioredis";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError, TimeoutError } from "../../src/errors.js";
import { createLogger } from "../../src/support/log.js";
import type { StoredNotice } from "../../src/store/caller.js";
import { rejectsWith } from "../support/assert.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { startBrokerProcess, type BrokerProcess } from "../support/process.js";
import { freePort, redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { sleep, waitFor } from "../support/wait.js";

describe.skipIf(!redisAvailable)("durable delivery under faults", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  const agents: Agent[] = [];
  const brokers: Broker[] = [];
  const procs: BrokerProcess[] = [];
  const runs = new Map<string, number>();
  const agent = async (name: string, endpoint: string | string[]) => {
    const a = await connectAgent(fx, name, endpoint);
    agents.push(a);
    return a;
  };
  const bob = async (endpoint: string | string[]) => {
    const b = await agent("bob", endpoint);
    b.tool("echo", { input: z.strictObject({ marker: z.string() }) }, ({ marker }) => {
      runs.set(marker, (runs.get(marker) ?? 0) + 1);
      return { marker };
    });
    return b;
  };
  const broker = async (options: Parameters<typeof startBroker>[1] = {}) => {
    const b = await startBroker(fx, { store: redis.url, ...options });
    brokers.push(b);
    return b;
  };
  /** `n` durable calls from `caller` to bob, resolved once all are stored. */
  const storedCalls = async (caller: Agent, n: number, prefix: string, timeout = 40_000) => {
    const stored: StoredNotice[] = [];
    const calls = Array.from({ length: n }, (_, i) => caller.call("bob", "echo", { marker: `${prefix}${i}` }, { durable: true, timeout, onStored: (s) => stored.push(s) }));
    await waitFor(() => stored.length === n, 10_000, `${n} stored`);
    return calls;
  };
  const expectAllOnce = (results: unknown[], prefix: string) => {
    expect(results).toEqual(results.map((_, i) => ({ marker: `${prefix}${i}` })));
    for (let i = 0; i < results.length; i++) expect(runs.get(`${prefix}${i}`)).toBe(1);
  };

  beforeEach(async () => {
    fx = tempCerts("alice", "bob", "carol");
    redis = await startRedis();
    runs.clear();
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
    await Promise.all(procs.splice(0).map((p) => p.stop()));
    await redis.dispose();
    fx.cleanup();
  });

  it("broker SIGKILLed with messages stored, restarted: all delivered, each tool ran once", async () => {
    const bind = `tcp://127.0.0.1:${await freePort()}`;
    const first = await startBrokerProcess(fx, { bind, args: ["--store", redis.url] });
    procs.push(first);
    const alice = await agent("alice", first.endpoint);
    const calls = await storedCalls(alice, 20, "k");
    first.kill("SIGKILL");
    await first.exited;
    const second = await startBrokerProcess(fx, { bind, args: ["--store", redis.url] });
    procs.push(second);
    await bob(second.endpoint);
    expectAllOnce(await Promise.all(calls), "k");
    const m = await second.scrape();
    expect(m.get("zmcp_broker_durable_delivered_total")).toBeGreaterThanOrEqual(20);
  }, 60_000);

  it("two brokers on one Redis: stored through one, delivered through the other (and the answers back the same way)", async () => {
    const a = await broker();
    const b = await broker();
    const alice = await agent("alice", a.endpoint); // alice only reaches broker a
    const calls = await storedCalls(alice, 10, "t");
    expect(a.durable!.stats.stored).toBe(10);
    await bob(b.endpoint); // bob only reaches broker b
    expectAllOnce(await Promise.all(calls), "t");
    await waitFor(() => b.durable!.stats.delivered >= 10 && a.durable!.stats.delivered >= 10, 5000, "deliveries counted");
    // bob's answers could not reach alice through b: b stored them (durable answers), a delivered them.
    expect({ bStored: b.durable!.stats.stored, aDelivered: a.durable!.stats.delivered }).toEqual({ bStored: 10, aDelivered: 10 });
  }, 40_000);

  it("Redis SIGKILLed with messages stored and restarted from its AOF: all delivered", async () => {
    const b = await broker();
    const alice = await agent("alice", b.endpoint);
    const calls = await storedCalls(alice, 20, "r");
    await sleep(1500); // appendfsync everysec: let a write-back pass (SIGKILL loses no written page anyway)
    await redis.kill();
    await redis.restart();
    await waitFor(() => b.durable!.store.available, 15_000, "store reachable again");
    await bob(b.endpoint);
    expectAllOnce(await Promise.all(calls), "r");
  }, 60_000);

  it("expired messages are never delivered, and deleted", async () => {
    const b = await broker();
    const alice = await agent("alice", b.endpoint);
    const stored: StoredNotice[] = [];
    const late = Array.from({ length: 5 }, (_, i) => alice.call("bob", "echo", { marker: `x${i}` }, { durable: true, timeout: 1500, onStored: (s) => stored.push(s) }));
    // The checks are attached at once: on a loaded machine a call can time out before all five
    // are stored, and a rejection nobody has attached to yet is an unhandled error.
    const outcomes = late.map((call) => rejectsWith(call, TimeoutError, "timeout"));
    await waitFor(() => stored.length === 5, 5000, "stored");
    await Promise.all(outcomes);
    await sleep(500);
    await bob(b.endpoint);
    await waitFor(() => b.durable!.stats.expired === 5, 10_000, "5 expired");
    expect(runs.size).toBe(0);
    expect(b.durable!.stats.delivered).toBe(0);
    const client = new Redis(redis.url);
    try {
      expect(await client.keys("zmcp:{*}:q")).toEqual([]);
      expect(Number(await client.hget("zmcp:total", "count"))).toBe(0);
    } finally {
      client.disconnect();
    }
  }, 30_000);

  it("a full inbox refuses busy; the total byte bound holds under a flood", async () => {
    // The sender's own share is set to the whole bound here: this test is about the shared bounds
    // (test/security/durable-quota.test.ts is about the share).
    const b = await broker({ storeLimits: { perRecipientCount: 3, totalBytes: 64 * 1024, perSenderRecipientCount: 3, perSenderBytes: 64 * 1024 } });
    const alice = await agent("alice", b.endpoint);
    const stored: StoredNotice[] = [];
    const first = Array.from({ length: 3 }, (_, i) => alice.call("bob", "echo", { marker: `f${i}` }, { durable: true, timeout: 30_000, onStored: (s) => stored.push(s) }));
    await waitFor(() => stored.length === 3, 5000, "3 stored");
    await rejectsWith(alice.call("bob", "echo", { marker: "f3" }, { durable: true, timeout: 5000, retry: false }), RemoteError, "busy");
    // Flood carol's inbox with 2 KiB messages: the total bound (64 KiB) refuses the rest busy.
    const pad = "p".repeat(2048);
    for (let i = 0; i < 100; i++) {
      alice.call("carol", "echo", { marker: `c${i}${pad}` }, { durable: true, timeout: 30_000, retry: false, onStored: (s) => stored.push(s) }).catch(() => undefined);
    }
    await waitFor(() => b.durable!.stats.stored + b.durable!.stats.full === 104, 10_000, "the flood stored or refused");
    const client = new Redis(redis.url);
    try {
      const totalBytes = Number(await client.hget("zmcp:total", "bytes"));
      expect(totalBytes).toBeGreaterThan(0);
      expect(totalBytes).toBeLessThanOrEqual(64 * 1024);
    } finally {
      client.disconnect();
    }
    expect(b.durable!.stats.full).toBeGreaterThan(1);
    await bob(b.endpoint);
    expectAllOnce(await Promise.all(first), "f");
  }, 40_000);

  it("Redis down at start and mid-stream: durable sends refused unavailable, live calls unaffected, one log line per outage, recovery", async () => {
    await redis.stop();
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger("info", (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    const b = await broker({ log });
    const alice = await agent("alice", b.endpoint);
    await bob(b.endpoint);
    await rejectsWith(alice.call("carol", "echo", { marker: "d0" }, { durable: true, timeout: 5000 }), RemoteError, "unavailable");
    expect(await alice.call("bob", "echo", { marker: "live0" })).toEqual({ marker: "live0" });
    await sleep(1500); // several reconnect attempts fail meanwhile
    expect(lines.filter((l) => String(l["msg"]).startsWith("durable store unreachable")).length).toBe(1);
    await redis.restart();
    await waitFor(() => b.durable!.store.available, 15_000, "store reachable");
    const stored: StoredNotice[] = [];
    const toCarol = alice.call("carol", "echo", { marker: "d1" }, { durable: true, timeout: 30_000, onStored: (s) => stored.push(s) });
    await waitFor(() => stored.length === 1, 5000, "stored once Redis is back");
    // Mid-stream: Redis dies while live and durable traffic flows.
    await redis.kill();
    await rejectsWith(alice.call("carol", "echo", { marker: "d2" }, { durable: true, timeout: 5000 }), RemoteError, "unavailable");
    const live = await Promise.all(Array.from({ length: 20 }, (_, i) => alice.call("bob", "echo", { marker: `live${i + 1}` })));
    expect(live).toHaveLength(20);
    expect(lines.filter((l) => String(l["msg"]).startsWith("durable store unreachable")).length).toBe(2);
    await redis.restart();
    await waitFor(() => b.durable!.store.available, 15_000, "store reachable again");
    const carol = await agent("carol", b.endpoint);
    let ran = 0;
    carol.tool("echo", { input: z.strictObject({ marker: z.string() }) }, ({ marker }) => {
      ran++;
      return { marker };
    });
    expect(await toCarol).toEqual({ marker: "d1" });
    expect(ran).toBe(1);
    expect(lines.some((l) => l["msg"] === "durable store reachable again")).toBe(true);
    expect(b.stats.internalErrors).toBe(0);
  }, 60_000);
});
