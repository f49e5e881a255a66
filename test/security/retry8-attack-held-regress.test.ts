/**
 * Attacks on held calls and late answers (commits 041c571, 932f068) that held: kept as
 * regression tests. Through the stand-in broker (test/support/stand-in-broker.ts).
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { encodeHeader } from "../../src/wire/envelope.js";
import { isRequest, isResponse, RelayBed } from "../support/relay-bed.js";
import { type Captured } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

const bed = new RelayBed();

const mesh = () => bed.mesh();

describe("retry8: held calls and late answers (held)", () => {
  it("held calls end at once on abort; every way a call ends frees its budget place: later calls resend, none held", async () => {
    const { caller, bob, relay, fx } = await mesh();
    bob.tool("hang", { input: z.object({}) }, async () => {
      await sleep(4000);
      return {};
    });
    bob.tool("fail", { input: z.object({}) }, () => {
      throw new Error("no");
    });
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ echo: text }));
    const callerKey = fx.key("caller");
    let swallow = true;
    relay.onMessage = (m) => !(swallow && isResponse(m, callerKey));
    const retry = { attemptTimeout: 100, minDelay: 5, maxDelay: 10, budget: 0 };
    const controllers = Array.from({ length: 6 }, () => new AbortController());
    const calls = controllers.map((c) => caller.call("bob", "hang", {}, { timeout: 30_000, retry, signal: c.signal }).catch((e: unknown) => e));
    await waitFor(() => caller.stats.retriesHeld >= 3, 5000, "three calls held");
    const t = performance.now();
    for (const c of controllers) c.abort();
    const outcomes = await Promise.all(calls);
    expect(performance.now() - t).toBeLessThan(500);
    for (const err of outcomes) expect(err).toMatchObject({ code: "aborted" });
    // An already aborted signal, an error answer, a plain answer: all end, nothing held.
    swallow = false;
    await expect(caller.call("bob", "echo", { text: "x" }, { retry, signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "aborted" });
    await expect(caller.call("bob", "fail", {}, { retry })).rejects.toMatchObject({ code: "tool_failed" });
    expect(await caller.call("bob", "echo", { text: "x" }, { retry })).toEqual({ echo: "x" });
    // Three calls whose first answers are lost: each may resend (no leftover resending counts).
    const held = caller.stats.retriesHeld;
    const lost = new Set<string>();
    relay.onMessage = (m) => {
      if (!isResponse(m, callerKey)) return true;
      const re = Buffer.from(m.header.re!).toString("hex");
      return lost.size >= 3 || lost.has(re) ? true : (lost.add(re), false);
    };
    const results = await Promise.all([1, 2, 3].map((i) => caller.call("bob", "echo", { text: String(i) }, { timeout: 5000, retry })));
    expect(results).toEqual([{ echo: "1" }, { echo: "2" }, { echo: "3" }]);
    expect(caller.stats.retriesHeld).toBe(held);
  }, 20_000);

  it("bob's answer to one call, re-addressed by the broker to another call's timed-out attempt, does not answer that call", async () => {
    const { caller, bob, relay, fx } = await mesh();
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ echo: text }));
    const callerKey = fx.key("caller");
    const requests: Captured[] = [];
    const responses: Captured[] = [];
    relay.onMessage = (m) => {
      if (isRequest(m, callerKey)) requests.push(m);
      if (!isResponse(m, callerKey)) return true;
      responses.push(m);
      return false; // every answer held
    };
    const retry = { attemptTimeout: 150, minDelay: 5, maxDelay: 10 };
    const a = caller.call("bob", "echo", { text: "a" }, { timeout: 3000, retry }).catch((e: unknown) => e);
    await waitFor(() => responses.length >= 1, 3000, "a's first answer");
    const aExp = requests[0]!.header.exp;
    const b = caller.call("bob", "echo", { text: "b" }, { timeout: 3500, retry }).catch((e: unknown) => e);
    await waitFor(() => requests.some((r) => r.header.exp > aExp), 3000, "b's first request");
    await sleep(300); // every first attempt has timed out
    const aFirst = responses[0]!;
    const bFirst = requests.find((r) => r.header.exp > aExp)!;
    const bad = caller.stats.dropped.bad_seal ?? 0;
    await relay.send(callerKey, aFirst.from, encodeHeader({ ...aFirst.header, re: bFirst.header.id }), aFirst.frames[1]);
    await relay.resend(aFirst); // a's real answer, late
    expect(await a).toEqual({ echo: "a" });
    await waitFor(() => (caller.stats.dropped.bad_seal ?? 0) > bad, 2000, "the re-addressed answer refused");
    relay.onMessage = undefined; // b's answers go through now
    expect(await b).toEqual({ echo: "b" });
  }, 15_000);
  it("a job whose `accepted` answer comes late (later attempts' answers lost) is adopted once and ends with its result", async () => {
    const { caller, bob, relay, fx } = await mesh();
    let starts = 0;
    bob.tool("steps", { job: true, input: z.object({ n: z.number() }) }, async ({ n }, ctx) => {
      starts++;
      for (let i = 1; i <= n; i++) {
        await sleep(20);
        ctx.progress({ progress: i, total: n });
      }
      return { n };
    });
    const callerKey = fx.key("caller");
    let responses = 0;
    let released = false;
    relay.onMessage = (m) => {
      if (released || !isResponse(m, callerKey)) return true;
      if (responses++ === 0)
        setTimeout(() => {
          released = true;
          void relay.resend(m);
        }, 400);
      return false;
    };
    const job = await caller.start("bob", "steps", { n: 3 }, { timeout: 5000, retry: { attemptTimeout: 100, minDelay: 5, maxDelay: 10 } });
    expect(await job.result).toEqual({ n: 3 });
    expect(starts).toBe(1);
    expect(caller.stats.lateAnswers).toBeGreaterThanOrEqual(1);
  }, 15_000);
});
