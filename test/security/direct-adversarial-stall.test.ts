/**
 * Adversarial review of direct links: a listener that accepts the link (it holds the callee's
 * key, so the handshake holds) and then stalls must cost a call one attempt at most, never the
 * call: PROTOCOL §18 says the attempt then goes through the broker with the same request id.
 * It did not whenever an attempt's own timeout (2 s for calls of 8 s and more, a quarter of the
 * call's timeout below) is not longer than linkTimeout (2 s): the attempt timed out before the
 * link was judged, was not taken for the link's failure, and every retry went down the same dead
 * link until the call failed `timeout`. (And where the link was judged just as the attempt's
 * time ran out, its LinkSilentError was thrown as the call's outcome, which is not retried.)
 */
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";

let fx: CertFixture | undefined;
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await Promise.resolve(stop()).catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

/**
 * Bob serves through the broker, but announces a listener of the test's: bob's key, answering
 * nothing. `onRequest` sees each request that reaches it (and may push something back first).
 */
async function stalled(aliceOptions: Parameters<typeof connectAgent>[3]) {
  fx = tempCerts("alice", "bob");
  const broker = await startBroker(fx);
  stops.push(() => broker.close());
  const bobCert = fx.certs["bob"]!;
  const hostile = new zmq.Router({ curveServer: true, curvePublicKey: bobCert.publicKey, curveSecretKey: bobCert.secretKey, linger: 0 });
  stops.push(() => hostile.close());
  await hostile.bind("tcp://127.0.0.1:0");
  const onLink = { requests: 0 };
  void (async () => {
    for await (const _ of hostile) onLink.requests++;
  })().catch(() => undefined);
  const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0", listenAnnounce: hostile.lastEndpoint! });
  stops.push(() => bob.close());
  const runs = { n: 0 };
  bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => {
    runs.n++;
    return { x };
  });
  const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, ...aliceOptions });
  stops.push(() => alice.close());
  // Calls through the broker until the link is up (the endpoint learned, the handshake done).
  // One call through the broker teaches alice the endpoint; the link comes up in the background.
  expect(await alice.call("bob", "echo", { x: 0 })).toEqual({ x: 0 });
  await waitFor(() => alice.direct.links?.opened === 1, 10_000, "the link up");
  expect(alice.direct.links!.sent).toBe(0);
  return { alice, runs, onLink };
}

async function callOnce(alice: Agent, runs: { n: number }, timeout: number): Promise<void> {
  const before = runs.n;
  expect(await alice.call("bob", "echo", { x: 7 }, { timeout })).toEqual({ x: 7 });
  expect(runs.n).toBe(before + 1);
}

describe("direct links: a listener that accepts and stalls (adversarial)", () => {
  it("with the default linkTimeout, a silent link costs one attempt: the retry goes through the broker, not down the same link", async () => {
    const { alice, runs, onLink } = await stalled({});
    const requests = onLink.requests;
    await callOnce(alice, runs, 8000); // attempts of 2 s, linkTimeout 2 s
    expect(onLink.requests).toBe(requests + 1);
    expect(alice.direct.links!.failures.timeout).toBe(1);
    expect(alice.direct.links!.open).toBe(0);
  });

  it("a call timeout shorter than 4 × linkTimeout (attempts of 1.25 s, linkTimeout 2 s): the call goes through the broker, it does not fail `timeout`", async () => {
    const { alice, runs, onLink } = await stalled({});
    const requests = onLink.requests;
    await callOnce(alice, runs, 5000);
    expect(onLink.requests).toBe(requests + 1);
    expect(alice.direct.links!.failures.timeout).toBe(1);
  });
});
