/**
 * At most once per service (PROTOCOL §8.2 rule 5): a timed-out attempt to `svc:NAME` is never
 * resent. The caller judged "is there time for another attempt" on the wall clock while the
 * attempt's own timer runs on the monotonic one: a wall clock stepped back during the call made
 * the service attempt's timeout look early, and it was resent to another replica.
 */
import { describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { tempCerts } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { RelayBed } from "../support/relay-bed.js";
import { startRelay } from "../support/stand-in-broker.js";
import { sleep, waitFor } from "../support/wait.js";

const bed = new RelayBed();

describe("retry8: a service attempt and the wall clock", () => {
  it("a clock stepped back 400 ms during a call to svc:NAME does not resend its timed-out attempt to another replica (the tool ran twice)", async () => {
    const fx = (bed.fx = tempCerts("caller", "r1", "r2"));
    fx.addService("work");
    const relay = (bed.relay = await startRelay(fx));
    let turn = 0;
    relay.pick = (_name, replicas) => replicas[turn++ % replicas.length]; // round robin
    const runs: string[] = [];
    for (const name of ["r1", "r2"]) {
      const replica = await connectAgent(fx, name, relay.endpoint);
      bed.agents.push(replica);
      replica.tool("work", { input: z.object({}) }, async () => {
        runs.push(name);
        await sleep(2500);
        return { by: name };
      });
      await replica.serve("work");
    }
    const caller = await connectAgent(fx, "caller", relay.endpoint);
    bed.agents.push(caller);
    await waitFor(() => (relay.replicas.get("work") ?? []).length === 2, 5000, "two replicas announced");
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
