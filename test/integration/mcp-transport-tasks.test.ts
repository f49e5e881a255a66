/**
 * Tasks (the 2025 experimental tasks of SDK 1.32, `experimental.tasks`) over the mesh
 * transport: an SDK McpServer with a task store behind MeshServerTransport, SDK Clients behind
 * MeshClientTransport, through a real broker.
 *
 * A task-augmented `tools/call` creates a task; `tasks/get`, `tasks/result`, `tasks/list` and
 * `tasks/cancel` reach it; `callToolStream` follows it to its result. The hostile case: another
 * caller (another curve key) using the task's id. One transport serves every caller, so the
 * SDK's task store, which binds tasks to the transport's `sessionId`, saw one session for all:
 * any caller could list every caller's tasks, read their results and cancel them. The server
 * transport's session is now the caller's key (authenticated by the broker) while its request
 * is dispatched, so each caller sees only its own tasks.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTaskStore } from "@modelcontextprotocol/sdk/experimental/tasks";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { CallToolResultSchema, ErrorCode, McpError, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { MeshClientTransport, MeshServerTransport } from "../../src/mcp/transport.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";

const text = (r: unknown) => (r as CallToolResult).content.map((c) => (c.type === "text" ? c.text : "")).join("");

async function mcpErrorOf(p: Promise<unknown>): Promise<McpError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(McpError);
  return err as McpError;
}

describe("MCP tasks over the mesh transport", () => {
  let fx: CertFixture;
  let broker: Broker;
  let srv: Agent;
  let alice: Agent;
  let mallory: Agent;
  let server: McpServer;
  let aliceClient: Client;
  let malloryClient: Client;
  /** Work of each task, released by the test. */
  const release = new Map<string, () => void>();
  const cancelledWork: string[] = [];
  const owners = new Map<string, string | undefined>();

  beforeAll(async () => {
    fx = tempCerts("srv", "alice", "mallory");
    broker = await startBroker(fx);
    srv = await connectAgent(fx, "srv", broker.endpoint);
    alice = await connectAgent(fx, "alice", broker.endpoint);
    mallory = await connectAgent(fx, "mallory", broker.endpoint);
    const taskStore = new InMemoryTaskStore();
    server = new McpServer({ name: "tasks", version: "1.0.0" }, { capabilities: { tasks: { requests: { tools: { call: {} } }, list: {}, cancel: {} } }, taskStore });
    server.experimental.tasks.registerToolTask(
      "brew",
      { description: "Brews until released", inputSchema: { kind: z.string() }, execution: { taskSupport: "required" } },
      {
        async createTask({ kind }, extra) {
          const task = await extra.taskStore.createTask({ ttl: 60_000, pollInterval: 50 });
          owners.set(task.taskId, extra.authInfo?.clientId);
          void new Promise<void>((resolve) => release.set(task.taskId, resolve)).then(async () => {
            const now = await extra.taskStore.getTask(task.taskId);
            if (now?.status === "cancelled") return void cancelledWork.push(task.taskId);
            await extra.taskStore.storeTaskResult(task.taskId, "completed", { content: [{ type: "text", text: `brewed ${kind}` }] });
          });
          return { task };
        },
        async getTask(_args, extra) {
          return (await extra.taskStore.getTask(extra.taskId))!;
        },
        async getTaskResult(_args, extra) {
          return (await extra.taskStore.getTaskResult(extra.taskId)) as CallToolResult;
        },
      },
    );
    await server.connect(new MeshServerTransport({ agent: srv }));
    aliceClient = new Client({ name: "alice", version: "1.0.0" });
    await aliceClient.connect(new MeshClientTransport({ agent: alice, to: "srv", timeout: 10_000 }));
    malloryClient = new Client({ name: "mallory", version: "1.0.0" });
    await malloryClient.connect(new MeshClientTransport({ agent: mallory, to: "srv", timeout: 10_000 }));
  }, 30_000);

  afterAll(async () => {
    for (const go of release.values()) go();
    await aliceClient?.close();
    await malloryClient?.close();
    await server?.close();
    await alice?.close();
    await mallory?.close();
    await srv?.close();
    await broker?.close();
    fx?.cleanup();
  });

  /** Starts a task as `client`, returns its id. */
  async function startTask(client: Client, kind: string): Promise<string> {
    const created = (await client.request({ method: "tools/call", params: { name: "brew", arguments: { kind }, task: { ttl: 60_000 } } }, z.object({ task: z.object({ taskId: z.string(), status: z.string() }) }).passthrough())) as {
      task: { taskId: string; status: string };
    };
    expect(created.task.status).toBe("working");
    return created.task.taskId;
  }

  it("a task-augmented call creates a task; tasks/get, tasks/list and tasks/result reach it", async () => {
    const id = await startTask(aliceClient, "tea");
    expect(owners.get(id)).toBe(alice.publicKey);
    expect((await aliceClient.experimental.tasks.getTask(id)).status).toBe("working");
    expect((await aliceClient.experimental.tasks.listTasks()).tasks.map((t) => t.taskId)).toContain(id);
    release.get(id)!();
    await waitFor(async () => (await aliceClient.experimental.tasks.getTask(id)).status === "completed", 5000, "task completed");
    expect(text(await aliceClient.experimental.tasks.getTaskResult(id, CallToolResultSchema))).toBe("brewed tea");
  });

  it("callToolStream follows a task to its result over the mesh", async () => {
    const seen: string[] = [];
    const stream = aliceClient.experimental.tasks.callToolStream({ name: "brew", arguments: { kind: "coffee" } }, CallToolResultSchema, { task: { ttl: 60_000 } });
    for await (const m of stream) {
      seen.push(m.type);
      if (m.type === "taskCreated") setTimeout(() => release.get(m.task.taskId)!(), 200);
      if (m.type === "result") expect(text(m.result)).toBe("brewed coffee");
      if (m.type === "error") throw m.error;
    }
    expect(seen[0]).toBe("taskCreated");
    expect(seen.at(-1)).toBe("result");
  });

  it("tasks/cancel cancels the caller's task", async () => {
    const id = await startTask(aliceClient, "soup");
    expect((await aliceClient.experimental.tasks.cancelTask(id)).status).toBe("cancelled");
    release.get(id)!();
    await waitFor(() => cancelledWork.includes(id), 5000, "work saw the cancel");
    expect((await aliceClient.experimental.tasks.getTask(id)).status).toBe("cancelled");
  });

  it("another caller's task id is not found: get, result, cancel, and list shows only one's own", async () => {
    const id = await startTask(aliceClient, "secret");
    for (const attempt of [
      () => malloryClient.experimental.tasks.getTask(id),
      () => malloryClient.experimental.tasks.getTaskResult(id, CallToolResultSchema),
      () => malloryClient.experimental.tasks.cancelTask(id),
    ]) {
      const err = await mcpErrorOf(attempt());
      expect(err.code).toBe(ErrorCode.InvalidParams);
      expect(err.message).toMatch(/not found/i);
    }
    expect((await malloryClient.experimental.tasks.listTasks()).tasks).toEqual([]);
    const mine = await startTask(malloryClient, "own");
    expect((await malloryClient.experimental.tasks.listTasks()).tasks.map((t) => t.taskId)).toEqual([mine]);
    // Alice's task is untouched by all that.
    expect((await aliceClient.experimental.tasks.getTask(id)).status).toBe("working");
    release.get(id)!();
    release.get(mine)!();
    await waitFor(async () => (await aliceClient.experimental.tasks.getTask(id)).status === "completed", 5000, "alice's task completed");
    expect(text(await aliceClient.experimental.tasks.getTaskResult(id, CallToolResultSchema))).toBe("brewed secret");
  });
});
