/**
 * Direct links against hostile peers (docs/SECURITY.md, "Direct links"): a listener admits by
 * the broker's rules (allowlist at the handshake, deny list at the handshake and on every
 * request), survives garbage, is no relay, and a caller accepts on a link only answers sealed by
 * the key it asked, falling back to the broker otherwise.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import { decodeHeader, encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { Sealer } from "../../src/wire/seal.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor, sleep } from "../support/wait.js";
import { createLogger, type Logger } from "../../src/support/log.js";
import type { LogEntry } from "../support/process.js";

let fx: CertFixture | undefined;
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await Promise.resolve(stop()).catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

/** A logger that keeps its lines, for asserting what the listener logged. */
function keptLog(): { lines: LogEntry[]; log: Logger } {
  const lines: LogEntry[] = [];
  return { lines, log: createLogger("debug", (line) => lines.push(JSON.parse(line) as LogEntry)) };
}

/** A raw CURVE DEALER to a listener whose key is `serverKey`, as `name`; resolves with the handshake's outcome. */
async function rawDealer(name: string, serverKey: string, endpoint: string): Promise<{ socket: zmq.Dealer; outcome: string }> {
  const cert = fx!.certs[name]!;
  const socket = new zmq.Dealer({ curveServerKey: serverKey, curvePublicKey: cert.publicKey, curveSecretKey: cert.secretKey, linger: 0, receiveTimeout: 3000 });
  stops.push(() => socket.close());
  const outcome = (async () => {
    for await (const event of socket.events) if (event.type === "handshake" || event.type.startsWith("handshake:error")) return event.type;
    return "closed";
  })();
  socket.connect(endpoint);
  return { socket, outcome: await outcome };
}

async function mesh(bobOptions: Parameters<typeof connectAgent>[3] = {}, aliceOptions: Parameters<typeof connectAgent>[3] = {}): Promise<{ broker: Broker; alice: Agent; bob: Agent; runs: { n: number } }> {
  fx ??= tempCerts("alice", "bob", "carol", "mallory");
  const broker = await startBroker(fx);
  stops.push(() => broker.close());
  const bob = await connectAgent(fx, "bob", broker.endpoint, { listen: "tcp://127.0.0.1:0", ...bobOptions });
  stops.push(() => bob.close());
  const runs = { n: 0 };
  bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => {
    runs.n++;
    return { x };
  });
  const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true, linkTimeout: 500, ...aliceOptions });
  stops.push(() => alice.close());
  return { broker, alice, bob, runs };
}

async function untilDirect(alice: Agent): Promise<void> {
  await waitFor(async () => {
    await alice.call("bob", "echo", { x: 0 });
    return (alice.direct.links?.sent ?? 0) > 0;
  }, 10_000, "a call over the direct link");
}

describe("direct links: admission", () => {
  it("a key outside the listener's allowlist is not told the endpoint, and its handshake is refused (the listener logs it)", async () => {
    fx = tempCerts("alice", "bob", "carol", "mallory");
    const kept = keptLog();
    const { broker, bob } = await mesh({ listenAllow: [fx.key("alice")], log: kept.log });
    const carol = await connectAgent(fx, "carol", broker.endpoint, { direct: true });
    stops.push(() => carol.close());
    expect(await carol.call("bob", "link/endpoint")).toEqual({ endpoint: null });
    // Knowing the endpoint anyway does not get her in.
    const { outcome } = await rawDealer("carol", fx.key("bob"), bob.direct.endpoint!);
    expect(outcome).toBe("handshake:error:auth");
    await waitFor(() => kept.lines.find((l) => l["msg"] === "handshake refused: key not in allowlist" && l["key"] === fx!.key("carol")), 5000, "the listener's log line");
  });

  it("a key revoked in the listener's deny list: refused `forbidden` on an open link, refused at the handshake after (a typed failure at the caller, which then goes through the broker)", async () => {
    fx = tempCerts("alice", "bob", "carol", "mallory");
    const denyFile = join(fx.dir, "deny.json"); // not a certificate: the directory reader skips it
    writeFileSync(denyFile, JSON.stringify({ keys: [] }));
    const { alice, broker, runs } = await mesh({ listenDenyList: denyFile }, { directIdle: 400 });
    await untilDirect(alice);
    writeFileSync(denyFile, JSON.stringify({ keys: [fx.key("alice")] }));
    // On the link opened before the revocation: every request refused by the listener.
    const refused = await waitFor(
      () => alice.call("bob", "echo", { x: 1 }, { retry: false }).then(() => undefined, (err: unknown) => err),
      5000,
      "a refusal after the deny list reloaded",
    );
    expect(refused).toBeInstanceOf(RemoteError);
    expect(refused).toMatchObject({ code: "forbidden", origin: "peer" });
    const before = runs.n;
    await expect(alice.call("bob", "echo", { x: 1 }, { retry: false })).rejects.toMatchObject({ code: "forbidden", origin: "peer" });
    expect(runs.n).toBe(before); // refused before the tool
    // Once the idle link closed, the redial is refused at the handshake: counted, logged, and the
    // calls meanwhile go through the broker (whose own allowlist and deny list decide there).
    await waitFor(() => alice.direct.links!.open === 0, 5000, "the idle link closed");
    const routed = broker.stats.routed;
    await waitFor(async () => {
      expect(await alice.call("bob", "echo", { x: 2 })).toEqual({ x: 2 });
      return alice.direct.links!.failures.handshake;
    }, 5000, "the refused handshake");
    expect(broker.stats.routed).toBeGreaterThan(routed);
  });
});

