/**
 * The responder encodes an answer once: the bytes spliced into the sealed response are the bytes
 * it returns for the answer cache to keep (responder.ts, envelope.ts encodeResponseShared), so a
 * retry gets what the first response carried even when the tool's result reads differently each
 * time (a getter), and the spliced response is exactly what the encoder writes for the object.
 */
import { describe, expect, it } from "vitest";
import { generateCertificate } from "../../src/auth/certs.js";
import { Responder, type ReplyPath } from "../../src/agent/responder.js";
import type { Frames } from "../../src/agent/transport.js";
import { decodeInner, decodeKept, encodeHeader, encodeInner, encodeKept, encodeResponseShared, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { Sealer } from "../../src/wire/seal.js";
import { rng } from "../support/random.js";
import { memoryCore } from "../support/memory-core.js";

function callee() {
  const sent: Frames[] = [];
  const { cert, core } = memoryCore({ send: async (frames) => void sent.push(frames) });
  return { cert, core, sent, responder: new Responder(core) };
}

describe("responder: one encoding of the answer", () => {
  it("a result that reads differently each time: the response and the kept bytes carry the same value", () => {
    const { cert, core, sent, responder } = callee();
    const caller = generateCertificate();
    const request: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: cert.publicKey, exp: Date.now() + 5000 };
    const reply: ReplyPath = { peer: caller.publicKey, inReplyTo: request, sentExp: request.exp, sealer: core.sealer, as: undefined, answered: false, via: undefined };
    let reads = 0;
    const result = {
      get n() {
        return ++reads;
      },
    };
    const out = responder.respond(reply, { st: "ok", result });
    expect(out).toBeDefined();
    const [headerBytes, body] = sent[0] as [Uint8Array, Uint8Array];
    const opened = new Sealer(caller.secretKey).open(cert.publicKey, body);
    const inner = decodeInner(opened, headerBytes, 1 << 20) as { t: string; st: string; result: { n: number } };
    expect(inner.t).toBe("res");
    expect(inner.st).toBe("ok");
    expect(decodeKept(out!.kept)).toEqual({ st: "ok", result: { n: inner.result.n } });
  });

  it("the spliced response is byte for byte what the encoder writes for {t, ts, ...answer, h}", () => {
    const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: generateCertificate().publicKey, exp: Date.now() + 5000, re: newId() };
    const headerBytes = encodeHeader(header);
    const answers = [
      { st: "ok", result: null },
      { st: "ok", result: { data: new Uint8Array(300).fill(3), s: "é", list: [1, -2, 3.5, 2 ** 40] } },
      { st: "error", error: { code: "tool_failed", message: "x".repeat(70_000) } },
      { st: "accepted", result: { job_id: "j" } },
    ] as const;
    for (const answer of answers) {
      const ts = 1_760_000_000_123;
      const spliced = encodeResponseShared(ts, encodeKept(answer), headerBytes).slice();
      expect(Buffer.from(spliced).equals(Buffer.from(encodeInner({ t: "res", ts, ...answer } as never, headerBytes)))).toBe(true);
    }
  });

  it("the same on 1,000 random answers (nested values, long strings, binaries up to 70 KB, fractional timestamps)", () => {
    const r = rng(12);
    const value = (depth: number): unknown => {
      const k = Math.floor(r() * 8);
      if (depth > 3) return r() < 0.5 ? null : 1;
      if (k === 0) return null;
      if (k === 1) return r() < 0.5;
      if (k === 2) return Math.floor(r() * 2 ** (r() * 60)) * (r() < 0.3 ? -1 : 1);
      if (k === 3) return r() * 1e6;
      if (k === 4) return "s".repeat(Math.floor(r() * 300)) + (r() < 0.2 ? "é" : "");
      if (k === 5) return new Uint8Array(Math.floor(r() * (r() < 0.1 ? 70_000 : 700)));
      if (k === 6) return Array.from({ length: Math.floor(r() * 5) }, () => value(depth + 1));
      const o: Record<string, unknown> = {};
      for (let i = 0; i < r() * 5; i++) o[`k${i}`] = value(depth + 1);
      if (r() < 0.2) o["u"] = undefined; // dropped by the encoder on both paths
      return o;
    };
    const headerBytes = encodeHeader({ v: PROTOCOL_VERSION, k: "res", id: newId(), to: generateCertificate().publicKey, exp: Date.now() + 5000, re: newId() });
    for (let i = 0; i < 1000; i++) {
      const answer = r() < 0.8 ? { st: "ok", result: value(0) } : { st: "error", error: { code: "tool_failed", message: "m".repeat(Math.floor(r() * 5000)) } };
      const ts = r() < 0.5 ? 1_760_000_000_000 + i : r() * 1e12;
      const spliced = encodeResponseShared(ts, encodeKept(answer), headerBytes).slice();
      expect(Buffer.from(spliced).equals(Buffer.from(encodeInner({ t: "res", ts, ...answer } as never, headerBytes))), `answer ${i}`).toBe(true);
    }
  });
});
