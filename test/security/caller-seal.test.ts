/**
 * Answers are bound to who was asked: a caller accepts a response or a job event only if it
 * was sealed by the key it addressed (the service key for `svc:NAME`; for a job, the runner
 * its id names). A compromised broker (here a stand-in ROUTER, test/support/stand-in-broker.ts) or an
 * admitted peer that learnt a header id cannot answer for anyone, and cannot cut the real
 * answer off either.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { generateCertificate } from "../../src/auth/certs.js";
import { encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header, type InnerDraft } from "../../src/wire/envelope.js";
import { ForgedAnswerError } from "../../src/errors.js";
import { newJobId } from "../../src/agent/jobs.js";
import { metricSum } from "../../src/support/metrics.js";
import { Sealer } from "../../src/wire/seal.js";
import { rejectsWith } from "../support/assert.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { startRelay, type Relay } from "../support/stand-in-broker.js";

/** `[header, body]` of a message sealed by `sealer` (whoever holds that key) to `to`. */
function forge(sealer: Sealer, to: string, header: Omit<Header, "v" | "id" | "exp">, draft: InnerDraft): [Uint8Array, Uint8Array] {
  const headerBytes = encodeHeader({ v: PROTOCOL_VERSION, id: newId(), exp: Date.now() + 5000, ...header });
  return [headerBytes, sealer.seal(to, encodeInner(draft, headerBytes))];
}

