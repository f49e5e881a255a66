/**
 * Retry options that are not numbers: a call must still end by its deadline (or be refused as a
 * ConfigError), never wait forever.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError } from "../../src/errors.js";
import { retryPolicy } from "../../src/agent/retry.js";
import { RelayBed } from "../support/relay-bed.js";
import { sleep } from "../support/wait.js";

const bed = new RelayBed();

describe("retry8: retry options", () => {
  it("attemptTimeout NaN (say Number(process.env.X)): the call ends, not waits forever for an answer that never comes", async () => {
    const { caller, bob, relay, fx } = await bed.mesh();
    bob.tool("echo", { input: z.object({}) }, () => ({}));
    const callerKey = fx.key("caller");
    relay.onMessage = (m) => !(m.header.k === "res" && m.header.to === callerKey); // answers lost
    const call = caller.call("bob", "echo", {}, { timeout: 500, retry: { attemptTimeout: Number.NaN } }).catch((e: unknown) => e);
    const outcome = await Promise.race([call, sleep(3000).then(() => "still waiting")]);
    expect(outcome).not.toBe("still waiting"); // before: the attempt's deadline was NaN, which never fires
    expect(outcome).toBeInstanceOf(Error);
  }, 10_000);

  it("retryPolicy refuses what is not a count or a duration", () => {
    for (const bad of [{ attemptTimeout: Number.NaN }, { attemptTimeout: -1 }, { attempts: 0 }, { attempts: Number.NaN }, { minDelay: -5 }, { maxDelay: Number.NaN }, { attemptTimeout: "100" as unknown as number }])
      expect(() => retryPolicy(bad, 1000), JSON.stringify(bad)).toThrow(ConfigError);
    expect(retryPolicy({ attempts: 1, attemptTimeout: 0, minDelay: 0, maxDelay: 0 }, 1000).attempts).toBe(1);
  });
});
