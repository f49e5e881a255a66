/**
 * Attack on response splicing (commit 8fcc253): the answer encoded once (encodeKept), its bytes
 * spliced into `{t, ts, ...answer, h}` (envelope.ts encodeResponseShared) and sealed
 * (message.ts sealResponse, core.ts sealAnswer, responder.ts). A hostile tool's result (a Proxy,
 * getters that throw or change between reads, BigInt, symbols, cycles, re-entry into the
 * responder while it encodes) must come out as one sealed response that the real receiver
 * (decodeInner) reads, carrying what the answer cache keeps, or the typed error saying why not.
 */
import { Decoder } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { generateCertificate } from "../../src/auth/certs.js";
import type { Answer } from "../../src/agent/idempotency.js";
import { Responder, type ReplyPath } from "../../src/agent/responder.js";
import type { Frames } from "../../src/agent/transport.js";
import { decodeInner, decodeKept, encodeHeader, encodeInner, encodeKept, encodeResponseShared, MAX_DEPTH, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { Sealer } from "../../src/wire/seal.js";
import { rng } from "../support/random.js";
import { memoryCore } from "../support/memory-core.js";

function callee(maxMessageBytes?: number) {
  const sent: Frames[] = [];
  const { cert, core } = memoryCore({ send: async (frames) => void sent.push(frames) }, maxMessageBytes ? { maxMessageBytes } : {});
  const caller = generateCertificate();
  const replyPath = (): ReplyPath => {
    const request: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: cert.publicKey, exp: Date.now() + 5000 };
    return { peer: caller.publicKey, inReplyTo: request, sentExp: request.exp, sealer: core.sealer, as: undefined, answered: false, via: undefined };
  };
  const open = (frames: Frames) => {
    const [headerBytes, body] = frames as [Uint8Array, Uint8Array];
    const plaintext = new Sealer(caller.secretKey).open(cert.publicKey, body);
    return decodeInner(plaintext, headerBytes, core.options.maxMessageBytes) as Record<string, unknown>;
  };
  return { core, sent, responder: new Responder(core), replyPath, open };
}

/** Responds with `answer` and checks the one response sent is read by the receiver and equals the kept bytes. */
function respondChecked(answer: Answer, maxMessageBytes?: number) {
  const { sent, responder, replyPath, open } = callee(maxMessageBytes);
  const out = responder.respond(replyPath(), answer);
  expect(out).toBeDefined();
  expect(sent).toHaveLength(1);
  const inner = open(sent[0]!);
  expect(inner["t"]).toBe("res");
  const { t: _t, ts: _ts, h: _h, ...carried } = inner;
  expect(carried).toEqual(decodeKept(out!.kept));
  return { inner, out: out! };
}

