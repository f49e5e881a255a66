/**
 * Hostile input: fast-check generators of everything a peer can send, and three fuzz runs
 * shared by test/reliability/fuzz.test.ts (small counts) and `npm run figures` (large counts):
 *
 * - `fuzzBroker`: an admitted peer sends arbitrary frames to the broker. Every message must
 *   get exactly one typed answer (a nack with a wire code, or an ack), and other traffic flows.
 * - `fuzzAgent`: an admitted peer sends requests with valid headers and hostile bodies
 *   (random, truncated, bit-flipped boxes; boxes holding hostile msgpack) to an agent through
 *   the broker. Every one must get exactly one sealed answer (an error with a wire code).
 * - `fuzzFromBroker`: a fake broker sends an agent arbitrary frames, including headers a real
 *   broker could not have forwarded. The agent must answer what it can and drop the rest with a
 *   log line, never crash, and keep serving.
 */
import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import * as zmq from "zeromq";
import { z } from "zod";
import { Agent } from "../../src/agent/agent.js";
import { Broker } from "../../src/broker/broker.js";
import { generateCertificate, type Certificate } from "../../src/auth/certs.js";
import { decodeHeader, decodeInner, encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { isWireCode, WIRE_CODES } from "../../src/errors.js";
import { Sealer } from "../../src/wire/seal.js";
import { z85Encode } from "../../src/wire/z85.js";

const te = new TextEncoder();
const bytes = (...parts: Array<number | number[] | Uint8Array | string>): Uint8Array => {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === "number") out.push(p);
    else if (typeof p === "string") out.push(...te.encode(p));
    else out.push(...p);
  }
  return Uint8Array.from(out);
};

/** Hand-made msgpack edge cases: deep nesting, huge declared lengths, extension types, bad keys. */
export const msgpackEdgeCases: fc.Arbitrary<Uint8Array> = fc.oneof(
  // nesting: arrays and maps, shallow to far deeper than any cap
  fc.integer({ min: 1, max: 20_000 }).map((n) => bytes(new Array<number>(n).fill(0x91), 0xc0)),
  fc.integer({ min: 1, max: 5_000 }).map((n) => bytes(...new Array<number[]>(n).fill([0x81, 0xa1, 0x61]).flat(), 0xc0)),
  // declared lengths far beyond the data: array32, map32, str32, bin32, ext32
  fc.constantFrom(0xdd, 0xdf, 0xdb, 0xc6).chain((tag) => fc.tuple(fc.constant(tag), fc.integer({ min: 2 ** 20, max: 2 ** 32 - 1 })).map(([t, n]) => bytes(t, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255, 0x00))),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((n) => bytes(0xc9, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255, 0x01)),
  // many declared elements, each nested: a memory bomb if arrays were preallocated eagerly
  fc.integer({ min: 1, max: 2000 }).map((n) => bytes(...new Array<number[]>(n).fill([0xdd, 0x00, 0x0f, 0xff, 0xff]).flat())),
  // extension types: fixext 1..16, ext8, the timestamp type (-1)
  fc.tuple(fc.constantFrom(0xd4, 0xd5, 0xd6, 0xd7, 0xd8), fc.integer({ min: -128, max: 127 }), fc.uint8Array({ minLength: 16, maxLength: 16 })).map(([tag, type, data]) =>
    bytes(tag, type & 255, data.subarray(0, 1 << (tag - 0xd4))),
  ),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: -128, max: 127 })).map(([len, type]) => bytes(0xc7, len, type & 255, new Array<number>(len).fill(7))),
  fc.constant(bytes(0xd6, 0xff, 0, 0, 0, 0)), // timestamp 32
  // never-used byte, invalid UTF-8, __proto__ and non-string keys, 64-bit integers, NaN
  fc.constant(bytes(0xc1)),
  fc.constant(bytes(0xa2, 0xff, 0xfe)),
  fc.constant(bytes(0x81, 0xa9, "__proto__", 0x81, 0xa1, "v", 0x01)),
  fc.constant(bytes(0x82, 0xa9, "__proto__", 0x01, 0xa1, "v", 0x01)),
  fc.constant(bytes(0x81, 0x91, 0x01, 0x02)),
  fc.constant(bytes(0x81, 0xc4, 0x01, 0x00, 0x01)),
  fc.constant(bytes(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
  fc.constant(bytes(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0)),
  fc.constant(bytes(0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0)),
  // a valid value followed by trailing bytes
  fc.constant(bytes(0x80, 0x80)),
);

/** Arbitrary msgpack of arbitrary values (maps, arrays, strings, binary, numbers...). */
const msgpackOfAnything: fc.Arbitrary<Uint8Array> = fc
  .anything({ maxDepth: 6, withNullPrototype: false, withBigInt: false, withTypedArray: true, withSparseArray: false })
  .map((v) => {
    try {
      return encode(v, { ignoreUndefined: true });
    } catch {
      return bytes(0xc0);
    }
  });

/** Truncates or flips bits in `data`. */
function mangle(data: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.integer({ min: 0, max: Math.max(0, data.length - 1) }).map((n) => data.slice(0, n)),
    fc.array(fc.nat({ max: Math.max(0, data.length * 8 - 1) }), { minLength: 1, maxLength: 8 }).map((bits) => {
      const out = data.slice();
      for (const b of bits) if (out.length) out[b >> 3] = out[b >> 3]! ^ (1 << (b & 7));
      return out;
    }),
  );
}

