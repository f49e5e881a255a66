/** The retry budget's arithmetic (retry.ts) and its option's checks. */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { DEFAULT_RETRY_BUDGET, MIN_RETRYING, RetryBudget, retryPolicy } from "../../src/agent/retry.js";

describe("RetryBudget", () => {
  it("lets MIN_RETRYING calls resend whatever the share, then share × waiting; a call that resent keeps its place", () => {
    const budget = new RetryBudget();
    const calls = Array.from({ length: 20 }, () => budget.enter("bob"));
    expect(budget.counts("bob")).toEqual({ waiting: 20, resending: 0, held: 0 });
    const allowed = calls.map((c) => c.mayResend(0.2)).filter(Boolean).length;
    expect(allowed).toBe(4); // max(3, 0.2 × 20)
    expect(calls[0]!.mayResend(0.2)).toBe(true); // already resending: no new room needed
    expect(calls[19]!.mayResend(0.2)).toBe(false);
    const few = new RetryBudget();
    const two = [few.enter("x"), few.enter("x")];
    expect(two.map((c) => c.mayResend(0))).toEqual([true, true]); // under MIN_RETRYING even at share 0
    expect(MIN_RETRYING).toBe(3);
  });

  it("frees places as calls end, each end counted once, and forgets a destination with no call waiting", () => {
    const budget = new RetryBudget();
    const calls = Array.from({ length: 4 }, () => budget.enter("bob"));
    for (const c of calls.slice(0, 3)) expect(c.mayResend(0)).toBe(true);
    expect(calls[3]!.mayResend(0)).toBe(false);
    calls[0]!.end();
    calls[0]!.end(); // twice: no double count
    expect(budget.counts("bob")).toEqual({ waiting: 3, resending: 2, held: 0 });
    expect(calls[3]!.mayResend(0)).toBe(true);
    for (const c of calls) c.end();
    expect(budget.counts("bob")).toEqual({ waiting: 0, resending: 0, held: 0 });
    const other = budget.enter("carol");
    expect(budget.counts("carol").waiting).toBe(1);
    other.end();
  });

  it("budget: a share between 0 and 1, else ConfigError; default 0.2; retry: false has none", () => {
    expect(retryPolicy(undefined, 10_000).budget).toBe(DEFAULT_RETRY_BUDGET);
    expect(retryPolicy({ budget: 1 }, 10_000).budget).toBe(1);
    for (const bad of [-0.1, 1.5, Number.NaN, "0.5" as unknown as number]) expect(() => retryPolicy({ budget: bad }, 10_000)).toThrow(ConfigError);
    expect(retryPolicy(false, 10_000).attempts).toBe(1);
  });

  it("a held call is woken once when a resending call to its destination ends, the oldest first; not by a call that never resent", () => {
    const budget = new RetryBudget();
    const calls = Array.from({ length: 6 }, () => budget.enter("bob"));
    for (const c of calls.slice(0, 3)) expect(c.mayResend(0)).toBe(true);
    const woken: number[] = [];
    calls[3]!.hold(() => woken.push(3));
    calls[4]!.hold(() => woken.push(4));
    expect(budget.counts("bob").held).toBe(2);
    calls[5]!.end(); // never resent: frees no place
    expect(woken).toEqual([]);
    calls[0]!.end();
    expect(woken).toEqual([3]);
    expect(calls[3]!.mayResend(0)).toBe(true);
    calls[3]!.hold(undefined);
    calls[1]!.end();
    expect(woken).toEqual([3, 4]);
    calls[4]!.hold(undefined);
    for (const c of calls) c.end();
    expect(budget.counts("bob")).toEqual({ waiting: 0, resending: 0, held: 0 });
  });
});
