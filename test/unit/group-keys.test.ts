/**
 * The pieces of group keys without sockets: pub:/sub: scopes read as topic patterns, the
 * credential and body layouts (and their refusals), Ed25519 by libsodium and by node:crypto
 * giving the same bytes on random inputs, and the option checks.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isTopic, scopeCovers, topicPatternCovers } from "../../src/auth/tokens.js";
import { ConfigError, EventSealError } from "../../src/errors.js";
import { DISTRIBUTOR_DEFAULTS, topicKey } from "../../src/events/distributor.js";
import { contextDigest, encodeBody, encodeCredential, parseBody, parseCredential } from "../../src/events/format.js";
import { GROUP_KEYS_DEFAULTS, groupKeys } from "../../src/events/group-keys.js";
import { ROOT } from "../support/process.js";
import { nativeSigning, nodeSigning } from "../../src/events/signing.js";

describe("pub:/sub: scopes are topic patterns", () => {
  const cases: Array<[string, string, boolean]> = [
    ["sub:docs.>", "sub:docs.a", true],
    ["sub:docs.>", "sub:docs.a.b.c", true],
    ["sub:docs.>", "sub:docs.*", true],
    ["sub:docs.>", "sub:docs.>", true],
    ["sub:docs.>", "sub:docs", false], // `>` is one or more tokens
    ["sub:docs.*", "sub:docs.a", true],
    ["sub:docs.*", "sub:docs.a.b", false], // not the call:-style prefix
    ["sub:docs.*", "sub:docs.>", false],
    ["sub:docs.*", "sub:docs.*", true],
    ["sub:docs.a", "sub:docs.*", false], // a literal does not cover a wildcard
    ["sub:*.indexed", "sub:docs.indexed", true],
    ["sub:>", "sub:anything.at.all", true],
    ["sub:docs*", "sub:docs.a", false], // not a pattern: covers nothing (fails closed)
    ["sub:docs*", "sub:docsecret", false],
    ["pub:docs.>", "sub:docs.a", false], // the kind matters
    ["sub:docs.>", "pub:docs.a", false],
    ["*", "pub:docs.a", true], // the bare `*` still covers every scope
    ["call:*", "sub:docs.a", false],
  ];
  it.each(cases)("%s covers %s: %s", (granted, required, expected) => {
    expect(scopeCovers([granted], required)).toBe(expected);
  });

  it("call: scopes keep their prefix rule", () => {
    expect(scopeCovers(["call:jobs.*"], "call:jobs.a.b")).toBe(true);
    expect(scopeCovers(["call:jobs*"], "call:jobsx")).toBe(true);
  });

  it("topics: dotted tokens; `*` whole tokens, `>` last; no empty tokens", () => {
    for (const t of ["docs", "docs.indexed", "a-b.c_d.9"]) expect(isTopic(t), t).toBe(true);
    for (const t of ["", "docs.", ".docs", "docs..a", "docs.*", "docs.>", "do cs", "docs.a*", "x".repeat(251)]) expect(isTopic(t), t).toBe(false);
    for (const p of ["docs.*", "docs.>", "*.a.>", ">"]) expect(isTopic(p, true), p).toBe(true);
    for (const p of ["docs.>.a", "docs.**", "docs.a>"]) expect(isTopic(p, true), p).toBe(false);
  });

  it("pattern coverage agrees with matching on random topics", () => {
    const token = fc.constantFrom("a", "b", "c");
    const patternToken = fc.constantFrom("a", "b", "*");
    const matches = (pattern: string[], topic: string[]) =>
      pattern.every((p, i) => p === ">" || (i < topic.length && (p === "*" || p === topic[i]))) &&
      (pattern[pattern.length - 1] === ">" ? topic.length >= pattern.length : topic.length === pattern.length);
    fc.assert(
      fc.property(fc.array(patternToken, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.array(token, { minLength: 1, maxLength: 4 }), (g, tail, topic) => {
        const granted = tail ? [...g, ">"] : g;
        // A pattern covers a topic exactly when it matches it.
        expect(topicPatternCovers(granted.join("."), topic.join("."))).toBe(matches(granted, topic));
      }),
    );
  });
});

describe("the credential and body layouts", () => {
  const signer = nodeSigning.generate();
  const fields = { epoch: 1_796_000_000_123, expires: 1_796_000_060_000, member: new Uint8Array(32).fill(1), signer: new Uint8Array(32).fill(2), topic: "docs.indexed" };

  it("a credential reads back as written, and its signature covers the domain and every byte before it", () => {
    const bytes = encodeCredential(fields, (m) => signer.sign(m));
    const c = parseCredential(bytes);
    expect({ epoch: c.epoch, expires: c.expires, member: c.member, signer: c.signer, topic: c.topic }).toEqual(fields);
    expect(nodeSigning.verify(signer.publicKey, c.signed, c.signature)).toBe(true);
    expect(bytes.length).toBe(1 + 8 + 8 + 32 + 32 + 2 + fields.topic.length + 64);
    for (const bad of [bytes.subarray(0, bytes.length - 1), new Uint8Array([...bytes, 0]), new Uint8Array([2, ...bytes.subarray(1)])]) {
      const err = (() => {
        try {
          parseCredential(bad);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(EventSealError);
      expect((err as EventSealError).code).toBe("bad_seal");
      expect((err as EventSealError).reason).toBe("credential");
    }
  });

  it("a body reads back as written; a truncated one is malformed", () => {
    const credential = encodeCredential(fields, (m) => signer.sign(m));
    const body = encodeBody({ epoch: fields.epoch, credential, signature: new Uint8Array(64).fill(9), box: new Uint8Array(80).fill(5) });
    const parts = parseBody(body, 72);
    expect(parts.epoch).toBe(fields.epoch);
    expect(parts.credential).toEqual(credential);
    expect(parts.box).toEqual(new Uint8Array(80).fill(5));
    try {
      parseBody(body.subarray(0, 100), 72);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(EventSealError);
      expect((err as EventSealError).reason).toBe("malformed");
    }
  });

  it("the context digest changes with every bound input", () => {
    const h = new Uint8Array([1, 2, 3]);
    const c = new Uint8Array([4]);
    const base = Buffer.from(contextDigest("docs.a", h, 5, c)).toString("hex");
    const variants = [contextDigest("docs.b", h, 5, c), contextDigest("docs.a", new Uint8Array([1, 2, 4]), 5, c), contextDigest("docs.a", h, 6, c), contextDigest("docs.a", h, 5, new Uint8Array([5]))];
    for (const v of variants) expect(Buffer.from(v).toString("hex")).not.toBe(base);
  });

  it("topic keys differ per topic and per epoch secret, and are stable for both", () => {
    const s1 = new Uint8Array(32).fill(1);
    const s2 = new Uint8Array(32).fill(2);
    expect(topicKey(s1, "docs.a")).toEqual(topicKey(s1, "docs.a"));
    expect(topicKey(s1, "docs.a")).not.toEqual(topicKey(s1, "docs.b"));
    expect(topicKey(s1, "docs.a")).not.toEqual(topicKey(s2, "docs.a"));
  });
});

describe("Ed25519: libsodium and node:crypto", () => {
  it.skipIf(!nativeSigning)("give the same keys and signatures, and verify each other's, on random inputs", () => {
    const native = nativeSigning!;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 2048 }), (seed, message) => {
        const a = native.fromSeed(seed);
        const b = nodeSigning.fromSeed(seed);
        expect(a.publicKey).toEqual(b.publicKey);
        const sig = a.sign(message);
        expect(sig).toEqual(b.sign(message));
        expect(nodeSigning.verify(a.publicKey, message, sig)).toBe(true);
        expect(native.verify(b.publicKey, message, sig)).toBe(true);
        const flipped = sig.slice();
        flipped[0]! ^= 1;
        expect(native.verify(a.publicKey, message, flipped)).toBe(false);
        expect(nodeSigning.verify(a.publicKey, message, flipped)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it("refuse keys and signatures of the wrong length, and a public key that is no point, without throwing", () => {
    for (const backend of [nodeSigning, ...(nativeSigning ? [nativeSigning] : [])]) {
      expect(backend.verify(new Uint8Array(31), new Uint8Array(1), new Uint8Array(64)), backend.name).toBe(false);
      expect(backend.verify(new Uint8Array(32), new Uint8Array(1), new Uint8Array(63)), backend.name).toBe(false);
      expect(backend.verify(new Uint8Array(32).fill(0xff), new Uint8Array(1), new Uint8Array(64)), backend.name).toBe(false);
    }
  });
});

describe("groupKeys options", () => {
  it("refuses a bad option at once (ConfigError)", () => {
    expect(() => groupKeys({ distributor: "" })).toThrow(ConfigError);
    expect(() => groupKeys({ distributor: "keys", attempts: 0 })).toThrow(ConfigError);
    expect(() => groupKeys({ distributor: "keys", clockSkew: -1 })).toThrow(ConfigError);
    expect(() => groupKeys({ distributor: "keys", maxKeys: 1.5 })).toThrow(ConfigError);
  });
});

describe("docs/EVENTS.md states the defaults", () => {
  /** The table headed `| \`title\``: option → default cell. */
  function table(text: string, title: string): Map<string, string> {
    const lines = text.split("\n");
    const start = lines.findIndex((l) => l.startsWith(`| \`${title}`));
    expect(start, title).toBeGreaterThan(0);
    const rows = new Map<string, string>();
    for (const line of lines.slice(start + 2)) {
      if (!line.startsWith("|")) break;
      const cells = line.split(" | ").map((c) => c.replace(/^\|\s*|\s*\|$/g, "").trim());
      rows.set(cells[0]!.replace(/`/g, ""), cells[cells.length - 1]!.replace(/`/g, ""));
    }
    return rows;
  }
  const parse = (cell: string) => {
    const m = /^([\d,]+)(?:\s*(MiB))?$/.exec(cell);
    return m ? Number(m[1]!.replace(/,/g, "")) * (m[2] ? 1024 * 1024 : 1) : cell;
  };
  const text = readFileSync(join(ROOT, "docs", "EVENTS.md"), "utf8");

  it.each([
    ["groupKeys", GROUP_KEYS_DEFAULTS as Record<string, unknown>],
    ["serveEventKeys", DISTRIBUTOR_DEFAULTS as Record<string, unknown>],
  ])("the %s table", (title, defaults) => {
    const rows = table(text, title);
    for (const [name, value] of Object.entries(defaults)) expect(parse(rows.get(name) ?? "(missing)"), `${title} ${name}`).toBe(value);
  });
});