const hostile: Array<[string, () => unknown, "ok" | "error" | "either"]> = [
  ["a Proxy whose ownKeys trap throws", () => new Proxy({}, { ownKeys: () => { throw new Error("no keys"); } }), "error"],
  ["a Proxy whose get trap throws", () => new Proxy({ a: 1 }, { get: () => { throw new Error("no get"); } }), "error"],
  ["a Proxy that reports a key it does not have", () => new Proxy({}, { ownKeys: () => ["ghost"], getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true, configurable: true }) }), "either"],
  ["a getter that throws on the second read", () => { let n = 0; return { get x() { if (++n > 1) throw new Error("second read"); return 1; } }; }, "either"],
  ["a getter that is deep on the second read", () => { let n = 0; return { get x() { if (++n === 1) return 1; let v: unknown = 0; for (let i = 0; i < 300; i++) v = [v]; return v; } }; }, "either"],
  ["a getter that is a Date on the second read", () => { let n = 0; return { get x() { return ++n === 1 ? 1 : new Date(); } }; }, "either"],
  ["a getter that is 2 MiB on the second read", () => { let n = 0; return { get x() { return ++n === 1 ? 1 : "x".repeat(2 << 20); } }; }, "either"],
  ["a getter that is a BigInt on the second read", () => { let n = 0; return { get x() { return ++n === 1 ? 1 : 2n ** 70n; } }; }, "either"],
  ["a getter that is an own __proto__ key on the second read", () => { let n = 0; return { get x() { return ++n === 1 ? 1 : JSON.parse('{"__proto__": 1}'); } }; }, "error"],
  ["a getter that is a lone surrogate on the second read", () => { let n = 0; return { get x() { return ++n === 1 ? "a" : "\ud800"; } }; }, "error"],
  ["a getter that is a lone-surrogate key on the second read", () => { let n = 0; return { get x() { return ++n === 1 ? 1 : { "\udc00": 1 }; } }; }, "error"],
  ["toJSON", () => ({ toJSON: () => ({ evil: 1 }), a: 1 }), "either"],
  ["a small BigInt", () => ({ n: 5n }), "either"],
  ["a huge BigInt", () => ({ n: 2n ** 100n }), "either"],
  ["Symbol keys and a Symbol value", () => ({ [Symbol("k")]: 1, s: Symbol("v") }), "either"],
  ["a cycle", () => { const o: Record<string, unknown> = {}; o["self"] = o; return o; }, "error"],
  ["a function", () => () => 1, "either"],
  // Was sent as a response the caller's decoder refuses whole (bad_frame, dropped: the call timed out).
  ["an own __proto__ key", () => JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}'), "error"],
  ["an own __proto__ key nested in an array", () => [1, JSON.parse('{"__proto__": 1}')], "error"],
  ["a Map and a Set", () => ({ m: new Map([[1, 2]]), s: new Set([1]) }), "either"],
  ["typed arrays", () => ({ f: new Float64Array([1.5]), d: new DataView(new ArrayBuffer(4)), b: Buffer.from("hi") }), "either"],
  ["a key t/ts/h in the result", () => ({ t: "req", ts: -1, h: new Uint8Array(32) }), "ok"],
  ["40,000 keys (a map16)", () => Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`k${i}`, i])), "ok"],
  ["70,000 keys (a map32, past the receiver's 100,000 values)", () => Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i])), "error"],
  ["undefined values", () => ({ a: undefined, b: [undefined], c: 1 }), "either"],
];

describe("perf7 attack: hostile results through the spliced response", () => {
  for (const [name, make, expected] of hostile) {
    it(`${name}: one sealed response the receiver reads, carrying exactly what is kept`, () => {
      const { inner } = respondChecked({ st: "ok", result: make() });
      if (expected !== "either") expect(inner["st"]).toBe(expected);
      if (inner["st"] === "error") expect(["tool_failed", "too_large"]).toContain((inner["error"] as { code: string }).code);
    });
  }

  it("a result just under and just over the message cap", () => {
    const cap = 200_000;
    for (let size = cap - 400; size < cap + 50; size += 7) {
      const { inner } = respondChecked({ st: "ok", result: "y".repeat(size) }, cap);
      if (inner["st"] === "error") expect((inner["error"] as { code: string }).code).toBe("too_large");
    }
  });

  it("a getter that re-enters the responder while the answer is encoded: both responses intact", () => {
    const { sent, responder, replyPath, open } = callee();
    const inner = { get v() { responder.respond(replyPath(), { st: "ok", result: { nested: "n".repeat(5000) } }); return "outer"; } };
    const out = responder.respond(replyPath(), { st: "ok", result: inner });
    expect(out).toBeDefined();
    const decoded = sent.map(open);
    expect(decoded.some((d) => d["st"] === "ok" && (d["result"] as { v?: string }).v === "outer")).toBe(true);
    for (const d of decoded) expect(d["t"]).toBe("res");
  });
});

