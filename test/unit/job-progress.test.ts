/**
 * A Job reports each progress step once and in order, whether it came pushed or polled: a poll
 * answer older than a push that overtook it (progress lower than the last reported) is stale and
 * not reported. Seen under load in mcp-tasks.test.ts as progress [1, 2, 3, 2, 4].
 */
import { describe, expect, it } from "vitest";
import { Job } from "../../src/agent/jobs.js";

describe("Job progress", () => {
  it("a stale poll answer (a lower progress) is not reported; a repeat is reported once; the end still settles", async () => {
    const job = new Job("id", "bob", "bob", () => Promise.reject(new Error("no cancel here")));
    const seen: number[] = [];
    job.on("progress", (p) => seen.push(p.progress));
    job.update({ status: "running", progress: { progress: 1 } }); // pushed
    job.update({ status: "running", progress: { progress: 2 } }); // pushed
    job.update({ status: "running", progress: { progress: 3 } }); // pushed
    job.update({ status: "running", progress: { progress: 2 } }); // a poll answered before 3 was pushed
    job.update({ status: "running", progress: { progress: 3 } }); // the same step again (polled)
    job.update({ status: "running", progress: { progress: 4 } });
    job.update({ status: "done", result: "ok", progress: { progress: 3 } }); // a stale step on the final answer
    expect(await job.result).toBe("ok");
    expect(seen).toEqual([1, 2, 3, 4]);
  });

  it("the same value with a new message is a new step (a tool may report text at one value)", () => {
    const job = new Job("id", "bob", "bob", () => Promise.reject(new Error("no cancel here")));
    const seen: string[] = [];
    job.on("progress", (p) => seen.push(`${p.progress}:${p.message ?? ""}`));
    job.update({ status: "running", progress: { progress: 1, message: "a" } });
    job.update({ status: "running", progress: { progress: 1, message: "b" } });
    expect(seen).toEqual(["1:a", "1:b"]);
  });
});
