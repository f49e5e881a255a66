/**
 * The envelope's hot-path checks (hand-written for speed) must give exactly what the zod
 * schemas give: the same value for every frame they accept, the same error (class, code,
 * message) for every frame they refuse. Each case is decoded both ways and compared.
 */
import { createHash, randomBytes } from "node:crypto";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { decodeHeader, decodeInner, digest, encodeHeader, HeaderSchema, InnerSchema, MAX_DEPTH, MAX_HEADER_BYTES, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { ProtocolError } from "../../src/errors.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { decodeHeaderFast, encodeHeaderFast } from "../../src/wire/header-codec.js";

const encoder = new Encoder();
const headerDecoder = new Decoder({ maxStrLength: MAX_HEADER_BYTES, maxBinLength: MAX_HEADER_BYTES, maxArrayLength: MAX_HEADER_BYTES, maxMapLength: MAX_HEADER_BYTES, maxExtLength: 0 });

/** decodeHeader as it was before the hot path: schema only. */
function referenceDecodeHeader(frame: Uint8Array) {
  if (frame.length > MAX_HEADER_BYTES) throw new ProtocolError("too_large", `header of ${frame.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  let raw: unknown;
  try {
    checkMsgpack(frame, MAX_DEPTH);
    raw = headerDecoder.decode(frame);
  } catch (err) {
    throw new ProtocolError("bad_frame", `header is not msgpack: ${(err as Error).message}`, { cause: err });
  }
  const parsed = HeaderSchema.safeParse(raw);
  if (!parsed.success) throw new ProtocolError("bad_frame", `invalid header: ${z.prettifyError(parsed.error)}`);
  if (parsed.data.v !== PROTOCOL_VERSION) throw new ProtocolError("unsupported_version", `protocol version ${parsed.data.v} is not ${PROTOCOL_VERSION}`);
  return parsed.data;
}

const MAX_BYTES = 64 * 1024;
const innerDecoder = new Decoder({ maxStrLength: MAX_BYTES, maxBinLength: MAX_BYTES, maxArrayLength: MAX_BYTES, maxMapLength: MAX_BYTES, maxExtLength: 0 });

/** decodeInner as it was before the hot path: schema only. */
function referenceDecodeInner(plaintext: Uint8Array, headerBytes: Uint8Array) {
  let raw: unknown;
  try {
    checkMsgpack(plaintext, MAX_DEPTH);
    raw = innerDecoder.decode(plaintext);
  } catch (err) {
    throw new ProtocolError("bad_frame", `message is not msgpack: ${(err as Error).message}`, { cause: err });
  }
  const parsed = InnerSchema.safeParse(raw);
  if (!parsed.success) throw new ProtocolError("bad_frame", `invalid message: ${z.prettifyError(parsed.error)}`);
  if (!Buffer.from(parsed.data.h).equals(createHash("sha256").update(headerBytes).digest())) {
    throw new ProtocolError("bad_seal", "header does not match the sealed digest (tampered in transit)");
  }
  return parsed.data;
}

function outcome(decode: (f: Uint8Array) => unknown, frame: Uint8Array) {
  try {
    return { ok: decode(frame) };
  } catch (err) {
    const e = err as ProtocolError;
    return { error: [e.constructor.name, e.code, e.message] };
  }
}

/** Values that probe every check: types, bounds, lengths, special numbers. */
const ODD: unknown[] = [
  null, true, false, 0, -0, 1, -1, 1.5, 2, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 53 - 1, -(2 ** 53), 1e300,
  "", "req", "res", "evt", "hb", "ack", "nack", "pub", "svc:x", "x".repeat(64), "x".repeat(65), "x".repeat(128), "x".repeat(129), "x".repeat(1024), "x".repeat(1025), "é".repeat(100),
  new Uint8Array(0), new Uint8Array(15), new Uint8Array(16), new Uint8Array(17), new Uint8Array(32), [], [1, 2], {}, { a: 1 },
];
const KEYS = ["v", "k", "id", "to", "exp", "re", "as", "dur", "sq", "code", "msg"];

function headerCases(): unknown[] {
  const id = new Uint8Array(16).fill(7);
  const bases: Array<Record<string, unknown>> = [
    { v: 1, k: "req", id, to: "A".repeat(40), exp: Date.now() + 1000 },
    { v: 1, k: "res", id, to: "B".repeat(40), exp: 0, re: id },
    { v: 1, k: "nack", id, to: "C".repeat(40), exp: 2 ** 53 - 1, re: id, code: "busy", msg: "full" },
    { v: 1, k: "evt", id, to: "D".repeat(40), exp: 5, as: "svc:summarize" },
    { v: 1, k: "pub", id, to: "docs.indexed", exp: 5, sq: 1 },
  ];
  const cases: unknown[] = [...bases, null, 1, "header", [1, 2], id, { ...bases[0], extra: 1 }, { ...bases[0], __proto: 1 }];
  for (const base of bases) {
    for (const key of KEYS) {
      const without = { ...base };
      delete without[key];
      cases.push(without);
      for (const value of ODD) cases.push({ ...base, [key]: value });
    }
  }
  return cases;
}

describe("decodeHeader hot path", () => {
  it("agrees with the schema on every probed header", () => {
    let accepted = 0;
    for (const value of headerCases()) {
      const frame = encoder.encode(value);
      const fast = outcome(decodeHeader, frame);
      expect(fast, JSON.stringify(value, (_, v) => (v instanceof Uint8Array ? `bytes(${v.length})` : v))).toEqual(outcome(referenceDecodeHeader, frame));
      if ("ok" in fast) accepted++;
    }
    expect(accepted).toBeGreaterThan(20); // both paths exercised
  });

  it("agrees with the schema on random and truncated frames", () => {
    const valid = encoder.encode({ v: 1, k: "res", id: new Uint8Array(16), to: "A".repeat(40), exp: 5, re: new Uint8Array(16), code: "x", msg: "y" });
    const frames: Uint8Array[] = [];
    for (let i = 0; i <= valid.length; i++) frames.push(valid.subarray(0, i));
    for (let i = 0; i < valid.length; i++) {
      const flipped = Uint8Array.from(valid);
      flipped[i] = flipped[i]! ^ 0x5a;
      frames.push(flipped);
    }
    for (let i = 0; i < 2000; i++) frames.push(randomBytes(1 + (i % 200)));
    frames.push(new Uint8Array(MAX_HEADER_BYTES + 1));
    for (const frame of frames) expect(outcome(decodeHeader, frame)).toEqual(outcome(referenceDecodeHeader, frame));
  });
});

describe("header codec (wire/header-codec.ts)", () => {
  const generic = new Encoder({ ignoreUndefined: true });

  it("takes the headers every sender writes itself (not the generic path), both ways", () => {
    // The comparisons below would pass with no fast path at all: this is the one that would not.
    const id = new Uint8Array(16).fill(1);
    for (const header of [
      { v: 1, k: "req", id, to: "A".repeat(40), exp: Date.now() + 10_000 },
      { v: 1, k: "res", id, to: "B".repeat(40), exp: Date.now() + 10_000, re: id, as: "svc:summarize" },
      { v: 1, k: "pub", id, to: "docs.indexed", exp: Date.now() + 60_000, sq: 12 },
      { v: 1, k: "req", id, to: "svc:x", exp: Date.now(), dur: true as const },
    ]) {
      const bytes = encodeHeaderFast(header as never);
      expect(bytes, JSON.stringify(header.k)).toBeDefined();
      expect(decodeHeaderFast(bytes!)).toEqual(header);
    }
  });

  it("encodeHeader writes the generic encoder's bytes for every probed header", () => {
    let compared = 0;
    for (const value of headerCases()) {
      if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) continue;
      const expected = generic.encode(value);
      expect(Buffer.from(encodeHeader(value as never)).equals(Buffer.from(expected)), JSON.stringify(value, (_, v) => (v instanceof Uint8Array ? `bytes(${v.length})` : v))).toBe(true);
      compared++;
    }
    expect(compared).toBeGreaterThan(400);
  });

  it("decodes every byte of a valid header changed to a structural value exactly as the schema does", () => {
    const id = new Uint8Array(16).fill(9);
    const headers = [
      { v: 1, k: "req", id, to: "A".repeat(40), exp: Date.now() + 1000, dur: true },
      { v: 1, k: "pub", id, to: "a.b", exp: 70_000, sq: 2 ** 40 },
      { v: 1, k: "nack", id, to: "", exp: 300, re: id, as: "svc:x", code: "busy", msg: "m".repeat(300) },
    ];
    const marks = [0x00, 0x01, 0x02, 0x10, 0x7f, 0x80, 0x85, 0x8f, 0x90, 0xa0, 0xa2, 0xbf, 0xc0, 0xc2, 0xc3, 0xc4, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd9, 0xda, 0xdb, 0xde, 0xff];
    let frames = 0;
    for (const header of headers) {
      const valid = encodeHeader(header as never);
      for (let i = 0; i < valid.length; i++) {
        for (const mark of marks) {
          const changed = Uint8Array.from(valid);
          changed[i] = mark;
          expect(outcome(decodeHeader, changed)).toEqual(outcome(referenceDecodeHeader, changed));
          frames++;
        }
      }
      // Trailing bytes, and the map count one more or one less than its entries.
      const longer = Uint8Array.from([...valid, 0xc0]);
      expect(outcome(decodeHeader, longer)).toEqual(outcome(referenceDecodeHeader, longer));
      for (const delta of [1, -1]) {
        const recount = Uint8Array.from(valid);
        recount[0] = recount[0]! + delta;
        expect(outcome(decodeHeader, recount)).toEqual(outcome(referenceDecodeHeader, recount));
      }
    }
    expect(frames).toBeGreaterThan(3000);
  });

  it("leaves a repeated key to the general path (which keeps the last value)", () => {
    const first = encodeHeader({ v: 1, k: "req", id: new Uint8Array(16), to: "A".repeat(40), exp: 5 });
    // The same map with "to" once more: fixmap of 6, then the extra entry at the end.
    const repeated = Uint8Array.from([0x86, ...first.subarray(1), 0xa2, 0x74, 0x6f, 0xa1, 0x42]);
    const result = outcome(decodeHeader, repeated);
    expect(result).toEqual(outcome(referenceDecodeHeader, repeated));
    expect((result as { ok: { to: string } }).ok.to).toBe("B");
  });
});

function innerCases(h: Uint8Array): unknown[] {
  const rid = new Uint8Array(16).fill(3);
  const bases: Array<Record<string, unknown>> = [
    { t: "req", h, ts: Date.now(), rid, tool: "echo", args: { data: new Uint8Array(10), n: [1, 2, { x: null }] } },
    { t: "req", h, ts: 0, rid, tool: "t".repeat(256), args: null },
    { t: "req", h, ts: 2, rid, tool: "x", args: 1, tok: "a.b.c" },
    { t: "evt", h, ts: 3, job: "j", st: "running", progress: { progress: 1, total: 2 } },
    { t: "res", h, ts: 1.5, st: "ok", result: { a: "b" } },
    { t: "res", h, ts: -1, st: "done" },
    { t: "res", h, ts: 1, st: "error", error: { code: "tool_failed", message: "boom" } },
  ];
  const keys = ["t", "h", "ts", "rid", "tool", "args", "tok", "job", "progress", "st", "result", "error"];
  const more: unknown[] = [
    "", "x".repeat(257), "x".repeat(8193), "accepted", "running", "cancelled", "bogus", { progress: 1 }, { progress: "1" },
    { code: "a" }, { message: "b" }, { code: "a", message: "b", extra: 1 }, { code: "x".repeat(65), message: "m" }, { code: "c", message: "m".repeat(4097) }, { code: 1, message: "m" },
  ];
  let deep: unknown = 1;
  for (let i = 0; i < MAX_DEPTH + 2; i++) deep = [deep];
  const cases: unknown[] = [...bases, null, 7, [1], { ...bases[0], extra: true }, { ...bases[0], args: deep }, { ...bases[2], result: deep }];
  for (const base of bases) {
    for (const key of keys) {
      const without = { ...base };
      delete without[key];
      cases.push(without);
      for (const value of [...ODD, ...more]) cases.push({ ...base, [key]: value });
    }
  }
  return cases;
}

describe("decodeInner hot path", () => {
  it("agrees with the schema on every probed message", () => {
    const headerBytes = encodeHeader({ v: 1, k: "req", id: newId(), to: "A".repeat(40), exp: 1 });
    const h = digest(headerBytes);
    let accepted = 0;
    for (const value of [...innerCases(h), ...innerCases(new Uint8Array(32))]) {
      const plaintext = encoder.encode(value);
      const fast = outcome((p) => decodeInner(p, headerBytes, MAX_BYTES), plaintext);
      expect(fast, JSON.stringify(value, (_, v) => (v instanceof Uint8Array ? `bytes(${v.length})` : v))).toEqual(
        outcome((p) => referenceDecodeInner(p, headerBytes), plaintext),
      );
      if ("ok" in fast) accepted++;
    }
    expect(accepted).toBeGreaterThan(50);
  });
});

describe("digest", () => {
  it("is SHA-256, as createHash computes it", () => {
    for (const size of [0, 1, 90, 4096]) {
      const data = randomBytes(size);
      expect(Buffer.from(digest(data)).equals(createHash("sha256").update(data).digest())).toBe(true);
    }
  });
});
