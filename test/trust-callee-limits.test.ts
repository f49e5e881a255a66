/**
 * issue 10, callee side: the job table and the idempotency answer cache are capped in entries
 * and bytes, per caller and in total (past the caps: `busy`), and a message's value count is
 * capped before it is decoded.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../src/agent.js";
import type { Broker } from "../src/broker.js";
import { ProtocolError, RemoteError } from "../src/errors.js";
import { checkMsgpack } from "../src/msgpack-guard.js";
import { encode } from "@msgpack/msgpack";
import { connectAgent, rejectsWith, startBroker, tempCerts, type CertFixture } from "./helpers.js";

let fx: CertFixture;
let broker: Broker;
let bob: Agent;
let alice: Agent;
let carol: Agent;
const KB60 = "x".repeat(60_000);

beforeAll(async () => {
  fx = tempCerts("alice", "bob", "carol");
  broker = await startBroker(fx);
  bob = await connectAgent(fx, "bob", broker.endpoint, {
    jobLimits: { maxBytesPerOwner: 100_000, maxEntriesPerOwner: 50 },
    answerLimits: { maxBytesPerOwner: 100_000, maxBytes: 250_000 },
  });
  bob.tool("big", { input: z.object({ n: z.number() }) }, ({ n }) => ({ n, blob: KB60 }));
  bob.tool("big-job", { input: z.object({ n: z.number() }), job: true }, ({ n }) => ({ n, blob: KB60 }));
  alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false, timeout: 5000 });
  carol = await connectAgent(fx, "carol", broker.endpoint, { retry: false, timeout: 5000 });
});

afterAll(async () => {
  await Promise.all([alice?.close(), carol?.close(), bob?.close()]);
  await broker?.close();
  fx?.cleanup();
});

describe("byte budgets", () => {
  it("finished jobs count their result bytes per caller: past the cap a new job is refused busy; other callers still start jobs", async () => {
    for (let n = 0; n < 2; n++) expect(await (await alice.start("bob", "big-job", { n })).result).toMatchObject({ n });
    const err = await rejectsWith(alice.start("bob", "big-job", { n: 2 }), RemoteError, "busy");
    expect(err.message).toMatch(/job table full/);
    expect(await (await carol.start("bob", "big-job", { n: 9 })).result).toMatchObject({ n: 9 });
  });

  it("remembered answers count their bytes per caller and in total: past the caps new calls are refused busy", async () => {
    // alice's remembered answers so far: her job starts (small). Two 60 KB answers fit her 100 KB.
    for (let n = 0; n < 2; n++) expect(await alice.call("bob", "big", { n })).toMatchObject({ n });
    const err = await rejectsWith(alice.call("bob", "big", { n: 2 }), RemoteError, "busy");
    expect(err.message).toMatch(/idempotency cache full/);
    // carol has room of her own until the 250 KB total is reached.
    for (let n = 0; n < 2; n++) expect(await carol.call("bob", "big", { n })).toMatchObject({ n });
    await rejectsWith(carol.call("bob", "big", { n: 2 }), RemoteError, "busy");
  });
});

describe("decoding cost", () => {
  it("a message holding more values than the cap (all containers together) is refused before decoding", () => {
    // 40 maps of 2,000 keys: no single container is large, together they hold 160,000 values.
    const many = Array.from({ length: 40 }, () => Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, i])));
    let err: unknown;
    try {
      checkMsgpack(encode(many), 32);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe("bad_frame");
    expect(String((err as Error).message)).toMatch(/values in one message/);
  });
});
