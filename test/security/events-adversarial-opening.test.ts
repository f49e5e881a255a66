/**
 * Adversarial review of publish-subscribe: publications held while the sealer opens them.
 *
 * A subscriber opens publications side by side and delivers them in arrival order, so each
 * publication waiting for its sealer keeps its body. That stage was bounded by count only
 * (10,000 per agent), not by bytes: 10,000 bodies of up to 1 MiB, 10 GB. Any admitted key
 * (no token, no topic key) fills it while the key distributor is slow or out of reach: a junk
 * publication whose credential no known distributor key signed makes the group-key sealer ask
 * the distributor for its signing key, and every later junk publication waits for that one
 * refresh (up to `attempts` × `fetchTimeout`). The stage is now bounded in bytes too (64 MiB
 * of sealed sizes per agent, like a subscription's own queue): past it, publications are
 * dropped `backlog` (and seen as a jump by the next one of their publisher).
 *
 * The distributor here answers subscribe checks (patterns) and never answers a topic key,
 * as an overloaded one would.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { encodeBody, encodeCredential } from "../../src/events/format.js";
import { groupKeys } from "../../src/events/group-keys.js";
import { signing } from "../../src/events/signing.js";
import { isTopic } from "../../src/events/topics.js";
import { encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { z85Decode } from "../../src/wire/z85.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { startBrokerProcess, type BrokerProcess } from "../support/process.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { sleep, waitFor } from "../support/wait.js";

const MiB = 1024 * 1024;

describe("events: bodies waiting for the sealer are bounded in bytes", () => {
  let fx: CertFixture | undefined;
  let broker: BrokerProcess | undefined;
  const agents: Agent[] = [];
  let mallory: RawPeer | undefined;
  afterEach(async () => {
    mallory?.close();
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker?.stop("SIGKILL");
    fx?.cleanup();
    fx = broker = mallory = undefined;
  });

  async function mesh(): Promise<Agent> {
    fx = tempCerts("keys", "bob", "mallory");
    broker = await startBrokerProcess(fx);
    const keys = await connectAgent(fx, "keys", broker.endpoint);
    agents.push(keys);
    const signer = signing.generate().publicKey;
    const hung: Array<() => void> = [];
    keys.tool("events/key", { description: "a distributor that never hands out a topic's key", input: z.object({ topic: z.string(), access: z.string() }).loose(), scope: null }, async ({ topic }) => {
      if (isTopic(topic)) await new Promise<void>((resolve) => hung.push(resolve));
      const now = Date.now();
      return { topic, current: now, until: now + 60_000, ttl: 60_000, signer };
    });
    const bob = await connectAgent(fx, "bob", broker.endpoint, { events: groupKeys({ distributor: "keys", fetchTimeout: 30_000, attempts: 1 }) });
    agents.push(bob);
    await bob.subscribe("docs.>", () => undefined);
    mallory = await rawPeer(fx, "mallory", broker.endpoint);
    return bob;
  }

  /** A publication any key can make: a credential signed by nobody the subscriber knows. */
  function junk(topic: string, bytes: number, sq: number): [Uint8Array, Uint8Array] {
    const forger = signing.generate();
    const epoch = Date.now();
    const credential = encodeCredential({ epoch, expires: Date.now() + 60_000, member: z85Decode(fx!.key("mallory")), signer: forger.publicKey, topic }, (m) => forger.sign(m));
    const body = encodeBody({ epoch, credential, signature: new Uint8Array(64), box: new Uint8Array(bytes) });
    const header: Header = { v: PROTOCOL_VERSION, k: "pub", id: newId(), to: topic, exp: Date.now() + 60_000, sq };
    return [encodeHeader(header), body];
  }

  it("large junk publications past 64 MiB waiting are dropped backlog, not held", async () => {
    const bob = await mesh();
    // 100 of 900 KiB: 88 MiB, far under the 10,000 count bound.
    for (let sq = 1; sq <= 100; sq++) {
      await mallory!.socket.send(junk("docs.junk", 900 * 1024, sq));
      if (sq % 10 === 0) await sleep(20); // let the broker's copies reach bob rather than be dropped busy
    }
    const dropped = await waitFor(() => ((bob.stats.dropped.backlog ?? 0) >= 20 ? bob.stats.dropped.backlog : undefined), 20_000, "backlog drops");
    expect(dropped).toBeLessThanOrEqual(100 - Math.floor((64 * MiB) / (901 * 1024)));
  });

  it("small junk within the count bound is held as before; large junk after it is dropped by bytes, whatever the count", async () => {
    const bob = await mesh();
    // The count bound holds as before: 64 MiB is never reached by small bodies.
    for (let sq = 1; sq <= 300; sq++) await mallory!.socket.send(junk("docs.small", 64, sq));
    await sleep(500);
    expect(bob.stats.dropped.backlog ?? 0).toBe(0);
    // Then large ones: dropped backlog once the bytes bound is reached, whatever the count.
    for (let sq = 301; sq <= 400; sq++) {
      await mallory!.socket.send(junk("docs.small", 900 * 1024, sq));
      if (sq % 10 === 0) await sleep(20);
    }
    await waitFor(() => (bob.stats.dropped.backlog ?? 0) >= 20 || undefined, 20_000, "backlog drops");
  });
});
