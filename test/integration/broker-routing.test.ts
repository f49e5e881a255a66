/**
 * The broker's forwarding and every refusal it answers with a nack, seen from raw CURVE
 * DEALERs: frames, codes, texts, the `re` of the refused message, and the counters.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import type { Broker } from "../../src/broker/broker.js";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";

let fx: CertFixture | undefined;
let broker: Broker | undefined;
const sockets: zmq.Dealer[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  await broker?.close();
  broker = undefined;
  fx?.cleanup();
});

async function dealer(name: string, options: Partial<zmq.SocketOptions<zmq.Dealer>> = {}): Promise<zmq.Dealer> {
  const cert = fx!.certs[name]!;
  const socket = new zmq.Dealer({ routingId: cert.publicKey, curveServerKey: fx!.key("broker"), curvePublicKey: cert.publicKey, curveSecretKey: cert.secretKey, linger: 0, ...options });
  sockets.push(socket);
  const handshake = (async () => {
    for await (const event of socket.events) if (event.type === "handshake") return;
  })();
  socket.connect(broker!.endpoint);
  await handshake;
  return socket;
}

const header = (to: string, extra: Partial<Header> = {}): Header => ({ v: PROTOCOL_VERSION, k: "req", id: newId(), to, exp: Date.now() + 10_000, ...extra });

async function nack(socket: zmq.Dealer): Promise<Header> {
  const frames = await socket.receive();
  expect(frames).toHaveLength(3);
  expect(frames[0]!.length).toBe(0); // from the broker itself
  expect(frames[2]!.length).toBe(0);
  const h = decodeHeader(frames[1]!);
  expect(h.k).toBe("nack");
  return h;
}

describe("broker routing", () => {
  it("forwards [header, body] as [from, header, body] and counts it", async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    const alice = await dealer("alice");
    const bob = await dealer("bob");
    const h = encodeHeader(header(fx.key("bob")));
    await alice.send([h, "payload"]);
    const [from, got, body] = await bob.receive();
    expect(from!.toString("latin1")).toBe(fx.key("alice"));
    expect(Buffer.from(got!).equals(Buffer.from(h))).toBe(true);
    expect(body!.toString()).toBe("payload");
    await waitFor(() => broker!.stats.routed === 1);
    expect(broker.stats.bytes).toBe(h.length + 7);
  });

  it("answers every refusal with a nack naming the code, the reason and the refused id", async () => {
    fx = tempCerts("alice", "bob", "gone");
    broker = await startBroker(fx, { maxMessageBytes: 1024 });
    const alice = await dealer("alice");
    const to = fx.key("bob");

    await alice.send([encodeHeader(header(to))]);
    expect(await nack(alice)).toMatchObject({ code: "bad_frame", msg: "expected 2 frames [header, body], got 1" });

    await alice.send([Buffer.from([0xc1]), "x"]);
    const notMsgpack = await nack(alice);
    expect(notMsgpack.code).toBe("bad_frame");
    expect(notMsgpack.msg).toMatch(/^header is not msgpack: /);
    expect(notMsgpack.re).toBeUndefined();

    await alice.send([Buffer.alloc(600), "x"]);
    expect(await nack(alice)).toMatchObject({ code: "too_large", msg: "header of 600 bytes exceeds 512" });

    await alice.send([encodeHeader({ ...header(to), v: 2 }), "x"]);
    expect(await nack(alice)).toMatchObject({ code: "unsupported_version", msg: "protocol version 2 is not 1" });

    await alice.send([encodeHeader({ v: 1, k: "req", to } as unknown as Header), "x"]);
    const invalid = await nack(alice);
    expect(invalid.code).toBe("bad_frame");
    expect(invalid.msg).toMatch(/^invalid header: /);

    const cases: Array<[Header, string | Buffer, string, string]> = [
      [header(to), Buffer.alloc(2000), "too_large", `exceeds 1024`],
      [header(to, { k: "nack" }), "x", "bad_frame", "agents may not send acks or nacks"],
      [header(to, { exp: Date.now() - 120_000 }), "x", "expired", "message is past its deadline"],
      [header("nobody"), "x", "no_route", `destination "nobody" is neither a Z85 key nor svc:NAME`],
      [header(fx.key("gone")), "x", "no_route", `${fx.key("gone")} is not connected`],
    ];
    for (const [h, body, code, msg] of cases) {
      await alice.send([encodeHeader(h), body]);
      const n = await nack(alice);
      expect(n.code).toBe(code);
      expect(n.msg).toContain(msg);
      expect(Buffer.from(n.re!).equals(Buffer.from(h.id))).toBe(true);
      expect(n.to).toBe(fx.key("alice"));
    }
    expect(broker.stats.refused).toEqual({ bad_frame: 4, too_large: 2, unsupported_version: 1, expired: 1, no_route: 2 });
    expect(broker.stats.routed).toBe(0);
  });

  it("refuses a key removed from the allowlist with forbidden", async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    const alice = await dealer("alice");
    rmSync(join(fx.dir, "alice.key"));
    broker.reloadAllowlist();
    await alice.send([encodeHeader(header(fx.key("bob"))), "x"]);
    expect(await nack(alice)).toMatchObject({ code: "forbidden", msg: "key is no longer admitted" });
    expect(broker.stats.refused.forbidden).toBe(1);
  });

  it("answers busy when the destination's queue is full, rather than dropping", async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx, { sendHighWaterMark: 1 });
    const alice = await dealer("alice");
    await dealer("bob", { receiveHighWaterMark: 1 }); // connected, never reads
    const body = Buffer.alloc(900 * 1024);
    for (let i = 0; i < 60; i++) await alice.send([encodeHeader(header(fx.key("bob"))), body]);
    const n = await nack(alice);
    expect(n).toMatchObject({ code: "busy", msg: `${fx.key("bob")}'s queue is full` });
    await waitFor(() => (broker!.stats.refused.busy ?? 0) > 0 && broker!.stats.routed > 0);
  });
});
