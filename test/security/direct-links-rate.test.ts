/**
 * Direct links and the broker's `--rate` (adversarial review): a link bypasses the broker, so an
 * admitted key with a link could make the callee open (a seal-open each) as many requests as it
 * cared to send. `listenRateLimit` puts the broker's token bucket per key on the listener, before
 * anything is opened; a request above it is refused `rate_limited` on the link, as the broker
 * refuses it, and another key's link is untouched.
 */
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { ConfigError, RemoteError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";

let fx: CertFixture | undefined;
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await Promise.resolve(stop()).catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

const FLOOD = 60;

/** bob listening (with `listenRateLimit` when given), alice and carol calling him on direct links, each link up. */
async function mesh(listenRateLimit: { perSecond: number; burst: number } | undefined) {
  fx = tempCerts("alice", "bob", "carol");
  const broker = await startBroker(fx);
  stops.push(() => broker.close());
  const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0", ...(listenRateLimit ? { listenRateLimit } : {}) });
  stops.push(() => bob.close());
  const runs = new Map<string, number>();
  bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }, ctx) => {
    runs.set(ctx.from, (runs.get(ctx.from) ?? 0) + 1);
    return { x };
  });
  const callers: Agent[] = [];
  for (const name of ["alice", "carol"]) {
    const agent = await connectAgent(fx, name, broker.endpoint, { direct: true, linkTimeout: 2000 });
    stops.push(() => agent.close());
    await waitFor(async () => {
      await agent.call("bob", "echo", { x: 0 });
      return (agent.direct.links?.sent ?? 0) > 0;
    }, 10_000, `${name}'s call over the direct link`);
    callers.push(agent);
  }
  return { fx, bob, alice: callers[0]!, carol: callers[1]!, runs };
}

/** `n` calls at once from `agent`, no retries: their outcomes. */
async function flood(agent: Agent, n: number): Promise<Array<{ ok: true } | { ok: false; err: unknown }>> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      agent.call("bob", "echo", { x: i + 1 }, { retry: false }).then(
        () => ({ ok: true as const }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
    ),
  );
}

describe("direct links: a per-key rate limit on the listener (listenRateLimit)", () => {
  it("a flooding key is refused `rate_limited` past its burst, before anything is opened, while another key's link is answered", async () => {
    const burst = 10;
    const perSecond = 1;
    const { fx: f, bob, alice, carol, runs } = await mesh({ perSecond, burst });
    const aliceKey = f.key("alice");
    const carolKey = f.key("carol");
    const sentBefore = alice.direct.links!.sent;
    const requestsBefore = bob.stats.requests;
    const runsBefore = runs.get(aliceKey) ?? 0;
    const started = performance.now();

    const outcomes = await flood(alice, FLOOD);
    const elapsedS = (performance.now() - started) / 1000;
    // Every attempt went on the link (none fell back to the broker: the link is healthy).
    expect(alice.direct.links!.sent - sentBefore).toBe(FLOOD);
    expect(alice.direct.links!.fallbacks).toBe(0);
    expect(alice.direct.links!.failures).toEqual({});
    const refused = outcomes.filter((o) => !o.ok).map((o) => (o as { err: unknown }).err);
    const answered = outcomes.length - refused.length;
    // The bucket holds at most `burst`, refilled at perSecond (the setup's calls may have used some).
    const allowance = burst + Math.ceil(perSecond * elapsedS) + 1;
    expect(answered).toBeLessThanOrEqual(allowance);
    expect(refused.length).toBeGreaterThanOrEqual(FLOOD - allowance);
    for (const err of refused) {
      expect(err).toBeInstanceOf(RemoteError);
      expect(err).toMatchObject({ code: "rate_limited" });
    }
    // Refused before the inbound checks: bob opened only what he answered (requests counts every
    // request that reached the checks, each opened), and his tool ran only for those.
    expect(bob.direct.listener!.rateLimited).toBe(refused.length);
    expect(bob.stats.requests - requestsBefore).toBe(answered);
    expect((runs.get(aliceKey) ?? 0) - runsBefore).toBe(answered);

    // Another key on its own link: answered, on the link, while alice's bucket is still empty.
    const carolSent = carol.direct.links!.sent;
    for (let i = 0; i < 5; i++) await expect(carol.call("bob", "echo", { x: 100 + i }, { retry: false })).resolves.toMatchObject({ x: 100 + i });
    expect(carol.direct.links!.sent - carolSent).toBe(5);
    expect(runs.get(carolKey)).toBeGreaterThanOrEqual(6);
    await expect(alice.call("bob", "echo", { x: 999 }, { retry: false })).rejects.toMatchObject({ code: "rate_limited" });

    // The bucket refills: alice is answered again later, on the same link.
    await waitFor(() => alice.call("bob", "echo", { x: 7 }, { retry: false }).then(() => true, () => false), 10_000, "alice answered after the refill");
    expect(alice.direct.links!.failures).toEqual({});
  });

  it("a raw peer that floods undecodable messages and never reads: refused by the bucket, the listener lives, another key is answered", async () => {
    const { fx: f, bob, carol } = await mesh({ perSecond: 1, burst: 10 });
    const alice = f.certs["alice"]!;
    const socket = new zmq.Dealer({ curveServerKey: f.key("bob"), curvePublicKey: alice.publicKey, curveSecretKey: alice.secretKey, linger: 0, sendHighWaterMark: 100_000 });
    stops.push(() => socket.close());
    socket.connect(bob.direct.endpoint!);
    const N = 2000;
    const limitedBefore = bob.direct.listener!.rateLimited;
    const requestsBefore = bob.stats.requests;
    for (let i = 0; i < N; i++) await socket.send([Buffer.from([0xc1, i & 0xff]), Buffer.alloc(64)]); // 0xc1: never valid msgpack
    // It never reads: the refusals it is owed (EAGAIN past its queue) cost the listener nothing.
    await waitFor(() => bob.direct.listener!.rateLimited - limitedBefore >= N - 12, 20_000, "the flood refused by the bucket");
    expect(bob.stats.requests - requestsBefore).toBeLessThanOrEqual(12);
    await expect(carol.call("bob", "echo", { x: 5 }, { retry: false })).resolves.toMatchObject({ x: 5 });
  });

  it("with the option off, a flood on a link is answered as before", async () => {
    const { bob, alice } = await mesh(undefined);
    const outcomes = await flood(alice, FLOOD);
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    expect(bob.direct.listener!.rateLimited).toBe(0);
  });

  it("a bucket the broker's limiter would refuse is a ConfigError at connect", async () => {
    fx = tempCerts("bob");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    const err = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0", listenRateLimit: { perSecond: 0, burst: 5 } }).then(
      (a) => (stops.push(() => a.close()), undefined),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ code: "config" });
  });
});
