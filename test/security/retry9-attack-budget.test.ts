/**
 * Attacks on RetryBudget's held calls and its release (847b7a9, and the release the wait for a
 * dropped answer uses): counts freed once, wakes in order, no storm, nothing left behind.
 */
import { describe, expect, it } from "vitest";
import { RetryBudget } from "../../src/agent/retry.js";

describe("retry9: RetryBudget release and wakes", () => {
  it("release frees a place once and wakes the oldest held call; a later end frees nothing more", () => {
    const budget = new RetryBudget();
    const calls = Array.from({ length: 5 }, () => budget.enter("bob"));
    for (const c of calls.slice(0, 3)) expect(c.mayResend(0)).toBe(true);
    const woken: number[] = [];
    calls[3]!.hold(() => woken.push(3));
    calls[4]!.hold(() => woken.push(4));
    calls[0]!.release();
    calls[0]!.release(); // twice: no double count
    expect(woken).toEqual([3]);
    expect(budget.counts("bob")).toEqual({ waiting: 5, resending: 2, held: 1 });
    calls[0]!.end(); // released before: frees nothing, wakes no one
    expect(woken).toEqual([3]);
    expect(budget.counts("bob")).toEqual({ waiting: 4, resending: 2, held: 1 });
    calls[4]!.release(); // never resent: nothing to free
    expect(budget.counts("bob").resending).toBe(2);
    for (const c of calls) c.end();
    expect(budget.counts("bob")).toEqual({ waiting: 0, resending: 0, held: 0 });
  });

  it("a storm of held calls and ends: one wake per freed place, linear, nothing left registered", () => {
    const budget = new RetryBudget();
    const n = 20_000;
    const calls = Array.from({ length: n }, () => budget.enter("bob"));
    let wakes = 0;
    const resenders = calls.filter((c) => c.mayResend(0));
    expect(resenders.length).toBe(3);
    for (const c of calls) if (!resenders.includes(c)) c.hold(() => wakes++);
    const started = performance.now();
    for (const c of calls) c.end();
    expect(wakes).toBe(3); // each of the three places woke one held call, no more
    expect(performance.now() - started).toBeLessThan(500);
    expect(budget.counts("bob")).toEqual({ waiting: 0, resending: 0, held: 0 });
  });
});
