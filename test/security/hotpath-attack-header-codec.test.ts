/**
 * Adversarial review of issue 12 (wire/header-codec.ts): the hand-written header codec against
 * the generic one. Claim: decodeHeaderFast and the generic decoder + schema give the same
 * result for every input, and encodeHeaderFast writes exactly @msgpack/msgpack's bytes (or
 * defers to it). The module's own doc points to test/unit/header-codec.test.ts, which does not
 * exist: the differential fuzz below is kept as that regression test.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { decodeHeader, HeaderSchema, MAX_DEPTH, MAX_HEADER_BYTES, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { decodeHeaderFast, encodeHeaderFast } from "../../src/wire/header-codec.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { rng } from "../support/random.js";

const generic = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder({ maxStrLength: MAX_HEADER_BYTES, maxBinLength: MAX_HEADER_BYTES, maxArrayLength: MAX_HEADER_BYTES, maxMapLength: MAX_HEADER_BYTES, maxExtLength: 0 });

/** The generic path of decodeHeader (envelope.ts) written out: msgpack + schema, or an error code. */
function genericDecode(frame: Uint8Array): Header | string {
  if (frame.length > MAX_HEADER_BYTES) return "too_large";
  let raw: unknown;
  try {
    checkMsgpack(frame, MAX_DEPTH);
    raw = decoder.decode(frame);
  } catch {
    return "bad_frame";
  }
  const parsed = HeaderSchema.safeParse(raw);
  if (!parsed.success) return "bad_frame";
  return parsed.data.v !== PROTOCOL_VERSION ? "unsupported_version" : parsed.data;
}

function outcome(frame: Uint8Array): Header | string {
  try {
    return decodeHeader(frame);
  } catch (err) {
    return (err as { code?: string }).code ?? "threw " + String(err);
  }
}

function randomHeader(r: () => number): Header {
  const pick = <T,>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const str = (max: number) => "x".repeat(Math.floor(r() * max));
  const num = () => pick([0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 1_800_000_000_000, Number.MAX_SAFE_INTEGER]);
  const h: Record<string, unknown> = { v: pick([1, 1, 1, 0, 2, 127]), k: pick(["req", "res", "evt", "hb", "ack", "nack", "pub"]), id: new Uint8Array(16).fill(7), to: str(140), exp: num() };
  if (r() < 0.3) h["re"] = new Uint8Array(16).fill(9);
  if (r() < 0.3) h["as"] = str(140);
  if (r() < 0.3) h["dur"] = true;
  if (r() < 0.3) h["sq"] = num();
  if (r() < 0.3) h["code"] = str(70);
  if (r() < 0.3) h["msg"] = str(300);
  return h as Header;
}

describe("hotpath-attack: header codec, fast path against the generic one (regression)", () => {
  it("encodeHeaderFast writes the generic encoder's bytes for random headers", () => {
    const r = rng(12);
    for (let i = 0; i < 5000; i++) {
      const h = randomHeader(r);
      const fast = encodeHeaderFast(h);
      if (fast) expect(Buffer.from(fast).equals(Buffer.from(generic.encode(h)))).toBe(true);
    }
  });

  it("decodeHeader (fast first) and the generic path agree on random and mutated frames", () => {
    const r = rng(34);
    let fastHits = 0;
    for (let i = 0; i < 20_000; i++) {
      const frame = Uint8Array.from(generic.encode(randomHeader(r)));
      const mutations = Math.floor(r() * 4);
      for (let j = 0; j < mutations; j++) {
        const at = Math.floor(r() * frame.length);
        frame[at] = r() < 0.5 ? Math.floor(r() * 256) : frame[at]! ^ (1 << Math.floor(r() * 8));
      }
      const cut = r() < 0.1 ? frame.subarray(0, Math.floor(r() * frame.length)) : frame;
      if (decodeHeaderFast(cut)) fastHits++;
      const got = outcome(cut);
      const want = genericDecode(cut);
      if (typeof want === "string") expect(got).toBe(want);
      else expect(got).toEqual(want);
    }
    expect(fastHits).toBeGreaterThan(1000);
  });
});

