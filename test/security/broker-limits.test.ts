/**
 * What a peer can make the broker do, bounded: responses draw on a budget (labelling a flood
 * `k: "res"` skips the rate limit), and log lines a peer causes are rate limited and counted.
 */
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { generateCertificate } from "../../src/auth/certs.js";
import { decodeHeader, newId } from "../../src/wire/envelope.js";
import { createLogger } from "../../src/support/log.js";
import type { Broker } from "../../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { startBroker } from "../support/mesh.js";
import { drain, rawPeer, type RawPeer } from "../support/raw-peer.js";

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

const response = () => ({ t: "res" as const, ts: Date.now(), st: "ok" as const, result: 1 });
const request = () => ({ t: "req" as const, ts: Date.now(), rid: newId(), tool: "x", args: {} });


describe("the broker's rate limit covers responses", () => {
  it("a flood labelled k: res is refused rate_limited past the burst; a response a request paid for passes", async () => {
    fx = tempCerts("alice", "bob", "carol");
    broker = await startBroker(fx, { rateLimit: { perSecond: 0.5, burst: 3 } });
    const alice = await rawPeer(fx, "alice", broker.endpoint);
    const bob = await rawPeer(fx, "bob", broker.endpoint);
    const carol = await rawPeer(fx, "carol", broker.endpoint);
    peers.push(alice, bob, carol);
    for (let i = 0; i < 20; i++) await alice.socket.send(alice.frames(fx.key("bob"), response(), { re: newId() }));
    const atBob = await drain(bob);
    const nacks = (await drain(alice)).map((f) => decodeHeader(f[1]!));
    expect(atBob.length).toBeLessThanOrEqual(4);
    expect(nacks.filter((h) => h.k === "nack" && h.code === "rate_limited").length).toBeGreaterThanOrEqual(16);
    expect(broker.stats.refused.rate_limited).toBeGreaterThanOrEqual(16);

    // Bob spends his own bucket, then answers carol's request: that response is paid for.
    for (let i = 0; i < 4; i++) await bob.socket.send(bob.frames(fx.key("alice"), request()));
    await drain(bob);
    await carol.socket.send(carol.frames(fx.key("bob"), request()));
    const [req] = await drain(bob);
    expect(req?.[0]?.toString("latin1")).toBe(fx.key("carol"));
    const reqHeader = decodeHeader(req![1]!);
    await bob.socket.send(bob.frames(fx.key("carol"), response(), { re: reqHeader.id }));
    const atCarol = await drain(carol);
    expect(atCarol.map((f) => decodeHeader(f[1]!).k)).toEqual(["res"]);
    // The credit is spent: the next unsolicited response is refused.
    await bob.socket.send(bob.frames(fx.key("carol"), response(), { re: newId() }));
    expect((await drain(bob)).map((f) => decodeHeader(f[1]!).code)).toEqual(["rate_limited"]);
  });
});

describe("log lines a peer causes are rate limited", () => {
  it("40 refused handshakes with fresh keys and 40 rate_limited refusals log a line or two each, with counts", async () => {
    fx = tempCerts("alice", "bob");
    const lines: Array<Record<string, unknown>> = [];
    broker = await startBroker(fx, { rateLimit: { perSecond: 0.5, burst: 2 }, log: createLogger("debug", (l) => lines.push(JSON.parse(l))) });
    for (let i = 0; i < 40; i++) {
      const stranger = generateCertificate();
      const socket = new zmq.Dealer({ curveServerKey: fx.key("broker"), curvePublicKey: stranger.publicKey, curveSecretKey: stranger.secretKey, linger: 0 });
      const failed = (async () => {
        for await (const event of socket.events) if (event.type.startsWith("handshake:error")) return;
      })();
      socket.connect(broker.endpoint);
      await failed;
      socket.close();
    }
    const alice = await rawPeer(fx, "alice", broker.endpoint);
    peers.push(alice);
    for (let i = 0; i < 42; i++) await alice.socket.send(alice.frames(fx.key("bob"), request()));
    await drain(alice);
    expect(broker.stats.handshakeFailures.auth).toBe(40);
    expect(broker.stats.refused.rate_limited).toBe(40);
    const count = (msg: string) => lines.filter((l) => l["msg"] === msg).length;
    expect(count("handshake refused: key not in allowlist")).toBeLessThanOrEqual(2);
    expect(count("handshake failed")).toBeLessThanOrEqual(2);
    expect(lines.filter((l) => l["msg"] === "refused" && l["code"] === "rate_limited").length).toBeLessThanOrEqual(2);
    const metrics = await broker.metrics.metrics();
    const suppressed = Number(/zmcp_broker_log_lines_suppressed_total (\d+)/.exec(metrics)?.[1]);
    expect(suppressed).toBeGreaterThanOrEqual(3 * 38);
  });
});
