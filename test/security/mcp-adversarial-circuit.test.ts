/**
 * Adversarial review of `expose --http`: one client shut the others out through the bridge
 * agent's circuit breaker. Fixed: the bridge's mesh calls do not use the circuit breaker
 * (src/mcp/expose-calls.ts), since one agent calls for every MCP client.
 *
 * Every MCP client's call goes out as the bridge's one agent, and that agent keeps one circuit
 * per destination, opened by 5 consecutive `busy`/`timeout`/`no_route` (retries included). A
 * target answers `busy` when the bridge (one caller for all clients) passes its concurrency cap
 * or its per-caller job budget: one client's burst does that, the circuit opens, and every
 * other client's call fails `circuit_open` for 5 s, again at each burst. Seen first when one
 * token's large job results filled the worker's 32 MiB per-caller job budget
 * (mcp-adversarial-tasks.test.ts raises that budget to measure the bridge alone).
 *
 * Reproduced before the fix: 12 concurrent job calls by one
 * token against a worker whose job table holds 2 per caller; right after, another token's call
 * fails `circuit_open ... next probe in 4995 ms`.
 *
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { MeshExposer } from "../../src/mcp/expose.js";
import { serveHttp, type HttpExpose } from "../../src/mcp/http.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

const HOG = "hog-bearer-token-0123456789abcdef";
const HONEST = "honest-bearer-token-0123456789abc";

describe("mcp adversarial: one client's burst and the others' calls", () => {
  let fx: CertFixture;
  let broker: Broker;
  let worker: Agent;
  let bridge: Agent;
  let exposer: MeshExposer;
  let served: HttpExpose;
  let nextId = 1;

  /** A 2025-era tools/call over HTTP; the JSON-RPC response. */
  const call = async (bearer: string, name: string, args: Record<string, unknown>) => {
    const res = await fetch(served.url, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method: "tools/call", params: { name, arguments: args } }),
    });
    const text = await res.text();
    const data = (text.split("\n").filter((l) => l.startsWith("data: ")).at(-1) ?? `data: ${text}`).slice(6);
    return JSON.parse(data) as { result?: { isError?: boolean; content: Array<{ text: string }> }; error?: { message: string } };
  };

  beforeAll(async () => {
    fx = tempCerts("worker", "bridge");
    broker = await startBroker(fx);
    worker = await connectAgent(fx, "worker", broker.endpoint, { jobLimits: { maxEntries: 1000, maxBytes: 64 * 1024 * 1024, maxEntriesPerOwner: 2, maxBytesPerOwner: 32 * 1024 * 1024 } });
    worker.tool("slow", { input: z.object({ ms: z.number().int().min(1).max(2000) }), job: true }, async ({ ms }) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return { slept: ms };
    });
    worker.tool("ping", { input: z.object({}) }, () => ({ pong: true }));
    bridge = await connectAgent(fx, "bridge", broker.endpoint, { timeout: 10_000 });
    exposer = new MeshExposer({ agent: bridge, targets: ["worker"], refreshInterval: 0, timeout: 3000 });
    served = await serveHttp({ exposer, host: "127.0.0.1", port: 0, token: [HOG, HONEST] });
  }, 30_000);

  afterAll(async () => {
    await served?.close();
    await exposer?.close();
    await bridge?.close();
    await worker?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("a burst by one token past the target's job budget does not make another token's call fail circuit_open", async () => {
    const hog = await Promise.all(Array.from({ length: 12 }, () => call(HOG, "slow", { ms: 1500 })));
    // The hog was refused busy (the worker's job table holds 2 of the bridge's jobs): its problem.
    expect(hog.filter((h) => JSON.stringify(h).includes("busy")).length).toBeGreaterThan(5);
    // Right after, another token's call to the same worker (which has room again):
    const honest = await call(HONEST, "ping", {});
    expect(JSON.stringify(honest)).not.toContain("circuit_open");
    expect(honest.result?.isError).not.toBe(true);
  }, 30_000);
});
