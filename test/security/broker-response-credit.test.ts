/**
 * Finding 6 of the adversarial review of issue 10: the broker's response credit went to whoever
 * received a request, could be banked (up to 10,000), spent on a `res` to anyone, and earned by
 * sending requests to oneself. Now a credit is (responder, requester, request id), pays for one
 * `res` to that requester answering that id, and lapses at the request's deadline.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Broker } from "../../src/broker/broker.js";
import { decodeHeader, newId } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { startBroker } from "../support/mesh.js";
import { drain, rawPeer, type RawPeer } from "../support/raw-peer.js";
import { sleep } from "../support/wait.js";

let fx: CertFixture | undefined;
let broker: Broker | undefined;
const peers: RawPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await broker?.close();
  broker = undefined;
  fx?.cleanup();
  fx = undefined;
});

const response = () => ({ t: "res" as const, ts: Date.now(), st: "ok" as const, result: 1 });
const request = () => ({ t: "req" as const, ts: Date.now(), rid: newId(), tool: "x", args: {} });

const codes = async (peer: RawPeer) => (await drain(peer)).filter((f) => f[0]!.length === 0).map((f) => decodeHeader(f[1]!).code);

describe("response credits are bound to the request they answer", () => {
  it("requests to oneself earn nothing: a later burst of responses to a victim is refused past the bucket", async () => {
    fx = tempCerts("mallory", "victim");
    broker = await startBroker(fx, { rateLimit: { perSecond: 0.2, burst: 3 } });
    const mallory = await rawPeer(fx, "mallory", broker.endpoint);
    const victim = await rawPeer(fx, "victim", broker.endpoint);
    peers.push(mallory, victim);
    for (let i = 0; i < 3; i++) await mallory.socket.send(mallory.frames(fx.key("mallory"), request()));
    await drain(mallory); // its own requests, forwarded to itself
    for (let i = 0; i < 5; i++) await mallory.socket.send(mallory.frames(fx.key("victim"), response(), { re: newId() }));
    expect(await codes(mallory)).toEqual(["rate_limited", "rate_limited", "rate_limited", "rate_limited", "rate_limited"]);
    expect(await drain(victim)).toHaveLength(0);
  });

  it("a credit pays for one res to the requester answering that id, not to anyone else or any other id, and lapses at the deadline", async () => {
    fx = tempCerts("alice", "bob", "carol");
    broker = await startBroker(fx, { rateLimit: { perSecond: 0.2, burst: 2 }, clockSkew: 0 });
    const alice = await rawPeer(fx, "alice", broker.endpoint);
    const bob = await rawPeer(fx, "bob", broker.endpoint);
    const carol = await rawPeer(fx, "carol", broker.endpoint);
    peers.push(alice, bob, carol);
    // Bob spends his own bucket.
    for (let i = 0; i < 3; i++) await bob.socket.send(bob.frames(fx.key("alice"), request()));
    await drain(bob);
    await drain(alice);
    // Carol asks bob twice: one with a long deadline, one that lapses at once.
    await carol.socket.send(carol.frames(fx.key("bob"), request(), { exp: Date.now() + 30_000 }));
    await carol.socket.send(carol.frames(fx.key("bob"), request(), { exp: Date.now() + 300 }));
    const [long, short] = (await drain(bob)).map((f) => decodeHeader(f[1]!).id);
    expect(long && short).toBeTruthy();
    // Spent on alice (not the requester) or on another id: refused, and the credit stays.
    await bob.socket.send(bob.frames(fx.key("alice"), response(), { re: long! }));
    await bob.socket.send(bob.frames(fx.key("carol"), response(), { re: newId() }));
    expect(await codes(bob)).toEqual(["rate_limited", "rate_limited"]);
    // The matching answer passes, once.
    await bob.socket.send(bob.frames(fx.key("carol"), response(), { re: long! }));
    expect((await drain(carol)).map((f) => decodeHeader(f[1]!).k)).toEqual(["res"]);
    await bob.socket.send(bob.frames(fx.key("carol"), response(), { re: long! }));
    expect(await codes(bob)).toEqual(["rate_limited"]);
    // Past its request's deadline, a credit pays for nothing.
    await sleep(400);
    await bob.socket.send(bob.frames(fx.key("carol"), response(), { re: short! }));
    expect(await codes(bob)).toEqual(["rate_limited"]);
  });
});
