/**
 * A response's `st` is `ok`, `accepted` or `error`: nobody sends `running`, `done` or
 * `cancelled` in a response, and accepting them made a `{st: "cancelled"}` answer resolve
 * call() with undefined. Both decoders (the fast path and the schema) refuse them.
 */
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../../src/index.js";
import { decodeInner, encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header, type InnerDraft } from "../../src/wire/envelope.js";

const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: "x".repeat(40), exp: Date.now() + 1000, re: newId() };
const headerBytes = encodeHeader(header);

describe("response statuses", () => {
  it("ok, accepted and error are read", () => {
    for (const st of ["ok", "accepted", "error"] as const) {
      const draft = { t: "res", ts: Date.now(), st, ...(st === "error" ? { error: { code: "busy", message: "m" } } : { result: 1 }) } as InnerDraft;
      expect(decodeInner(encodeInner(draft, headerBytes), headerBytes, 1 << 20).t).toBe("res");
    }
  });

  it("running, done and cancelled are refused bad_frame", () => {
    for (const st of ["running", "done", "cancelled"]) {
      for (const extra of [{}, { result: 1 }, { error: { code: "cancelled", message: "m" }, extra: 1 }]) {
        const draft = { t: "res", ts: Date.now(), st, ...extra } as unknown as InnerDraft;
        const err = (() => {
          try {
            decodeInner(encodeInner(draft, headerBytes), headerBytes, 1 << 20);
          } catch (e) {
            return e;
          }
          return undefined;
        })();
        expect(err, `${st} ${JSON.stringify(extra)}`).toBeInstanceOf(ProtocolError);
        expect((err as ProtocolError).code).toBe("bad_frame");
      }
    }
  });
});
