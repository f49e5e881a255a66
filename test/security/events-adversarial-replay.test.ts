/**
 * Adversarial review of publish-subscribe: one key filling a subscriber's seen-id cache.
 *
 * A subscriber records each publication's (sender, id) in its replay guard before the sealer
 * opens it (inbound.ts, so a replay costs no open), and the guard is shared by everything the
 * agent receives: requests, answers, publications. Past `maxSeen` (1,000,000) it fails closed,
 * refusing every new message `busy`. Any admitted key, with no token and no topic key, could
 * publish junk on a topic others subscribe to (1,000,000 small publications within the
 * two-window retention, ~8,400/s for 2 min, with no rate limit set) and every subscriber of the
 * topic at once (the broker copies each publication to all of them) then refused all its
 * requests and the answers to its own calls. The same held for one key flooding requests at
 * one agent. The guard now bounds each sender's share (half the cache): that sender alone is
 * refused `busy` past it, and its share frees as its ids age out.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { ReplayGuard } from "../../src/agent/replay.js";
import { ProtocolError } from "../../src/errors.js";
import { encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { pskEvents } from "../support/events-psk.js";
import { connectAgent } from "../support/mesh.js";
import { startBrokerProcess, type BrokerProcess } from "../support/process.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { waitFor } from "../support/wait.js";

const MALLORY = "m".repeat(40);
const ALICE = "a".repeat(40);

function refusal(f: () => void): ProtocolError | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
}

describe("events: one sender cannot fill a subscriber's seen-id cache", () => {
  it("a flood of one sender's ids is refused busy past its share; another sender is still accepted", () => {
    const now = Date.now();
    const guard = new ReplayGuard(60_000, 100, 0);
    const codes = Array.from({ length: 100 }, (_, i) => refusal(() => guard.check(`${MALLORY}:${i}`, now, now, false, MALLORY))?.code);
    expect(codes.filter((c) => c === undefined)).toHaveLength(50);
    expect(codes.slice(50).every((c) => c === "busy")).toBe(true);
    expect(guard.heldBy(MALLORY)).toBe(50);
    // Alice's requests and publications go through, and a replay of hers is still caught.
    for (let i = 0; i < 40; i++) expect(refusal(() => guard.check(`${ALICE}:${i}`, now, now, false, ALICE))).toBeUndefined();
    expect(refusal(() => guard.check(`${ALICE}:7`, now, now, false, ALICE))?.code).toBe("replay");
    // The total bound still fails closed, for everyone, once the cache is full.
    for (let i = 0; i < 10; i++) guard.check(`${"b".repeat(40)}:${i}`, now, now, false, "b".repeat(40));
    expect(refusal(() => guard.check(`${ALICE}:x`, now, now, false, ALICE))?.code).toBe("busy");
  });

  it("a sender's share frees as its ids age out (two windows): accepted again, and the counts do not grow", () => {
    const t0 = Date.now();
    const guard = new ReplayGuard(1000, 10, 0);
    for (let i = 0; i < 5; i++) guard.check(`${MALLORY}:${i}`, t0, t0, false, MALLORY);
    expect(refusal(() => guard.check(`${MALLORY}:5`, t0, t0, false, MALLORY))?.code).toBe("busy");
    const later = t0 + 2001;
    expect(refusal(() => guard.check(`${MALLORY}:6`, later, later, false, MALLORY))).toBeUndefined();
    expect(guard.heldBy(MALLORY)).toBe(1);
    expect(guard.size).toBe(1);
  });
});

describe("events: the subscriber charges each publication's id to the key that sent it", () => {
  let fx: CertFixture | undefined;
  let broker: BrokerProcess | undefined;
  let bob: Agent | undefined;
  let mallory: RawPeer | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    mallory?.close();
    await bob?.close();
    await broker?.stop("SIGKILL");
    fx?.cleanup();
    fx = broker = bob = mallory = undefined;
  });

  it("junk publications from a key without any topic key count against that key's share, before they are opened", async () => {
    fx = tempCerts("bob", "mallory");
    broker = await startBrokerProcess(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint, { events: pskEvents() });
    await bob.subscribe("docs.>", () => undefined);
    const senders: Array<string | undefined> = [];
    const check = ReplayGuard.prototype.check;
    vi.spyOn(ReplayGuard.prototype, "check").mockImplementation(function (this: ReplayGuard, ...args: Parameters<ReplayGuard["check"]>) {
      senders.push(args[4]);
      return check.apply(this, args);
    });
    mallory = await rawPeer(fx, "mallory", broker.endpoint);
    for (let sq = 1; sq <= 20; sq++) {
      const header: Header = { v: PROTOCOL_VERSION, k: "pub", id: newId(), to: "docs.junk", exp: Date.now() + 60_000, sq };
      await mallory.socket.send([encodeHeader(header), new Uint8Array(64)]);
    }
    await waitFor(() => senders.length >= 20 || undefined, 10_000);
    expect(senders.slice(0, 20)).toEqual(Array(20).fill(fx.key("mallory")));
  });
});
