/**
 * A timed-out attempt is most likely late, not lost (retry.ts): its answer still answers the
 * call, resends after timeouts are bounded per destination by the retry budget, and a held call
 * that learns its attempt never arrived (the broker's late refusal) sends again. Through the
 * stand-in broker, which holds, swallows and forges what a test tells it to.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { rawPeer } from "../support/raw-peer.js";
import { isRequest, isResponse, RelayBed, sendNack } from "../support/relay-bed.js";
import type { Captured } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

const bed = new RelayBed();
const mesh = (...extra: string[]) => bed.mesh({}, extra, false);

describe("late answers and the retry budget", () => {
  it("the answer to a timed-out attempt answers the call when the later attempts' answers are lost (before: timeout)", async () => {
    const { caller, bob, relay, fx } = await mesh();
    let runs = 0;
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => {
      runs++;
      return { echo: text };
    });
    const callerKey = fx.key("caller");
    let responses = 0;
    relay.onMessage = (m) => {
      if (!isResponse(m, callerKey)) return true;
      // The first answer is held past the attempt's timeout, every later one is lost.
      if (responses++ === 0) setTimeout(() => void relay.resend(m), 400);
      return false;
    };
    const result = await caller.call("bob", "echo", { text: "hi" }, { timeout: 4000, retry: { attemptTimeout: 100, minDelay: 10, maxDelay: 20 } });
    expect(result).toEqual({ echo: "hi" });
    expect(runs).toBe(1);
    expect(caller.stats.lateAnswers).toBe(1);
    expect(relay.captured.filter((m) => isRequest(m, callerKey)).length).toBeGreaterThan(1); // it did resend meanwhile
  }, 15_000);

  it("a forged late answer (another key answering a timed-out attempt) is refused bad_seal; the real one still answers", async () => {
    const { caller, bob, relay, fx } = await mesh("mallory");
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ echo: text, by: "bob" }));
    const mallory = await rawPeer(fx, "mallory", relay.endpoint, { routingId: fx.key("mallory") });
    bed.raws.push(mallory);
    const callerKey = fx.key("caller");
    let firstRequest: Captured | undefined;
    let responses = 0;
    relay.onMessage = (m) => {
      if (isRequest(m, callerKey)) firstRequest ??= m;
      if (!isResponse(m, callerKey) || m.from === fx.key("mallory")) return true;
      if (responses++ === 0) {
        // Once the first attempt has timed out, mallory answers it; bob's real answer follows.
        setTimeout(() => {
          void mallory.socket.send(mallory.frames(callerKey, { t: "res", ts: Date.now(), st: "ok", result: { echo: "forged", by: "mallory" } }, { k: "res", re: firstRequest!.header.id }));
          setTimeout(() => void relay.resend(m), 200);
        }, 300);
      }
      return false;
    };
    const result = await caller.call("bob", "echo", { text: "hi" }, { timeout: 4000, retry: { attemptTimeout: 100, minDelay: 10, maxDelay: 20 } });
    expect(result).toEqual({ echo: "hi", by: "bob" });
    expect(caller.stats.dropped.bad_seal).toBeGreaterThanOrEqual(1);
  }, 15_000);

  it("resends after timeouts stay within the budget: 12 calls to a slow tool all answer, tool run once each, far fewer requests than without it", async () => {
    const { caller, bob, relay, fx } = await mesh();
    let runs = 0;
    bob.tool("slow", { input: z.object({ i: z.number() }) }, async ({ i }) => {
      runs++;
      await sleep(600);
      return { i };
    });
    const callerKey = fx.key("caller");
    const retry = { attemptTimeout: 100, minDelay: 10, maxDelay: 20 };
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => caller.call("bob", "slow", { i }, { timeout: 5000, retry })));
    expect(results).toEqual(Array.from({ length: 12 }, (_, i) => ({ i })));
    expect(runs).toBe(12);
    const requests = relay.captured.filter((m) => isRequest(m, callerKey)).length;
    // Budget: max(3, 0.2 × 12) calls resend, each at most once per attempt timeout over the tool's
    // 600 ms and the attempts' own round trips (well under 12 turns). Without it every call
    // resent: 12 × 7 or so. The held calls were answered by their first attempt.
    expect(requests).toBeLessThanOrEqual(12 + 3 * 12);
    expect(caller.stats.retriesHeld).toBeGreaterThanOrEqual(9);
    expect(caller.stats.lateAnswers).toBeGreaterThanOrEqual(9);
  }, 20_000);

  it("budget 1 resends for every call (the old behaviour, on request)", async () => {
    const { caller, bob, relay, fx } = await mesh();
    bob.tool("slow", { input: z.object({ i: z.number() }) }, async ({ i }) => {
      await sleep(600);
      return { i };
    });
    const retry = { attemptTimeout: 100, minDelay: 10, maxDelay: 20, budget: 1 };
    await Promise.all(Array.from({ length: 12 }, (_, i) => caller.call("bob", "slow", { i }, { timeout: 5000, retry })));
    expect(caller.stats.retriesHeld).toBe(0);
    expect(relay.captured.filter((m) => isRequest(m, fx.key("caller"))).length).toBeGreaterThanOrEqual(24);
  }, 20_000);

  it("a held call whose timed-out attempt the broker refuses late (busy) sends again at once instead of waiting out its deadline", async () => {
    const { caller, bob, relay, fx } = await mesh();
    bob.tool("hang", { input: z.object({}) }, async () => {
      await sleep(6000);
      return {};
    });
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ echo: text }));
    const callerKey = fx.key("caller");
    const retry = { attemptTimeout: 100, minDelay: 10, maxDelay: 20, budget: 0 };
    // Three calls that never answer within their deadline fill the budget's three resending places.
    const hanging = Array.from({ length: 3 }, () => caller.call("bob", "hang", {}, { timeout: 5000, retry }).catch((e: unknown) => e));
    await waitFor(() => relay.captured.filter((m) => isRequest(m, callerKey)).length >= 3, 5000, "the three first requests");
    await waitFor(() => relay.captured.filter((m) => isRequest(m, callerKey)).length >= 6, 5000, "their resends");
    let swallowed: Captured | undefined;
    relay.onMessage = (m) => {
      // The echo call's first attempt (its deadline is the nearest): never delivered.
      if (swallowed === undefined && isRequest(m, callerKey) && m.header.exp < Date.now() + 2500) {
        swallowed = m;
        return false;
      }
      return true;
    };
    const echo = caller.call("bob", "echo", { text: "hi" }, { timeout: 2000, retry });
    await waitFor(() => caller.stats.retriesHeld >= 1, 5000, "the echo call held by the budget");
    await sendNack(relay, callerKey, swallowed!.header.id, "busy", "queue full");
    expect(await echo).toEqual({ echo: "hi" });
    expect(await Promise.all(hanging)).toHaveLength(3);
  }, 20_000);

  it("closing the agent ends a call the budget holds at once (closed), not at its deadline", async () => {
    const { caller, bob, relay, fx } = await mesh();
    bob.tool("hang", { input: z.object({}) }, async () => {
      await sleep(3000);
      return {};
    });
    const callerKey = fx.key("caller");
    relay.onMessage = (m) => !isResponse(m, callerKey); // no answer ever comes
    // Held calls wait in turns of the attempt timeout (2.5 s here): without the wake-up on close
    // they would end only at the end of their turn.
    const retry = { attemptTimeout: 2500, minDelay: 10, maxDelay: 20, budget: 0 };
    const calls = Array.from({ length: 5 }, () => caller.call("bob", "hang", {}, { timeout: 60_000, retry }).catch((e: unknown) => e));
    await waitFor(() => caller.stats.retriesHeld >= 2, 8000, "two calls held by the budget");
    bed.agents.splice(bed.agents.indexOf(caller), 1);
    await caller.close();
    const outcomes = await Promise.race([Promise.all(calls), sleep(2000).then(() => "still waiting")]);
    expect(outcomes).not.toBe("still waiting");
    for (const err of outcomes as unknown[]) expect(err).toMatchObject({ code: "closed" });
  }, 20_000);

  it("closing the agent ends a call backing off between attempts at once, not at the end of its backoff", async () => {
    const { caller, relay, fx } = await mesh();
    const callerKey = fx.key("caller");
    // Every request refused busy by the broker (nothing ran): the call backs off and resends.
    relay.onMessage = (m) => {
      if (!isRequest(m, callerKey)) return true;
      void sendNack(relay, callerKey, m.header.id, "busy", "queue full");
      return false;
    };
    const retry = { minDelay: 5000, maxDelay: 5000 }; // a backoff of 2.5 to 5 s after the first refusal
    const call = caller.call("bob", "echo", {}, { timeout: 30_000, retry }).catch((e: unknown) => e);
    await waitFor(() => relay.captured.some((m) => isRequest(m, callerKey)), 5000, "the first request");
    await sleep(100); // its refusal came: backing off
    bed.agents.splice(bed.agents.indexOf(caller), 1);
    await caller.close();
    const outcome = await Promise.race([call, sleep(2000).then(() => "still backing off")]);
    expect(outcome).toMatchObject({ code: "closed" });
  }, 20_000);

  it("calls whose answers were lost resend as places free, not a budget's share per attempt timeout (before: the last waited out their deadline)", async () => {
    const { caller, bob, relay, fx } = await mesh();
    bob.tool("echo", { input: z.object({ i: z.number() }) }, ({ i }) => ({ i }));
    const callerKey = fx.key("caller");
    // The first answer to each of 12 calls is lost; every later one goes through.
    const answered = new Set<string>();
    relay.onMessage = (m) => {
      if (!isResponse(m, callerKey)) return true;
      if (answered.size < 12 && !answered.has(m.header.re!.toString())) {
        answered.add(m.header.re!.toString());
        return false;
      }
      return true;
    };
    // Three places (budget 0): held calls asked again only at the end of each 3 s turn would need
    // four turns for twelve calls (12 s); woken as places free, they all end in the first.
    const retry = { attemptTimeout: 3000, minDelay: 10, maxDelay: 20, budget: 0 };
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => caller.call("bob", "echo", { i }, { timeout: 20_000, retry })));
    expect(results).toEqual(Array.from({ length: 12 }, (_, i) => ({ i })));
    expect(caller.stats.retriesHeld).toBeGreaterThanOrEqual(9);
    expect(Date.now() - started).toBeLessThan(5500); // the second turn would end at 6 s
  }, 30_000);

  it("a resend answered 'already ran once; its answer was dropped' waits for the first answer, still on its way (before: the call failed tool_failed)", async () => {
    // Room for one answer's bytes per caller: a second request drops the first answer's body.
    const answerLimits = { maxEntries: 1000, maxBytes: 1 << 30, maxEntriesPerOwner: 1000, maxBytesPerOwner: 1000 };
    const { caller, bob, relay, fx } = await bed.mesh({ answerLimits });
    let runs = 0;
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => {
      runs++;
      return { echo: text };
    });
    const callerKey = fx.key("caller");
    let held: Captured | undefined;
    relay.onMessage = (m) => {
      if (!isResponse(m, callerKey) || held !== undefined) return true;
      held = m; // the first answer: on its way for 600 ms
      setTimeout(() => void relay.resend(m), 600);
      return false;
    };
    const long = "x".repeat(2000);
    const first = caller.call("bob", "echo", { text: long }, { timeout: 5000, retry: { attemptTimeout: 150, minDelay: 10, maxDelay: 20 } });
    await waitFor(() => held !== undefined, 5000, "the first answer held");
    expect(await caller.call("bob", "echo", { text: "b" })).toEqual({ echo: "b" }); // drops the first answer's body
    expect(await first).toEqual({ echo: long });
    expect(runs).toBe(2);
    expect(caller.stats.lateAnswers).toBeGreaterThanOrEqual(1);

    // And when the first answer never comes, the call ends at its deadline with the callee's word.
    held = undefined;
    relay.onMessage = (m) => {
      if (!isResponse(m, callerKey) || held !== undefined) return true;
      held = m; // lost
      return false;
    };
    const lost = caller.call("bob", "echo", { text: long + "y" }, { timeout: 1500, retry: { attemptTimeout: 150, minDelay: 10, maxDelay: 20 } }).catch((e: unknown) => e);
    await waitFor(() => held !== undefined, 5000, "the first answer lost");
    await caller.call("bob", "echo", { text: "c" });
    expect(await lost).toMatchObject({ code: "tool_failed", message: expect.stringContaining("its answer was dropped") });
  }, 15_000);
});
