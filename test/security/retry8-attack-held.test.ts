/**
 * Attacks on the retry budget's held calls and on late answers (commits 041c571, 932f068),
 * through the stand-in broker (test/support/stand-in-broker.ts).
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { AgentOptions } from "../../src/agent/agent.js";
import { isResponse, RelayBed } from "../support/relay-bed.js";
import { sleep } from "../support/wait.js";

const bed = new RelayBed();

const mesh = (bobOptions: Partial<AgentOptions> = {}, ...extra: string[]) => bed.mesh(bobOptions, extra);

describe("retry8: held calls and late answers", () => {
  it("attemptTimeout 0 (accepted by the options) does not spin a held call on microtasks, freezing the process until its deadline", async () => {
    const { caller, bob, relay, fx } = await mesh();
    bob.tool("hang", { input: z.object({}) }, async () => {
      await sleep(3000);
      return {};
    });
    relay.onMessage = (m) => !isResponse(m, fx.key("caller")); // no answer ever comes
    // Four calls, three resending places (budget 0 → MIN_RETRYING): the fourth is held.
    const retry = { attemptTimeout: 0, minDelay: 1, maxDelay: 2, budget: 0 };
    const calls = Array.from({ length: 4 }, () => caller.call("bob", "hang", {}, { timeout: 1500, retry }).catch((e: unknown) => e));
    // The event loop's lag while they run: a 20 ms timer, measured a few times.
    let worst = 0;
    const until = performance.now() + 1200;
    while (performance.now() < until) {
      const t = performance.now();
      await sleep(20);
      worst = Math.max(worst, performance.now() - t - 20);
    }
    await Promise.all(calls);
    expect(caller.stats.retriesHeld).toBeGreaterThanOrEqual(1);
    expect(worst).toBeLessThan(300); // before the fix: ~1,400 ms (the whole process frozen)
  }, 15_000);
});
