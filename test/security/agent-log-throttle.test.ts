/**
 * Finding 2 of the adversarial review of issue 10: an admitted peer that sends an agent
 * unsolicited responses and events (or requests that fail) made it write one warn line each
 * (20,000 messages → 20,000 lines, 4.6 MB). Every line a peer can cause now goes through the
 * log throttle: one line per event and peer per `logInterval`, the next saying how many were
 * skipped (`suppressed`).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { createLogger } from "../../src/support/log.js";
import { encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { sleep, waitFor } from "../support/wait.js";

let fx: CertFixture | undefined;
let broker: Broker | undefined;
const agents: Agent[] = [];
const peers: RawPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  for (const a of agents.splice(0)) await a.close();
  await broker?.close();
  broker = undefined;
  fx?.cleanup();
  fx = undefined;
});

describe("agent log lines a peer can cause are throttled", () => {
  it("1,000 unsolicited res/evt and 200 garbage requests give a few lines, then one line with the count", async () => {
    fx = tempCerts("bob", "mallory");
    broker = await startBroker(fx);
    const lines: Array<Record<string, unknown>> = [];
    const bob = await connectAgent(fx, "bob", broker.endpoint, { log: createLogger("debug", (l) => lines.push(JSON.parse(l))), logInterval: 1000 });
    agents.push(bob);
    const mallory = await rawPeer(fx, "mallory", broker.endpoint);
    peers.push(mallory);
    const N = 1000;
    const dropped = () => Object.values(bob.stats.dropped).reduce<number>((a, b) => a + (b ?? 0), 0);
    for (let i = 0; i < N; i++) {
      const k = i % 2 ? "res" : "evt";
      const header = encodeHeader({ v: PROTOCOL_VERSION, k, id: newId(), to: bob.publicKey, exp: Date.now() + 5000, ...(k === "res" ? { re: newId() } : {}) });
      await mallory.socket.send([header, Buffer.alloc(48)]);
      // In batches that bob has taken: unpaced, a loaded machine let the broker's queue to bob
      // (its high-water mark) fill, and the broker refused the rest `busy` (never counted here).
      if (i % 200 === 199) await waitFor(() => dropped() >= i + 1, 10_000);
    }
    // Requests bob cannot open: each is refused (answered), and logged at debug, throttled too.
    for (let i = 0; i < 200; i++) {
      await mallory.socket.send([encodeHeader({ v: PROTOCOL_VERSION, k: "req", id: newId(), to: bob.publicKey, exp: Date.now() + 5000 }), Buffer.alloc(48)]);
    }
    await waitFor(() => dropped() >= N && bob.stats.requests >= 200, 10_000);
    const flood = lines.filter((l) => l["from"] === fx!.key("mallory"));
    // One line per (event, peer, reason or code) per interval: a handful, not 1,200.
    expect(flood.some((l) => l["msg"] === "dropped message")).toBe(true);
    expect(flood.some((l) => l["msg"] === "refused message")).toBe(true);
    expect(flood.length).toBeLessThanOrEqual(6);
    // After the interval the next such message logs once, with the count of those skipped.
    await sleep(1100);
    const before = lines.length;
    for (let i = 0; i < 2; i++) {
      const header = encodeHeader({ v: PROTOCOL_VERSION, k: "res", id: newId(), to: bob.publicKey, exp: Date.now() + 5000, re: newId() });
      await mallory.socket.send([header, Buffer.alloc(48)]);
    }
    await waitFor(() => lines.length > before, 5000);
    const summary = lines.slice(before).find((l) => typeof l["suppressed"] === "number");
    expect(summary?.["msg"]).toBe("dropped message");
    expect(summary!["suppressed"] as number).toBeGreaterThanOrEqual(N / 2 - 4);
  });
});