describe("direct links: hostile peers on the listener", () => {
  it("a second process with the same key connecting to the listener: the first one's calls are all answered", async () => {
    const { alice, bob } = await mesh();
    await untilDirect(alice);
    const calls: Array<Promise<unknown>> = [];
    for (let i = 1; i <= 30; i++) {
      calls.push(alice.call("bob", "echo", { x: i }));
      if (i === 10) {
        // Another process holding alice's key: the listener hands her route over to it (handover).
        const twin = await rawDealer("alice", fx!.key("bob"), bob.direct.endpoint!);
        expect(twin.outcome).toBe("handshake");
      }
      await sleep(5);
    }
    const results = await Promise.all(calls);
    expect(results).toEqual(Array.from({ length: 30 }, (_, i) => ({ x: i + 1 })));
  });

  it("garbage frames to the listener: counted and dropped, or refused; the agent serves on", async () => {
    const { alice, bob } = await mesh();
    const { socket, outcome } = await rawDealer("carol", fx!.key("bob"), bob.direct.endpoint!);
    expect(outcome).toBe("handshake");
    await socket.send([Buffer.from("one frame")]);
    await socket.send([Buffer.from("a"), Buffer.from("b"), Buffer.from("c")]);
    await socket.send([Buffer.from([0xc1, 0xff, 0x00]), Buffer.from("not sealed")]); // an undecodable header
    await waitFor(() => bob.direct.listener!.dropped >= 2 && (bob.stats.dropped["header"] ?? 0) >= 1, 5000, "the drops counted");
    // A well-formed request for someone else: the listener is no relay.
    const sealer = new Sealer(fx!.certs["carol"]!.secretKey);
    const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: fx!.key("alice"), exp: Date.now() + 5000 };
    const headerBytes = encodeHeader(header);
    await socket.send([headerBytes, sealer.seal(fx!.key("bob"), encodeInner({ t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: { x: 1 } }, headerBytes))]);
    const [answerHeader] = await socket.receive();
    const answered = decodeHeader(answerHeader!);
    expect(answered.k).toBe("res");
    expect(Buffer.from(answered.re!).equals(Buffer.from(header.id))).toBe(true);
    expect(bob.stats.requestFailures["no_route"]).toBe(1);
    // A durable request: only a broker stores, and `dur` would relax the restart rules.
    const dur: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: fx!.key("bob"), exp: Date.now() + 5000, dur: true };
    const durBytes = encodeHeader(dur);
    await socket.send([durBytes, sealer.seal(fx!.key("bob"), encodeInner({ t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: { x: 1 } }, durBytes))]);
    await socket.receive();
    expect(bob.stats.requestFailures["bad_frame"]).toBe(1);
    // A response or event sent to the listener answers nothing: dropped.
    const res: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: fx!.key("bob"), exp: Date.now() + 5000, re: newId() };
    const resBytes = encodeHeader(res);
    await socket.send([resBytes, sealer.seal(fx!.key("bob"), encodeInner({ t: "res", ts: Date.now(), st: "ok", result: 1 }, resBytes))]);
    await waitFor(() => (bob.stats.dropped["refused"] ?? 0) >= 1, 5000, "the response dropped");
    await untilDirect(alice);
    expect(await alice.call("bob", "echo", { x: 9 })).toEqual({ x: 9 });
  });
});

describe("direct links: answers on a link", () => {
  it("an answer on a link not sealed by the key asked is refused (bad_seal), and the call goes through the broker", async () => {
    fx = tempCerts("alice", "bob", "carol", "mallory");
    fx.addService("echo"); // a service key the forged `as` can name
    // Whoever runs bob's announced endpoint holds bob's key (CURVE proves that much) but seals
    // its answers with mallory's: a listener taken over, or a relay that rewrites answers.
    const bobCert = fx.certs["bob"]!;
    const fake = new zmq.Router({ curveServer: true, curvePublicKey: bobCert.publicKey, curveSecretKey: bobCert.secretKey, linger: 0 });
    stops.push(() => fake.close());
    await fake.bind("tcp://127.0.0.1:*");
    const mallory = new Sealer(fx.certs["mallory"]!.secretKey);
    let forged = 0;
    void (async () => {
      for await (const [peer, headerBytes] of fake) {
        const asked = decodeHeader(headerBytes!);
        for (const as of [undefined, "svc:echo"]) {
          const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: fx!.key("alice"), exp: Date.now() + 5000, re: asked.id, ...(as ? { as } : {}) };
          const bytes = encodeHeader(header);
          await fake.send([peer!, bytes, mallory.seal(fx!.key("alice"), encodeInner({ t: "res", ts: Date.now(), st: "ok", result: { x: -1 } }, bytes))]);
          forged++;
        }
      }
    })().catch(() => undefined);
    const { alice } = await mesh({ listenAnnounce: fake.lastEndpoint! });
    expect(await alice.call("bob", "echo", { x: 1 })).toEqual({ x: 1 }); // learns the endpoint
    await waitFor(() => alice.direct.links!.opened === 1, 5000, "the link to the fake listener");
    expect(await alice.call("bob", "echo", { x: 2 })).toEqual({ x: 2 }); // the real bob's, through the broker
    expect(forged).toBe(2);
    expect(alice.stats.dropped["bad_seal"]).toBe(2);
    expect(alice.direct.links).toMatchObject({ fallbacks: 1, failures: { forged: 1 }, open: 0 });
  });
});
