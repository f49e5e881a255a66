/**
 * Late answers over direct links (held): calls on a loaded link whose attempts time out are held
 * or resent on the link, each answered right, each tool run once, nothing left pending.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { sleep, waitFor } from "../support/wait.js";

let fx: CertFixture | undefined;
const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

describe("retry8: late answers on a direct link (held)", () => {
  it("24 calls to a slow tool over a link, attempts timing out: right answers, one run per request, late answers taken", async () => {
    fx = tempCerts("alice", "bob");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0" });
    stops.push(() => bob.close());
    const runs = new Map<string, number>();
    bob.tool("slow", { input: z.object({ i: z.number() }) }, async ({ i }, ctx) => {
      runs.set(ctx.requestId, (runs.get(ctx.requestId) ?? 0) + 1);
      await sleep(i === 0 ? 0 : 400 + (i % 5) * 50);
      return { i };
    });
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 2000 });
    stops.push(() => alice.close());
    await waitFor(async () => {
      await alice.call("bob", "slow", { i: 0 });
      return (alice.direct.links?.sent ?? 0) > 0;
    }, 10_000, "a call over the direct link");
    const retry = { attemptTimeout: 100, minDelay: 5, maxDelay: 10 };
    const results = await Promise.all(Array.from({ length: 24 }, (_, k) => alice.call("bob", "slow", { i: k + 1 }, { timeout: 5000, retry })));
    expect(results).toEqual(Array.from({ length: 24 }, (_, k) => ({ i: k + 1 })));
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(alice.stats.retriesHeld).toBeGreaterThan(0);
    expect(alice.stats.lateAnswers).toBeGreaterThan(0);
    expect(alice.stats.callFailures).toEqual({});
  }, 20_000);
});
