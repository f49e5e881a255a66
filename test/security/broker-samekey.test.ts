/**
 * Finding 5 of the adversarial review of issue 10. Two processes starting at once with one key:
 * the first was silently unroutable for ~6 s (its approval did not count as owning the route,
 * so nobody was told), then the route flipped back. And an agent frozen (SIGSTOP) for less than
 * the broker's liveness timeout redialled on resume and, when its old connection was still open
 * at the broker, the broker counted and logged a takeover although no second process existed. Now a ZAP approval owns the route like a
 * heartbeat does, and only a live old connection (heard within a heartbeat interval) makes a
 * takeover; a silent one is a reconnect.
 */
import { encode } from "@msgpack/msgpack";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import { createLogger } from "../../src/support/log.js";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { sleep } from "../support/wait.js";

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

describe("one key, two connections", () => {
  it("two processes starting at once: one is told displaced at once, the takeover is counted, the other serves every call", async () => {
    fx = tempCerts("alice", "bob");
    const lines: Array<Record<string, unknown>> = [];
    broker = await startBroker(fx, { log: createLogger("info", (l) => lines.push(JSON.parse(l))) });
    const [a, b] = await Promise.all([connectAgent(fx, "bob", broker.endpoint), connectAgent(fx, "bob", broker.endpoint)]);
    agents.push(a, b);
    a.tool("who", { input: z.object({}) }, () => "a");
    b.tool("who", { input: z.object({}) }, () => "b");
    const first = await Promise.race([a.closed.then((e) => ({ who: "a", e })), b.closed.then((e) => ({ who: "b", e })), sleep(3000).then(() => undefined)]);
    expect(first?.e).toBeInstanceOf(RemoteError);
    expect((first!.e as RemoteError).code).toBe("displaced");
    const survivor = first!.who === "a" ? "b" : "a";
    const alice = await connectAgent(fx, "alice", broker.endpoint);
    agents.push(alice);
    for (let i = 0; i < 5; i++) expect(await alice.call("bob", "who", {}, { timeout: 2000, retry: false })).toBe(survivor);
    expect(broker.stats.takeovers).toBe(1);
    expect(lines.some((l) => String(l["msg"]).startsWith("key taken over"))).toBe(true);
  });

  it("a new connection while the old one is open but silent past a heartbeat interval (a frozen or redialling process): a reconnect, told all the same, not a takeover", async () => {
    fx = tempCerts("bob");
    const lines: Array<Record<string, unknown>> = [];
    broker = await startBroker(fx, { heartbeatInterval: 500, heartbeatTimeout: 4000, log: createLogger("info", (l) => lines.push(JSON.parse(l))) });
    const hb = () => [encodeHeader({ v: PROTOCOL_VERSION, k: "hb", id: newId(), to: "", exp: Date.now() + 5000 }), encode({ svc: [] })];
    // The old connection: heard, then silent (frozen) for longer than the interval, within the timeout.
    const old = await rawPeer(fx, "bob", broker.endpoint);
    peers.push(old);
    await old.socket.send(hb());
    expect(decodeHeader((await old.receive())[1]!).k).toBe("ack");
    await sleep(1200);
    const redial = await rawPeer(fx, "bob", broker.endpoint);
    peers.push(redial);
    const notice = decodeHeader((await old.receive(3000))[1]!);
    expect(notice).toMatchObject({ k: "nack", code: "displaced" });
    expect(broker.stats.takeovers).toBe(0);
    expect(broker.stats.reconnects).toBe(1);
    expect(lines.some((l) => String(l["msg"]).startsWith("key taken over"))).toBe(false);
    expect(lines.find((l) => String(l["msg"]).startsWith("key reconnected"))).toMatchObject({ level: "info", name: "bob" });

    // Heard within the interval: a live connection, so a third one is a takeover.
    await redial.socket.send(hb());
    expect(decodeHeader((await redial.receive())[1]!).k).toBe("ack");
    const third = await rawPeer(fx, "bob", broker.endpoint);
    peers.push(third);
    expect(decodeHeader((await redial.receive(3000))[1]!)).toMatchObject({ k: "nack", code: "displaced" });
    expect(broker.stats.takeovers).toBe(1);
  });
});
