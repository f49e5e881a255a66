/**
 * A subscription's queue (src/agent/subscriber.ts) on its own: bounded by count and bytes,
 * gaps from sequence jumps and from its own drops, a publisher restart is no gap, and a long
 * backlog drained by a synchronous handler does not deepen the stack.
 */
import { describe, expect, it } from "vitest";
import type { AgentCore } from "../../src/agent/core.js";
import { Subscriber, Subscription, type Publication } from "../../src/agent/subscriber.js";
import type { EventSealer, OpenedEvent } from "../../src/events/sealer.js";
import type { Header } from "../../src/wire/envelope.js";

const owner = () => {
  const o = { failures: [] as unknown[], gaps: 0, removed: 0 };
  return { o, owner: { remove: () => Promise.resolve(void o.removed++), handlerFailed: (_s: Subscription, err: unknown) => void o.failures.push(err), gap: (n: number) => void (o.gaps += n) } };
};
const pub = (sequence: number, topic = "t.a", from = "P"): Publication => ({ topic, data: sequence, from, name: undefined, epoch: 0, sequence });

describe("subscription queue", () => {
  it("drains 100,000 queued publications through a synchronous handler without growing the stack", async () => {
    const { o, owner: ow } = owner();
    let release!: () => void;
    let calls = 0;
    const sub = new Subscription("t.*", () => {
      calls++;
      if (calls === 1) return new Promise<void>((r) => (release = r));
      return undefined;
    }, { maxQueue: 200_000, maxQueueBytes: 1 << 30 }, ow);
    for (let i = 1; i <= 100_001; i++) sub.offer(pub(i), 10);
    expect(sub.queued).toBe(100_000);
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(100_001);
    expect(sub.queued).toBe(0);
    expect(o.failures).toEqual([]);
    expect(sub.gaps.total).toBe(0);
  });

  it("counts jumps per topic, its own drops by count, and not a publisher restart", () => {
    const { o, owner: ow } = owner();
    const sub = new Subscription("t.*", () => new Promise(() => undefined), { maxQueue: 2 }, ow);
    sub.offer(pub(1), 10); // runs (never settles)
    sub.offer(pub(2), 10); // queued
    sub.offer(pub(3), 10); // queued
    sub.offer(pub(4), 1); // dropped: 2 queued already
    expect(sub.gaps).toEqual({ total: 1, topics: { "t.a": 1 } });
    sub.offer(pub(10, "t.b"), 1); // the first from P on t.b: no jump; dropped: 1
    sub.offer(pub(14, "t.b"), 1); // a jump of 3, and dropped: 1 + 3 + 1
    expect(sub.gaps).toEqual({ total: 6, topics: { "t.a": 1, "t.b": 5 } });
    sub.offer(pub(2, "t.b"), 1); // going back: a restart, no jump; dropped: + 1
    sub.offer(pub(3, "t.b", "Q"), 1); // another publisher: its own count; dropped: + 1
    expect(sub.gaps).toEqual({ total: 8, topics: { "t.a": 1, "t.b": 7 } });
    expect(o.gaps).toBe(8);
    expect(sub.delivered).toBe(1);
    expect(sub.queued).toBe(2);
  });

  it("bounds its queue by bytes", () => {
    const { owner: ow } = owner();
    const sub = new Subscription("t.*", () => new Promise(() => undefined), { maxQueue: 100, maxQueueBytes: 25 }, ow);
    sub.offer(pub(1), 10); // runs
    sub.offer(pub(2), 10); // queued: 10 bytes
    sub.offer(pub(3), 10); // queued: 20 bytes
    sub.offer(pub(4), 10); // 30 > 25: dropped
    sub.offer(pub(5), 5); // 25: queued
    expect(sub.queued).toBe(3);
    expect(sub.gaps.total).toBe(1);
  });

  it("refuses bad limits with ConfigError", () => {
    const { owner: ow } = owner();
    expect(() => new Subscription("t", () => undefined, { concurrency: 0 }, ow)).toThrow(/concurrency/);
    expect(() => new Subscription("t", () => undefined, { maxQueue: -1 }, ow)).toThrow(/maxQueue/);
  });
});

describe("subscriber: opening publications", () => {
  it("gives up on a publication the sealer never opens, and delivers the ones behind it", async () => {
    const stats = { publications: 0, publicationGaps: 0, publicationHandlerErrors: 0, dropped: {} as Record<string, number> };
    const core = {
      isClosed: () => false,
      closedWith: () => undefined,
      stats,
      throttle: { write: () => undefined },
      directory: { nameOf: () => undefined },
      log: { warn: () => undefined, error: () => undefined },
      options: { heartbeatInterval: 2000 },
    } as unknown as AgentCore;
    let opens = 0;
    const sealer: EventSealer = {
      seal: () => Promise.resolve(new Uint8Array(0)),
      open: (_topic, _h, _b, from) => (++opens === 1 ? new Promise<OpenedEvent>(() => undefined) : Promise.resolve({ data: opens, publisher: from, epoch: 0 })),
      join: () => Promise.resolve(),
      leave: () => undefined,
      close: () => undefined,
    };
    const subscriber = new Subscriber(core, sealer, () => Promise.resolve(), 1000, 200);
    const got: number[] = [];
    await subscriber.subscribe("t.*", (e) => void got.push(e.sequence));
    const header = (sq: number): Header => ({ v: 1, k: "pub", id: new Uint8Array(16), to: "t.a", exp: Date.now() + 60_000, sq });
    for (let sq = 1; sq <= 3; sq++) subscriber.accept("P".repeat(40), header(sq), Buffer.alloc(8), Buffer.alloc(8));
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([]); // held behind the first, in arrival order
    await new Promise((r) => setTimeout(r, 500));
    expect(got).toEqual([2, 3]);
    expect(stats.dropped["unavailable"]).toBe(1);
    subscriber.close();
  });
});
