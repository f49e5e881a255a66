/**
 * Adversarial review of `expose`'s 2026 tasks: memory held for finished tasks.
 *
 * The store was bounded by count only (10,000 tasks, 1,000 per owner), each keeping its result
 * for the ttl (1 h). A result is up to a mesh message (1 MiB), and the bridge holds it twice
 * (the JSON text and `structuredContent`): one bearer token calling a tool whose result it
 * can size held ~1.8 MB per task, 300 tasks +189 MB RSS, 1,000 tasks well over a gigabyte, for
 * an hour. Results are now charged (their JSON bytes) to a per-owner and a store-wide budget; a
 * result past either fails its task with -32603 saying why, and the other clients are unaffected.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { MeshExposer } from "../../src/mcp/expose.js";
import { ExtensionTaskStore } from "../../src/mcp/expose-tasks.js";
import { serveHttp, type HttpExpose } from "../../src/mcp/http.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

const text = (n: number) => ({ content: [{ type: "text" as const, text: "x".repeat(n) }] });

describe("mcp adversarial: results held by finished tasks are bounded in bytes", () => {
  it("one owner's results past its budget fail their tasks (-32603); another owner is unaffected; expiry gives the bytes back", () => {
    let now = 0;
    const store = new ExtensionTaskStore({ ttlMs: 10_000, maxResultBytesPerOwner: 10_000, maxResultBytes: 1_000_000, now: () => now });
    const a = [store.create("a"), store.create("a"), store.create("a")].map((t) => t.task.taskId);
    for (const id of a) store.complete(id, text(4000));
    expect(store.get("a", a[0]!)).toMatchObject({ status: "completed" });
    expect(store.get("a", a[1]!)).toMatchObject({ status: "completed" });
    expect(store.get("a", a[2]!)).toMatchObject({ status: "failed", error: { code: -32603, message: expect.stringContaining("not held") } });
    expect(store.get("a", a[2]!)).not.toHaveProperty("result");
    const b = store.create("b").task.taskId;
    store.complete(b, text(4000));
    expect(store.get("b", b)).toMatchObject({ status: "completed" });
    // Past the ttl the held results are dropped, and their bytes with them.
    now += 10_000;
    const again = store.create("a").task.taskId;
    store.complete(again, text(4000));
    expect(store.get("a", again)).toMatchObject({ status: "completed" });
    expect(store.resultBytes).toBeLessThan(10_000);
  });

  it("the store-wide budget holds across owners: many owners together cannot pass it either", () => {
    const store = new ExtensionTaskStore({ ttlMs: 60_000, maxResultBytesPerOwner: 1_000_000, maxResultBytes: 10_000 });
    const ids = ["a", "b", "c"].map((owner) => [owner, store.create(owner).task.taskId] as const);
    for (const [, id] of ids) store.complete(id, text(4000));
    expect(ids.map(([owner, id]) => store.get(owner, id).status)).toEqual(["completed", "completed", "failed"]);
    expect(store.resultBytes).toBeLessThanOrEqual(10_000);
  });

  describe("over HTTP, one token filling its budget with large results", () => {
    const HOG = "hog-bearer-token-0123456789abcdef";
    const HONEST = "honest-bearer-token-0123456789abc";
    const MODERN = "2026-07-28";
    let fx: CertFixture;
    let broker: Broker;
    let worker: Agent;
    let bridge: Agent;
    let exposer: MeshExposer;
    let served: HttpExpose;
    let nextId = 1;

    const rpc = async (bearer: string, method: string, params: Record<string, unknown>) => {
      const res = await fetch(served.url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${bearer}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-protocol-version": MODERN,
          "mcp-method": method,
          "mcp-name": String(params["name"] ?? params["taskId"]),
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: nextId++,
          method,
          params: {
            ...params,
            _meta: {
              "io.modelcontextprotocol/protocolVersion": MODERN,
              "io.modelcontextprotocol/clientInfo": { name: "hog", version: "1.0.0" },
              "io.modelcontextprotocol/clientCapabilities": { extensions: { "io.modelcontextprotocol/tasks": {} } },
            },
          },
        }),
      });
      return (JSON.parse(await res.text()) as { result: Record<string, unknown> }).result;
    };
    const finished = async (bearer: string, taskId: string) => {
      for (let i = 0; i < 400; i++) {
        const task = await rpc(bearer, "tasks/get", { taskId });
        if (task["status"] !== "working") return task;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`task ${taskId} did not end`);
    };

    beforeAll(async () => {
      fx = tempCerts("worker", "bridge");
      broker = await startBroker(fx);
      // The worker's own job table would refuse (busy) past 32 MiB of results held for the bridge:
      // raised here so that what is measured is what the bridge holds.
      const MiB = 1024 * 1024;
      worker = await connectAgent(fx, "worker", broker.endpoint, { jobLimits: { maxEntries: 1000, maxBytes: 1024 * MiB, maxEntriesPerOwner: 1000, maxBytesPerOwner: 1024 * MiB } });
      worker.tool("blob", { input: z.object({ n: z.number().int().min(1).max(1_000_000) }), job: true }, ({ n }) => ({ data: "x".repeat(n) }));
      bridge = await connectAgent(fx, "bridge", broker.endpoint, { timeout: 30_000 });
      exposer = new MeshExposer({ agent: bridge, targets: ["worker"], refreshInterval: 0 });
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

    it("past 64 MiB of its own results the hog's tasks fail with -32603; the honest token's task completes", async () => {
      // ~900 KB of data, held as text and as structuredContent: ~1.8 MB per task; 45 tasks pass 64 MiB.
      const statuses: string[] = [];
      for (let i = 0; i < 45; i += 5) {
        const tasks = await Promise.all(Array.from({ length: 5 }, () => rpc(HOG, "tools/call", { name: "blob", arguments: { n: 900_000 } })));
        for (const t of tasks) {
          const end = await finished(HOG, t["taskId"] as string);
          statuses.push(end["status"] as string);
          if (end["status"] === "failed") expect(end).toMatchObject({ error: { code: -32603, message: expect.stringContaining("not held") } });
        }
      }
      expect(statuses.filter((s) => s === "completed").length).toBeGreaterThan(30);
      expect(statuses.filter((s) => s === "failed").length).toBeGreaterThan(0);
      const honest = await rpc(HONEST, "tools/call", { name: "blob", arguments: { n: 900_000 } });
      const honestEnd = await finished(HONEST, honest["taskId"] as string);
      expect(honestEnd).toMatchObject({ status: "completed", result: { structuredContent: { data: expect.any(String) } } });
    }, 120_000);
  });
});
