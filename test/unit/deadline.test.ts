/** support/deadline.ts: the one module that races timers against an AbortSignal. */
import { describe, expect, it } from "vitest";
import { TimeoutError, ZmcpError } from "../../src/index.js";
import { pause, sleep, withDeadline } from "../../src/support/deadline.js";

describe("deadline module", () => {
  it("sleep rejects with ZmcpError(aborted) when its signal fires, at once if already aborted", async () => {
    const ac = new AbortController();
    const slept = sleep(60_000, ac.signal);
    ac.abort(new Error("stop"));
    const err = await slept.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZmcpError);
    expect((err as ZmcpError).code).toBe("aborted");
    const again = await sleep(60_000, ac.signal).catch((e: unknown) => e);
    expect((again as ZmcpError).code).toBe("aborted");
  });

  it("pause resolves early when its signal fires and never rejects", async () => {
    const ac = new AbortController();
    const paused = pause(60_000, ac.signal);
    ac.abort();
    await expect(paused).resolves.toBeUndefined();
  });

  it("withDeadline: the promise's value, a TimeoutError past the deadline, aborted on the signal", async () => {
    await expect(withDeadline(Promise.resolve(7), 1000, "late")).resolves.toBe(7);
    const late = await withDeadline(new Promise(() => undefined), 10, "no answer").catch((e: unknown) => e);
    expect(late).toBeInstanceOf(TimeoutError);
    expect((late as TimeoutError).code).toBe("timeout");
    expect((late as Error).message).toBe("no answer");
    const ac = new AbortController();
    const pending = withDeadline(new Promise(() => undefined), 60_000, "x", ac.signal);
    ac.abort();
    const aborted = await pending.catch((e: unknown) => e);
    expect((aborted as ZmcpError).code).toBe("aborted");
  });
});
