/**
 * What a member or a compromised broker cannot do with group keys: publish in a way
 * subscribers accept without a pub: credential (even holding the topic key from sub:), change
 * a publication's header, bytes, topic, epoch or sender unseen, reuse a credential past its
 * expiry or under another key, make a subscriber fetch keys in a flood, or pass off another
 * key's answer as the distributor's. Each refusal is an EventSealError (bad_seal) naming the
 * check that failed, or the distributor's typed refusal.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { EventSealError, ForgedAnswerError, RemoteError, ZmcpError, type EventSealFailure } from "../../src/errors.js";
import { concat, contextDigest, encodeBody, encodeCredential, parseBody, signedMessage } from "../../src/events/format.js";
import { KeyAnswerSchema, type KeyAnswer } from "../../src/events/key-protocol.js";
import { signing, type SigningKey } from "../../src/events/signing.js";
import { box, SEAL_OVERHEAD } from "../../src/wire/box.js";
import { encodeHeader, encodeInner, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { Sealer } from "../../src/wire/seal.js";
import { z85Decode } from "../../src/wire/z85.js";
import { encode } from "@msgpack/msgpack";
import { rejectsWith } from "../support/assert.js";
import { tempCerts } from "../support/certs.js";
import { contextOf, eventMesh, header, type EventMesh } from "../support/event-keys.js";
import { connectAgent } from "../support/mesh.js";
import { startRelay } from "../support/stand-in-broker.js";
import { sleep } from "../support/wait.js";
import { createLogger } from "../../src/support/log.js";
import { groupKeys } from "../../src/events/group-keys.js";

/** A body built by hand, as a member holding `key` could: any credential, any signing key. */
function forge(topic: string, h: Uint8Array, epoch: number, key: Uint8Array, credential: Uint8Array, signer: SigningKey, data: unknown): Uint8Array {
  const context = contextDigest(topic, h, epoch, credential);
  const sealed = box.seal(key, new Uint8Array(24).map(() => Math.floor(Math.random() * 256)), concat(context, encode(data)));
  return encodeBody({ epoch, credential, signature: signer.sign(signedMessage(context, sealed)), box: sealed });
}

async function refusedFor(p: Promise<unknown>, reason: EventSealFailure): Promise<void> {
  const err = (await rejectsWith(p, EventSealError, "bad_seal")) as EventSealError;
  expect(err.reason, err.message).toBe(reason);
}