describe("hotpath-attack: header codec, hand-made non-minimal and edge forms (regression)", () => {
  const B = (...xs: Array<number | number[] | string>) =>
    Uint8Array.from(xs.flatMap((x) => (typeof x === "string" ? [0xa0 + x.length, ...Buffer.from(x, "latin1")] : Array.isArray(x) ? x : [x])));
  const id = [0xc4, 16, ...new Array(16).fill(1)];
  const cases: Array<[string, Uint8Array]> = [
    ["plain", B(0x85, "v", 1, "k", "req", "id", id, "to", "", "exp", 5)],
    ["v as uint8", B(0x85, "v", [0xcc, 1], "k", "req", "id", id, "to", "", "exp", 5)],
    ["v as float64 1.0", B(0x85, "v", [0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0], "k", "req", "id", id, "to", "", "exp", 5)],
    ["to as str16", B(0x85, "v", 1, "k", "req", "id", id, "to", [0xda, 0, 2, 0x61, 0x62], "exp", 5)],
    ["to as str8 of 129", B(0x85, "v", 1, "k", "req", "id", id, "to", [0xd9, 129, ...new Array(129).fill(0x61)], "exp", 5)],
    ["to as str8 of 128", B(0x85, "v", 1, "k", "req", "id", id, "to", [0xd9, 128, ...new Array(128).fill(0x61)], "exp", 5)],
    ["exp as uint64 2^53-1", B(0x85, "v", 1, "k", "req", "id", id, "to", "", "exp", [0xcf, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
    ["exp as uint64 2^53", B(0x85, "v", 1, "k", "req", "id", id, "to", "", "exp", [0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0])],
    ["exp as int64 5", B(0x85, "v", 1, "k", "req", "id", id, "to", "", "exp", [0xd3, 0, 0, 0, 0, 0, 0, 0, 5])],
    ["exp as float 5.5", B(0x85, "v", 1, "k", "req", "id", id, "to", "", "exp", [0xcb, 0x40, 0x16, 0, 0, 0, 0, 0, 0])],
    ["exp negative fixint", B(0x85, "v", 1, "k", "req", "id", id, "to", "", "exp", 0xff)],
    ["id of 15", B(0x85, "v", 1, "k", "req", "id", [0xc4, 15, ...new Array(15).fill(1)], "to", "", "exp", 5)],
    ["id as str", B(0x85, "v", 1, "k", "req", "id", "0123456789abcdef", "to", "", "exp", 5)],
    ["repeated to", B(0x86, "v", 1, "k", "req", "id", id, "to", "a", "to", "b", "exp", 5)],
    ["dur false", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "dur", 0xc2)],
    ["dur nil", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "dur", 0xc0)],
    ["sq negative", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "sq", 0xff)],
    ["code of 65", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "code", [0xd9, 65, ...new Array(65).fill(0x61)])],
    ["msg non-ASCII", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "msg", [0xa2, 0xc3, 0xa9])],
    ["msg invalid UTF-8", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "msg", [0xa1, 0xff])],
    ["unknown key", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "zz", 1)],
    ["__proto__ key", B(0x86, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, "__proto__", 0x80)],
    ["v 2", B(0x85, "v", 2, "k", "req", "id", id, "to", "", "exp", 5)],
    ["v 2 and an unknown key", B(0x86, "v", 2, "k", "req", "id", id, "to", "", "exp", 5, "zz", 1)],
    ["kind upper case", B(0x85, "v", 1, "k", "REQ", "id", id, "to", "", "exp", 5)],
    ["map16 form", B([0xde, 0, 5], "v", 1, "k", "req", "id", id, "to", "", "exp", 5)],
    ["trailing byte", B(0x85, "v", 1, "k", "req", "id", id, "to", "", "exp", 5, 0xc0)],
  ];
  for (const [name, frame] of cases) {
    it(`agrees: ${name}`, () => {
      const want = genericDecode(frame);
      const got = outcome(frame);
      if (typeof want === "string") expect(got).toBe(want);
      else expect(got).toEqual(want);
    });
  }
});

describe("hotpath-attack: encodeHeaderFast near the end of its 4 KiB scratch", () => {
  it("defers to the generic encoder (or writes its bytes) instead of throwing RangeError", () => {
    // Object.keys order: three 1024-char strings, one of 700, then a 255-byte binary: the SLACK
    // check (64 bytes) passes before the binary, whose 255 bytes are then written past the scratch.
    const h: Record<string, unknown> = {};
    for (let i = 0; i < 3; i++) h["s".repeat(30) + i] = "m".repeat(1024);
    h["t".repeat(31)] = "m".repeat(700);
    h["b".repeat(31)] = new Uint8Array(255);
    const header = h as unknown as Header;
    expect(() => generic.encode(header)).not.toThrow();
    let fast: Uint8Array | undefined;
    expect(() => (fast = encodeHeaderFast(header))).not.toThrow();
    if (fast) expect(Buffer.from(fast).equals(Buffer.from(generic.encode(header)))).toBe(true);
  });
});
