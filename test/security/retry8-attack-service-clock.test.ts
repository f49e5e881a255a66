/**
 * At most once per service (PROTOCOL §8.2 rule 5): a timed-out attempt to `svc:NAME` is never
 * resent. The caller judged "is there time for another attempt" on the wall clock while the
 * attempt's own timer runs on the monotonic one: a wall clock stepped back during the call made
 * the service attempt's timeout look early, and it was resent to another replica.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { startRelay, type Relay } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

let fx: CertFixture | undefined;
let relay: Relay | undefined;
const agents: Agent[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  for (const a of agents.splice(0)) await a.close();
  relay?.close();
  relay = undefined;
  fx?.cleanup();
  fx = undefined;
});

describe("retry8: a service attempt and the wall clock", () => {
  it("a clock stepped back 400 ms during a call to svc:NAME does not resend its timed-out attempt to another replica (the tool ran twice)", async () => {
    fx = tempCerts("caller", "r1", "r2");
    fx.addService("work");
    relay = await startRelay(fx);
    let turn = 0;
    relay.pick = (_name, replicas) => replicas[turn++ % replicas.length]; // round robin
    const runs: string[] = [];
    for (const name of ["r1", "r2"]) {
      const replica = await connectAgent(fx, name, relay.endpoint);
      agents.push(replica);
      replica.tool("work", { input: z.object({}) }, async () => {
        runs.push(name);
        await sleep(2500);
        return { by: name };
      });
      await replica.serve("work");
    }
    const caller = await connectAgent(fx, "caller", relay.endpoint);
    agents.push(caller);
    await waitFor(() => (relay!.replicas.get("work") ?? []).length === 2, 5000, "two replicas announced");
    const realNow = Date.now.bind(Date);
    let offset = 0;
    vi.spyOn(Date, "now").mockImplementation(() => realNow() - offset);
    const call = caller.call("svc:work", "work", {}, { timeout: 1000 }).catch((e: unknown) => e);
    await sleep(300);
    offset = 400; // NTP steps the wall clock back
    const outcome = await call;
    await sleep(100);
    expect(outcome).toMatchObject({ code: "timeout" });
    expect(runs).toHaveLength(1); // before: ["r1", "r2"]
  }, 15_000);
});