describe("group keys against hostile members and brokers", () => {
  let mesh: EventMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  async function setup(options: Parameters<typeof eventMesh>[1] = {}) {
    mesh = await eventMesh(["alice", "bob", "eve"], options);
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.>");
    const eve = await mesh.member("eve", "sub:docs.>");
    return { mesh, alice, bob, eve };
  }

  const subKey = async (agent: Agent, topic: string): Promise<KeyAnswer> => KeyAnswerSchema.parse(await agent.call("keys", "events/key", { topic, access: "sub" }));

  it("a member with the key from sub: cannot publish: its own credential, alice's credential, or alice's name are each refused", async () => {
    const { mesh, alice, bob, eve } = await setup();
    const sub = mesh.sealer(bob);
    const topic = "docs.plans";
    const { key, epoch } = await subKey(eve, topic);
    const eveSigner = signing.generate();
    // 1. A credential eve signs herself: not the distributor's signature.
    const own = encodeCredential({ epoch: epoch!, expires: Date.now() + 60_000, member: z85Decode(eve.publicKey), signer: eveSigner.publicKey, topic }, (m) => eveSigner.sign(m));
    const h1 = header(topic);
    await refusedFor(sub.open(topic, h1, forge(topic, h1, epoch!, key!, own, eveSigner, "x"), eve.publicKey), "credential");
    // 2. Alice's genuine credential, sent by eve: it names alice's key.
    const real = parseBody(await mesh.sealer(alice).seal(topic, header(topic), "real"), SEAL_OVERHEAD).credential;
    const h2 = header(topic);
    await refusedFor(sub.open(topic, h2, forge(topic, h2, epoch!, key!, real, eveSigner, "x"), eve.publicKey), "credential_member");
    // 3. The same, stamped with alice's key (a compromised broker): eve cannot sign as alice.
    await refusedFor(sub.open(topic, h2, forge(topic, h2, epoch!, key!, real, eveSigner, "x"), alice.publicKey), "signature");
    // And eve asking for a credential herself is refused.
    await rejectsWith(mesh.sealer(eve).seal(topic, header(topic), 1), RemoteError, "token_scope");
  });

  it("tampering: header, box, signature, credential bytes, topic, epoch, sender, another member's signature: each a typed refusal", async () => {
    const { mesh, alice, bob } = await setup();
    const pub = mesh.sealer(alice);
    const topic = "docs.a";
    const h = header(topic);
    const body = await pub.seal(topic, h, { v: 1 });
    const sub = mesh.sealer(bob);
    expect((await sub.open(topic, h, body, alice.publicKey)).data).toEqual({ v: 1 });
    const parts = parseBody(body, SEAL_OVERHEAD);
    const boxAt = body.length - parts.box.length;
    const sigAt = boxAt - 64;
    const flip = (at: number) => {
      const copy = body.slice();
      copy[at]! ^= 0x01;
      return copy;
    };
    await refusedFor(sub.open(topic, header(topic), body, alice.publicKey), "header");
    await refusedFor(sub.open(topic, h, flip(boxAt + 50), alice.publicKey), "seal");
    await refusedFor(sub.open(topic, h, flip(sigAt + 3), alice.publicKey), "signature");
    await refusedFor(sub.open(topic, h, flip(11 + 60), alice.publicKey), "credential"); // inside the credential's signer key (its bytes 49..81)
    await refusedFor(sub.open("docs.b", h, body, alice.publicKey), "credential_topic");
    await refusedFor(sub.open(topic, h, flip(8), alice.publicKey), "credential_epoch"); // the body's epoch
    await refusedFor(sub.open(topic, h, body, bob.publicKey), "credential_member");
    // Another member's signature over the very same bytes: the credential names alice's signing key.
    const other = signing.generate();
    const resigned = body.slice();
    resigned.set(other.sign(signedMessage(contextDigest(topic, h, parts.epoch, parts.credential), parts.box)), sigAt);
    await refusedFor(sub.open(topic, h, resigned, alice.publicKey), "signature");
    await refusedFor(sub.open(topic, h, body.subarray(0, 40), alice.publicKey), "malformed");
    await refusedFor(sub.open(topic, h, concat(new Uint8Array([2]), body.subarray(1)), alice.publicKey), "malformed");
    // The genuine one still opens: nothing above poisoned a cache.
    expect((await sub.open(topic, h, body, alice.publicKey)).data).toEqual({ v: 1 });
  });

  it("a payload the other side cannot decode: refused at seal (invalid_args), and at open from a genuine publisher (data)", async () => {
    const { mesh, alice, bob } = await setup();
    const topic = "docs.a";
    await rejectsWith(mesh.sealer(alice).seal(topic, header(topic), { when: new Date() }), ZmcpError, "invalid_args");
    // Alice herself, by hand: a credential for her own signing key, then a box of bytes that are not msgpack.
    const signer = signing.generate();
    const answer = KeyAnswerSchema.parse(await alice.call("keys", "events/key", { topic, access: "pub", signer: signer.publicKey }));
    const h = header(topic);
    const context = contextDigest(topic, h, answer.epoch!, answer.credential!);
    const sealed = box.seal(answer.key!, new Uint8Array(24).fill(3), concat(context, new Uint8Array([0xc1])));
    const body = encodeBody({ epoch: answer.epoch!, credential: answer.credential!, signature: signer.sign(signedMessage(context, sealed)), box: sealed });
    await refusedFor(mesh.sealer(bob).open(topic, h, body, alice.publicKey), "data");
  });

  it("a credential replayed after its expiry is refused (credential_expired)", async () => {
    const { mesh, alice, bob } = await setup({ leaseMs: 300 });
    const topic = "docs.a";
    const h = header(topic);
    const body = await mesh.sealer(alice).seal(topic, h, 1);
    const sub = mesh.sealer(bob, { clockSkew: 0 });
    expect((await sub.open(topic, h, body, alice.publicKey)).data).toBe(1);
    await sleep(400);
    await refusedFor(sub.open(topic, h, body, alice.publicKey), "credential_expired");
    // A credential of the current epoch re-signed for a later expiry by anyone but the distributor: refused.
    const cred = parseBody(body, SEAL_OVERHEAD).credential;
    const forgedLater = encodeCredential(
      { epoch: parseBody(body, SEAL_OVERHEAD).epoch, expires: Date.now() + 60_000, member: z85Decode(alice.publicKey), signer: cred.subarray(49, 81), topic },
      (m) => signing.generate().sign(m),
    );
    const { key } = KeyAnswerSchema.parse(await bob.call("keys", "events/key", { topic, access: "sub" }));
    const h2 = header(topic);
    await refusedFor(sub.open(topic, h2, forge(topic, h2, parseBody(body, SEAL_OVERHEAD).epoch, key!, forgedLater, signing.generate(), 1), alice.publicKey), "credential");
  });

  it("a flood of junk publications naming random epochs costs the subscriber at most one fetch", async () => {
    const { mesh, alice, bob, eve } = await setup();
    const sub = mesh.sealer(bob);
    const topic = "docs.flood";
    await sub.join(topic);
    const served = mesh.distributor.stats.served;
    const junkSigner = signing.generate();
    const key = new Uint8Array(32);
    for (let i = 0; i < 300; i++) {
      const epoch = 1 + Math.floor(Math.random() * 2 ** 40);
      const cred = encodeCredential({ epoch, expires: Date.now() + 60_000, member: z85Decode(eve.publicKey), signer: junkSigner.publicKey, topic }, (m) => junkSigner.sign(m));
      const h = header(topic);
      await refusedFor(sub.open(topic, h, forge(topic, h, epoch, key, cred, junkSigner, i), eve.publicKey), "credential");
    }
    expect(mesh.distributor.stats.served - served).toBeLessThanOrEqual(1);
    // Genuine publications still open after the flood.
    const h = header(topic);
    expect((await sub.open(topic, h, await mesh.sealer(alice).seal(topic, h, "ok"), alice.publicKey)).data).toBe("ok");
  });

  it("a distributor answer sealed by another key than the distributor's is refused (ForgedAnswerError, bad_seal)", async () => {
    const fx = tempCerts("keys", "bob", "mallory");
    const relay = await startRelay(fx);
    const agents: Agent[] = [];
    try {
      const bob = await connectAgent(fx, "bob", relay.endpoint, { retry: false, log: createLogger("silent") }); // its "dropped message" line is expected
      agents.push(bob);
      const mallory = new Sealer(fx.certs["mallory"]!.secretKey);
      const malloryKey = fx.key("mallory");
      const fakeSigner = signing.generate();
      // The relay swallows bob's request to the distributor and answers it as mallory would.
      let swallowed = 0;
      relay.onMessage = (m) => {
        if (m.header.to !== fx.key("keys") || m.header.k !== "req") return;
        swallowed++;
        const forged: KeyAnswer = { topic: "docs.a", current: 1, until: Date.now() + 60_000, ttl: 60_000, epoch: 1, key: new Uint8Array(32).fill(7), signer: fakeSigner.publicKey };
        const h = encodeHeader({ v: PROTOCOL_VERSION, k: "res", id: newId(), to: m.from, exp: Date.now() + 5000, re: m.header.id });
        void relay.send(m.from, malloryKey, h, mallory.seal(m.from, encodeInner({ t: "res", ts: Date.now(), st: "ok", result: forged }, h)));
        return false;
      };
      const sealer = groupKeys({ distributor: fx.key("keys"), fetchTimeout: 800, attempts: 1 })(contextOf(bob));
      await rejectsWith(sealer.join("docs.a"), ForgedAnswerError, "bad_seal");
      expect(swallowed).toBeGreaterThan(0); // the forged answer did reach bob, and was dropped
    } finally {
      await Promise.all(agents.map((a) => a.close()));
      relay.close();
      fx.cleanup();
    }
  });
});