/** Any msgpack-ish bytes: random, edge cases, encodings of anything, and those mangled. */
export const hostileMsgpack: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 600 }),
  msgpackEdgeCases,
  msgpackOfAnything,
  msgpackOfAnything.chain(mangle),
);

const z85Key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((k) => z85Encode(k));

/** Header maps near the real schema, each field valid or hostile. */
export function headerMaps(validTo: string[]): fc.Arbitrary<Record<string, unknown>> {
  const anyVal = fc.oneof(fc.anything({ maxDepth: 2 }), fc.uint8Array({ maxLength: 40 }));
  return fc.record(
    {
      v: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.constant(PROTOCOL_VERSION), fc.integer(), fc.double(), anyVal),
      k: fc.oneof(fc.constantFrom("req", "res", "evt", "hb", "ack", "nack"), fc.string({ maxLength: 8 }), anyVal),
      id: fc.oneof(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ maxLength: 40 }), anyVal),
      to: fc.oneof(z85Key, fc.constantFrom(...validTo, "", "svc:nope", "svc:x@" + "0".repeat(40)), fc.string({ maxLength: 200 }), anyVal),
      exp: fc.oneof(fc.constant(Date.now() + 60_000), fc.integer({ min: 0, max: 2 ** 53 - 1 }), fc.double(), fc.constant(-1), anyVal),
      re: fc.oneof(fc.uint8Array({ minLength: 16, maxLength: 16 }), anyVal),
      as: fc.oneof(fc.constant("svc:nope"), fc.string({ maxLength: 200 }), anyVal),
      code: fc.oneof(fc.constantFrom(...WIRE_CODES), fc.string({ maxLength: 100 })),
      msg: fc.string({ maxLength: 1500 }),
      extra: anyVal,
    },
    { requiredKeys: [] },
  );
}

/** Header frames: hostile bytes, or header maps (near valid, and hostile). */
export function headerFrames(validTo: string[]): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    hostileMsgpack,
    headerMaps(validTo).map((h) => encode(h, { ignoreUndefined: true })),
    headerMaps(validTo).chain((h) => mangle(encode(h, { ignoreUndefined: true }))),
    fc.uint8Array({ minLength: 500, maxLength: 5000 }), // around the 512-byte header cap
  );
}

/** Whole messages as a DEALER peer sends them: 1 to 6 frames. */
export function peerMessages(validTo: string[]): fc.Arbitrary<Uint8Array[]> {
  const body = fc.oneof(fc.uint8Array({ maxLength: 2000 }), hostileMsgpack, fc.constant(new Uint8Array(0)));
  return fc.oneof(
    fc.tuple(headerFrames(validTo), body).map(([h, b]) => [h, b]),
    fc.array(fc.oneof(headerFrames(validTo), body), { minLength: 1, maxLength: 6 }),
    fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 40 }),
  );
}

