/**
 * issue 10, callee side: a tool call never kills its agent, hung handlers give their slot back
 * at the caller's deadline, and a value a caller could not read is refused by the callee at once.
 * The callee is a separate process (test/security/callee-hostile-agent.ts): a crash shows as its exit.
 */
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import { rejectsWith } from "../support/assert.js";
import { waitFor } from "../support/wait.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { stopProcess, spawnReady } from "../support/process.js";

let fx: CertFixture;
let broker: Broker;
let bob: ChildProcess;
let alice: Agent;

beforeAll(async () => {
  fx = tempCerts("alice", "bob");
  broker = await startBroker(fx);
  bob = await spawnReady("test/security/callee-hostile-agent.js", [broker.endpoint, fx.secretPath("bob"), fx.dir, "2"], "agent ready");
  // circuit: false: the hung handler's `busy` answers are the subject here, not the breaker they would open.
  alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 5000, jobPollInterval: 500, circuit: false });
});

afterAll(async () => {
  await alice?.close();
  if (bob) await stopProcess(bob);
  await broker?.close();
  fx?.cleanup();
});

/** bob is alive and serving. */
async function stillServes(): Promise<void> {
  expect(bob.exitCode).toBeNull();
  expect(bob.signalCode).toBeNull();
  expect(await alice.call("bob", "echo", { hi: 1 })).toEqual({ hi: 1 });
}

describe("a tool call never kills its agent", () => {
  it("a schema transform that throws (JSON.parse) → invalid_args, and the agent keeps serving", async () => {
    const err = await rejectsWith(alice.call("bob", "parse", { s: "{not json" }), RemoteError, "invalid_args");
    expect(err.message).toMatch(/JSON/);
    await stillServes();
  });

  it("a refinement that throws (new URL) → invalid_args, and the agent keeps serving", async () => {
    await rejectsWith(alice.call("bob", "url", { u: "not a url" }), RemoteError, "invalid_args");
    await stillServes();
  });

  it("a handler that throws a null-prototype object → tool_failed, and the agent keeps serving", async () => {
    await rejectsWith(alice.call("bob", "throw-null-proto", {}), RemoteError, "tool_failed");
    await stillServes();
  });

  it("an output schema that throws (a null-prototype object) → tool_failed, and the agent keeps serving", async () => {
    await rejectsWith(alice.call("bob", "bad-output", {}), RemoteError, "tool_failed");
    await stillServes();
  });
});

describe("a value the caller could not read is refused by the callee, at once", () => {
  for (const [kind, what] of [["date", /Date/], ["map", /Map/], ["set", /Set/], ["bigint", /BigInt/], ["deep", /deeper/]] as const) {
    it(`a result holding a ${kind} → tool_failed saying so`, async () => {
      const err = await rejectsWith(alice.call("bob", "result", { kind }), RemoteError, "tool_failed");
      expect(err.message).toMatch(what);
      await stillServes();
    });
  }

  for (const kind of ["number", "nan", "infinity"] as const) {
    it(`ctx.progress with ${kind} throws a TypeError in the handler: the job fails tool_failed at once`, async () => {
      const job = await alice.start("bob", "progress", { kind });
      // Before the fix the job wedged until jobLostAfter (30 s); now its pushed (or polled) end settles it.
      const err = await rejectsWith(Promise.race([job.result, new Promise((_, reject) => setTimeout(() => reject(new Error("job wedged")), 5000))]), RemoteError, "tool_failed");
      expect(err.message).toMatch(/ctx\.progress/);
      await stillServes();
    });
  }

  it("a job result holding a Map, or nested too deep for a poll answer → the job fails tool_failed at once", async () => {
    for (const kind of ["map", "deep"] as const) {
      const job = await alice.start("bob", "job-result", { kind });
      const err = await rejectsWith(Promise.race([job.result, new Promise((_, reject) => setTimeout(() => reject(new Error("job wedged")), 5000))]), RemoteError, "tool_failed");
      expect(err.message).toMatch(kind === "map" ? /Map/ : /deeper/);
    }
    await stillServes();
  });
});

describe("hung handlers do not eat the agent", () => {
  it("handlers that never return get their signal at the caller's deadline and give their slot back", async () => {
    // bob's maxConcurrency is 2: two hung handlers would refuse everything `busy` for good.
    for (let round = 0; round < 2; round++) {
      const hung = [0, 1].map(() => alice.call("bob", "hang", {}, { timeout: 600, retry: false }).catch((e: unknown) => e));
      for (const err of await Promise.all(hung)) expect((err as { code?: string }).code).toMatch(/^(timeout|expired)$/);
      // bob reads the deadline on its own clock, a moment after alice's timer: wait until both
      // signals have fired (a busy answer meanwhile is the slot still held, not yet released).
      const fired = 2 * (round + 1);
      await waitFor(async () => (await alice.call("bob", "aborted", {}, { retry: false }).catch(() => -1)) === fired, 5000, `${fired} signals`);
    }
    expect(await alice.call("bob", "aborted", {}, { retry: false })).toBe(4);
    await stillServes();
  });
});
