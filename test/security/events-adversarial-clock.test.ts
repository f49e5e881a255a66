/**
 * Adversarial review of publish-subscribe: a wall clock that steps back at a member.
 *
 * docs/EVENTS.md says "Publishers count their lease on their own clock (ttl), so their clock
 * does not matter". The member counted its lease (and its retry timers) with Date.now(), a wall
 * clock that NTP, an operator or a VM resume can step: stepped back by S (50 s here, which every
 * other check of the mesh tolerates), a publisher kept sealing with its credential up to S past
 * its lease (every subscriber refusing those publications, `credential_expired`, nothing said to
 * the publisher), and a subscriber would not ask a restarted distributor for its new signing key
 * for S (every publication refused `credential`); a step of hours did the same for hours to a
 * publisher whose clock was first wrong ahead and then corrected. Durations are now
 * counted on the monotonic clock; only the credential's expiry, written by the distributor, is
 * read on the wall clock (the documented `clockSkew`).
 *
 * The step is simulated in-process for the member under test only: Date.now() is shifted only
 * while that member's seal/open runs its synchronous part (where it reads the clock), so the
 * broker, the distributor and the other member keep the real clock.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { EventSealError, RemoteError } from "../../src/errors.js";
import { serveEventKeys } from "../../src/events/distributor.js";
import { encodeBody, encodeCredential } from "../../src/events/format.js";
import { signing } from "../../src/events/signing.js";
import { z85Decode } from "../../src/wire/z85.js";
import { rejectsWith } from "../support/assert.js";
import { eventMesh, header, type EventMesh } from "../support/event-keys.js";
import { sleep } from "../support/wait.js";

/**
 * A step back the rest of the mesh tolerates (the broker's clockSkew and every replay window are
 * 60 s), so the stepped member keeps talking to the broker and the distributor as usual.
 */
const STEP = -50_000;
const realNow = Date.now.bind(Date);
let shift = 0;

/** Runs the synchronous part of `f` with this process's wall clock stepped by `ms`. */
function stepped<T>(ms: number, f: () => T): T {
  shift = ms;
  try {
    return f();
  } finally {
    shift = 0;
  }
}

describe("events: a member's wall clock stepping back", () => {
  let mesh: EventMesh | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await mesh?.close();
    mesh = undefined;
  });

  it("a publisher whose clock steps back renews its credential on time (subscribers still accept what it seals)", async () => {
    mesh = await eventMesh(["alice", "bob"], { leaseMs: 1500 });
    vi.spyOn(Date, "now").mockImplementation(() => realNow() + shift);
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.>");
    const pub = mesh.sealer(alice);
    const sub = mesh.sealer(bob, { clockSkew: 0 });
    const topic = "docs.clock";
    const h1 = header(topic);
    expect((await sub.open(topic, h1, await pub.seal(topic, h1, 1), alice.publicKey)).data).toBe(1);
    // The lease (1.5 s) passes; then alice's clock steps back 50 s as she publishes.
    await sleep(2000);
    const h2 = header(topic);
    const body = await stepped(STEP, () => pub.seal(topic, h2, 2));
    expect((await sub.open(topic, h2, body, alice.publicKey)).data).toBe(2);
  });

  it("a subscriber whose clock steps back still learns a restarted distributor's signing key", async () => {
    mesh = await eventMesh(["alice", "bob"]);
    vi.spyOn(Date, "now").mockImplementation(() => realNow() + shift);
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.>");
    const pub = mesh.sealer(alice);
    const sub = mesh.sealer(bob, { retryAfter: 200 });
    const topic = "docs.restart";
    // Bob reads a publication: he asked the distributor once (learning its signing key).
    const h1 = header(topic);
    await sub.join("docs.>");
    expect((await sub.open(topic, h1, await pub.seal(topic, h1, 1), alice.publicKey)).data).toBe(1);
    // A junk publication (a credential no distributor signed) makes him refresh his signers once.
    const forger = signing.generate();
    const junkCredential = encodeCredential({ epoch: mesh.distributor.epoch, expires: Date.now() + 60_000, member: z85Decode(alice.publicKey), signer: forger.publicKey, topic }, (m) => forger.sign(m));
    const junk = encodeBody({ epoch: mesh.distributor.epoch, credential: junkCredential, signature: new Uint8Array(64), box: new Uint8Array(200) });
    const refused = (await rejectsWith(sub.open(topic, header(topic), junk, alice.publicKey), EventSealError, "bad_seal")) as EventSealError;
    expect(refused.reason).toBe("credential");
    const fresh = mesh.sealer(alice);
    mesh.distributor.close();
    const restarted = serveEventKeys(mesh.keysAgent, { topics: ["docs.>"] });
    expect(Buffer.from(restarted.signingPublicKey).equals(Buffer.from(mesh.distributor.signingPublicKey))).toBe(false);
    const h2 = header(topic);
    const b2 = await fresh.seal(topic, h2, 2);
    // Well past retryAfter (200 ms) on any monotonic count, but his wall clock stepped back.
    await sleep(500);
    const opened = await stepped(STEP, () => sub.open(topic, h2, b2, alice.publicKey));
    expect(opened.data).toBe(2);
    restarted.close();
  });
});

/**
 * The distributor timed epochs, their grace and minEpochMs on its wall clock too: stepped back
 * by S, it handed the previous epoch's key to a late joiner for S past the grace (a member who
 * joined after the epoch ended read its publications), and it kept an epoch S past its
 * schedule. The distributor is its own process in a deployment: here only what
 * src/events/distributor.ts reads of the clock is stepped (the call stack says who reads it).
 */
const distributorClock = () => realNow() + (new Error().stack?.includes("distributor.ts") ? shift : 0);
describe("events: the distributor's wall clock stepping back", () => {
  let mesh: EventMesh | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    shift = 0;
    await mesh?.close();
    mesh = undefined;
  });

  it("a late joiner is refused the previous epoch once its grace is over, even after a step back", async () => {
    mesh = await eventMesh(["alice", "carol"], { graceMs: 500 });
    vi.spyOn(Date, "now").mockImplementation(distributorClock);
    const alice = await mesh.member("alice", "pub:docs.>");
    const topic = "docs.grace";
    const h1 = header(topic);
    const before = await mesh.sealer(alice).seal(topic, h1, "before the rotation");
    mesh.distributor.rotate();
    await sleep(1000); // the grace (500 ms) is over
    shift = STEP;
    const carol = await mesh.member("carol", "sub:docs.>");
    await rejectsWith(mesh.sealer(carol).open(topic, h1, before, alice.publicKey), RemoteError, "expired");
  });

  it("an epoch ends on schedule, even after a step back", async () => {
    mesh = await eventMesh(["alice"], { rotateEveryMs: 800 });
    vi.spyOn(Date, "now").mockImplementation(distributorClock);
    const first = mesh.distributor.epoch;
    await sleep(1200);
    shift = STEP;
    expect(mesh.distributor.epoch).toBeGreaterThan(first);
  });
});
