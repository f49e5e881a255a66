/**
 * What the caller cannot read fails at once, and every message it drops is counted: a poll
 * answer of the wrong shape ends the job with `bad_frame` (not `timeout` after jobLostAfter),
 * and unsolicited or malformed responses and events show up in `stats.dropped` by reason.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { decodeHeader, decodeInner, newId, type Request } from "../../src/wire/envelope.js";
import { ZmcpError } from "../../src/errors.js";
import { newJobId } from "../../src/agent/jobs.js";
import { rejectsWith } from "../support/assert.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";

/** A hand-written bob: answers each request with what `answer` returns for it. */
function serveRaw(bob: RawPeer, answer: (request: Request) => { st: "ok" | "accepted"; result: unknown }): { stop(): void } {
  let stopped = false;
  void (async () => {
    while (!stopped) {
      let frames: Buffer[];
      try {
        frames = await bob.receive(200);
      } catch {
        continue;
      }
      const [from, headerBytes, body] = frames as [Buffer, Buffer, Buffer];
      if (from.length === 0) continue;
      const peer = from.toString("latin1");
      const header = decodeHeader(headerBytes);
      const inner = decodeInner(bob.sealer.open(peer, body), headerBytes, 1 << 20);
      if (inner.t !== "req") continue;
      const [h, b] = bob.frames(peer, { t: "res", ts: Date.now(), ...answer(inner) }, { k: "res", re: header.id });
      await bob.socket.send([h, b]);
    }
  })();
  return { stop: () => (stopped = true) };
}

describe("trust: answers the caller cannot read, and dropped messages", () => {
  let fx: CertFixture;
  let broker: Broker;
  const agents: Agent[] = [];
  const peers: RawPeer[] = [];
  const stops: Array<() => void> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) stop();
    await Promise.all(agents.splice(0).map((a) => a.close()));
    for (const p of peers.splice(0)) p.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("a jobs/poll answer of the wrong shape fails the job at once with bad_frame (not timeout after jobLostAfter)", async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    const bob = await rawPeer(fx, "bob", broker.endpoint);
    peers.push(bob);
    const jobId = newJobId(fx.key("bob"));
    let polls = 0;
    stops.push(
      serveRaw(bob, (req) => {
        if (req.tool === "jobs/poll") {
          polls++;
          return { st: "ok", result: { status: "almost", percent: "12%" } }; // not a job state
        }
        return { st: "accepted", result: { job_id: jobId } };
      }).stop,
    );
    const alice = await connectAgent(fx, "alice", broker.endpoint, { jobPollInterval: 100, jobLostAfter: 60_000 });
    agents.push(alice);
    const job = await alice.start("bob", "long", {});
    expect(job.id).toBe(jobId);
    const err = await rejectsWith(job.result, ZmcpError, "bad_frame");
    expect(err.message).toContain("jobs/poll");
    expect(polls).toBe(1);
    expect(alice.stats.dropped["invalid_answer"]).toBe(1);
    // The same through poll() itself: a typed error, not a ZodError.
    await rejectsWith(alice.poll("bob", jobId), ZmcpError, "bad_frame");
  });

  it("a jobs/poll answer about another job fails the job with bad_frame", async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    const bob = await rawPeer(fx, "bob", broker.endpoint);
    peers.push(bob);
    const jobId = newJobId(fx.key("bob"));
    stops.push(
      serveRaw(bob, (req) =>
        req.tool === "jobs/poll" ? { st: "ok", result: { job_id: newJobId(fx.key("bob")), status: "done", result: 1 } } : { st: "accepted", result: { job_id: jobId } },
      ).stop,
    );
    const alice = await connectAgent(fx, "alice", broker.endpoint, { jobPollInterval: 100, jobLostAfter: 60_000 });
    agents.push(alice);
    const job = await alice.start("bob", "long", {});
    await rejectsWith(job.result, ZmcpError, "bad_frame");
  });

  it("an `accepted` answer without a job id is a typed bad_frame", async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    const bob = await rawPeer(fx, "bob", broker.endpoint);
    peers.push(bob);
    stops.push(serveRaw(bob, () => ({ st: "accepted", result: { id: 7 } })).stop);
    const alice = await connectAgent(fx, "alice", broker.endpoint);
    agents.push(alice);
    await rejectsWith(alice.start("bob", "long", {}), ZmcpError, "bad_frame");
    await rejectsWith(alice.call("bob", "long", {}), ZmcpError, "bad_frame");
  });

  it("every message the caller drops is counted by reason", async () => {
    fx = tempCerts("alice", "bob", "mallory");
    broker = await startBroker(fx);
    const alice = await connectAgent(fx, "alice", broker.endpoint, { jobPollInterval: 0 });
    agents.push(alice);
    const mallory = await rawPeer(fx, "mallory", broker.endpoint);
    peers.push(mallory);
    const to = alice.publicKey;
    // A response to nothing pending, and an event for no job of alice's.
    await mallory.socket.send(mallory.frames(to, { t: "res", ts: Date.now(), st: "ok", result: 1 }, { k: "res", re: newId() }));
    await mallory.socket.send(mallory.frames(to, { t: "evt", ts: Date.now(), job: newJobId(fx.key("mallory")), st: "done", result: 1 }, { k: "evt" }));
    await waitFor(() => (alice.stats.dropped["unsolicited"] ?? 0) >= 2, 3000, "two drops");
    // Once alice runs a job on bob, an event sealed by mallory is refused as forged, and one
    // whose sealed kind is not its header's kind is refused after opening.
    const bob = await connectAgent(fx, "bob", broker.endpoint);
    agents.push(bob);
    bob.tool("long", { input: z.object({}), job: true }, () => new Promise((r) => setTimeout(() => r("done"), 400)));
    const job = await alice.start("bob", "long", {});
    await mallory.socket.send(mallory.frames(to, { t: "evt", ts: Date.now(), job: job.id, st: "done", result: 1 }, { k: "evt" }));
    await waitFor(() => alice.stats.dropped["bad_seal"] === 1, 3000, "forged event");
    expect(await job.result).toBe("done");
    expect(alice.stats.dropped).toEqual({ unsolicited: 2, bad_seal: 1 });
    const text = await alice.metrics.metrics();
    expect(text).toContain('zmcp_agent_messages_dropped_total{reason="unsolicited"} 2');
    expect(text).toContain('zmcp_agent_messages_dropped_total{reason="bad_seal"} 1');
  });
});
