import { describe, expect, it } from "vitest";
import { newId } from "../../src/wire/envelope.js";
import { randomBytesPooled } from "../../src/wire/random.js";

describe("pooled random bytes", () => {
  it("gives each call its own bytes, across pool refills", () => {
    const seen = new Set<string>();
    const views: Uint8Array[] = [];
    for (let i = 0; i < 1000; i++) {
      const id = newId();
      expect(id).toBeInstanceOf(Uint8Array);
      expect(id.length).toBe(16);
      seen.add(Buffer.from(id).toString("hex"));
      views.push(id);
    }
    expect(seen.size).toBe(1000);
    // Writing to one result must not change another (disjoint ranges of the pool).
    const before = Buffer.from(views[1]!).toString("hex");
    views[0]!.fill(0);
    expect(Buffer.from(views[1]!).toString("hex")).toBe(before);
  });

  it("serves sizes that do not divide the pool, refilling rather than overrunning", () => {
    let total = 0;
    for (let i = 0; i < 500; i++) {
      const b = randomBytesPooled(24);
      expect(b.length).toBe(24);
      total += b.length;
    }
    expect(total).toBe(12_000);
    expect(randomBytesPooled(4096).length).toBe(4096);
  });
});
