/**
 * Adversarial review of issue 12 (support/deadlines.ts): "a cancelled deadline never fires".
 * #sweep removes every due entry from the set before firing any of them, so an entry cancelled
 * by an earlier callback of the same sweep is no longer in the set (cancel is a no-op) and still
 * fires. In handler.ts today cancel runs only after an await, so this is the class's contract,
 * not yet a live double-fire; any synchronous cancel from a fire (an abort listener) would hit it.
 */
import { describe, expect, it } from "vitest";
import { Deadlines } from "../../src/support/deadlines.js";

describe("hotpath-attack: Deadlines", () => {
  it("a deadline cancelled by another deadline's callback (both due in one sweep) does not fire", async () => {
    const d = new Deadlines();
    const fired: string[] = [];
    const at = performance.now() + 20;
    let b: ReturnType<Deadlines["add"]> | undefined;
    d.add(at, () => {
      fired.push("a");
      d.cancel(b); // e.g. a run that ends because another one expired
    });
    b = d.add(at, () => fired.push("b"));
    await new Promise((r) => setTimeout(r, 80));
    expect(fired).toEqual(["a"]);
  });
});
