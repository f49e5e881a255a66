/**
 * Adversarial review of direct links: a listener's certificate directory (`listenAllow`, by
 * default `certs`) must not stay frozen at the agent's start. docs/SECURITY.md §6 retires a key
 * by removing its `.key` file from the allowlist (the broker re-reads it); a listener that read
 * it once admitted that key, on its open link and at every new handshake, until it restarted.
 */
import { unlinkSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { z } from "zod";
import { RemoteError } from "../../src/errors.js";
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

/** A raw CURVE DEALER to the listener as `name`: the handshake's outcome. */
async function handshake(name: string, serverKey: string, endpoint: string): Promise<string> {
  const cert = fx!.certs[name]!;
  const socket = new zmq.Dealer({ curveServerKey: serverKey, curvePublicKey: cert.publicKey, curveSecretKey: cert.secretKey, linger: 0 });
  stops.push(() => socket.close());
  const outcome = (async () => {
    for await (const event of socket.events) if (event.type === "handshake" || event.type.startsWith("handshake:error")) return event.type;
    return "closed";
  })();
  socket.connect(endpoint);
  return outcome;
}

describe("direct links: the listener's allowlist follows its certificate directory (adversarial)", () => {
  it("a key whose certificate is removed from the directory is refused `forbidden` on its open link and at its next handshake", async () => {
    fx = tempCerts("alice", "bob", "carol");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0" }); // listenAllow: certs
    stops.push(() => bob.close());
    const runs = { n: 0 };
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => {
      runs.n++;
      return { x };
    });
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 500 });
    stops.push(() => alice.close());
    await waitFor(async () => {
      await alice.call("bob", "echo", { x: 0 });
      return (alice.direct.links?.sent ?? 0) > 0;
    }, 10_000, "a call over the direct link");

    unlinkSync(join(fx.dir, "alice.key")); // alice retired (the broker's copy is not reloaded here: the listener alone is judged)

    // Case 1, the link opened before: every request refused by the listener, before the tool.
    const refused = await waitFor(
      () => alice.call("bob", "echo", { x: 1 }, { retry: false }).then(() => undefined, (err: unknown) => err),
      10_000,
      "a refusal after the directory changed",
    );
    expect(refused).toBeInstanceOf(RemoteError);
    expect(refused).toMatchObject({ code: "forbidden", origin: "peer" });
    const before = runs.n;
    await expect(alice.call("bob", "echo", { x: 1 }, { retry: false })).rejects.toMatchObject({ code: "forbidden", origin: "peer" });
    expect(runs.n).toBe(before);
    // Case 2, a new handshake with the removed key: refused; a key still there: admitted.
    expect(await handshake("alice", fx.key("bob"), bob.direct.endpoint!)).toBe("handshake:error:auth");
    expect(await handshake("carol", fx.key("bob"), bob.direct.endpoint!)).toBe("handshake");
  });
});
