/**
 * Adversarial review of issue 12 (regression, held): the broker decodes every header with the
 * hand-written fast path first. A raw CURVE peer sends thousands of crafted and mutated header
 * frames (plain forms the fast path takes, with bytes flipped, truncated, extended, non-minimal
 * integer and string forms, repeated keys, huge maps): the broker must neither crash nor hang,
 * and an honest call still goes through. Also: a tool run whose handler never settles gives its
 * concurrency slot back at its deadline (support/deadlines.ts).
 */
import { Encoder } from "@msgpack/msgpack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { drain, rawPeer, type RawPeer } from "../support/raw-peer.js";
import { rng } from "../support/random.js";

let fx: CertFixture;
let broker: Broker;
let alice: Agent;
let bob: Agent;
let m: RawPeer;

beforeAll(async () => {
  fx = tempCerts("alice", "bob", "mallory");
  broker = await startBroker(fx);
  bob = await connectAgent(fx, "bob", broker.endpoint, { maxConcurrency: 1 });
  bob.tool("echo", { input: z.object({ n: z.number() }) }, ({ n }) => ({ n }));
  bob.tool("hang", { input: z.object({}) }, () => new Promise(() => {}));
  alice = await connectAgent(fx, "alice", broker.endpoint);
  m = await rawPeer(fx, "mallory", broker.endpoint);
});

afterAll(async () => {
  m?.close();
  await alice?.close();
  await bob?.close();
  await broker?.close();
  fx?.cleanup();
});

describe("hotpath-attack: crafted headers at the broker (regression)", () => {
  it("survives 3,000 crafted header frames and still routes an honest call", async () => {
    const r = rng(99);
    const enc = new Encoder({ ignoreUndefined: true });
    const bobKey = fx.key("bob");
    for (let i = 0; i < 3000; i++) {
      const h: Record<string, unknown> = { v: PROTOCOL_VERSION, k: ["req", "res", "evt", "hb", "ack", "nack", "pub"][i % 7], id: newId(), to: i % 3 ? bobKey : "svc:x", exp: Date.now() + 5000 };
      if (i % 5 === 0) h["dur"] = true;
      if (i % 11 === 0) h["sq"] = 2 ** 53 + i;
      let frame = Uint8Array.from(enc.encode(h));
      switch (i % 6) {
        case 0:
          frame[Math.floor(r() * frame.length)] = Math.floor(r() * 256);
          break;
        case 1:
          frame = frame.subarray(0, Math.floor(r() * frame.length));
          break;
        case 2:
          frame = Uint8Array.from([...frame, 0xc0]);
          break;
        case 3:
          frame[0] = 0x8f; // more entries than written
          break;
        case 4:
          frame = Uint8Array.from([0xdf, 0xff, 0xff, 0xff, 0xff, ...frame.subarray(1)]); // map32 of 4 G entries
          break;
        default:
          frame = Uint8Array.from({ length: Math.floor(r() * 600) }, () => Math.floor(r() * 256));
      }
      await m.socket.send([frame, Buffer.alloc(64)]);
    }
    await drain(m, 300);
    expect(await alice.call(fx.key("bob"), "echo", { n: 7 }, { timeout: 5000 })).toEqual({ n: 7 });
  });
});

describe("hotpath-attack: a handler that never settles (regression)", () => {
  it("gives its only concurrency slot back at its deadline", async () => {
    await expect(alice.call(fx.key("bob"), "hang", {}, { timeout: 400, retry: false })).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 100));
    expect(await alice.call(fx.key("bob"), "echo", { n: 1 }, { timeout: 3000 })).toEqual({ n: 1 });
  });
});