export interface FuzzResult {
  /** Hostile messages sent. */
  tried: number;
  /** Answered with a typed error (nack with a wire code, or a sealed error response). */
  typed: number;
  /** Answered otherwise (an ack, an ok response to input that happened to be valid). */
  other: number;
  /** Dropped with a log line (only for what a real broker could not have forwarded). */
  dropped: number;
  /** Control calls made between hostile messages, all answered. */
  control: number;
}

function cert(): Required<Certificate> {
  return generateCertificate({ name: "fuzz" });
}

/** A throwaway mesh in this process: a broker, a serving agent `bob`, a caller `alice`, and a raw peer. */
async function mesh(): Promise<{
  broker: Broker;
  bob: Agent;
  alice: Agent;
  raw: zmq.Dealer;
  rawSealer: Sealer;
  rawKey: string;
  brokerKey: string;
  close(): Promise<void>;
}> {
  const b = cert();
  const [bobCert, aliceCert, rawCert] = [cert(), cert(), cert()];
  const broker = await Broker.start({ bind: "tcp://127.0.0.1:*", publicKey: b.publicKey, secretKey: b.secretKey, allow: [bobCert.publicKey, aliceCert.publicKey, rawCert.publicKey], maxMessageBytes: 64 * 1024 });
  const connect = (c: Required<Certificate>) => Agent.connect({ broker: broker.endpoint, cert: c, serverKey: b.publicKey, connectTimeout: 10_000, timeout: 5000, retry: false });
  const bob = await connect(bobCert);
  bob.tool("echo", { input: z.object({ x: z.unknown() }) }, ({ x }) => ({ x }));
  const alice = await connect(aliceCert);
  const raw = new zmq.Dealer({ curveServerKey: b.publicKey, curvePublicKey: rawCert.publicKey, curveSecretKey: rawCert.secretKey, linger: 0, receiveTimeout: 5000 });
  const handshake = (async () => {
    for await (const event of raw.events) if (event.type === "handshake") return;
  })();
  raw.connect(broker.endpoint);
  await handshake;
  return {
    broker,
    bob,
    alice,
    raw,
    rawSealer: new Sealer(rawCert.secretKey),
    rawKey: rawCert.publicKey,
    brokerKey: b.publicKey,
    async close() {
      raw.close();
      await Promise.all([bob.close(), alice.close()]);
      await broker.close();
    },
  };
}

async function control(alice: Agent, bob: Agent, n: number): Promise<void> {
  const out = await alice.call(bob.publicKey, "echo", { x: n });
  if ((out as { x: unknown }).x !== n) throw new Error(`control call answered ${JSON.stringify(out)}`);
}

/** Fuzzes the broker with `runs` hostile messages; throws on the first violation. */
export async function fuzzBroker(runs: number, seed?: number): Promise<FuzzResult> {
  const m = await mesh();
  const result: FuzzResult = { tried: 0, typed: 0, other: 0, dropped: 0, control: 0 };
  try {
    // Destinations that are not connected: every message gets an answer from the broker itself.
    await fc.assert(
      fc.asyncProperty(peerMessages(["0".repeat(40)]), async (frames) => {
        result.tried++;
        await m.raw.send(frames);
        const reply = await m.raw.receive();
        if (reply.length !== 3 || reply[0]!.length !== 0) throw new Error(`expected [empty, header, body] from the broker, got ${reply.length} frames`);
        const header = decodeHeader(reply[1]!);
        if (header.k === "nack") {
          if (!isWireCode(header.code)) throw new Error(`nack with code ${String(header.code)}`);
          result.typed++;
        } else if (header.k === "ack") result.other++;
        else throw new Error(`unexpected ${header.k} from the broker`);
        if (result.tried % 50 === 0) {
          await control(m.alice, m.bob, result.tried);
          result.control++;
        }
      }),
      { numRuns: runs, ...(seed === undefined ? {} : { seed }), endOnFailure: true },
    );
    await control(m.alice, m.bob, -1);
    result.control++;
    if (m.broker.stats.internalErrors !== 0) throw new Error(`broker hit ${m.broker.stats.internalErrors} internal errors`);
    return result;
  } finally {
    await m.close();
  }
}

