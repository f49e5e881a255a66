/**
 * Property-based fuzzing (fast-check) of everything a peer can send to the broker and to an
 * agent, and of what a hostile broker can send an agent. CI runs a few hundred cases of each
 * (a fixed seed per run is printed on failure); `npm run figures` runs thousands.
 */
import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { fuzzAgent, fuzzBroker, fuzzFromBroker } from "./hostile.js";
import { decodeHeader, decodeInner, encodeHeader, MAX_HEADER_BYTES, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { ProtocolError } from "../../src/errors.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { tempCerts } from "../support/certs.js";
import { startBroker } from "../support/mesh.js";
import { rawPeer } from "../support/raw-peer.js";

const RUNS = Number(process.env["ZMCP_FUZZ_RUNS"] ?? 1000);

describe("hostile input (fast-check)", () => {
  it(`broker: ${RUNS} arbitrary messages from an admitted peer each get one typed nack (or ack), and traffic still flows`, async () => {
    const r = await fuzzBroker(RUNS);
    expect(r.tried).toBe(RUNS);
    expect(r.typed + r.other).toBe(RUNS);
    expect(r.typed).toBeGreaterThan(RUNS * 0.9);
    expect(r.control).toBeGreaterThan(0);
  }, 120_000);

  it(`agent: ${RUNS} hostile bodies (random, truncated, bit-flipped, hostile msgpack inside the box) each get one sealed typed error`, async () => {
    const r = await fuzzAgent(RUNS);
    expect(r.tried).toBe(RUNS + 2);
    expect(r.typed + r.other).toBe(RUNS);
    expect(r.typed).toBeGreaterThan(RUNS * 0.9);
  }, 120_000);

  it(`agent behind a hostile broker: ${RUNS} arbitrary frame lists; answers what it can, drops the rest with a log, keeps serving`, async () => {
    const r = await fuzzFromBroker(RUNS);
    expect(r.tried).toBe(RUNS);
    expect(r.control).toBeGreaterThan(0);
    expect(r.dropped).toBeGreaterThan(0);
  }, 120_000);
});

describe("hostile input: regressions found by the fuzzer", () => {
  it("msgpack declaring huge nested arrays (5 bytes → 8 MB each) is refused before allocation: bad_frame, no heap exhaustion", () => {
    const bomb = Buffer.from(new Array(20_000).fill([0xdd, 0x00, 0x0f, 0xff, 0xff]).flat());
    const err = (() => {
      try {
        checkMsgpack(bomb, 33);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe("bad_frame");
    // Through the decoder used on every sealed body: the same typed refusal.
    expect(() => decodeInner(bomb, new Uint8Array(0), 1024 * 1024)).toThrow(ProtocolError);
  });

  it("checkMsgpack accepts what the encoder writes and refuses lengths beyond the data, deep nesting, ext types and trailing bytes", () => {
    checkMsgpack(encode({ a: [1, "x", new Uint8Array(3), { b: null, c: 1.5, d: -7, e: 2 ** 40 }], s: "é".repeat(300) }), 33);
    const refused = (bytes: number[]) => expect(() => checkMsgpack(Uint8Array.from(bytes), 33), JSON.stringify(bytes)).toThrow(ProtocolError);
    refused([0xdc, 0x00, 0x05, 0x01]); // array16 of 5 with one element
    refused([0xdb, 0x00, 0x00, 0x10, 0x00, 0x61]); // str32 of 4096 with one byte
    refused([0xd6, 0xff, 0, 0, 0, 0]); // timestamp extension
    refused([0xc1]);
    refused([0x80, 0x80]); // trailing value
    refused(new Array(40).fill(0x91).concat([0xc0])); // 40 levels
    checkMsgpack(Uint8Array.from(new Array(33).fill(0x91).concat([0xc0])), 33);
  });

  it("a nack echoing a long destination stays under the header cap, so the sender can read its code", async () => {
    const fx = tempCerts("mallory");
    const broker = await startBroker(fx);
    const m = await rawPeer(fx, "mallory", broker.endpoint);
    try {
      const header = encodeHeader({ v: PROTOCOL_VERSION, k: "req", id: newId(), to: "é".repeat(128), exp: Date.now() + 5000 });
      await m.socket.send([header, "body"]);
      const [from, nackBytes] = await m.receive();
      expect(from!.length).toBe(0);
      expect(nackBytes!.length).toBeLessThanOrEqual(MAX_HEADER_BYTES);
      const nack = decodeHeader(nackBytes!); // threw too_large before the fix
      expect(nack.code).toBe("no_route");
    } finally {
      m.close();
      await broker.close();
      fx.cleanup();
    }
  });
});
