/**
 * Adversarial review of issue 12 (answer cache under pressure, #dropPastDeadline): an honest
 * retry (same request id, same `exp`) must never make a tool run twice.
 *
 * The callee reads a caller's deadline on its own clock as `exp + offset` (wire/clock.ts rule 3),
 * and the offset is re-estimated per message: it restarts when the caller's clock steps back.
 * The answer cache stores the deadline of the FIRST copy and, under pressure, drops answers
 * "past their deadline" on the assumption that no later copy can be accepted. But a retry
 * whose offset is larger (the caller's clock stepped back: NTP, VM resume) is accepted after
 * that stored deadline by the inbound deadline step, finds no answer, and runs the tool again.
 * The same without any clock step when the broker's queueing delay for the caller grows (the
 * offset's minimum filter then rises two periods later): congestion, or a hostile broker.
 */
import { decode } from "@msgpack/msgpack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { AnswerCache } from "../../src/agent/idempotency.js";
import type { Broker } from "../../src/broker/broker.js";
import { ClockOffsets } from "../../src/wire/clock.js";
import { decodeHeader, newId } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";

let fx: CertFixture;
let broker: Broker;
let bob: Agent;
let m: RawPeer;
const runs = new Map<string, number>();

beforeAll(async () => {
  fx = tempCerts("bob", "mallory");
  broker = await startBroker(fx);
  // A small per-caller share so that the cache is "under pressure" after two answers; a start
  // grace covering the caller's 10 s clock step (bob was just started).
  bob = await connectAgent(fx, "bob", broker.endpoint, { startGrace: 30_000, answerLimits: { maxEntriesPerOwner: 2 } });
  bob.tool("charge", { input: z.object({ order: z.string() }) }, ({ order }) => {
    runs.set(order, (runs.get(order) ?? 0) + 1);
    return { charged: order };
  });
  m = await rawPeer(fx, "mallory", broker.endpoint);
});

afterAll(async () => {
  m?.close();
  await bob?.close();
  await broker?.close();
  fx?.cleanup();
});

async function ask(rid: Uint8Array, order: string, ts: number, exp: number): Promise<{ st: string; result?: unknown; error?: { code: string } }> {
  await m.socket.send(m.frames(fx.key("bob"), { t: "req", ts, rid, tool: "charge", args: { order } }, { exp }));
  const [from, header, body] = await m.receive(3000);
  expect(from!.toString("latin1")).toBe(fx.key("bob"));
  expect(decodeHeader(header!).k).toBe("res");
  return decode(m.sealer.open(fx.key("bob"), body!)) as { st: string; result?: unknown };
}

describe("hotpath-attack: honest retry after the caller's clock steps back, cache under pressure", () => {
  it("a retry of an answered request (same rid, same exp) does not run the tool a second time", async () => {
    const rid = newId();
    const t0 = Date.now();
    const exp = t0 + 1500; // a 1.5 s call
    expect(await ask(rid, "order-1", t0, exp)).toMatchObject({ st: "ok" });
    // Another call of the same caller fills its share (2 entries); its deadline is far away.
    expect(await ask(newId(), "filler", Date.now(), Date.now() + 30_000)).toMatchObject({ st: "ok" });
    await new Promise((r) => setTimeout(r, 1800)); // real time is now past order-1's deadline
    // An ordinary short call of the same caller: the share is full, so order-1's answer (past
    // its deadline on bob's estimate) is dropped to make room.
    expect(await ask(newId(), "short", Date.now(), Date.now() + 400)).toMatchObject({ st: "ok" });
    await new Promise((r) => setTimeout(r, 700));
    // The answer to order-1 was lost; meanwhile the caller's clock stepped back by 10 s (NTP). By
    // its clock the call still has ~8 s to go, so the SDK retries: same rid, same exp, fresh id/ts.
    const peerNow = Date.now() - 10_000;
    expect(peerNow).toBeLessThan(exp); // honest: before the deadline on the caller's clock
    const retry = await ask(rid, "order-1", peerNow, exp);
    // bob accepted the retry past its dropped answer (the deadline step read it as exp + 10 s):
    // the answer cache remembers the highest exp it dropped for this caller and refuses the
    // retry `expired` (src/agent/idempotency.ts) ...
    expect(retry).toMatchObject({ st: "error", error: { code: "expired" } });
    // ... so the tool ran once only.
    expect(runs.get("order-1")).toBe(1);
  });
});

