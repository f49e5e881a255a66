/**
 * A held call (the retry budget full) whose timed-out attempt the broker refuses late with a
 * final code: `rate_limited` means back off (README, PROTOCOL §8.2 rule 4), never a resend.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { isRequest, RelayBed, sendNack } from "../support/relay-bed.js";
import { type Captured } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

const bed = new RelayBed();

describe("retry8: a late final nack", () => {
  it("a late `rate_limited` nack of a held call's attempt fails the call rate_limited at once; nothing is resent", async () => {
    const { caller, bob, relay, fx } = await bed.mesh();
    const r = relay;
    bob.tool("hang", { input: z.object({}) }, async () => {
      await sleep(6000);
      return {};
    });
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ echo: text }));
    const callerKey = fx.key("caller");
    const retry = { attemptTimeout: 100, minDelay: 10, maxDelay: 20, budget: 0 };
    const hanging = Array.from({ length: 3 }, () => caller.call("bob", "hang", {}, { timeout: 5000, retry }).catch((e: unknown) => e));
    await waitFor(() => r.captured.filter((m) => isRequest(m, callerKey)).length >= 6, 5000, "the hanging calls resending");
    let swallowed: Captured | undefined;
    r.onMessage = (m) => {
      if (swallowed === undefined && isRequest(m, callerKey) && m.header.exp < Date.now() + 2500) {
        swallowed = m;
        return false;
      }
      return true;
    };
    const echo = caller.call("bob", "echo", { text: "hi" }, { timeout: 2000, retry }).catch((e: unknown) => e);
    await waitFor(() => caller.stats.retriesHeld >= 1, 5000, "the echo call held by the budget");
    await sendNack(r, callerKey, swallowed!.header.id, "rate_limited", "slow down");
    const outcome = await Promise.race([echo, sleep(1000).then(() => "still waiting")]);
    // Before: the held call resent at once and was answered, as if the broker had said busy.
    expect(outcome).toMatchObject({ code: "rate_limited" });
    expect(r.captured.filter((m) => isRequest(m, callerKey) && m.header.exp === swallowed!.header.exp)).toHaveLength(1);
    await Promise.all(hanging);
  }, 20_000);
});
