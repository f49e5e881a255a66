/**
 * Group keys on a real mesh (a broker process, the distributor and members as agents): who
 * gets a topic's key (sub:/pub: scopes), epochs on schedule, by message count, on removal and
 * on revocation, and what a member joining late or removed can no longer open. Publications
 * are sealed and opened by calling the sealers directly with the header bytes and the `from`
 * the broker would stamp (the fan-out itself is built apart, src/events/sealer.ts).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { parseBody } from "../../src/events/format.js";
import { KeyAnswerSchema } from "../../src/events/key-protocol.js";
import { box, SEAL_OVERHEAD } from "../../src/wire/box.js";
import { rejectsWith } from "../support/assert.js";
import { eventMesh, header, type EventMesh } from "../support/event-keys.js";
import { built } from "../support/process.js";
import { sleep, waitFor } from "../support/wait.js";

const run = promisify(execFile);

describe("group keys through a real broker", () => {
  let mesh: EventMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it("a publisher with pub: seals once, a subscriber with sub: opens it: data, the publisher's key, the epoch", async () => {
    mesh = await eventMesh(["alice", "bob"]);
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.*");
    const pub = mesh.sealer(alice);
    const sub = mesh.sealer(bob);
    await sub.join("docs.*");
    const h = header("docs.indexed");
    const body = await pub.seal("docs.indexed", h, { id: 7, title: "Q3 report", bytes: new Uint8Array([1, 2, 3]) });
    const opened = await sub.open("docs.indexed", h, body, alice.publicKey);
    expect(opened).toEqual({ data: { id: 7, title: "Q3 report", bytes: new Uint8Array([1, 2, 3]) }, publisher: alice.publicKey, epoch: mesh.distributor.epoch });
    // The payload is not in the body in clear (the broker forwards the body as it is).
    expect(Buffer.from(body).includes(Buffer.from("Q3 report"))).toBe(false);
    // A second publication costs the subscriber no fetch: key and credential are cached.
    const served = mesh.distributor.stats.served;
    const h2 = header("docs.indexed");
    await sub.open("docs.indexed", h2, await pub.seal("docs.indexed", h2, "again"), alice.publicKey);
    expect(mesh.distributor.stats.served).toBe(served);
  });

  it("a subscriber without sub: never receives the key: join and open are refused token_scope; no token at all is token_missing", async () => {
    mesh = await eventMesh(["alice", "carol", "dave"]);
    const alice = await mesh.member("alice", "pub:docs.> sub:docs.public.*");
    const carol = await mesh.member("carol", "sub:prices.* call:anything");
    const dave = await mesh.member("dave", undefined);
    const pub = mesh.sealer(alice);
    const h = header("docs.secret");
    const body = await pub.seal("docs.secret", h, { salary: 1 });
    const carolSealer = mesh.sealer(carol);
    await rejectsWith(carolSealer.join("docs.*"), RemoteError, "token_scope");
    await rejectsWith(carolSealer.open("docs.secret", h, body, alice.publicKey), RemoteError, "token_scope");
    await rejectsWith(mesh.sealer(dave).join("docs.>"), RemoteError, "token_missing");
    // A narrower sub: does not reach wider topics or patterns (topic patterns, not prefixes).
    const narrow = mesh.sealer(alice);
    await narrow.join("docs.public.*");
    await rejectsWith(narrow.join("docs.public.>"), RemoteError, "token_scope");
    // And the refusal reached carol as an answer, with no key in it: the distributor counted it.
    expect(mesh.distributor.stats.refused.get("token_scope")).toBeGreaterThanOrEqual(3);
  });

  it("a publisher without pub: is refused at seal (token_scope), whatever its sub:", async () => {
    mesh = await eventMesh(["bob"]);
    const bob = await mesh.member("bob", "sub:docs.>");
    await rejectsWith(mesh.sealer(bob).seal("docs.x", header("docs.x"), 1), RemoteError, "token_scope");
  });

  it("key rotation on schedule loses no publication: every one sealed around two rotations opens, in real time and late", async () => {
    mesh = await eventMesh(["alice", "bob"], { rotateEveryMs: 400, leaseMs: 150, graceMs: 10_000 });
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.>");
    const pub = mesh.sealer(alice);
    const sub = mesh.sealer(bob);
    await sub.join("docs.>");
    const sealed: Array<{ h: Uint8Array; body: Uint8Array; n: number }> = [];
    const live: number[] = [];
    const first = mesh.distributor.epoch;
    for (let n = 0; mesh.distributor.epoch - first < 1 || mesh.distributor.rotations < 3; n++) {
      if (n > 2_000) throw new Error("no rotation within 2,000 publications");
      const h = header("docs.stream");
      const body = await pub.seal("docs.stream", h, { n });
      sealed.push({ h, body, n });
      if (n % 2 === 0) live.push(((await sub.open("docs.stream", h, body, alice.publicKey)).data as { n: number }).n);
      await sleep(10);
    }
    // The odd ones opened after the rotations: the kept (or fetched, within the grace) epoch keys.
    const late = await Promise.all(sealed.filter((s) => s.n % 2 === 1).map(async (s) => (await sub.open("docs.stream", s.h, s.body, alice.publicKey)).data as { n: number }));
    expect([...live, ...late.map((d) => d.n)].sort((a, b) => a - b)).toEqual(sealed.map((s) => s.n));
    const epochs = new Set(sealed.map((s) => parseBody(s.body, SEAL_OVERHEAD).epoch));
    expect(epochs.size).toBeGreaterThanOrEqual(2);
  });

  it("a late joiner gets the current epoch only: earlier epochs are refused (expired), the current one opens", async () => {
    mesh = await eventMesh(["alice", "bob"], { graceMs: 0 });
    const alice = await mesh.member("alice", "pub:docs.>");
    const pub = mesh.sealer(alice);
    const h1 = header("docs.a");
    const old = await pub.seal("docs.a", h1, "before bob");
    mesh.distributor.rotate();
    await sleep(5);
    const bob = await mesh.member("bob", "sub:docs.>");
    const sub = mesh.sealer(bob);
    await rejectsWith(sub.open("docs.a", h1, old, alice.publicKey), RemoteError, "expired");
    // alice moves to the new epoch at her next credential renewal (here: a new sealer, as after a restart).
    const h2 = header("docs.a");
    const fresh = await mesh.sealer(alice).seal("docs.a", h2, "after bob");
    expect((await sub.open("docs.a", h2, fresh, alice.publicKey)).data).toBe("after bob");
  });

  it("a removed member is refused every later key (revoked), and the key it kept does not open what is sealed after", async () => {
    mesh = await eventMesh(["alice", "bob", "eve"], { leaseMs: 300 });
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.>");
    const eve = await mesh.member("eve", "sub:docs.>");
    const pub = mesh.sealer(alice);
    const eveSealer = mesh.sealer(eve);
    // Eve keeps the epoch key itself, as a member that leaks or hoards keys would.
    const kept = KeyAnswerSchema.parse(await eve.call("keys", "events/key", { topic: "docs.plans", access: "sub" }));
    const h0 = header("docs.plans");
    const before = await pub.seal("docs.plans", h0, "before");
    expect((await eveSealer.open("docs.plans", h0, before, alice.publicKey)).data).toBe("before");

    const removedAt = mesh.distributor.remove("eve");
    expect(removedAt).toBeGreaterThan(kept.epoch!);
    await rejectsWith(eve.call("keys", "events/key", { topic: "docs.plans", access: "sub" }), RemoteError, "revoked");
    await sleep(350); // alice's lease (300 ms) ends: her next seal is in the new epoch
    const h1 = header("docs.plans");
    const after = await pub.seal("docs.plans", h1, "after");
    const parts = parseBody(after, SEAL_OVERHEAD);
    expect(parts.epoch).toBe(removedAt);
    expect(box.open(kept.key!, parts.box)).toBeUndefined(); // the old key does not open it
    await rejectsWith(eveSealer.open("docs.plans", h1, after, alice.publicKey), RemoteError, "revoked");
    expect((await mesh.sealer(bob).open("docs.plans", h1, after, alice.publicKey)).data).toBe("after");
  });

  it("a key added to the deny list starts a new epoch and is refused (revoked)", async () => {
    mesh = await eventMesh(["alice", "eve"]);
    const eve = await mesh.member("eve", "sub:docs.>");
    const eveSealer = mesh.sealer(eve);
    await eveSealer.join("docs.x"); // served in this epoch
    const epoch = mesh.distributor.epoch;
    mesh.deny([eve.publicKey]);
    await waitFor(() => mesh!.distributor.epoch > epoch, 5000, "a new epoch after the deny list named a member");
    const alice = await mesh.member("alice", "pub:docs.>");
    const h = header("docs.x");
    const body = await mesh.sealer(alice).seal("docs.x", h, 1);
    await rejectsWith(eveSealer.open("docs.x", h, body, alice.publicKey), RemoteError, "revoked");
  });

  it("publishers report what they sealed: an epoch ends after rotateEveryMessages, and nothing is lost", async () => {
    mesh = await eventMesh(["alice", "bob"], { rotateEveryMessages: 5, minEpochMs: 0 });
    const alice = await mesh.member("alice", "pub:prices.*");
    const bob = await mesh.member("bob", "sub:prices.*");
    const pub = mesh.sealer(alice);
    const sub = mesh.sealer(bob);
    const epochs = new Set<number>();
    for (let n = 0; n < 16; n++) {
      const h = header("prices.eur");
      const body = await pub.seal("prices.eur", h, n);
      const opened = await sub.open("prices.eur", h, body, alice.publicKey);
      expect(opened.data).toBe(n);
      epochs.add(opened.epoch);
    }
    expect(epochs.size).toBeGreaterThanOrEqual(3);
  });

  it("concurrent publications on a new topic share one fetch, and all open", async () => {
    mesh = await eventMesh(["alice", "bob"]);
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.>");
    const pub = mesh.sealer(alice);
    const sub = mesh.sealer(bob);
    const before = mesh.distributor.stats.served;
    const sealed = await Promise.all(
      Array.from({ length: 20 }, async (_, n) => {
        const h = header("docs.burst");
        return { h, n, body: await pub.seal("docs.burst", h, n) };
      }),
    );
    expect(mesh.distributor.stats.served - before).toBe(1);
    const opened = await Promise.all(sealed.map(async (s) => (await sub.open("docs.burst", s.h, s.body, alice.publicKey)).data));
    expect(opened).toEqual(sealed.map((s) => s.n));
    expect(mesh.distributor.stats.served - before).toBe(2); // and one for the subscriber
  });

  it("an unreachable distributor: a fetch fails unavailable after its attempts; a credential held stays usable", async () => {
    mesh = await eventMesh(["alice"]);
    const alice = await mesh.member("alice", "pub:docs.>");
    const pub = mesh.sealer(alice, { attempts: 2, fetchTimeout: 500 });
    await pub.seal("docs.a", header("docs.a"), 1);
    await mesh.keysAgent.close();
    // Held (lease 60 s): publishing on docs.a goes on; docs.b needs a key nobody can give now.
    await pub.seal("docs.a", header("docs.a"), 2);
    const err = await rejectsWith(pub.seal("docs.b", header("docs.b"), 1), ZmcpError, "unavailable");
    expect(err.message).toContain("after 2 attempts");
  });

  it("bench/events-crypto runs with tiny counts and prints both rows", async () => {
    const { stdout } = await run(process.execPath, [built("bench/events-crypto.js"), "--count", "20", "--rounds", "1"], { timeout: 60_000 });
    expect(stdout).toMatch(/\| 256 B \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 305 B \|/);
    expect(stdout).toMatch(/\| 64 KiB \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 305 B \|/);
  }, 90_000);
});
