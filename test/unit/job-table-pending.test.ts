/**
 * Socket-free tests of two tables the agent's parts share: the callee's job table
 * (agent/jobs.ts: owner checks, one end per job, TTL, budget) and the pending calls
 * (support/pending.ts: timers, abort, refusal kept as the timeout's reason, reject on close).
 */
import { describe, expect, it } from "vitest";
import { ForgedAnswerError, TimeoutError, ZmcpError } from "../../src/index.js";
import { JobTable } from "../../src/agent/jobs.js";
import { PendingCalls } from "../../src/support/pending.js";

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as ZmcpError).code;
  }
  return undefined;
};

describe("job table", () => {
  it("only the owner sees a job; it ends once; it is forgotten after its TTL", () => {
    const jobs = new JobTable(1000, { maxEntries: 10, maxBytes: 1 << 20, maxEntriesPerOwner: 1, maxBytesPerOwner: 1 << 20 });
    const { signal } = jobs.create("j1", "alice");
    expect(jobs.running).toBe(1);
    expect(codeOf(() => jobs.get("j1", "mallory"))).toBe("forbidden");
    expect(codeOf(() => jobs.get("nope", "alice"))).toBe("unknown_job");
    expect(jobs.refusal("alice")).toMatch(/job table full/); // one per owner
    expect(jobs.refusal("bob")).toBeUndefined();
    expect(jobs.progress("j1", { progress: 1, total: 2 })?.progress).toEqual({ progress: 1, total: 2 });
    expect(jobs.finish("j1", { status: "cancelled", error: { code: "cancelled", message: "m" } })?.status).toBe("cancelled");
    expect(signal.aborted).toBe(true);
    expect(jobs.finish("j1", { status: "done", result: 1 })).toBeUndefined(); // ended once
    expect(jobs.progress("j1", { progress: 2 })).toBeUndefined();
    expect(jobs.get("j1", "alice").status).toBe("cancelled");
    jobs.sweep(Date.now() + 2000);
    expect(jobs.size).toBe(0);
    expect(jobs.refusal("alice")).toBeUndefined(); // its budget was given back
  });
});

describe("pending calls", () => {
  it("resolves once, rejects on timeout with a refusal noted meanwhile, on abort, and all on close", async () => {
    const pending = new PendingCalls<number, string>();
    const a = pending.add("a", 60_000, undefined, "call a", "meta-a");
    expect(pending.meta("a")).toBe("meta-a");
    expect(pending.resolve("a", 1)).toBe(true);
    expect(pending.resolve("a", 2)).toBe(false);
    await expect(a).resolves.toBe(1);

    const b = pending.add("b", 20, undefined, "call b", "meta-b");
    pending.refuse("b", new ForgedAnswerError("forged"));
    const refused = await b.catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ForgedAnswerError); // the noted refusal, not a bare timeout

    const c = pending.add("c", 20, undefined, "call c", "meta-c");
    expect(await c.catch((e: unknown) => e)).toBeInstanceOf(TimeoutError);

    const ac = new AbortController();
    const d = pending.add("d", 60_000, ac.signal, "call d", "meta-d");
    ac.abort();
    expect(((await d.catch((e: unknown) => e)) as ZmcpError).code).toBe("aborted");

    const e = pending.add("e", 60_000, undefined, "call e", "meta-e");
    pending.rejectAll(new ZmcpError("closed", "agent closed"));
    expect(((await e.catch((x: unknown) => x)) as ZmcpError).code).toBe("closed");
    expect(pending.size).toBe(0);
  });
});
