/**
 * Durable calls and the caller's circuit breaker (docs/DURABLE.md, "What happens"): plain calls
 * that failed `no_route` to an agent that is away open its circuit, and a durable call to it
 * must still be stored and answered, not refused `circuit_open`.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { ZmcpError } from "../../src/errors.js";
import type { StoredNotice } from "../../src/store/caller.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { waitFor } from "../support/wait.js";

describe.skipIf(!redisAvailable)("durable calls and the circuit breaker", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  const agents: Agent[] = [];
  let broker: Broker | undefined;

  beforeEach(async () => {
    fx = tempCerts("alice", "bob");
    redis = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker?.close();
    await redis.dispose();
    fx.cleanup();
  });

  it("a durable call to an agent whose circuit plain calls opened is stored and answered, not refused circuit_open", async () => {
    broker = await startBroker(fx, { store: redis.url });
    const alice = await connectAgent(fx, "alice", broker.endpoint, { circuit: { failures: 1, openFor: 60_000 } });
    agents.push(alice);
    // bob is away: a plain call fails no_route and opens bob's circuit; the next plain call is cut off.
    await expect(alice.call("bob", "echo", { text: "plain" }, { timeout: 1000, retry: false })).rejects.toMatchObject({ code: "no_route" });
    const cut = await alice.call("bob", "echo", { text: "plain" }, { timeout: 1000, retry: false }).catch((err: unknown) => err);
    expect(cut).toBeInstanceOf(ZmcpError);
    expect((cut as ZmcpError).code).toBe("circuit_open");

    const stored: StoredNotice[] = [];
    const answer = alice.call("bob", "echo", { text: "durable" }, { durable: true, timeout: 20_000, onStored: (n) => stored.push(n) });
    await waitFor(() => stored.length === 1, 10_000, "the stored ack");
    const bob = await connectAgent(fx, "bob", broker.endpoint);
    agents.push(bob);
    bob.tool("echo", { input: z.strictObject({ text: z.string() }) }, ({ text }) => ({ text }));
    await expect(answer).resolves.toEqual({ text: "durable" });
  });
});
