/**
 * Adversarial review of publish-subscribe: a publisher evicting others' sequence positions.
 *
 * A subscription remembers the last sequence number of each (publisher, topic) it saw, at most
 * 10,000, least recently used dropped first; a stream it no longer remembers starts its count
 * again, so the jump across what was lost is not counted. A member allowed to publish on the
 * topics a subscription covers (`pub:docs.>` for a `docs.>` subscriber) published once on
 * 10,000 fresh topics and so evicted every honest publisher's position: their next losses went
 * uncounted (silently). One publisher now holds at most half the positions, evicting its own
 * oldest past that, so it can no longer push out the others'.
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
import { sleep, waitFor } from "../support/wait.js";

describe("events: one publisher cannot evict others' sequence positions", () => {
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

  async function publisher(name: string): Promise<(topic: string, sq: number) => Promise<void>> {
    const raw = await rawPeer(fx!, name, broker!.endpoint);
    raws.push(raw);
    const sealer = new PskSealer({ publicKey: fx!.key(name), call: () => Promise.resolve(undefined), signal: new AbortController().signal });
    return async (topic, sq) => {
      const header: Header = { v: PROTOCOL_VERSION, k: "pub", id: newId(), to: topic, exp: Date.now() + 60_000, sq };
      const h = encodeHeader(header);
      await raw.socket.send([h, await sealer.seal(topic, h, sq)]);
    };
  }

  it("after another publisher's 10,000 fresh topics, two honest publishers' losses and the flooder's latest are still counted", async () => {
    fx = tempCerts("alice", "carol", "bob", "mallory");
    broker = await startBrokerProcess(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint, { events: pskEvents() });
    let seen = 0;
    const sub: Subscription = await bob.subscribe("docs.>", () => void seen++);
    const [alice, carol, mallory] = [await publisher("alice"), await publisher("carol"), await publisher("mallory")];
    await alice("docs.a", 1);
    await carol("docs.c", 1);
    await waitFor(() => seen >= 2 || undefined, 10_000);
    // Paced so that the broker's copies are queued, not dropped busy (a copy dropped now and
    // then changes nothing here: a first number on a fresh topic counts no gap).
    for (let i = 0; i < 10_000; i++) {
      await mallory(`docs.m${i}`, 1);
      if (i % 25 === 24) await waitFor(() => seen >= i + 3 - 50 || undefined, 20_000, "mallory's publications");
    }
    await waitFor(() => seen >= 10_002 - 50 || undefined, 20_000, "mallory's publications");
    await sleep(300);
    const base = seen;
    // Each honest publisher lost one publication (2 is missing), and so did mallory on its latest topic.
    await alice("docs.a", 3);
    await carol("docs.c", 3);
    await mallory("docs.m9999", 3);
    await waitFor(() => seen >= base + 3 || undefined, 10_000);
    expect(sub.gaps.topics).toMatchObject({ "docs.a": 1, "docs.c": 1, "docs.m9999": 1 });
    expect(sub.gaps.total).toBe(3);
  }, 120_000);
});