async function droppedMetric(agent: Agent, reason: string): Promise<number> {
  const text = await agent.metrics.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`zmcp_agent_messages_dropped_total{reason="${reason}"}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

describe("trust: a caller accepts answers only from whom it asked", () => {
  let fx: CertFixture;
  let relay: Relay;
  const agents: Agent[] = [];
  const peers: RawPeer[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    for (const p of peers.splice(0)) p.close();
    relay?.close();
    fx?.cleanup();
  });
  const connect = async (name: string, options = {}) => {
    const agent = await connectAgent(fx, name, relay.endpoint, options);
    agents.push(agent);
    return agent;
  };
  /** bob: `slow_echo` (counts its runs) and a job tool. */
  const startBob = async () => {
    const bob = await connect("bob");
    const runs = { echo: 0 };
    bob.tool("slow_echo", { input: z.object({ text: z.string(), ms: z.number().default(0) }) }, async ({ text, ms }) => {
      runs.echo++;
      await new Promise((r) => setTimeout(r, ms));
      return { echo: text, by: "bob" };
    });
    bob.tool("long", { input: z.object({ ms: z.number() }), job: true }, async ({ ms }) => {
      await new Promise((r) => setTimeout(r, ms));
      return { done: "by bob" };
    });
    return { bob, runs };
  };

  it("a fake broker answering alice's call to bob with its own sealed result: refused bad_seal, counted, bob's result was never faked", async () => {
    fx = tempCerts("alice", "bob");
    relay = await startRelay(fx);
    const { runs } = await startBob();
    const alice = await connect("alice", { timeout: 2000 });
    const throwaway = generateCertificate({ name: "throwaway" });
    const fake = new Sealer(throwaway.secretKey);
    // The fake broker swallows alice's requests and answers each itself: once stamped with its
    // throwaway key, once stamped as bob (its seal cannot be bob's either way).
    let stampAsBob = false;
    relay.onMessage = (m) => {
      if (m.header.k !== "req" || m.from !== alice.publicKey) return true;
      const [h, b] = forge(fake, alice.publicKey, { k: "res", to: alice.publicKey, re: m.header.id }, { t: "res", ts: Date.now(), st: "ok", result: { echo: "forged", by: "fake broker" } });
      void relay.send(alice.publicKey, stampAsBob ? fx.key("bob") : throwaway.publicKey, h, b);
      return false;
    };
    const err = await rejectsWith(alice.call("bob", "slow_echo", { text: "hi" }), ForgedAnswerError, "bad_seal");
    expect(err.message).toContain(throwaway.publicKey);
    stampAsBob = true;
    await rejectsWith(alice.call("bob", "slow_echo", { text: "hi" }), ForgedAnswerError, "bad_seal");
    expect(runs.echo).toBe(0);
    expect(alice.stats.dropped["bad_seal"]).toBeGreaterThanOrEqual(2);
    expect(await droppedMetric(alice, "bad_seal")).toBe(alice.stats.dropped["bad_seal"]);
    expect(alice.stats.callFailures["bad_seal"]).toBe(2);
  });

  it("an admitted peer that learnt a request id forges the answer: refused, and bob's real answer still arrives", async () => {
    fx = tempCerts("alice", "bob", "mallory");
    relay = await startRelay(fx);
    const { runs } = await startBob();
    const alice = await connect("alice", { timeout: 5000 });
    const mallory = await rawPeer(fx, "mallory", relay.endpoint, { routingId: fx.key("mallory") });
    peers.push(mallory);
    let forged = 0;
    relay.onMessage = (m) => {
      if (m.header.k === "req" && m.from === alice.publicKey && m.header.to === fx.key("bob")) {
        // mallory learns the id (from a leaked log, say) and answers first: a forged result, and
        // a forged answer refused before it is even opened (long expired), which must not end
        // the call either.
        const [h, b] = mallory.frames(alice.publicKey, { t: "res", ts: Date.now(), st: "ok", result: { echo: "forged", by: "mallory" } }, { k: "res", re: m.header.id });
        void mallory.socket.send([h, b]);
        const [h2, b2] = mallory.frames(alice.publicKey, { t: "res", ts: Date.now(), st: "error", error: { code: "tool_failed", message: "forged" } }, { k: "res", re: m.header.id, exp: 1000 });
        void mallory.socket.send([h2, b2]);
        forged++;
      }
      return true;
    };
    const out = await alice.call("bob", "slow_echo", { text: "real", ms: 300 });
    expect(out).toEqual({ echo: "real", by: "bob" });
    expect(forged).toBeGreaterThanOrEqual(1);
    expect(runs.echo).toBe(1);
    expect(alice.stats.dropped["bad_seal"]).toBe(forged);
    expect(alice.stats.dropped["refused"]).toBe(forged);
  });

  it("a service answer must be sealed by the service key: a peer's forgery neither wins nor cuts the call off", async () => {
    fx = tempCerts("alice", "r1", "mallory");
    fx.addService("summ");
    relay = await startRelay(fx);
    const r1 = await connect("r1");
    let runs = 0;
    r1.tool("summ", { input: z.object({ text: z.string() }) }, async ({ text }) => {
      runs++;
      await new Promise((r) => setTimeout(r, 300));
      return { words: text.split(" ").length };
    });
    await r1.serve("summ");
    const alice = await connect("alice", { timeout: 5000 });
    const mallory = await rawPeer(fx, "mallory", relay.endpoint, { routingId: fx.key("mallory") });
    peers.push(mallory);
    relay.onMessage = (m) => {
      if (m.header.k === "req" && m.from === alice.publicKey) {
        // Claims to answer as the service (mallory has no service key: sealed by its own).
        const [h, b] = mallory.frames(alice.publicKey, { t: "res", ts: Date.now(), st: "ok", result: { words: 99 } }, { k: "res", re: m.header.id, as: "svc:summ" });
        void mallory.socket.send([h, b]);
        const [h2, b2] = mallory.frames(alice.publicKey, { t: "res", ts: Date.now(), st: "error", error: { code: "tool_failed", message: "forged failure" } }, { k: "res", re: m.header.id });
        void mallory.socket.send([h2, b2]);
      }
      return true;
    };
    expect(await alice.call("svc:summ", "summ", { text: "a b c" })).toEqual({ words: 3 });
    expect(runs).toBe(1);
    expect(alice.stats.dropped["bad_seal"]).toBe(2);
  });

  it("a fake broker's `accepted` and job events, sealed by its own key: the job is refused bad_seal", async () => {
    fx = tempCerts("alice", "bob");
    relay = await startRelay(fx);
    await startBob();
    const alice = await connect("alice", { timeout: 2000, jobPollInterval: 0 });
    const throwaway = generateCertificate({ name: "throwaway" });
    const fake = new Sealer(throwaway.secretKey);
    relay.onMessage = (m) => {
      if (m.header.k !== "req" || m.from !== alice.publicKey) return true;
      const jobId = newJobId(throwaway.publicKey);
      const [h, b] = forge(fake, alice.publicKey, { k: "res", to: alice.publicKey, re: m.header.id }, { t: "res", ts: Date.now(), st: "accepted", result: { job_id: jobId } });
      void relay.send(alice.publicKey, throwaway.publicKey, h, b);
      const [eh, eb] = forge(fake, alice.publicKey, { k: "evt", to: alice.publicKey }, { t: "evt", ts: Date.now(), job: jobId, st: "done", result: { done: "by the fake broker" } });
      setTimeout(() => void relay.send(alice.publicKey, throwaway.publicKey, eh, eb), 50);
      return false;
    };
    await rejectsWith(alice.start("bob", "long", { ms: 100 }), ForgedAnswerError, "bad_seal");
    await rejectsWith(alice.call("bob", "long", { ms: 100 }), ForgedAnswerError, "bad_seal");
  });

  it("a job event forged by an admitted peer for a real job: refused and counted; the job's real result arrives", async () => {
    fx = tempCerts("alice", "bob", "mallory");
    relay = await startRelay(fx);
    await startBob();
    const alice = await connect("alice", { timeout: 5000, jobPollInterval: 0 });
    const mallory = await rawPeer(fx, "mallory", relay.endpoint, { routingId: fx.key("mallory") });
    peers.push(mallory);
    const job = await alice.start("bob", "long", { ms: 500 });
    // Stamped as mallory, and (through the stand-in broker) stamped as bob: neither is sealed by bob.
    const [h, b] = mallory.frames(alice.publicKey, { t: "evt", ts: Date.now(), job: job.id, st: "done", result: { done: "by mallory" } }, { k: "evt" });
    await mallory.socket.send([h, b]);
    const [h2, b2] = mallory.frames(alice.publicKey, { t: "evt", ts: Date.now(), job: job.id, st: "done", result: { done: "by mallory" } }, { k: "evt" });
    await relay.send(alice.publicKey, fx.key("bob"), h2, b2);
    await waitFor(() => (alice.stats.dropped["bad_seal"] ?? 0) >= 2, 3000, "both forged events refused");
    expect(await job.result).toEqual({ done: "by bob" });
    expect(alice.stats.dropped["bad_seal"]).toBe(2);
  });
});
