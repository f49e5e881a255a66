/**
 * Events end to end (issue 15): the fan-out and the group keys together, through publish() and
 * subscribe() on agents whose `events` is `groupKeys({ distributor })`, a key distributor agent
 * (`serveEventKeys`) checking capability tokens with `pub:`/`sub:` scopes, and a real
 * `zmq-broker` process. What the broker forwards is captured where a test must show what a
 * member (or the broker) holds: by a raw subscriber, or by a recording wrapper around a member's
 * own sealer (the bytes its agent received from the broker, as they were).
 */
import { decode, encode } from "@msgpack/msgpack";
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Publication } from "../../src/agent/subscriber.js";
import { RemoteError } from "../../src/errors.js";
import { concat, contextDigest, encodeBody, encodeCredential, parseBody, signedMessage } from "../../src/events/format.js";
import { groupKeys, type GroupKeySealer } from "../../src/events/group-keys.js";
import { KeyAnswerSchema } from "../../src/events/key-protocol.js";
import type { EventSealerFactory } from "../../src/events/sealer.js";
import { signing } from "../../src/events/signing.js";
import { metricSum } from "../../src/support/metrics.js";
import { box, NONCE_BYTES, SEAL_OVERHEAD } from "../../src/wire/box.js";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { randomBytesPooled } from "../../src/wire/random.js";
import { z85Decode } from "../../src/wire/z85.js";
import { rejectsWith } from "../support/assert.js";
import { eventMesh, type EventMesh } from "../support/event-keys.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { sleep, waitFor } from "../support/wait.js";

/** A publication as a member's agent received it from the broker, before its sealer opened it. */
interface Received {
  topic: string;
  header: Uint8Array;
  body: Uint8Array;
  from: string;
}

/** A member's real group-key sealer, with the sealer kept for the test and what it was asked to open recorded. */
interface Recorder {
  sealer: GroupKeySealer | undefined;
  received: Received[];
  events: EventSealerFactory;
}

function recorder(): Recorder {
  const r: Recorder = {
    sealer: undefined,
    received: [],
    events: (context) => {
      const inner = groupKeys({ distributor: "keys", fetchTimeout: 3000 })(context) as GroupKeySealer;
      r.sealer = inner;
      return {
        seal: (topic, header, data) => inner.seal(topic, header, data),
        open: (topic, header, body, from) => {
          r.received.push({ topic, header: header.slice(), body: body.slice(), from });
          return inner.open(topic, header, body, from);
        },
        join: (pattern) => inner.join(pattern),
        leave: (pattern) => inner.leave(pattern),
        close: () => inner.close(),
      };
    },
  };
  return r;
}

/** The plain group-key sealer factory, as an application would write it. */
const events = groupKeys({ distributor: "keys", fetchTimeout: 3000 });

/** A raw peer that subscribes to `pattern` with a heartbeat (no token, no keys: what the broker itself could see). */
async function rawSubscriber(mesh: EventMesh, name: string, pattern: string): Promise<RawPeer> {
  const raw = await rawPeer(mesh.fx, name, mesh.broker.endpoint);
  const hb = { v: PROTOCOL_VERSION, k: "hb" as const, id: newId(), to: "", exp: Date.now() + 5000 };
  await raw.socket.send([encodeHeader(hb), encode({ svc: [], sub: [pattern] })]);
  const ack = await raw.receive(5000);
  expect(decodeHeader(ack[1]!).k).toBe("ack");
  return raw;
}

