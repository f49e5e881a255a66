/**
 * One admitted peer must not be able to fill the durable store for everyone else (found by an
 * adversarial review: one key stored an offline recipient's whole inbox in about 2 s, and every
 * other sender's durable messages to it were refused `busy` for up to a day). Each sender has a
 * share of every bound (per recipient or service queue, and in all); past it only that sender
 * is refused, and its share comes back as its messages are delivered or expire.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { Redis } from "ioredis";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import type { StoredNotice } from "../../src/store/caller.js";
import { resolveStoreLimits } from "../../src/store/store.js";
import { rejectsWith } from "../support/assert.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { sleep, waitFor } from "../support/wait.js";

describe("store limits", () => {
  it("a sender's share not given is a quarter of the bound it sits under, as resolved", () => {
    expect(resolveStoreLimits({ perRecipientCount: 40, totalBytes: 4096 })).toMatchObject({ perSenderRecipientCount: 10, perSenderBytes: 1024 });
    expect(resolveStoreLimits({ perRecipientCount: 1 }).perSenderRecipientCount).toBe(1);
    expect(resolveStoreLimits({ perRecipientCount: 40, perSenderRecipientCount: 40 }).perSenderRecipientCount).toBe(40);
  });
});

describe.skipIf(!redisAvailable)("durable store: each sender's share", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  let broker: Broker;
  const agents: Agent[] = [];
  const agent = async (name: string) => {
    const a = await connectAgent(fx, name, broker.endpoint);
    agents.push(a);
    return a;
  };
  const sendersHash = async () => {
    const client = new Redis(redis.url);
    try {
      return await client.hgetall("zmcp:senders");
    } finally {
      client.disconnect();
    }
  };

  beforeEach(async () => {
    fx = tempCerts("alice", "mallory", "bob", "r1");
    fx.addService("work");
    redis = await startRedis();
    // Per recipient: 8 messages, a sender's share 2 of them; in all, a sender's share 5.
    broker = await startBroker(fx, { store: redis.url, storeLimits: { perRecipientCount: 8, perSenderRecipientCount: 2, perSenderCount: 5 } });
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker.close();
    await redis.dispose();
    fx.cleanup();
  });

  it("a flooding sender is refused past its share of an offline recipient's inbox; another sender still stores, and everything stored is delivered once the recipient is back", async () => {
    const mallory = await agent("mallory");
    const alice = await agent("alice");
    const stored: StoredNotice[] = [];
    const durable = { durable: true, timeout: 30_000, retry: false, onStored: (s: StoredNotice) => stored.push(s) } as const;
    const flood = [0, 1].map((i) => mallory.call("bob", "echo", { marker: `m${i}` }, durable));
    await waitFor(() => stored.length === 2, 5000, "mallory's share stored");
    const refused = await rejectsWith(mallory.call("bob", "echo", { marker: "m2" }, durable), RemoteError, "busy");
    expect(refused.message).toContain("your share of the durable store");
    expect(broker.durable!.stats.quota).toBe(1);
    // The inbox (8) is far from full: alice's messages are stored, up to her own share.
    const honest = [0, 1].map((i) => alice.call("bob", "echo", { marker: `a${i}` }, durable));
    await waitFor(() => stored.length === 4, 5000, "alice's stored");
    expect(broker.durable!.stats.full).toBe(0);
    const counts = await sendersHash();
    expect(counts[`c:${mallory.publicKey}`]).toBe("2");
    expect(counts[`c:${alice.publicKey}`]).toBe("2");

    const bob = await agent("bob");
    bob.tool("echo", { input: z.strictObject({ marker: z.string() }) }, ({ marker }) => ({ marker }));
    expect(await Promise.all([...flood, ...honest])).toEqual([{ marker: "m0" }, { marker: "m1" }, { marker: "a0" }, { marker: "a1" }]);
    // Delivered: the shares are given back (the counters are deleted at zero, not left drifting).
    await waitFor(async () => Object.keys(await sendersHash()).length === 0, 5000, "shares given back");
    stored.length = 0;
    await bob.close();
    await sleep(100);
    const again = mallory.call("bob", "echo", { marker: "m3" }, durable);
    await waitFor(() => stored.length === 1, 5000, "mallory may store again");
    const bob2 = await agent("bob");
    bob2.tool("echo", { input: z.strictObject({ marker: z.string() }) }, ({ marker }) => ({ marker }));
    expect(await again).toEqual({ marker: "m3" });
  }, 40_000);

  it("the share in all holds across recipients and service queues; expired and answered messages give it back", async () => {
    const mallory = await agent("mallory");
    const stored: StoredNotice[] = [];
    const opts = (timeout: number) => ({ durable: true, timeout, retry: false, onStored: (s: StoredNotice) => stored.push(s) }) as const;
    // Nobody is connected as these keys or serves `work`: everything waits in the store.
    const short = [0, 1, 2, 3].map((n) => mallory.call(n < 2 ? "bob" : "alice", "echo", { n }, opts(1500)));
    for (const c of short) c.catch(() => undefined);
    const queued = mallory.call("svc:work", "echo", { n: 4 }, opts(30_000));
    await waitFor(() => stored.length === 5, 5000, "five stored");
    // The sixth is refused by the share in all (5), on a queue and a recipient where mallory has nothing yet.
    await rejectsWith(mallory.call("svc:work", "echo", { n: 5 }, opts(5000)), RemoteError, "busy");
    await rejectsWith(mallory.call("r1", "echo", { n: 6 }, opts(5000)), RemoteError, "busy");
    expect(broker.durable!.stats.quota).toBe(2);
    expect((await sendersHash())[`c:${mallory.publicKey}`]).toBe("5");
    // Past their exp the four are deleted by the sweep, and the share comes back with them.
    await waitFor(async () => (await sendersHash())[`c:${mallory.publicKey}`] === "1", 25_000, "expired messages give the share back");
    // A replica takes the queued request and answers it: the last of the share comes back.
    const r1 = await agent("r1");
    r1.tool("echo", { input: z.strictObject({ n: z.number() }) }, ({ n }) => ({ n }));
    await r1.serve("work");
    expect(await queued).toEqual({ n: 4 });
    await waitFor(async () => Object.keys(await sendersHash()).length === 0, 5000, "answered: the share given back");
  }, 60_000);
});
