/**
 * issue 10, callee side: the time rules (src/wire/clock.ts) against a raw peer that seals messages
 * with the `ts` and `exp` it chooses: fractional timestamps (Python's time.time() * 1000), and a
 * clock that steps back by more than a call's timeout. Also: dropped messages are counted.
 */
import { decode } from "@msgpack/msgpack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { ClockOffsets } from "../../src/wire/clock.js";
import { decodeHeader, newId } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";

let fx: CertFixture;
let broker: Broker;
let bob: Agent;
let m: RawPeer;

beforeAll(async () => {
  fx = tempCerts("bob", "mallory");
  broker = await startBroker(fx);
  // A start grace covering the 20 s step: bob was just started (the default grace is 2 s).
  bob = await connectAgent(fx, "bob", broker.endpoint, { startGrace: 30_000 });
  bob.tool("echo", { input: z.object({ n: z.number() }) }, ({ n }) => ({ n }));
  m = await rawPeer(fx, "mallory", broker.endpoint);
});

afterAll(async () => {
  m?.close();
  await bob?.close();
  await broker?.close();
  fx?.cleanup();
});

/** Sends a request stamped `ts` with deadline `exp` (both by the peer's clock) and reads bob's answer. */
async function ask(n: number, ts: number, exp: number): Promise<{ st: string; result?: unknown; error?: { code: string } }> {
  await m.socket.send(m.frames(fx.key("bob"), { t: "req", ts, rid: newId(), tool: "echo", args: { n } }, { exp }));
  const [from, header, body] = await m.receive(3000);
  expect(from!.toString("latin1")).toBe(fx.key("bob")); // bob's answer, not a broker's nack
  const h = decodeHeader(header!);
  expect(h.k).toBe("res");
  expect(Number.isInteger(h.exp)).toBe(true);
  return decode(m.sealer.open(fx.key("bob"), body!)) as { st: string; result?: unknown };
}

describe("time rules", () => {
  it("a fractional ts and exp are read as integer ms: the request is answered, and so are the next ones", async () => {
    const now = Date.now() + 0.625;
    expect(await ask(1, now, now + 5000)).toMatchObject({ st: "ok", result: { n: 1 } });
    expect(await ask(2, Date.now() + 0.5, Date.now() + 5000)).toMatchObject({ st: "ok", result: { n: 2 } });
    expect(await ask(3, Date.now(), Date.now() + 5000)).toMatchObject({ st: "ok", result: { n: 3 } });
  });

  it("a peer whose clock steps back by more than the call's timeout (inside the replay window) is not refused expired", async () => {
    expect(await ask(4, Date.now(), Date.now() + 5000)).toMatchObject({ st: "ok" });
    const step = 20_000; // > the 5 s timeout, < the 60 s replay window
    const peerNow = Date.now() - step;
    expect(await ask(5, peerNow, peerNow + 5000)).toMatchObject({ st: "ok", result: { n: 5 } });
    // On the stepped clock, a deadline that has really passed is still refused.
    const later = Date.now() - step;
    expect(await ask(6, later, later - 1000)).toMatchObject({ st: "error", error: { code: "expired" } });
  });
});

describe("clock offsets (clock.ts, rule 3)", () => {
  it("restart when this process's own wall clock steps against its monotonic clock, and are integers", () => {
    const clocks = new ClockOffsets();
    const t0 = 1_800_000_000_000;
    expect(clocks.observe("p", t0 - 0.75, t0, 1000)).toBe(1); // a fractional ts is read floored: integer ms
    expect(clocks.observe("p", t0 + 100, t0 + 105, 1105)).toBe(1); // the min filter keeps the smallest
    // Our wall clock jumps 20 s ahead while 100 ms pass: the old minimum would put every deadline
    // of this peer 20 s early (calls refused expired).
    expect(clocks.observe("p", t0 + 200, t0 + 20_205, 1205)).toBe(20_005);
  });
});

describe("dropped messages are counted by reason", () => {
  it("a response or event bob cannot accept is counted in stats.dropped", async () => {
    // A response to nothing pending (and stamped outside the replay window): dropped before it
    // is even opened (answerer.ts), and counted.
    const before = bob.stats.dropped["unsolicited"] ?? 0;
    await m.socket.send(m.frames(fx.key("bob"), { t: "res", ts: Date.now() - 600_000, st: "ok", result: 1 }, { re: newId() }));
    await waitFor(() => (bob.stats.dropped["unsolicited"] ?? 0) > before, 3000, "unsolicited counted");
  });
});
