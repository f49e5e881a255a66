/**
 * Who is connected (issue 16): a gauge of the peers connected now with certificate names (not
 * a difference of counters, which went negative), `zmq-broker peers`, and /healthz, /readyz.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { createLogger } from "../../src/support/log.js";
import { newRegistry, scrapeMetrics, serveMetrics } from "../../src/support/metrics.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN, startBrokerProcess, type BrokerProcess } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const run = promisify(execFile);
const hb = { heartbeatInterval: 200 };
const brokerArgs = ["--heartbeat-interval", "200"]; // timeout 600 ms: a closed agent leaves the gauge quickly

async function peersCli(metricsUrl: string, ...extra: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [BIN("zmq-broker"), "peers", "--metrics", new URL(metricsUrl).host, ...extra], { timeout: 15_000 });
  return stdout;
}

describe("peers connected now", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  const agents: Agent[] = [];
  beforeAll(async () => {
    fx = tempCerts("bob", "carol");
    fx.add("mallory", false); // outside the allowlist: its refused handshakes close connections too
    broker = await startBrokerProcess(fx, { args: brokerArgs });
  });
  afterAll(async () => {
    for (const a of agents) await a.close();
    await broker?.stop();
    fx?.cleanup();
  });

  it("a gauge counts them, a series per peer names each by its certificate, and `zmq-broker peers` lists them", async () => {
    const bob = await connectAgent(fx, "bob", broker.endpoint, hb);
    const carol = await connectAgent(fx, "carol", broker.endpoint, hb);
    agents.push(bob);
    await waitFor(async () => (await broker.scrape()).get("zmcp_broker_connected_peers") === 2, 5000, "2 peers connected");
    const m = await broker.scrape();
    expect(m.get(`zmcp_broker_peer_last_heard_seconds{key="${bob.publicKey}",name="bob"}`)).toBeGreaterThanOrEqual(0);
    expect(m.get(`zmcp_broker_peer_last_heard_seconds{key="${carol.publicKey}",name="carol"}`)).toBeGreaterThanOrEqual(0);

    const table = await peersCli(broker.metricsUrl);
    expect(table).toMatch(/^NAME\s+KEY\s+HEARD/);
    expect(table).toContain(`bob    ${bob.publicKey}`);
    expect(table).toContain("2 peers connected");
    const listed = JSON.parse(await peersCli(broker.metricsUrl, "--json")) as Array<{ key: string; name: string }>;
    expect(listed.map((p) => p.name).sort()).toEqual(["bob", "carol"]);

    await carol.close();
    await waitFor(async () => (await broker.scrape()).get("zmcp_broker_connected_peers") === 1, 5000, "carol gone from the gauge");
    expect((await broker.scrape()).has(`zmcp_broker_peer_last_heard_seconds{key="${carol.publicKey}",name="carol"}`)).toBe(false);
  });

  it("after refused handshakes and a broker restart, the gauge is the peers connected now (never negative)", async () => {
    // Refused handshakes: connections that close without ever counting as connected.
    for (let i = 0; i < 3; i++) {
      const refused = await connectAgent(fx, "mallory", broker.endpoint, { ...hb, connectTimeout: 2000 }).then(
        (a) => a.close().then(() => "admitted"),
        (err: { code?: string }) => err.code,
      );
      expect(refused).toBe("handshake_failed");
    }
    const endpoint = broker.endpoint;
    await broker.stop();
    broker = await startBrokerProcess(fx, { bind: endpoint, args: brokerArgs });
    const bob = agents[0]!; // redials by itself
    await waitFor(async () => (await broker.scrape()).get("zmcp_broker_connected_peers") === 1, 10_000, "bob back after the restart");
    const m = await broker.scrape();
    expect(m.get(`zmcp_broker_peer_last_heard_seconds{key="${bob.publicKey}",name="bob"}`)).toBeGreaterThanOrEqual(0);
  });

  it("/healthz and /readyz answer on the metrics endpoint (JSON), anything else is 404", async () => {
    const base = broker.metricsUrl.replace(/\/metrics$/, "");
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready", ready: true, endpoint: broker.endpoint, allowed: 3 });
    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain("/readyz");
  });
});

describe("serveMetrics probes", () => {
  it("/readyz is 503 with the reason while the readiness check says not ready, 200 once it does", async () => {
    let ready = false;
    const server = await serveMetrics(newRegistry(), "127.0.0.1:0", { ready: () => (ready ? { ready: true } : { ready: false, reason: "no broker connection yet" }) });
    try {
      const url = server.url.replace(/\/metrics$/, "/readyz");
      const before = await fetch(url);
      expect(before.status).toBe(503);
      expect(await before.json()).toEqual({ status: "not ready", ready: false, reason: "no broker connection yet" });
      ready = true;
      expect((await fetch(url)).status).toBe(200);
      expect((await fetch(server.url.replace(/\/metrics$/, "/healthz"))).status).toBe(200);
      expect(await scrapeMetrics(server.url)).toBeInstanceOf(Map);
    } finally {
      await server.close();
    }
  });
});

describe("logs name peers", () => {
  it("a broker refusal names the sender by its certificate, next to its key", async () => {
    const fx = tempCerts("alice", "bob");
    const lines: Array<Record<string, unknown>> = [];
    const broker = await startBroker(fx, { log: createLogger("debug", (l) => lines.push(JSON.parse(l) as Record<string, unknown>)), logInterval: 0 });
    const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
    try {
      await expect(alice.call("bob", "anything", {})).rejects.toMatchObject({ code: "no_route" }); // bob is not connected
      expect(lines.find((l) => l["code"] === "no_route" && l["from"] === alice.publicKey), JSON.stringify(lines)).toMatchObject({ from: alice.publicKey, name: "alice" });
    } finally {
      await alice.close();
      await broker.close();
      fx.cleanup();
    }
  });
});