describe("events end to end: publish/subscribe with group keys, a distributor and tokens, through a broker process", () => {
  let mesh: EventMesh | undefined;
  const raws: RawPeer[] = [];
  afterEach(async () => {
    raws.splice(0).forEach((r) => r.close());
    await mesh?.close();
    mesh = undefined;
  });

  it("fans out to 50 subscriptions (10 agents) with * and > patterns: each gets exactly its matching publications, once, opened with the topic's key", async () => {
    const names = Array.from({ length: 10 }, (_, i) => `sub${i}`);
    mesh = await eventMesh(["alice", ...names]);
    // Each pattern with the topics it must receive, written out by hand (not by the matcher under test).
    const expected: Record<string, string[]> = {
      "docs.*": ["docs.indexed", "docs.deleted"],
      "docs.>": ["docs.indexed", "docs.deleted", "docs.a.v2", "docs.a.b.c"],
      "docs.indexed": ["docs.indexed"],
      "docs.*.v2": ["docs.a.v2"],
      "docs.a.>": ["docs.a.v2", "docs.a.b.c"],
      "docs.*.*": ["docs.a.v2"],
    };
    const patterns = Object.keys(expected);
    const topics = ["docs.indexed", "docs.deleted", "docs.a.v2", "docs.a.b.c", "prices.eur"];
    const alice = await mesh.member("alice", "pub:docs.> pub:prices.*", { events });
    const subs: Array<{ agent: number; pattern: string; got: string[] }> = [];
    const agents: Agent[] = [];
    for (const [i, name] of names.entries()) {
      const agent = await mesh.member(name, "sub:docs.>", { events });
      agents.push(agent);
      for (let j = 0; j < 5; j++) {
        const sub = { agent: i, pattern: patterns[(i + j) % patterns.length]!, got: [] as string[] };
        subs.push(sub);
        await agent.subscribe(sub.pattern, (event) => void sub.got.push(`${event.topic}|${String((event.data as { n: number }).n)}|${event.from === alice.publicKey}|${event.epoch}`));
      }
    }
    expect(subs).toHaveLength(50);
    const epoch = mesh.distributor.epoch;
    for (const [n, topic] of topics.entries()) await alice.publish(topic, { n });
    const wanted = subs.reduce((sum, s) => sum + expected[s.pattern]!.length, 0);
    await waitFor(() => subs.reduce((sum, s) => sum + s.got.length, 0) >= wanted, 20_000, `${wanted} deliveries`);
    await sleep(300); // anything extra (a duplicate, a wrong match) would land now
    for (const sub of subs) {
      const want = expected[sub.pattern]!.map((t) => `${t}|${topics.indexOf(t)}|true|${epoch}`);
      expect(sub.got.sort(), `subscriber ${sub.agent} on ${sub.pattern}`).toEqual(want.sort());
    }
    const metrics = await mesh.broker.scrape();
    expect(metricSum(metrics, "zmcp_broker_publications_total")).toBe(topics.length);
    expect(metricSum(metrics, "zmcp_broker_subscribers")).toBe(10);
    // Every agent opened each copy once (one copy per key, however many of its patterns matched) and dropped nothing.
    for (const agent of agents) {
      expect(agent.stats.dropped).toEqual({});
      expect(agent.stats.publicationGaps).toBe(0);
    }
  }, 90_000);

  it("a removed member stops receiving events, and the key it kept does not open what is published after its removal (bytes it still gets from the broker)", async () => {
    mesh = await eventMesh(["alice", "bob", "eve"], { leaseMs: 300 });
    const alice = await mesh.member("alice", "pub:docs.>", { events });
    const bob = await mesh.member("bob", "sub:docs.>", { events });
    const eveRec = recorder();
    const eve = await mesh.member("eve", "sub:docs.>", { events: eveRec.events });
    const bobGot: Publication[] = [];
    const eveGot: Publication[] = [];
    await bob.subscribe("docs.>", (e) => void bobGot.push(e));
    await eve.subscribe("docs.>", (e) => void eveGot.push(e));
    // Eve keeps the epoch key itself, as a member that hoards keys would.
    const kept = KeyAnswerSchema.parse(await eve.call("keys", "events/key", { topic: "docs.plans", access: "sub" }));
    await alice.publish("docs.plans", { n: 0 });
    await waitFor(() => bobGot.length === 1 && eveGot.length === 1, 5000, "the publication before the removal, to both");
    expect(eveGot[0]!.data).toEqual({ n: 0 });

    const removedAt = mesh.distributor.remove("eve");
    expect(removedAt).toBeGreaterThan(kept.epoch!);
    // Alice moves to the new epoch at her next renewal (within one lease): publish until bob has five in it.
    const after = () => bobGot.filter((e) => e.epoch >= removedAt);
    for (let n = 1; after().length < 5; n++) {
      if (n > 500) throw new Error("alice never published in the epoch after the removal");
      await alice.publish("docs.plans", { n });
      await sleep(20);
    }
    const published = after().at(-1)!.sequence;
    await waitFor(() => eveRec.received.length >= published, 5000, "eve's agent to receive every publication from the broker");
    await sleep(200);
    // The broker still sends them to her (she is still subscribed): bytes she holds...
    const sealedAfter = eveRec.received.filter((r) => parseBody(r.body, SEAL_OVERHEAD).epoch >= removedAt);
    expect(sealedAfter.length).toBeGreaterThanOrEqual(5);
    for (const r of sealedAfter) {
      // ...that the key she kept does not open,
      expect(box.open(kept.key!, parseBody(r.body, SEAL_OVERHEAD).box)).toBeUndefined();
      // ...nor her own sealer, which the distributor now refuses every key.
      await rejectsWith(eveRec.sealer!.open(r.topic, r.header, r.body, r.from), RemoteError, "revoked");
    }
    // Her handler got nothing sealed after the removal; bob got all of it; eve's agent counted the drops.
    expect(eveGot.filter((e) => e.epoch >= removedAt)).toEqual([]);
    expect(after().length).toBe(sealedAfter.length);
    expect(eve.stats.dropped["revoked" as keyof typeof eve.stats.dropped]).toBe(sealedAfter.length);
    expect(bob.stats.publicationGaps).toBe(0);
  }, 60_000);

  it("a late joiner cannot open publications of earlier epochs (expired); it receives those of the current one", async () => {
    mesh = await eventMesh(["alice", "bob", "carol"], { graceMs: 0, leaseMs: 300 });
    const alice = await mesh.member("alice", "pub:docs.>", { events });
    const bobRec = recorder();
    const bob = await mesh.member("bob", "sub:docs.>", { events: bobRec.events });
    await bob.subscribe("docs.>", () => undefined);
    await alice.publish("docs.a", "before carol");
    await waitFor(() => bobRec.received.length === 1, 5000, "the first publication, recorded at bob");
    const old = bobRec.received[0]!;
    const oldEpoch = parseBody(old.body, SEAL_OVERHEAD).epoch;

    const current = mesh.distributor.rotate();
    const carolRec = recorder();
    const carol = await mesh.member("carol", "sub:docs.>", { events: carolRec.events });
    const carolGot: Publication[] = [];
    await carol.subscribe("docs.>", (e) => void carolGot.push(e));
    await rejectsWith(carolRec.sealer!.open(old.topic, old.header, old.body, old.from), RemoteError, "expired");
    // Alice keeps sealing in the old epoch until her renewal: carol drops those (expired), then gets the current epoch's.
    for (let n = 0; carolGot.length < 3; n++) {
      if (n > 500) throw new Error("carol never received a publication of the current epoch");
      await alice.publish("docs.a", { n });
      await sleep(20);
    }
    expect(carolGot.every((e) => e.epoch >= current)).toBe(true);
    // What her agent received sealed in the old epoch, it dropped as expired: none reached her handler.
    const oldOnes = carolRec.received.filter((r) => parseBody(r.body, SEAL_OVERHEAD).epoch < current).length;
    expect(carol.stats.dropped["expired" as keyof typeof carol.stats.dropped] ?? 0).toBe(oldOnes);
    expect(oldEpoch).toBeLessThan(current);
  }, 60_000);

  it("a subscriber without sub: never gets the key (subscribe rejects token_scope; no token: token_missing) and receives no event", async () => {
    mesh = await eventMesh(["alice", "bob", "carol", "dave"]);
    const alice = await mesh.member("alice", "pub:docs.>", { events });
    const bob = await mesh.member("bob", "sub:docs.>", { events });
    const carol = await mesh.member("carol", "sub:prices.* call:anything", { events });
    const dave = await mesh.member("dave", undefined, { events });
    const bobGot: Publication[] = [];
    let refusedGot = 0;
    await bob.subscribe("docs.*", (e) => void bobGot.push(e));
    const served = mesh.distributor.stats.served;
    await rejectsWith(carol.subscribe("docs.*", () => void refusedGot++), RemoteError, "token_scope");
    await rejectsWith(carol.subscribe("docs.>", () => void refusedGot++), RemoteError, "token_scope");
    await rejectsWith(dave.subscribe("docs.*", () => void refusedGot++), RemoteError, "token_missing");
    expect(mesh.distributor.stats.served).toBe(served); // no answer, so no key, went to either
    // Refused, they were never announced to the broker: only bob's pattern is in its directory.
    expect(metricSum(await mesh.broker.scrape(), "zmcp_broker_subscription_patterns")).toBe(1);
    for (let n = 0; n < 5; n++) await alice.publish("docs.secret", { n });
    await waitFor(() => bobGot.length === 5, 5000, "bob's five");
    await sleep(300);
    expect(refusedGot).toBe(0);
    expect(carol.stats.publications + dave.stats.publications).toBe(0);
    expect(carol.stats.dropped).toEqual({});
  }, 60_000);

  it("a publisher without pub: is refused (publish rejects token_scope) and nothing reaches subscribers", async () => {
    mesh = await eventMesh(["alice", "bob"]);
    const alice = await mesh.member("alice", "sub:docs.>", { events });
    const bob = await mesh.member("bob", "sub:docs.> sub:prices.*", { events });
    let got = 0;
    await alice.subscribe("docs.>", () => void got++);
    await rejectsWith(bob.publish("docs.x", { n: 1 }), RemoteError, "token_scope");
    await rejectsWith(bob.publish("prices.eur", { n: 2 }), RemoteError, "token_scope");
    await sleep(300);
    expect(bob.stats.published).toBe(0);
    expect(got).toBe(0);
    expect(metricSum(await mesh.broker.scrape(), "zmcp_broker_publications_total")).toBe(0);
  }, 60_000);

  it("a member with only sub: that publishes anyway (raw frames sealed with the key it holds) is dropped by subscribers as bad_seal", async () => {
    mesh = await eventMesh(["alice", "bob", "mallory"]);
    const alice = await mesh.member("alice", "pub:docs.>", { events });
    const bobRec = recorder();
    const bob = await mesh.member("bob", "sub:docs.>", { events: bobRec.events });
    const bobGot: Publication[] = [];
    await bob.subscribe("docs.>", (e) => void bobGot.push(e));
    await alice.publish("docs.plans", { n: "genuine" });
    await waitFor(() => bobGot.length === 1, 5000, "alice's publication");
    const genuine = parseBody(bobRec.received[0]!.body, SEAL_OVERHEAD);

    // Mallory holds the topic's key (sub:) but cannot get a credential (no pub:).
    const malloryAgent = await mesh.member("mallory", "sub:docs.>", { events });
    const held = KeyAnswerSchema.parse(await malloryAgent.call("keys", "events/key", { topic: "docs.plans", access: "sub" }));
    await rejectsWith(malloryAgent.call("keys", "events/key", { topic: "docs.plans", access: "pub", signer: new Uint8Array(32) }), RemoteError, "token_scope");
    await malloryAgent.close();
    const raw = await rawPeer(mesh.fx, "mallory", mesh.broker.endpoint);
    raws.push(raw);
    const own = signing.generate();
    const forge = (credential: Uint8Array, sq: number): Uint8Array[] => {
      const headerBytes = encodeHeader({ v: PROTOCOL_VERSION, k: "pub", id: newId(), to: "docs.plans", exp: Date.now() + 60_000, sq });
      const context = contextDigest("docs.plans", headerBytes, held.epoch!, credential);
      const sealed = box.seal(held.key!, randomBytesPooled(NONCE_BYTES), concat(context, encode({ n: "forged" })));
      return [headerBytes, encodeBody({ epoch: held.epoch!, credential, signature: own.sign(signedMessage(context, sealed)), box: sealed })];
    };
    // 1. A credential of her own, naming her keys, signed by her own Ed25519 key.
    const selfSigned = encodeCredential({ epoch: held.epoch!, expires: Date.now() + 60_000, member: z85Decode(mesh.fx.key("mallory")), signer: own.publicKey, topic: "docs.plans" }, (m) => own.sign(m));
    await raw.socket.send(forge(selfSigned, 1));
    // 2. Alice's genuine credential (copied from a publication), sent from mallory's connection.
    await raw.socket.send(forge(genuine.credential, 2));
    await waitFor(() => bobRec.received.length === 3, 5000, "both forgeries at bob's agent");
    await waitFor(() => (bob.stats.dropped.bad_seal ?? 0) === 2, 5000, "both dropped bad_seal");
    // The path still works: alice's next one is delivered; nothing forged ever reached the handler.
    await alice.publish("docs.plans", { n: "genuine again" });
    await waitFor(() => bobGot.length === 2, 5000, "alice's second publication");
    expect(bobGot.map((e) => e.data)).toEqual([{ n: "genuine" }, { n: "genuine again" }]);
    expect(bobGot.every((e) => e.from === alice.publicKey)).toBe(true);
  }, 60_000);

  it("the broker cannot read payloads: what it forwards holds no plaintext, only a group-key body", async () => {
    mesh = await eventMesh(["alice", "bob", "mallory"]);
    const alice = await mesh.member("alice", "pub:docs.>", { events });
    const bob = await mesh.member("bob", "sub:docs.>", { events });
    const bobGot: Publication[] = [];
    await bob.subscribe("docs.>", (e) => void bobGot.push(e));
    const raw = await rawSubscriber(mesh, "mallory", "docs.>");
    raws.push(raw);
    const marker = "PLAINTEXT-MARKER-0123456789";
    await alice.publish("docs.secret", { text: marker, bytes: new Uint8Array(Buffer.from(marker)) });
    const frames = await raw.receive(5000);
    await waitFor(() => bobGot.length === 1, 5000, "bob's copy");
    expect((bobGot[0]!.data as { text: string }).text).toBe(marker); // the marker was really in the payload
    expect(frames).toHaveLength(3);
    expect(frames[0]!.toString("latin1")).toBe(alice.publicKey);
    expect(decodeHeader(frames[1]!)).toMatchObject({ k: "pub", to: "docs.secret", sq: 1 });
    const all = Buffer.concat(frames);
    expect(all.includes(Buffer.from(marker))).toBe(false);
    expect(all.includes(Buffer.from(marker, "utf16le"))).toBe(false);
    expect(() => decode(frames[2]!)).toThrow();
    // It is a group-key body of the current epoch, which nothing without the topic's key opens.
    const parts = parseBody(frames[2]!, SEAL_OVERHEAD);
    expect(parts.epoch).toBe(mesh.distributor.epoch);
    expect(box.open(new Uint8Array(32), parts.box)).toBeUndefined();
  }, 60_000);

  it("key rotation on schedule loses nothing: continuous publishing across at least two rotations, every publication delivered, gaps 0", async () => {
    mesh = await eventMesh(["alice", "bob"], { rotateEveryMs: 500, leaseMs: 200, graceMs: 10_000 });
    const alice = await mesh.member("alice", "pub:docs.>", { events });
    const bob = await mesh.member("bob", "sub:docs.>", { events });
    const got: Publication[] = [];
    const sub = await bob.subscribe("docs.>", (e) => void got.push(e));
    const rotationsBefore = mesh.distributor.rotations;
    let published = 0;
    const epochs = () => new Set(got.map((e) => e.epoch)).size;
    while (mesh.distributor.rotations - rotationsBefore < 2 || epochs() < 3) {
      if (published > 3000) throw new Error(`after 3,000 publications: ${mesh.distributor.rotations - rotationsBefore} rotations, ${epochs()} epochs delivered`);
      await alice.publish("docs.stream", { n: ++published });
      await sleep(10);
    }
    await waitFor(() => got.length >= published, 10_000, `all ${published} publications`);
    await sleep(200);
    expect(got.map((e) => (e.data as { n: number }).n)).toEqual(Array.from({ length: published }, (_, i) => i + 1));
    expect(got.map((e) => e.sequence)).toEqual(Array.from({ length: published }, (_, i) => i + 1));
    expect(sub.gaps.total).toBe(0);
    expect(bob.stats.dropped).toEqual({});
    expect(epochs()).toBeGreaterThanOrEqual(3);
  }, 90_000);

  it("a broker SIGKILLed and restarted on the same port: subscriptions back without operator action, keys and credentials still valid", async () => {
    mesh = await eventMesh(["alice", "bob", "carol"], {}, { args: ["--heartbeat-interval", "300"] });
    const fast = { heartbeatInterval: 300 };
    const alice = await mesh.member("alice", "pub:docs.>", { events, ...fast });
    const bob = await mesh.member("bob", "sub:docs.>", { events, ...fast });
    const got: Publication[] = [];
    const sub = await bob.subscribe("docs.>", (e) => void got.push(e));
    await alice.publish("docs.orders", { n: 0 });
    await waitFor(() => got.length === 1, 5000, "the publication before the restart");
    const epoch = got[0]!.epoch;
    const served = mesh.distributor.stats.served;

    await mesh.restartBroker();
    await waitFor(async () => metricSum(await mesh!.broker.scrape(), "zmcp_broker_subscription_patterns") === 1, 15_000, "bob's subscription in the new broker");
    let sent = 0;
    await waitFor(
      async () => {
        await alice.publish("docs.orders", { n: ++sent });
        return got.length > 1;
      },
      15_000,
      "a publication through the restarted broker",
    );
    await sleep(300);
    const after = got.slice(1);
    expect(after[0]!.from).toBe(alice.publicKey);
    // The same epoch, and no key fetched: what alice and bob held before the restart still seals and opens.
    expect(after.every((e) => e.epoch === epoch)).toBe(true);
    expect(mesh.distributor.stats.served).toBe(served);
    expect(got.length + sub.gaps.total).toBe(1 + sent);
    expect(bob.stats.dropped).toEqual({});
    // The distributor came back with the broker too: a member joining now gets the key and receives.
    const carol = await mesh.member("carol", "sub:docs.>", { events, ...fast });
    const carolGot: Publication[] = [];
    await carol.subscribe("docs.*", (e) => void carolGot.push(e));
    await alice.publish("docs.orders", { n: ++sent });
    await waitFor(() => carolGot.length === 1, 5000, "a publication to the member that joined after the restart");
    expect(carolGot[0]!.epoch).toBe(epoch);
  }, 60_000);
});
