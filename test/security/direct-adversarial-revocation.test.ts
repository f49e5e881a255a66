/**
 * Adversarial review of direct links: a callee revoked at the broker must not keep being called
 * over a link a caller opened before the revocation (docs/SECURITY.md "Direct links").
 *
 * The attacker holds a callee's key (the reason it is revoked) and does not close when told: its
 * broker connection is cut (here: a TCP relay the test closes) so it never reads the broker's
 * `revoked` notice, and its listener stays up. Through the broker every request to it is now
 * refused `revoked`; a caller that kept its link used to send it every request (arguments and
 * tokens included) and take its answers, for as long as it kept calling.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
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

/** A TCP relay to `target` (tcp://host:port) that the test can cut: closes every connection and stops listening. */
async function relay(target: string): Promise<{ endpoint: string; cut: () => Promise<void> }> {
  const [host, port] = target.replace("tcp://", "").split(":") as [string, string];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), host);
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  const cut = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  stops.push(() => (server.listening ? cut() : undefined));
  return { endpoint: `tcp://127.0.0.1:${address.port}`, cut };
}

/** Bob listening, reaching the broker through a relay the test cuts; alice calling him until one call went over the link. */
async function linked(brokerOptions: Parameters<typeof startBroker>[1] = {}) {
  const broker = await startBroker(fx!, brokerOptions);
  stops.push(() => broker.close());
  const toBroker = await relay(broker.endpoint);
  const bob = await connectAgent(fx!, "bob", toBroker.endpoint, { listen: "tcp://127.0.0.1:0" });
  stops.push(() => bob.close());
  const runs = { n: 0 };
  bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => {
    runs.n++;
    return { x };
  });
  const alice = await connectAgent(fx!, "alice", broker.endpoint, { direct: true, linkTimeout: 500, linkBackoff: 1000, timeout: 2000 });
  stops.push(() => alice.close());
  await waitFor(async () => {
    await alice.call("bob", "echo", { x: 0 });
    return (alice.direct.links?.sent ?? 0) > 0;
  }, 10_000, "a call over the direct link");
  return { broker, toBroker, alice, runs };
}

describe("direct links after revocation (adversarial)", () => {
  it("a callee removed from the broker's allowlist that keeps its listener up is no longer called on the link opened before (`no_route`, as through the broker)", async () => {
    fx = tempCerts("alice", "bob");
    const { broker, toBroker, alice, runs } = await linked();
    await toBroker.cut();
    broker.reloadAllowlist([fx.key("alice")]);
    let refused: unknown;
    await waitFor(async () => {
      try {
        await alice.call("bob", "echo", { x: 1 }, { retry: false });
        return false;
      } catch (err) {
        refused = err;
        return true;
      }
    }, 10_000, "a call to the removed callee refused");
    expect(refused).toBeInstanceOf(RemoteError);
    expect((refused as RemoteError).code).toBe("no_route");
    expect(alice.direct.links?.failures.unconfirmed).toBeGreaterThanOrEqual(1);
    const ran = runs.n;
    for (let i = 0; i < 3; i++) await expect(alice.call("bob", "echo", { x: 2 }, { retry: false })).rejects.toMatchObject({ code: "no_route" });
    expect(runs.n).toBe(ran);
  });

  it("a callee revoked at the broker that keeps its listener up is no longer called on the link opened before (the broker's `revoked` decides, within linkBackoff)", async () => {
    fx = tempCerts("alice", "bob");
    const deny = join(fx.dir, "deny.json");
    writeFileSync(deny, JSON.stringify({ keys: [] }));
    const broker = await startBroker(fx, { denyList: deny });
    stops.push(() => broker.close());
    const toBroker = await relay(broker.endpoint);
    const bob = await connectAgent(fx, "bob", toBroker.endpoint, { listen: "tcp://127.0.0.1:0" });
    stops.push(() => bob.close());
    const runs = { n: 0 };
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => {
      runs.n++;
      return { x };
    });
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 500, linkBackoff: 1000, timeout: 2000 });
    stops.push(() => alice.close());
    await waitFor(async () => {
      await alice.call("bob", "echo", { x: 0 });
      return (alice.direct.links?.sent ?? 0) > 0;
    }, 10_000, "a call over the direct link");

    // Bob's key is stolen and revoked; the thief's process never hears the broker's notice.
    await toBroker.cut();
    writeFileSync(deny, JSON.stringify({ keys: [fx.key("bob")] }));
    expect(broker.reloadDenyList()).toBe(true);

    // Within linkBackoff (1 s here) the caller asks the broker again, is refused `revoked`, and
    // closes the link: from then on its calls end as every call to a revoked key does.
    let refused: unknown;
    await waitFor(async () => {
      try {
        await alice.call("bob", "echo", { x: 1 }, { retry: false });
        return false;
      } catch (err) {
        refused = err;
        return true;
      }
    }, 10_000, "a call to the revoked callee refused");
    expect(refused).toBeInstanceOf(RemoteError);
    expect((refused as RemoteError).code).toBe("revoked");
    expect(alice.direct.links?.failures.unconfirmed).toBeGreaterThanOrEqual(1);
    expect(alice.direct.links?.open).toBe(0);
    const ran = runs.n;
    const sent = alice.direct.links!.sent;
    for (let i = 0; i < 5; i++) await expect(alice.call("bob", "echo", { x: 2 }, { retry: false })).rejects.toMatchObject({ code: "revoked" });
    expect(runs.n).toBe(ran);
    expect(alice.direct.links!.sent).toBe(sent);
  });
});
