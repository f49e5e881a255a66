/**
 * Every agent must be reachable at its key once connected. libzmq 4.3 reads a ZAP reply
 * that is already waiting before it applies the Identity the client announced, so the
 * broker's rename (zap.ts) can be undone by the client's own id; the agent announces its
 * key so that either order gives the same id. Each connection is one draw of that race
 * (lost about one time in three here with the broker in its own process).
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { spawnBroker, type BrokerProcess } from "../support/process.js";

const NAMES = Array.from({ length: 24 }, (_, i) => `agent-${i}`);

describe("routing id after the CURVE handshake", () => {
  let fx: CertFixture | undefined;
  let broker: BrokerProcess | undefined;
  const agents: Agent[] = [];

  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker?.stop();
    fx?.cleanup();
  });

  it("routes to every agent by its key, whatever the ZAP reply timing", async () => {
    fx = tempCerts(...NAMES, "caller");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", `${fx.dir}/broker.key_secret`, "--allow", fx.dir, "--log-level", "info"]);
    // All at once: a busy broker makes the early ZAP reply, and so a lost rename, likelier.
    const connected = await Promise.all(NAMES.map((name) => connectAgent(fx!, name, broker!.endpoint)));
    connected.forEach((agent, i) => agent.tool("whoami", { input: z.strictObject({}) }, () => NAMES[i]));
    agents.push(...connected);
    const caller = await connectAgent(fx, "caller", broker.endpoint);
    agents.push(caller);
    for (const name of NAMES) expect(await caller.call(name, "whoami", {}, { timeout: 2000 })).toBe(name);
  });
});
