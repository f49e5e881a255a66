/**
 * Differential fuzz of the rewritten msgpack guard (42ae13f: no closures, an ASCII fast path
 * before node's isUtf8) against the version before it (57add7d, copied below as the reference):
 * the same inputs accepted, the same refused, with the same code and message.
 */
import { isUtf8 } from "node:buffer";
import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../../src/errors.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { rng } from "../support/random.js";

const MAX_ELEMENTS = 100_000;
function referenceCheck(data: Uint8Array, maxDepth: number, maxElements = MAX_ELEMENTS): void {
  let elements = 0;
  const end = data.length;
  let p = 0;
  const bad = (why: string) => new ProtocolError("bad_frame", `message is not acceptable msgpack: ${why} (at byte ${p})`);
  const need = (n: number) => {
    if (p + n > end) throw bad("truncated");
  };
  const u8 = () => {
    need(1);
    return data[p++]!;
  };
  const u16 = () => {
    need(2);
    const v = (data[p]! << 8) | data[p + 1]!;
    p += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = data[p]! * 0x1000000 + ((data[p + 1]! << 16) | (data[p + 2]! << 8) | data[p + 3]!);
    p += 4;
    return v;
  };
  // Values still to read in each open container; the bottom entry is the one top-level value.
  const open: number[] = [1];
  while (open.length > 0) {
    const top = open.length - 1;
    if (open[top] === 0) {
      open.pop();
      continue;
    }
    open[top]!--;
    const b = u8();
    let skip = 0;
    let count = 0;
    /** The value is a str (not bin): its bytes must be UTF-8. */
    let text = false;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true
    } else if (b <= 0x8f) count = (b & 0x0f) * 2;
    else if (b <= 0x9f) count = b & 0x0f;
    else if (b <= 0xbf) {
      skip = b & 0x1f;
      text = true;
    } else {
      switch (b) {
        case 0xc4:
        case 0xd9:
          skip = u8();
          text = b === 0xd9;
          break;
        case 0xc5:
        case 0xda:
          skip = u16();
          text = b === 0xda;
          break;
        case 0xc6:
        case 0xdb:
          skip = u32();
          text = b === 0xdb;
          break;
        case 0xcc:
        case 0xd0:
          skip = 1;
          break;
        case 0xcd:
        case 0xd1:
          skip = 2;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xdc:
          count = u16();
          break;
        case 0xdd:
          count = u32();
          break;
        case 0xde:
          count = u16() * 2;
          break;
        case 0xdf:
          count = u32() * 2;
          break;
        default:
          throw bad(b === 0xc1 ? "the never-used byte 0xc1" : "extension types are not accepted");
      }
    }
    if (skip > 0) {
      need(skip);
      if (text && !isUtf8(data.subarray(p, p + skip))) throw bad("a string that is not valid UTF-8");
      p += skip;
    }
    if (count > 0) {
      if (count > end - p) throw bad(`a container declares ${count} values but ${end - p} bytes remain`);
      elements += count;
      if (elements > maxElements) throw bad(`more than ${maxElements} values in one message`);
      if (open.length > maxDepth) throw bad(`nested deeper than ${maxDepth}`);
      open.push(count);
    }
  }
  if (p !== end) throw bad(`${end - p} bytes after the value`);
}

function outcome(f: (d: Uint8Array, depth: number, max?: number) => void, data: Uint8Array, depth: number, max: number): string {
  try {
    f(data, depth, max);
    return "ok";
  } catch (err) {
    if (!(err instanceof ProtocolError)) return `THREW ${String(err)}`;
    return `${err.code}: ${err.message}`;
  }
}

const TEXT_PIECES = [
  [0x61], [0x7f], [0x00], [0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80],
  [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80],
  [0xf5], [0xff], [0x80], [0xbf], [0xc3], [0xe2, 0x82], [0xf0, 0x9f], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xef, 0xbf, 0xbf],
];

function randomText(r: () => number, maxPieces: number): number[] {
  const out: number[] = [];
  const n = Math.floor(r() * maxPieces);
  for (let i = 0; i < n; i++) {
    if (r() < 0.6) out.push(0x20 + Math.floor(r() * 0x5f));
    else out.push(...TEXT_PIECES[Math.floor(r() * TEXT_PIECES.length)]!);
  }
  return out;
}