describe("hotpath-attack: the same at the class level (inbound.ts's deadline step + AnswerCache)", () => {
  it("a retry accepted by the deadline step is never a new run", () => {
    const clocks = new ClockOffsets();
    const cache = new AnswerCache(120_000, { maxEntries: 1000, maxBytes: 1 << 30, maxEntriesPerOwner: 2, maxBytesPerOwner: 1 << 30 }, 60_000);
    const T = 1_800_000_000_000;
    // inbound.ts: deadline = exp + clocks.observe(peer, ts, now); refused if deadline < now.
    const deliver = (key: string, ts: number, exp: number, now: number) => {
      const deadline = exp + clocks.observe("caller", ts, now, now - T);
      if (deadline < now) return "expired";
      const begun = cache.begin(key, "caller", now, deadline, exp); // the raw exp too, as handler.ts passes it
      if (begun.kind === "new") cache.finish(key, { st: "ok", result: key }, 10, true, now);
      return begun.kind;
    };
    expect(deliver("order-1", T, T + 1500, T + 1)).toBe("new");
    expect(deliver("filler", T + 10, T + 30_000, T + 11)).toBe("new");
    // Past order-1's deadline, a short call of the same caller (share full): order-1's answer is dropped.
    expect(deliver("short", T + 1800, T + 1900, T + 1801)).toBe("new");
    // The caller's clock steps back 10 s; it retries order-1 (same exp) at real T + 2000.
    const verdict = deliver("order-1", T + 2000 - 10_000, T + 1500, T + 2001);
    expect(verdict).not.toBe("expired"); // accepted by the deadline step
    expect(verdict).toBe("dropped"); // refused by the answer cache (its answer was dropped), not run again
  });

  it("no clock step: with a broker queue grown to 20 s (congestion, or a hostile broker), an honest retry is not a second run", () => {
    const clocks = new ClockOffsets();
    const cache = new AnswerCache(120_000, { maxEntries: 1000, maxBytes: 1 << 30, maxEntriesPerOwner: 1, maxBytesPerOwner: 1 << 30 }, 60_000);
    const S = 1_800_000_000_000;
    const runs = new Map<string, number>();
    // Clocks in sync; every message is stamped when sent (ts) and arrives `now` (bob's clock).
    const deliver = (key: string, ts: number, exp: number, now: number) => {
      const deadline = exp + clocks.observe("caller", ts, now, now - S);
      if (deadline < now) return "expired";
      const begun = cache.begin(key, "caller", now, deadline, exp);
      if (begun.kind === "new") {
        runs.set(key, (runs.get(key) ?? 0) + 1);
        cache.finish(key, { st: "ok", result: key }, 10, true, now);
      }
      return begun.kind;
    };
    clocks.observe("caller", S, S + 1, 1); // fast transit: offset 1
    clocks.observe("caller", S + 40_001, S + 60_001, 60_001); // from here the broker's queue delays this caller 20 s
    // A 30 s call, sent at S + 99,000, delivered 20 s later: its deadline read as exp + 1 (the minimum lags).
    expect(deliver("R", S + 99_000, S + 129_000, S + 119_000)).toBe("new");
    // The answer is lost (or dropped by the broker). A short call of the same caller, past R's
    // deadline on bob's estimate, takes the (full) share's room: R's answer is dropped.
    expect(deliver("short", S + 110_000, S + 111_000, S + 130_000)).toBe("new");
    // The SDK's retry of R, sent at S + 112,000 (before exp on its clock), also queued 20 s.
    const verdict = deliver("R", S + 112_000, S + 129_000, S + 132_000);
    expect(verdict).not.toBe("expired"); // accepted: the offset estimate is now 20 s
    expect(runs.get("R")).toBe(1); // the tool must not run again
  });

  it("one caller's full share does not drop another caller's answers (full sweep at most once a second)", () => {
    const cache = new AnswerCache(120_000, { maxEntries: 1000, maxBytes: 1 << 30, maxEntriesPerOwner: 2, maxBytesPerOwner: 1 << 30 }, 60_000);
    const T = 1_800_000_000_000;
    // Bob's answer: deadline T + 1000, kept (no pressure) until T + 61,001 for his retries.
    expect(cache.begin("bob:1", "bob", T, T + 1000).kind).toBe("new");
    cache.finish("bob:1", { st: "ok", result: "bob" }, 10, true, T);
    // Mallory fills only her own share with long-deadline answers.
    for (const k of ["m:1", "m:2"]) {
      expect(cache.begin(k, "mallory", T, T + 100_000).kind).toBe("new");
      cache.finish(k, { st: "ok", result: k }, 10, true, T);
    }
    // Bob's share is not full and neither is the total. Mallory's next request at T + 2000:
    cache.begin("m:3", "mallory", T + 2000, T + 100_000);
    // Bob's answer must still be there (only Mallory's own share was full).
    const again = cache.begin("bob:1", "bob", T + 2001, T + 1000);
    expect(again.kind).toBe("earlier");
  });
});
