/**
 * Attacks on the retry budget's held calls and on late answers (commits 041c571, 932f068),
 * through the stand-in broker (test/support/stand-in-broker.ts).
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { AgentOptions } from "../../src/agent/agent.js";
import { isResponse, RelayBed } from "../support/relay-bed.js";
import { type Captured } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

const bed = new RelayBed();

const mesh = (bobOptions: Partial<AgentOptions> = {}, ...extra: string[]) => bed.mesh(bobOptions, extra);

describe("retry8: late refusals", () => {
  it("a late `busy` (the callee refused the first attempt: nothing ran then) does not cut off the attempt pending, which runs the tool: the call answers, not `busy`", async () => {
    const { caller, bob, relay, fx, others } = await mesh({ maxConcurrency: 1 }, "other");
    const [other] = others;
    let runs = 0;
    bob.tool("block", { input: z.object({}) }, async () => {
      await sleep(100);
      return {};
    });
    bob.tool("work", { input: z.object({}) }, async () => {
      runs++;
      await sleep(600);
      return { done: true };
    });
    const callerKey = fx.key("caller");
    let held: Captured | undefined;
    relay.onMessage = (m) => {
      // bob's first answer to the caller (busy: the other agent's call holds its one run) is
      // held past the attempt's timeout, as an overloaded broker or network would.
      if (held === undefined && isResponse(m, callerKey)) {
        held = m;
        setTimeout(() => void relay.resend(m), 350);
        return false;
      }
      return true;
    };
    const blocking = other!.call("bob", "block", {});
    await sleep(20);
    const outcome = await caller.call("bob", "work", {}, { timeout: 4000, retry: { attempts: 2, attemptTimeout: 150, minDelay: 10, maxDelay: 20 } }).catch((e: unknown) => e);
    await blocking;
    await waitFor(() => held !== undefined, 1000, "the busy answer held");
    expect(runs).toBe(1); // the second attempt ran the tool...
    expect(outcome).toEqual({ done: true }); // ...so `busy` ("nothing ran: call again") is a lie: before the fix the call failed busy
  }, 15_000);
});