function be(n: number, width: number): number[] {
  const out: number[] = [];
  for (let i = width - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) & 0xff);
  return out;
}

/** A random msgpack value, mostly well formed, sometimes lying about a length. */
function value(r: () => number, depth: number, out: number[]): void {
  const pick = Math.floor(r() * 24);
  const lie = r() < 0.05 ? Math.floor(r() * 5) - 2 : 0;
  switch (pick) {
    case 0: out.push(Math.floor(r() * 0x80)); break;
    case 1: out.push(0xe0 + Math.floor(r() * 32)); break;
    case 2: out.push([0xc0, 0xc2, 0xc3, 0xc1][Math.floor(r() * 4)]!); break;
    case 3: { const t = randomText(r, 8); out.push(0xa0 + Math.min(31, Math.max(0, t.length + lie)), ...t); break; }
    case 4: { const t = randomText(r, 40); out.push(0xd9, ...be(Math.max(0, t.length + lie) & 0xff, 1), ...t); break; }
    case 5: { const t = randomText(r, 40); out.push(0xda, ...be(Math.max(0, t.length + lie), 2), ...t); break; }
    case 6: { const t = randomText(r, 40); out.push(0xdb, ...be(Math.max(0, t.length + lie), 4), ...t); break; }
    case 7: { const n = Math.floor(r() * 20); out.push([0xc4, 0xc5, 0xc6][Math.floor(r() * 3)]!); const w = out[out.length - 1] === 0xc4 ? 1 : out[out.length - 1] === 0xc5 ? 2 : 4; out.push(...be(Math.max(0, n + lie), w)); for (let i = 0; i < n; i++) out.push(Math.floor(r() * 256)); break; }
    case 8: { const b = [0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xca, 0xcb][Math.floor(r() * 10)]!; out.push(b); const w = { 0xcc: 1, 0xd0: 1, 0xcd: 2, 0xd1: 2, 0xce: 4, 0xd2: 4, 0xca: 4, 0xcf: 8, 0xd3: 8, 0xcb: 8 }[b]!; for (let i = 0; i < w; i++) out.push(Math.floor(r() * 256)); break; }
    case 9: { const b = 0xc7 + Math.floor(r() * 3); out.push(b, 1, 1, 0); break; }
    case 10: { out.push(0xd4 + Math.floor(r() * 5), 1, 0); break; }
    case 11: case 12: case 13: case 14: {
      if (depth > 12) { out.push(0xc0); break; }
      const n = Math.floor(r() * 5);
      const form = Math.floor(r() * 3);
      const isMap = pick >= 13;
      const declared = Math.max(0, n + lie);
      if (form === 0) out.push((isMap ? 0x80 : 0x90) + Math.min(15, declared));
      else if (form === 1) out.push(isMap ? 0xde : 0xdc, ...be(declared, 2));
      else out.push(isMap ? 0xdf : 0xdd, ...be(declared, 4));
      for (let i = 0; i < n * (isMap ? 2 : 1); i++) value(r, depth + 1, out);
      break;
    }
    case 15: { // nested deep
      const d = Math.floor(r() * 40);
      for (let i = 0; i < d; i++) out.push(r() < 0.5 ? 0x91 : 0x81, ...(out[out.length - 1] === 0x81 ? [0xa1, 0x6b] : []));
      out.push(0xc0);
      break;
    }
    case 16: { // huge declared counts
      out.push([0xdd, 0xdf, 0xdc, 0xde][Math.floor(r() * 4)]!, 0xff, 0xff, 0xff, 0xff);
      break;
    }
    case 17: { // huge declared lengths
      out.push([0xc6, 0xdb, 0xc5, 0xda][Math.floor(r() * 4)]!, 0xff, 0xff, 0xff, 0xff);
      break;
    }
    default: { out.push(Math.floor(r() * 256)); break; }
  }
}

function mutate(r: () => number, bytes: Uint8Array): Uint8Array {
  const out = Array.from(bytes);
  const k = Math.floor(r() * 4);
  for (let i = 0; i < k; i++) {
    const op = Math.floor(r() * 4);
    const at = Math.floor(r() * (out.length + 1));
    if (op === 0 && out.length > 0) out[at % out.length] = Math.floor(r() * 256);
    else if (op === 1) out.splice(at, 0, Math.floor(r() * 256));
    else if (op === 2 && out.length > 0) out.splice(at % out.length, 1);
    else out.length = Math.floor(r() * (out.length + 1)); // truncate
  }
  return Uint8Array.from(out);
}