describe("perf7 attack: the sender's last check (checkMsgpack) refuses what the receiver's decoder refuses", () => {
  const enc = (hex: string) => Buffer.from(hex.replace(/ /g, ""), "hex");
  const proto = Buffer.from("__proto__").toString("hex");
  it("a map key __proto__ anywhere is refused; the string as a value or an array element is not", () => {
    const decoder = new Decoder();
    const cases: Array<[string, boolean]> = [
      [`81 a9${proto} 01`, false], // {__proto__: 1}
      [`82 a1 61 01 a9${proto} 01`, false], // second key
      [`81 a1 61 81 a9${proto} 01`, false], // nested
      [`81 d9 09 ${proto} 01`, false], // str8 key
      [`91 81 a9${proto} c0`, false], // in an array
      [`81 a1 61 a9${proto}`, true], // a value
      [`92 a9${proto} a9${proto}`, true], // array elements
      [`a9${proto}`, true], // top level
      [`82 a1 61 a9${proto} a1 62 01`, true], // a value followed by a key
    ];
    for (const [hex, accepted] of cases) {
      const bytes = enc(hex);
      let decoded = true;
      try {
        decoder.decode(bytes);
      } catch {
        decoded = false;
      }
      expect(decoded, hex).toBe(accepted);
      if (accepted) expect(() => checkMsgpack(bytes, MAX_DEPTH), hex).not.toThrow();
      else expect(() => checkMsgpack(bytes, MAX_DEPTH), hex).toThrow(/__proto__/);
    }
  });
});

describe("perf7 attack: encodeResponseShared against the generic encoding, odd answers and timestamps", () => {
  it("either refuses the answer bytes or writes what decodes exactly as {t, ts, ...answer, h} does", () => {
    const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: generateCertificate().publicKey, exp: Date.now() + 5000, re: newId() };
    const headerBytes = encodeHeader(header);
    const decoder = new Decoder();
    const values: unknown[] = [null, 1, "s", new Uint8Array(40), { a: 1 }, [1, 2], undefined, "ok", "res", "req"];
    const keys = ["st", "result", "error", "t", "ts", "h", "x", "__proto__"];
    const r = rng(77);
    const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)]!;
    let spliced = 0;
    for (let i = 0; i < 3000; i++) {
      const answer: Record<string, unknown> = {};
      const n = Math.floor(r() * 5);
      for (let k = 0; k < n; k++) Object.defineProperty(answer, pick(keys), { value: pick(values), enumerable: true, writable: true, configurable: true });
      const ts = pick([1_760_000_000_123, 0.5, -1, 2 ** 53, NaN, Infinity]);
      let kept: Uint8Array;
      try {
        kept = encodeKept(answer);
      } catch {
        continue;
      }
      // (An answer's own undefined `t` or `ts` would take the generic form's away: the encoder
      // omits it. The kept bytes have no such entry, so the spliced form keeps the response's.)
      const defined = Object.fromEntries(Object.entries(answer).filter(([, v]) => v !== undefined));
      const generic = (): unknown => decoder.decode(encodeInner({ t: "res", ts, ...defined } as never, headerBytes));
      let out: Uint8Array;
      try {
        out = encodeResponseShared(ts, kept, headerBytes).slice();
      } catch {
        // Refused: only for answers that are not maps of one to three entries.
        const count = Object.values(answer).filter((v) => v !== undefined).length;
        expect(count === 0 || count > 3, JSON.stringify(Object.keys(answer))).toBe(true);
        continue;
      }
      spliced++;
      let g: unknown;
      let gErr = false;
      try {
        g = generic();
      } catch {
        gErr = true;
      }
      let s: unknown;
      let sErr = false;
      try {
        s = decoder.decode(out);
      } catch {
        sErr = true;
      }
      expect(sErr, `${i}`).toBe(gErr);
      if (!gErr) expect(s, `${i} ${JSON.stringify(Object.keys(answer))} ts=${ts}`).toEqual(g);
    }
    expect(spliced).toBeGreaterThan(1000);
  });
});

describe("perf7 attack: spliced sizes around the shared scratch buffer's 64 KiB bound", () => {
  it("every size from 65,300 to 65,700 bytes, and a small one after a large one, are the encoder's bytes", () => {
    const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: generateCertificate().publicKey, exp: Date.now() + 5000, re: newId() };
    const headerBytes = encodeHeader(header);
    const ts = 1_760_000_000_123;
    for (let n = 65_300; n <= 65_700; n++) {
      for (const answer of [{ st: "ok", result: "z".repeat(n) }, { st: "ok", result: "s" }] as const) {
        const out = encodeResponseShared(ts, encodeKept(answer), headerBytes).slice();
        expect(Buffer.from(out).equals(Buffer.from(encodeInner({ t: "res", ts, ...answer }, headerBytes))), `${n}`).toBe(true);
      }
    }
  });
});
