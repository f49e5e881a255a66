/**
 * Adversarial review of direct links: what a callee may push down a link its caller dialled.
 * PROTOCOL §18: the link carries the answers to the caller's requests and the events of the
 * jobs they started. A callee (here: a listener holding the callee's key, as a hostile callee
 * is) that pushed a publication down it had it handed to the caller's subscriptions, past the
 * broker: past its subscription directory, its rate limit and its deny list (a publisher revoked
 * there still reached every caller holding a link to it).
 */
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { z } from "zod";
import { encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { wireNow } from "../../src/wire/clock.js";
import { PUBLICATION_LIFETIME_MS } from "../../src/agent/publisher.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { PskSealer, pskEvents } from "../support/events-psk.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { sleep, waitFor } from "../support/wait.js";

let fx: CertFixture | undefined;
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await Promise.resolve(stop()).catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

describe("direct links: a link the caller dialled carries answers and job events only (adversarial)", () => {
  it("a publication pushed down the link by the callee's listener is dropped, not handed to the caller's subscription; the same publication through the broker is delivered", async () => {
    fx = tempCerts("alice", "bob");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    // The listener alice will dial: bob's key (so the handshake holds), but a raw socket of the test's.
    const bobCert = fx.certs["bob"]!;
    const hostile = new zmq.Router({ curveServer: true, curvePublicKey: bobCert.publicKey, curveSecretKey: bobCert.secretKey, linger: 0 });
    stops.push(() => hostile.close());
    await hostile.bind("tcp://127.0.0.1:0");
    const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0", listenAnnounce: hostile.lastEndpoint!, events: pskEvents() });
    stops.push(() => bob.close());
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }));
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 1000, timeout: 20_000, events: pskEvents() });
    stops.push(() => alice.close());
    const seen: unknown[] = [];
    await alice.subscribe("news.>", (p) => void seen.push(p.data));

    const sealer = new PskSealer({ publicKey: bobCert.publicKey, call: () => Promise.resolve(undefined), signal: new AbortController().signal });
    const pushed = (async () => {
      // The first request alice sends on the link: push a publication back to her routing id.
      const [route] = await hostile.receive();
      const header: Header = { v: PROTOCOL_VERSION, k: "pub", id: newId(), to: "news.pushed", exp: wireNow() + PUBLICATION_LIFETIME_MS, sq: 1 };
      const headerBytes = encodeHeader(header);
      await hostile.send([route!, headerBytes, await sealer.seal("news.pushed", headerBytes, { pushed: true })]);
    })();
    // Calls go through the broker until the link is up; the first one on the link is answered
    // through the broker once the link stays silent (the hostile listener answers nothing).
    await waitFor(async () => {
      await alice.call("bob", "echo", { x: 1 }, { retry: { attemptTimeout: 10_000 } });
      return (alice.direct.links?.sent ?? 0) > 0;
    }, 30_000, "a call on the link");
    await pushed;
    await bob.publish("news.broker", { broker: true }); // the control: the subscription works
    await waitFor(() => seen.some((d) => (d as { broker?: boolean }).broker), 5000, "the publication through the broker");
    await sleep(200);
    expect(seen).toEqual([{ broker: true }]);
  });
});
