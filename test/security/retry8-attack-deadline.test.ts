/**
 * A call held by the retry budget whose last turn of waiting ends at its deadline, just as the
 * budget frees: it must end `timeout`, not send one more attempt already past its deadline.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { RelayBed } from "../support/relay-bed.js";
import { type Captured } from "../support/stand-in-broker.js";
import { sleep } from "../support/wait.js";

const bed = new RelayBed();

describe("retry8: a held call at its deadline", () => {
  it("sends nothing past its deadline when the budget frees during its last turn", async () => {
    const { caller, bob, relay, fx } = await bed.mesh();
    bob.tool("hang", { input: z.object({}) }, async () => {
      await sleep(4000);
      return {};
    });
    const callerKey = fx.key("caller");
    const late: Captured[] = [];
    relay.onMessage = (m) => {
      if (m.header.k === "req" && m.from === callerKey && m.header.exp <= Date.now()) late.push(m);
      return !(m.header.k === "res" && m.header.to === callerKey); // no answer ever comes
    };
    // Three calls resending (budget 0: the three places), ending at 1.2 s.
    const hanging = Array.from({ length: 3 }, () => caller.call("bob", "hang", {}, { timeout: 1200, retry: { attemptTimeout: 100, minDelay: 5, maxDelay: 10, budget: 0 } }).catch((e: unknown) => e));
    await sleep(50);
    // Its attempt times out at 1 s, it is held, and its turn ends at its deadline (1.5 s), after the budget freed.
    const outcome = await caller.call("bob", "hang", {}, { timeout: 1500, retry: { attemptTimeout: 1000, minDelay: 5, maxDelay: 10, budget: 0 } }).catch((e: unknown) => e);
    await Promise.all(hanging);
    expect(caller.stats.retriesHeld).toBeGreaterThanOrEqual(1);
    expect(outcome).toMatchObject({ code: "timeout" });
    expect(late).toHaveLength(0); // before: one attempt sent at (or past) its exp
  }, 15_000);
});
