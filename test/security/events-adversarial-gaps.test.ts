/**
 * Adversarial review of publish-subscribe: a publisher blinding other publishers' gap counts.
 *
 * A subscriber counts a jump in a publisher's sequence number from n to m as m − n − 1 missed,
 * and a number going back as a restart. A member allowed to publish on a topic chooses its own
 * numbers (the seal binds them, but it seals them itself): 1, then 2^53 − 1, back to 1 (a
 * "restart", no gap), again 2^53 − 1... Four jumps put the subscription's count for the topic,
 * its total and the agent's `publicationGaps` near 2^55, where a double no longer changes when
 * 1 is added: every later loss of every honest publisher went uncounted (lost silently), and the
 * metric was garbage. A jump now counts at most 100,000,000 (more than any real outage between
 * two publications of one publisher), so the counts stay exact for ages of such lies.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Subscription } from "../../src/agent/subscriber.js";
import { encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { PskSealer, pskEvents } from "../support/events-psk.js";
import { connectAgent } from "../support/mesh.js";
import { startBrokerProcess, type BrokerProcess } from "../support/process.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { waitFor } from "../support/wait.js";

const MAX_JUMP = 100_000_000;

describe("events: one publisher's sequence numbers cannot blind the gap counts", () => {
  let fx: CertFixture | undefined;
  let broker: BrokerProcess | undefined;
  let bob: Agent | undefined;
  const raws: RawPeer[] = [];
  afterEach(async () => {
    raws.splice(0).forEach((r) => r.close());
    await bob?.close();
    await broker?.stop("SIGKILL");
    fx?.cleanup();
    fx = broker = bob = undefined;
  });

  /** A publisher whose numbers the test chooses, sealing as itself (a member with pub:). */
  async function publisher(name: string): Promise<(topic: string, sq: number) => Promise<void>> {
    const raw = await rawPeer(fx!, name, broker!.endpoint);
    raws.push(raw);
    const sealer = new PskSealer({ publicKey: fx!.key(name), call: () => Promise.resolve(undefined), signal: new AbortController().signal });
    return async (topic, sq) => {
      const header: Header = { v: PROTOCOL_VERSION, k: "pub", id: newId(), to: topic, exp: Date.now() + 60_000, sq };
      const h = encodeHeader(header);
      await raw.socket.send([h, await sealer.seal(topic, h, { sq })]);
    };
  }

  async function setup(): Promise<{ sub: Subscription; seen: () => number; mallory: Awaited<ReturnType<typeof publisher>>; alice: Awaited<ReturnType<typeof publisher>> }> {
    fx = tempCerts("alice", "bob", "mallory");
    broker = await startBrokerProcess(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint, { events: pskEvents() });
    let seen = 0;
    const sub = await bob.subscribe("docs.>", () => void seen++);
    const mallory = await publisher("mallory");
    const alice = await publisher("alice");
    // Mallory: 1, 2^53 − 1, back to 1 (a restart), 2^53 − 1, four times over.
    let sent = 0;
    for (let round = 0; round < 4; round++) {
      await mallory("docs.a", 1);
      await mallory("docs.a", Number.MAX_SAFE_INTEGER);
      sent += 2;
      await waitFor(() => seen >= sent || undefined, 10_000, "mallory's publications");
    }
    return { sub, seen: () => seen, mallory, alice };
  }

  it("an honest publisher's loss on the same topic is still counted, exactly", async () => {
    const { sub, seen, alice } = await setup();
    const before = sub.gaps;
    // Alice publishes 1 then 3: one publication lost between.
    await alice("docs.a", 1);
    await alice("docs.a", 3);
    await waitFor(() => seen() >= 10 || undefined, 10_000, "alice's publications");
    expect(sub.gaps.topics["docs.a"]! - before.topics["docs.a"]!).toBe(1);
    expect(sub.gaps.total - before.total).toBe(1);
    // Mallory's lies counted at most MAX_JUMP each.
    expect(before.topics["docs.a"]).toBe(4 * MAX_JUMP);
  });

  it("an honest publisher's loss on another topic still moves the subscription's total and the agent's count, exactly", async () => {
    const { sub, alice } = await setup();
    const before = { total: sub.gaps.total, agent: bob!.stats.publicationGaps };
    await alice("docs.b", 1);
    await alice("docs.b", 3);
    await waitFor(() => sub.delivered >= 10 || undefined, 10_000, "alice's publications");
    expect(sub.gaps.topics["docs.b"]).toBe(1);
    expect(sub.gaps.total - before.total).toBe(1);
    expect(bob!.stats.publicationGaps - before.agent).toBe(1);
  });
});
