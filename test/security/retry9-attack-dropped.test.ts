/**
 * Attacks on the caller's wait after "already ran once; its answer was dropped" (d9e7631) and on
 * the backoff woken by late news (2290a0f), through the stand-in broker.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { DROPPED_ANSWER } from "../../src/agent/idempotency.js";
import { tempCerts } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { isRequest, isResponse, RelayBed, sendNack } from "../support/relay-bed.js";
import { startRelay, type Captured } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

const bed = new RelayBed();


describe("retry9: the wait for a dropped answer", () => {
  it("a call waiting for its dropped answer gives up its resend place: a held call whose answer was lost resends (before: held until its deadline, failed timeout)", async () => {
    const { caller, bob, relay, fx } = await bed.mesh();
    // The callee's word, as its answer cache would give it to a resend.
    bob.tool("dropped", { input: z.object({ i: z.number() }) }, () => {
      throw new Error(DROPPED_ANSWER.error!.message);
    });
    bob.tool("echo", { input: z.object({ i: z.number() }) }, ({ i }) => ({ i }));
    const callerKey = fx.key("caller");
    let responses = 0;
    // The first answer of each of the three first calls is lost, and so is the victim's first.
    relay.onMessage = (m) => {
      if (!isResponse(m, callerKey)) return true;
      responses++;
      return !(responses <= 3 || responses === 7);
    };
    const retry = { attemptTimeout: 100, minDelay: 10, maxDelay: 20, budget: 0 }; // three places
    const waiting = Array.from({ length: 3 }, (_, i) => caller.call("bob", "dropped", { i }, { timeout: 2500, retry }).catch((e: unknown) => e));
    await waitFor(() => responses >= 6, 3000, "the three resends answered 'dropped'");
    await sleep(50);
    const started = Date.now();
    const victim = await caller.call("bob", "echo", { i: 9 }, { timeout: 2000, retry: { attemptTimeout: 200, minDelay: 10, maxDelay: 20, budget: 0 } }).catch((e: unknown) => e);
    expect(victim).toEqual({ i: 9 }); // before: TimeoutError at 2 s, three places held by calls that never send again
    expect(Date.now() - started).toBeLessThan(1000);
    for (const w of await Promise.all(waiting)) expect(w).toMatchObject({ code: "tool_failed" });
  }, 15_000);

  it("a broker's late refusal of another attempt does not cut the wait short: the answer on its way answers (before: tool_failed at once)", async () => {
    // Room for one answer's bytes per caller: a second request drops the first answer's body.
    const answerLimits = { maxEntries: 1000, maxBytes: 1 << 30, maxEntriesPerOwner: 1000, maxBytesPerOwner: 1000 };
    const { caller, bob, relay, fx } = await bed.mesh({ answerLimits });
    let runs = 0;
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => {
      runs++;
      return { echo: text };
    });
    const callerKey = fx.key("caller");
    const requests: Captured[] = [];
    let answer: Captured | undefined;
    let dropped = false;
    let evicted = false;
    relay.onMessage = (m) => {
      if (isRequest(m, callerKey) && m.frames[1].length > 1500) {
        requests.push(m);
        // The first attempt stays in the broker's queue (refused later); the third and later wait for the eviction.
        return requests.length === 2;
      }
      if (isResponse(m, callerKey) && answer === undefined) {
        answer = m; // the second attempt's answer: on its way
        return false;
      }
      if (isResponse(m, callerKey) && evicted) dropped = true;
      return true;
    };
    const long = "x".repeat(2000);
    const call = caller.call("bob", "echo", { text: long }, { timeout: 5000, retry: { attemptTimeout: 150, minDelay: 10, maxDelay: 20 } }).catch((e: unknown) => e);
    await waitFor(() => requests.length >= 3 && answer !== undefined, 3000, "the third attempt held");
    expect(await caller.call("bob", "echo", { text: "b" }, { retry: false })).toEqual({ echo: "b" }); // drops the answer's body
    evicted = true;
    void relay.resend(requests[2]!); // answered "already ran once; its answer was dropped"
    await waitFor(() => dropped, 3000, "the dropped answer");
    await sleep(50);
    void sendNack(relay, callerKey, requests[0]!.header.id, "busy"); // the first attempt never arrived
    await sleep(200);
    void relay.resend(answer!);
    expect(await call).toEqual({ echo: long });
    expect(runs).toBe(2);
  }, 15_000);

  it("a tool's own error that only quotes the callee's words fails at once (before: the call waited until its deadline)", async () => {
    const { caller, bob, relay, fx } = await bed.mesh();
    bob.tool("check", { input: z.object({ note: z.string() }) }, ({ note }) => {
      throw new Error(`refused note: ${note}`);
    });
    const callerKey = fx.key("caller");
    let responses = 0;
    relay.onMessage = (m) => !isResponse(m, callerKey) || ++responses > 1; // the first answer lost
    const started = Date.now();
    const outcome = await caller.call("bob", "check", { note: "its answer was dropped" }, { timeout: 3000, retry: { attemptTimeout: 100, minDelay: 10, maxDelay: 20 } }).catch((e: unknown) => e);
    expect(outcome).toMatchObject({ code: "tool_failed" });
    expect(Date.now() - started).toBeLessThan(1000);
  }, 15_000);
});

describe("retry9: the circuit during the wait for a dropped answer", () => {
  it("a half-open circuit's probe answered 'dropped' closes it at once: the destination answered (before: every call failed circuit_open until the probe's deadline)", async () => {
    const fx = (bed.fx = tempCerts("caller", "bob"));
    const relay = (bed.relay = await startRelay(fx));
    const bob = await connectAgent(fx, "bob", relay.endpoint);
    const caller = await connectAgent(fx, "caller", relay.endpoint, { circuit: { failures: 1, openFor: 200 } });
    bed.agents.push(caller, bob);
    bob.tool("dropped", { input: z.object({}) }, () => {
      throw new Error(DROPPED_ANSWER.error!.message);
    });
    bob.tool("echo", { input: z.object({}) }, () => ({ ok: true }));
    const callerKey = fx.key("caller");
    let lose = Infinity;
    let responses = 0;
    relay.onMessage = (m) => !isResponse(m, callerKey) || ++responses > lose;
    // One timeout opens the circuit.
    expect(await caller.call("bob", "echo", {}, { timeout: 300, retry: false }).catch((e: unknown) => e)).toMatchObject({ code: "timeout" });
    await sleep(250); // half-open
    responses = 0;
    lose = 1; // the probe's first answer is lost; its resend is answered "dropped"
    const probe = caller.call("bob", "dropped", {}, { timeout: 2000, retry: { attemptTimeout: 100, minDelay: 10, maxDelay: 20 } }).catch((e: unknown) => e);
    await waitFor(() => responses >= 2, 3000, "the probe's resend answered");
    await sleep(50);
    expect(await caller.call("bob", "echo", {}, { timeout: 1000 }).catch((e: unknown) => e)).toEqual({ ok: true }); // before: circuit_open
    expect(await probe).toMatchObject({ code: "tool_failed" });
  }, 15_000);
});

describe("retry9: the backoff woken by late news", () => {
  it("a broker's late `rate_limited` during a backoff does not cut it short: the call ends with it, nothing resent (before: resent at once)", async () => {
    const { caller, bob, relay, fx } = await bed.mesh();
    bob.tool("echo", { input: z.object({}) }, () => ({}));
    const callerKey = fx.key("caller");
    const requests: Captured[] = [];
    relay.onMessage = (m) => {
      if (!isRequest(m, callerKey)) return true;
      requests.push(m);
      return false; // held in the broker's queue
    };
    // A backoff of 1 to 2 s after the first attempt's timeout.
    const call = caller.call("bob", "echo", {}, { timeout: 8000, retry: { attemptTimeout: 100, minDelay: 2000, maxDelay: 2000 } }).catch((e: unknown) => e);
    await waitFor(() => requests.length === 1, 3000, "the first attempt");
    await sleep(250); // timed out, backing off
    void sendNack(relay, callerKey, requests[0]!.header.id, "rate_limited");
    await sleep(300);
    expect(requests.length).toBe(1); // before: the second attempt went out at once, into a broker that asked to back off
    expect(await call).toMatchObject({ code: "rate_limited" });
  }, 15_000);
});
