/**
 * Finding 1 of the adversarial review of issue 10: `k: "hb"` skipped the broker's rate limit
 * (any body of at most 16 bytes, garbage included, and every one answered). Now a liveness
 * `hb` is free only as the canonical `{svc: []}` and within a small allowance per key; the rest
 * draws on the sender's bucket and is refused `rate_limited` past it.
 */
import { encode } from "@msgpack/msgpack";
import { afterEach, describe, expect, it } from "vitest";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import type { Broker } from "../../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { startBroker } from "../support/mesh.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";

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

/** What a zmcp agent without services sends as its sign of life. */
const LIVENESS_HB_BODY = Buffer.from(encode({ svc: [] }));
const hb = (body: Uint8Array) => [encodeHeader({ v: PROTOCOL_VERSION, k: "hb", id: newId(), to: "", exp: Date.now() + 5000 }), body];

/** Receives until `timeoutMs` of silence; the broker's replies, by ack or nack code. */
async function replies(peer: RawPeer, timeoutMs = 500): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < 10_000; i++) {
    let frames: Buffer[];
    try {
      frames = await peer.receive(timeoutMs);
    } catch {
      break;
    }
    const h = decodeHeader(frames[1]!);
    const k = h.k === "ack" ? "ack" : String(h.code);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

describe("the broker's rate limit covers heartbeats", () => {
  it("a flood of hb (canonical and garbage) gets a handful of answers' worth of budget, the rest rate_limited", async () => {
    fx = tempCerts("mallory");
    broker = await startBroker(fx, { rateLimit: { perSecond: 0.5, burst: 5 }, heartbeatInterval: 2000 });
    const mallory = await rawPeer(fx, "mallory", broker.endpoint);
    peers.push(mallory);
    const N = 400;
    for (let i = 0; i < N; i++) await mallory.socket.send(hb(i % 2 === 0 ? LIVENESS_HB_BODY : Buffer.from("garbage-garbage!")));
    const got = await replies(mallory);
    // Allowance (burst 2, plus refill) + main bucket (burst 5, plus refill): nowhere near N.
    const passed = (got.ack ?? 0) + (got.bad_frame ?? 0);
    expect(passed).toBeGreaterThanOrEqual(5);
    expect(passed).toBeLessThanOrEqual(20);
    expect(got.rate_limited).toBeGreaterThanOrEqual(N - 20);
    expect(broker.stats.refused.rate_limited).toBeGreaterThanOrEqual(N - 20);
    expect(broker.stats.heartbeats).toBeLessThanOrEqual(20);
  });

  it("an agent whose bucket is empty still has its liveness hb acked (the allowance), once or twice per interval", async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx, { rateLimit: { perSecond: 0.1, burst: 3 }, heartbeatInterval: 60_000 });
    const alice = await rawPeer(fx, "alice", broker.endpoint);
    peers.push(alice);
    // Spend the main bucket on garbage heartbeats (and more: refused).
    for (let i = 0; i < 6; i++) await alice.socket.send(hb(Buffer.from([0xc0])));
    const spent = await replies(alice);
    expect(spent.rate_limited).toBeGreaterThanOrEqual(3);
    for (let i = 0; i < 4; i++) await alice.socket.send(hb(LIVENESS_HB_BODY));
    const live = await replies(alice);
    expect(live).toEqual({ ack: 2, rate_limited: 2 });
  });
});
