/**
 * Durable subscriptions against a broker that replays what it kept (docs/EVENTS.md "Durable
 * subscriptions", PROTOCOL §19.4): a stand-in broker (test/support/stand-in-broker.ts) hands a
 * durable subscriber publications older than its replay window, as a store would, then hands
 * them again. Each is delivered once, in order, and never again (no double delivery that looks
 * new, gaps stay right); a non-durable subscription takes none of them.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Publication } from "../../src/agent/subscriber.js";
import { createLogger } from "../../src/support/log.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { pskEvents } from "../support/events-psk.js";
import { connectAgent } from "../support/mesh.js";
import { startRelay, type Captured, type Relay } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

describe("events: durable subscriptions and a broker replaying kept publications", () => {
  let fx: CertFixture;
  let relay: Relay;
  const agents: Agent[] = [];

  beforeEach(async () => {
    fx = tempCerts("alice", "bob", "carol");
    relay = await startRelay(fx);
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    relay.close();
    fx.cleanup();
  });

  const connect = async (name: string, replayWindow?: number) => {
    const agent = await connectAgent(fx, name, relay.endpoint, { events: pskEvents(), log: createLogger("silent"), ...(replayWindow ? { replayWindow } : {}) });
    agents.push(agent);
    return agent;
  };

  it("kept publications older than the window are delivered once each, in order; handed again, they are refused (counted), never delivered as new", async () => {
    const alice = await connect("alice");
    for (let i = 1; i <= 5; i++) await alice.publish("orders.new", { i });
    await waitFor(() => relay.captured.filter((m) => m.header.k === "pub").length === 5, 5000, "5 publications at the relay");
    const pubs: Captured[] = relay.captured.filter((m) => m.header.k === "pub");
    // Older than bob's replay window (1 s here) and than bob's process: only a store could hand them now.
    await sleep(2500);
    const bob = await connect("bob", 1000);
    const got: Publication[] = [];
    const sub = await bob.subscribe("orders.*", (e) => void got.push(e), { durable: true });
    const carol = await connect("carol", 1000);
    const plain: Publication[] = [];
    await carol.subscribe("orders.*", (e) => void plain.push(e));

    for (const m of pubs) await relay.resend(m, fx.key("bob"));
    await waitFor(() => got.length === 5, 5000, "the 5 kept publications");
    expect(got.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5]);

    // The broker hands them again (it died between sending and deleting, or it is hostile):
    // none is newer than what bob accepted.
    for (const m of [pubs[2]!, pubs[0]!, pubs[4]!]) await relay.resend(m, fx.key("bob"));
    await waitFor(() => (bob.stats.dropped["refused"] ?? 0) === 3, 5000, "3 refused");
    expect(got).toHaveLength(5);
    expect(sub.gaps.total).toBe(0);

    // Out of order (a store does not do it): what is older than the mark is refused, what is newer delivered.
    const alice2 = await connect("alice"); // a restarted publisher: sq from 1 again, but later
    await alice.close();
    await alice2.publish("orders.new", { i: 6 });
    await waitFor(() => relay.captured.filter((m) => m.header.k === "pub").length === 6, 5000, "the restarted publisher's first");
    const restarted = relay.captured.filter((m) => m.header.k === "pub")[5]!;
    await sleep(1500); // older than the window too
    await relay.resend(restarted, fx.key("bob"));
    await waitFor(() => got.length === 6, 5000, "the restarted publisher's publication");
    expect(got[5]!.sequence).toBe(1);
    await relay.resend(pubs[3]!, fx.key("bob")); // from before the restart: older than the mark
    await waitFor(() => (bob.stats.dropped["refused"] ?? 0) === 4, 5000, "4 refused");
    expect(got).toHaveLength(6);

    // Carol's subscription is not durable: what is older than her window is refused, not delivered.
    for (const m of pubs) await relay.resend(m, fx.key("carol"));
    const refusedByCarol = () => Object.values(carol.stats.dropped).reduce<number>((a, b) => a + (b ?? 0), 0);
    await waitFor(() => refusedByCarol() >= 5, 5000, "carol refuses all 5");
    expect(plain).toHaveLength(0);
  });
});