/** Bodies of requests: random, mangled boxes, boxes of hostile plaintext. */
function hostileBodies(seal: (plain: Uint8Array) => Uint8Array, valid: () => Uint8Array, headerBytes: Uint8Array): fc.Arbitrary<Uint8Array> {
  const nearValidInner = fc
    .record(
      {
        t: fc.oneof(fc.constantFrom("req", "res", "evt"), fc.anything({ maxDepth: 1 })),
        h: fc.oneof(fc.constant("digest"), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.anything({ maxDepth: 1 })),
        ts: fc.oneof(fc.constant("now"), fc.integer(), fc.double(), fc.anything({ maxDepth: 1 })),
        rid: fc.oneof(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.anything({ maxDepth: 1 })),
        tool: fc.oneof(fc.constantFrom("echo", "tools/list", "jobs/poll", "jobs/cancel", "nope", ""), fc.string({ maxLength: 300 })),
        args: fc.anything({ maxDepth: 4 }),
        tok: fc.oneof(fc.string({ maxLength: 100 }), fc.anything({ maxDepth: 1 })),
        extra: fc.anything({ maxDepth: 1 }),
      },
      { requiredKeys: [] },
    )
    .map((r) => {
      const inner: Record<string, unknown> = { ...r };
      if (inner["h"] === "digest") delete inner["h"];
      if (inner["ts"] === "now") inner["ts"] = Date.now();
      try {
        return "h" in inner ? encode(inner, { ignoreUndefined: true }) : encodeInner(inner as never, headerBytes);
      } catch {
        return bytes(0xc0);
      }
    });
  return fc.oneof(
    fc.uint8Array({ maxLength: 2000 }),
    fc.constant(valid()).chain(mangle),
    hostileMsgpack.map(seal),
    nearValidInner.map(seal),
    fc.oneof(hostileMsgpack, nearValidInner).chain((p) => mangle(seal(p))),
  );
}

/** Fuzzes an agent (through the real broker) with `runs` hostile requests. */
export async function fuzzAgent(runs: number, seed?: number): Promise<FuzzResult> {
  const m = await mesh();
  const result: FuzzResult = { tried: 0, typed: 0, other: 0, dropped: 0, control: 0 };
  const to = m.bob.publicKey;
  try {
    // Each run: a fresh valid header, then a hostile body built for it.
    const cases = fc.constant(null).chain(() => {
      const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to, exp: Date.now() + 60_000 };
      const headerBytes = encodeHeader(header);
      const seal = (plain: Uint8Array) => m.rawSealer.seal(to, plain);
      const valid = () => seal(encodeInner({ t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: { x: 1 } }, headerBytes));
      return hostileBodies(seal, valid, headerBytes).map((body) => ({ header, headerBytes, body }));
    });
    await fc.assert(
      fc.asyncProperty(cases, async ({ header, headerBytes, body }) => {
        result.tried++;
        // A mangled valid box may equal an earlier one: refresh the id so each run is new.
        await m.raw.send([headerBytes, body]);
        const reply = await m.raw.receive();
        if (reply.length !== 3 || reply[0]!.toString("latin1") !== to) throw new Error(`expected [bob, header, body], got ${reply.length} frames from ${reply[0]?.toString("latin1")}`);
        const h = decodeHeader(reply[1]!);
        if (h.k !== "res" || !h.re || Buffer.compare(Buffer.from(h.re), Buffer.from(header.id)) !== 0) throw new Error("answer does not answer the request");
        // Read as a real caller would (size caps, strict schema): the answer must pass them.
        const inner = decodeInner(m.rawSealer.open(to, reply[2]!), reply[1]!, 64 * 1024);
        if (inner.t !== "res") throw new Error(`answered with a ${inner.t}`);
        if (inner.st === "error") {
          if (!isWireCode(inner.error?.code)) throw new Error(`error with code ${String(inner.error?.code)}`);
          result.typed++;
        } else result.other++;
        if (result.tried % 50 === 0) {
          await control(m.alice, m.bob, result.tried);
          result.control++;
        }
      }),
      { numRuns: runs, ...(seed === undefined ? {} : { seed }), endOnFailure: true },
    );
    // Responses and events nobody asked for: never answered, and never harmful.
    for (const k of ["res", "evt"] as const) {
      const header: Header = { v: PROTOCOL_VERSION, k, id: newId(), to, exp: Date.now() + 60_000, re: newId() };
      const headerBytes = encodeHeader(header);
      await m.raw.send([headerBytes, m.rawSealer.seal(to, encodeInner({ t: "res", ts: Date.now(), st: "ok", result: 1 }, headerBytes))]);
      result.tried++;
    }
    await control(m.alice, m.bob, -1);
    result.control++;
    return result;
  } finally {
    await m.close();
  }
}

