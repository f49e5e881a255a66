/** Socket-free parts of durable delivery: the header flag, the replay rule for stored messages, the stored-ack bookkeeping. */
import { describe, expect, it } from "vitest";
import { decodeHeader, encodeHeader, newId, type Header } from "../../src/wire/envelope.js";
import { ProtocolError } from "../../src/errors.js";
import { PendingCalls } from "../../src/support/pending.js";
import { ReplayGuard } from "../../src/agent/replay.js";
import { StoredCalls } from "../../src/store/caller.js";

describe("durable: header flag", () => {
  const base: Header = { v: 1, k: "req", id: newId(), to: "x", exp: 1 };
  it("dur: true round-trips; absent stays absent (older peers see the same bytes)", () => {
    expect(decodeHeader(Buffer.from(encodeHeader({ ...base, dur: true }))).dur).toBe(true);
    const plain = Buffer.from(encodeHeader(base));
    expect(decodeHeader(plain).dur).toBeUndefined();
    expect(plain.includes(Buffer.from("dur"))).toBe(false);
  });
  it("dur other than true is bad_frame", () => {
    const bad = Buffer.from(encodeHeader({ ...base, dur: false as unknown as true }));
    let err: unknown;
    try {
      decodeHeader(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe("bad_frame");
  });
});

describe("durable: replay rule", () => {
  const refusal = (f: () => void) => {
    try {
      f();
    } catch (e) {
      return e as ProtocolError;
    }
    return undefined;
  };
  it("a durable message older than the window is refused busy (resent fresh), a plain one replay", () => {
    const now = Date.now();
    const guard = new ReplayGuard(60_000, 100, 0);
    expect(refusal(() => guard.check("a", now - 90_000, now, true))?.code).toBe("busy");
    expect(refusal(() => guard.check("b", now - 90_000, now, false))?.code).toBe("replay");
    // Within the window a durable message is checked as any other: a second copy is a replay.
    expect(refusal(() => guard.check("c", now - 5000, now, true))).toBeUndefined();
    expect(refusal(() => guard.check("c", now - 5000, now, true))?.code).toBe("replay");
  });
});

describe("durable: stored acks", () => {
  it("a stored ack extends the attempt's wait to the deadline and calls onStored once; an unknown ack is ignored", async () => {
    const pending = new PendingCalls<string>();
    const calls = new StoredCalls();
    const seen: unknown[] = [];
    const answer = pending.add("k", 50);
    calls.track("k", { to: "bob", tool: "t", deadline: Date.now() + 2000 }, (n) => seen.push(n), answer);
    const wait = calls.onStoredAck("k", () => undefined);
    expect(wait).toBeGreaterThan(1000);
    expect(pending.extend("k", wait!)).toBe(true);
    await new Promise((r) => setTimeout(r, 150)); // past the attempt's own 50 ms
    expect(pending.size).toBe(1); // still waiting
    pending.resolve("k", "answer");
    expect(await answer).toBe("answer");
    expect(seen).toEqual([{ to: "bob", tool: "t", deadline: expect.any(Number) }]);
    expect(calls.onStoredAck("k", () => undefined)).toBeUndefined();
    expect(calls.onStoredAck("nothing", () => undefined)).toBeUndefined();
  });
  it("a throwing onStored listener is reported, not thrown", () => {
    const calls = new StoredCalls();
    const errors: unknown[] = [];
    calls.track("k", { to: "bob", tool: "t", deadline: Date.now() + 1000 }, () => {
      throw new Error("listener");
    }, new Promise(() => undefined));
    expect(calls.onStoredAck("k", (e) => errors.push(e))).toBeGreaterThan(0);
    expect(errors).toHaveLength(1);
  });
});

describe("durable: events kept for a job not yet re-attached", () => {
  it("bounded by count and bytes, forgotten after keepMs, handed out per runner once", async () => {
    const { OrphanEvents } = await import("../../src/store/orphans.js");
    const kept = new OrphanEvents(100, 3, 1000);
    const f = (n: number) => [Buffer.alloc(n)];
    expect(kept.keep("r1", f(40), 0)).toBe(true);
    expect(kept.keep("r1", f(40), 0)).toBe(true);
    expect(kept.keep("r2", f(40), 0)).toBe(false); // 120 bytes > 100
    expect(kept.keep("r2", f(10), 0)).toBe(true);
    expect(kept.keep("r2", f(1), 0)).toBe(false); // 4 events > 3
    expect(kept.take("r1", 10).map((x) => x[0]!.length)).toEqual([40, 40]);
    expect(kept.take("r1", 10)).toEqual([]);
    expect(kept.take("r2", 2000)).toEqual([]); // past keepMs
    expect(kept.size).toBe(0);
  });
});
