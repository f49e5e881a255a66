/** support/recency-map.ts: the one bounded least-recently-used map every bounded table uses. */
import { describe, expect, it } from "vitest";
import { ClockOffsets } from "../../src/testing.js";
import { RecencyMap } from "../../src/support/recency-map.js";
import { Sealer } from "../../src/wire/seal.js";
import { generateCertificate } from "../../src/index.js";

describe("RecencyMap", () => {
  it("forgets the least recently used entry past its bound; get refreshes, peek does not", () => {
    const m = new RecencyMap<string, number>(3);
    m.set("a", 1).set("b", 2).set("c", 3);
    expect(m.get("a")).toBe(1); // a is now the most recent
    expect(m.peek("b")).toBe(2); // b stays the least recent
    m.set("d", 4);
    expect([...m.keys()]).toEqual(["c", "a", "d"]);
    m.set("c", 30); // setting an existing key refreshes it without evicting
    expect(m.size).toBe(3);
    expect([...m.keys()]).toEqual(["a", "d", "c"]);
    expect(m.delete("a")).toBe(true);
    expect(m.has("a")).toBe(false);
  });

  it("bounds the tables built on it: clock offsets and shared keys", () => {
    const clocks = new ClockOffsets(2);
    for (const peer of ["p1", "p2", "p3"]) clocks.observe(peer, 1000, 1000);
    expect(clocks.size).toBe(2);
    const sealer = new Sealer(generateCertificate().secretKey, 2);
    const a = generateCertificate().publicKey;
    const first = sealer.sharedKey(a);
    sealer.sharedKey(generateCertificate().publicKey);
    expect(sealer.sharedKey(a)).toBe(first); // still cached: a was used, not evicted
  });
});