/** Frames a (fake, hostile) broker may send an agent: `[from, header, body]` and worse. */
function brokerMessages(agentKey: string, peerKey: string): fc.Arbitrary<Uint8Array[]> {
  const from = fc.oneof(fc.constant(te.encode(peerKey)), fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 60 }), z85Key.map((k) => te.encode(k)));
  const body = fc.oneof(fc.uint8Array({ maxLength: 2000 }), hostileMsgpack);
  return fc.oneof(
    fc.tuple(from, headerFrames([agentKey]), body).map(([f, h, b]) => [f, h, b]),
    fc.array(fc.oneof(from, headerFrames([agentKey]), body), { minLength: 0, maxLength: 6 }),
  );
}

/**
 * A fake broker (a CURVE ROUTER without ZAP) sends an agent `runs` hostile messages. Between
 * them, a valid sealed request from a known peer must still be answered.
 */
export async function fuzzFromBroker(runs: number, seed?: number): Promise<FuzzResult> {
  const b = cert();
  const [bobCert, peerCert] = [cert(), cert()];
  const router = new zmq.Router({ curveServer: true, curvePublicKey: b.publicKey, curveSecretKey: b.secretKey, linger: 0, receiveTimeout: 200 });
  await router.bind("tcp://127.0.0.1:*");
  const bob = await Agent.connect({ broker: router.lastEndpoint!, cert: bobCert, serverKey: b.publicKey, connectTimeout: 10_000, retry: false });
  bob.tool("echo", { input: z.object({ x: z.unknown() }) }, ({ x }) => ({ x }));
  const peer = new Sealer(peerCert.secretKey);
  const result: FuzzResult = { tried: 0, typed: 0, other: 0, dropped: 0, control: 0 };
  const bobId = bobCert.publicKey;
  const drain = async (): Promise<Buffer[][]> => {
    const got: Buffer[][] = [];
    for (;;) {
      try {
        got.push(await router.receive());
      } catch {
        return got;
      }
    }
  };
  const controlRound = async (n: number) => {
    const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: bobId, exp: Date.now() + 10_000 };
    const hb = encodeHeader(header);
    await router.send([bobId, peerCert.publicKey, hb, peer.seal(bobId, encodeInner({ t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: { x: n } }, hb))]);
    router.receiveTimeout = 5000;
    try {
      for (;;) {
        const [, h, body] = await router.receive();
        const rh = decodeHeader(h!);
        if (rh.k === "res" && !(rh.re && Buffer.compare(Buffer.from(rh.re), Buffer.from(header.id)) === 0)) result.typed++;
        if (rh.re && Buffer.compare(Buffer.from(rh.re), Buffer.from(header.id)) === 0) {
          const inner = decode(peer.open(bobId, body!)) as { st: string; result?: { x: unknown } };
          if (inner.st !== "ok" || inner.result?.x !== n) throw new Error(`control answered ${JSON.stringify(inner)}`);
          return;
        }
      }
    } finally {
      router.receiveTimeout = 200;
    }
  };
  try {
    // The agent asked for its key as routing id; without ZAP the ROUTER knows it by that.
    await controlRound(0);
    await fc.assert(
      fc.asyncProperty(brokerMessages(bobId, peerCert.publicKey), async (frames) => {
        result.tried++;
        await router.send([bobId, ...frames]);
        if (result.tried % 25 === 0) {
          await controlRound(result.tried);
          result.control++;
        }
      }),
      { numRuns: runs, ...(seed === undefined ? {} : { seed }), endOnFailure: true },
    );
    await controlRound(-1);
    result.control++;
    // Every answer bob gave the fake broker is a sealed response to the peer: typed errors.
    for (const [, from, h] of await drain()) {
      void from;
      const rh = decodeHeader(h!);
      if (rh.k === "res") result.typed++;
    }
    result.dropped = Object.values(bob.stats.dropped).reduce<number>((a, n) => a + (n ?? 0), 0);
    return result;
  } finally {
    await bob.close();
    router.close();
  }
}