function compare(data: Uint8Array, depth: number, max: number): void {
  const want = outcome(referenceCheck, data, depth, max);
  const got = outcome(checkMsgpack, data, depth, max);
  if (want !== got) expect({ input: Buffer.from(data).toString("hex"), depth, max, got }).toEqual({ input: Buffer.from(data).toString("hex"), depth, max, got: want });
}

describe("checkMsgpack: the rewrite accepts and refuses exactly what 57add7d did", () => {
  it("random values, mostly well formed (also as a view inside a larger buffer)", () => {
    const r = rng(1);
    let accepted = 0;
    for (let i = 0; i < 30_000; i++) {
      const out: number[] = [];
      value(r, 0, out);
      if (r() < 0.1) value(r, 0, out); // bytes after the value
      const data = Uint8Array.from(out);
      const depth = 1 + Math.floor(r() * 20);
      const max = r() < 0.2 ? Math.floor(r() * 10) : MAX_ELEMENTS;
      compare(data, depth, max);
      // the same bytes in the middle of a larger buffer (a subarray view, as frames are)
      const big = new Uint8Array(data.length + 8);
      big.fill(0xff);
      big.set(data, 4);
      compare(big.subarray(4, 4 + data.length), depth, max);
      if (outcome(referenceCheck, data, depth, max) === "ok") accepted++;
    }
    expect(accepted).toBeGreaterThan(5000);
  });

  it("mutated real messages", () => {
    const r = rng(2);
    const samples = [
      encode({ v: 1, k: "req", id: new Uint8Array(16), to: "bob", args: { s: "é€😀", n: [1, -1, 2 ** 40, 1.5, null, true], b: new Uint8Array(300) } }),
      encode({ text: "x".repeat(70_000 / 10) + "\u00e9".repeat(300), deep: [[[[[[{ a: "ü" }]]]]]] }),
      encode(Array.from({ length: 20 }, (_, i) => ({ [`k${i}`]: "v".repeat(i * 13) + "ÿ" }))),
    ];
    for (let i = 0; i < 3_000; i++) {
      const data = mutate(r, samples[i % samples.length]!);
      compare(data, 1 + Math.floor(r() * 12), MAX_ELEMENTS);
    }
  });

  it("every string of 1 to 3 bytes after each str header agrees, and agrees with isUtf8", () => {
    const cases: number[][] = [];
    for (let a = 0; a < 256; a++) {
      cases.push([a]);
      for (const b of [0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff]) {
        cases.push([a, b]);
        for (const c of [0x80, 0xbf, 0x41]) cases.push([a, b, c]);
      }
    }
    for (const t of cases) {
      for (const prefix of [[], [0x41, 0x42]]) {
        const body = [...prefix, ...t];
        for (const head of [[0xa0 + body.length], [0xd9, body.length], [0xda, 0, body.length], [0xdb, 0, 0, 0, body.length]]) {
          const data = Uint8Array.from([...head, ...body]);
          compare(data, 4, MAX_ELEMENTS);
          expect(outcome(checkMsgpack, data, 4, MAX_ELEMENTS) === "ok").toBe(isUtf8(Uint8Array.from(body)));
        }
        const asKey = Uint8Array.from([0x81, 0xa0 + body.length, ...body, 0xc0]);
        compare(asKey, 4, MAX_ELEMENTS);
      }
    }
  });

  it("every truncation of every header form agrees", () => {
    for (let b = 0; b < 256; b++) {
      for (const tail of [[], [0], [0, 1], [0, 0, 0], [0, 0, 0, 1], [0xff, 0xff, 0xff, 0xff, 0x41], [0, 0, 0, 0, 0, 0, 0, 0]]) {
        const data = Uint8Array.from([b, ...tail]);
        for (let cut = 0; cut <= data.length; cut++) compare(data.subarray(0, cut), 3, MAX_ELEMENTS);
        compare(Uint8Array.from([0x92, b, ...tail]), 3, 2);
      }
    }
  });
});
