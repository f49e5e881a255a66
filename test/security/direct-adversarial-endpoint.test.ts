/**
 * Adversarial review of direct links: what a callee's `link/endpoint` answer may make a caller
 * do. Documented: a caller dials the `tcp://` or `ipc://` address a callee names. Not
 * documented, and not wanted: libzmq's connect syntax `tcp://SOURCE;DESTINATION` also lets the
 * callee choose the caller's own side of the connection (the local address and port it binds
 * before connecting). A caller must dial only a plain destination.
 */
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { sleep } from "../support/wait.js";

let fx: CertFixture | undefined;
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await Promise.resolve(stop()).catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Bob listens on a fixed port and announces `announce(port)`; alice calls him a while. */
async function announced(announce: (port: number) => Promise<string>) {
  fx = tempCerts("alice", "bob");
  const broker = await startBroker(fx);
  stops.push(() => broker.close());
  const port = await freePort();
  const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: `tcp://127.0.0.1:${port}`, listenAnnounce: await announce(port) });
  stops.push(() => bob.close());
  bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }));
  const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 500 });
  stops.push(() => alice.close());
  // Long enough for the endpoint to be learned and a link to be dialled and handshaken (a plain
  // endpoint takes one or two calls, test/integration/direct-links.test.ts).
  for (let i = 0; i < 20; i++) {
    expect(await alice.call("bob", "echo", { x: i })).toEqual({ x: i });
    await sleep(25);
  }
  return alice;
}

describe("direct links: the endpoint a callee announces (adversarial)", () => {
  it("an endpoint naming the caller's source address and port (`tcp://SRC:PORT;DST`) is not dialled: calls go through the broker", async () => {
    const alice = await announced(async (port) => `tcp://127.0.0.1:${await freePort()};127.0.0.1:${port}`);
    expect(alice.direct.links).toMatchObject({ opened: 0, sent: 0, open: 0 });
  });

  it("an endpoint binding a port on every interface of the caller (`tcp://0.0.0.0:PORT;DST`) is not dialled either", async () => {
    const alice = await announced(async (port) => `tcp://0.0.0.0:${await freePort()};127.0.0.1:${port}`);
    expect(alice.direct.links).toMatchObject({ opened: 0, sent: 0, open: 0 });
  });

  it("the plain endpoint, for comparison, is dialled and used", async () => {
    const alice = await announced(async (port) => `tcp://127.0.0.1:${port}`);
    expect(alice.direct.links!.opened).toBe(1);
    expect(alice.direct.links!.sent).toBeGreaterThan(0);
  });
});
