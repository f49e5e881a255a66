/**
 * Group keys and durable subscriptions (docs/EVENTS.md "Durable subscriptions"): a publication a
 * store kept longer than its publisher's credential lease is judged at its own time (the time
 * sealed in its header), so it still opens for a durable subscriber; judged now, as a live one
 * is, it is refused `credential_expired`. The real distributor, with a short lease.
 */
import { encode } from "@msgpack/msgpack";
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { EventSealError } from "../../src/errors.js";
import { eventMesh, type EventMesh } from "../support/event-keys.js";
import { sleep } from "../support/wait.js";

describe("events: group keys open a kept publication at its own time", () => {
  let mesh: EventMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it("a credential past its lease opens a kept publication judged at its time, and is refused credential_expired judged now", async () => {
    mesh = await eventMesh(["alice", "bob"], { leaseMs: 1000 });
    const alice = await mesh.member("alice", "pub:docs.>");
    const bob = await mesh.member("bob", "sub:docs.>");
    const pub = mesh.sealer(alice);
    const sub = mesh.sealer(bob, { clockSkew: 0 });
    const time = Date.now();
    const h = encode({ v: 1, k: "pub", id: randomBytes(16), to: "docs.kept", exp: time + 60_000, sq: 1 });
    const body = await pub.seal("docs.kept", h, { n: 1 });
    await sleep(1500); // the lease (1 s) is over: alice's credential has expired
    const now = await sub.open("docs.kept", h, body, alice.publicKey).catch((e: unknown) => e);
    expect(now).toBeInstanceOf(EventSealError);
    expect((now as EventSealError).code).toBe("bad_seal");
    expect((now as EventSealError).reason).toBe("credential_expired");
    const kept = await sub.open("docs.kept", h, body, alice.publicKey, { at: time });
    expect(kept.data).toEqual({ n: 1 });
    expect(kept.publisher).toBe(alice.publicKey);
    // Judged at a time after the lease (a header claiming a later time), it is refused too.
    const late = await sub.open("docs.kept", h, body, alice.publicKey, { at: Date.now() }).catch((e: unknown) => e);
    expect((late as EventSealError).reason).toBe("credential_expired");
  });
});
