/**
 * A late refusal arriving between attempts (during a backoff, which 2290a0f wakes for it, or a
 * held wait): it says only that its own attempt ran nothing, not what became of the later ones.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { tempCerts } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { isRequest, isResponse, RelayBed } from "../support/relay-bed.js";
import { startRelay, type Captured } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

const bed = new RelayBed();

describe("retry9: a late refusal between attempts", () => {
  it("a late `busy` to the first attempt, coming while the call backs off after its second (which runs the tool), is not the call's outcome (before: failed busy)", async () => {
    const fx = (bed.fx = tempCerts("caller", "bob", "other"));
    const relay = (bed.relay = await startRelay(fx));
    const bob = await connectAgent(fx, "bob", relay.endpoint, { maxConcurrency: 1 });
    const caller = await connectAgent(fx, "caller", relay.endpoint);
    const other = await connectAgent(fx, "other", relay.endpoint);
    bed.agents.push(caller, bob, other);
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
    let busy: Captured | undefined;
    let requests = 0;
    relay.onMessage = (m) => {
      if (isRequest(m, callerKey) && ++requests === 2) setTimeout(() => void relay.resend(busy!), 200); // after the second attempt's timeout
      if (busy === undefined && isResponse(m, callerKey)) {
        busy = m; // bob's `busy` to the first attempt, held
        return false;
      }
      return true;
    };
    const blocking = other.call("bob", "block", {});
    await sleep(20);
    const outcome = await caller.call("bob", "work", {}, { timeout: 5000, retry: { attempts: 3, attemptTimeout: 150, minDelay: 400, maxDelay: 400 } }).catch((e: unknown) => e);
    await blocking;
    await waitFor(() => busy !== undefined, 1000, "the busy answer held");
    expect(runs).toBe(1);
    expect(outcome).toEqual({ done: true });
  }, 15_000);
});
