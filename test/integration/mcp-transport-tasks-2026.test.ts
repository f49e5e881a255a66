/**
 * The 2026 tasks extension (`io.modelcontextprotocol/tasks`) over the mesh transport: a 2.x
 * server offering it (test/support/mcp-tasks-2026.ts, written by hand: the 2.x SDK has none)
 * served by `serveMesh`, and a `@modelcontextprotocol/client` 2.x client pinned to 2026-07-28 on a
 * MeshClientTransport. That client refuses a task answer (its codec has no task result type),
 * so the task requests go on its transport with ids of their own, as attach does: create → get
 * → result, a failed task, cancel, and a second caller key that can neither get nor cancel the
 * first's task (the server binds each task to `ctx.http.authInfo.clientId`, the caller's curve key).
 */
import { Client as Client2026, SdkError } from "@modelcontextprotocol/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { MCP_RPC_TOOL, MeshClientTransport } from "../../src/mcp/transport.js";
import { serveMesh, type MeshServing } from "../../src/mcp/transport-2026.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { buildTaskingServer, TASKS_EXTENSION, TaskStore } from "../support/mcp-tasks-2026.js";
import { waitFor } from "../support/wait.js";

const REVISION = "2026-07-28";
type Json = Record<string, unknown>;
const envelope = (withTasks: boolean): Json => ({
  "io.modelcontextprotocol/protocolVersion": REVISION,
  "io.modelcontextprotocol/clientCapabilities": withTasks ? { extensions: { [TASKS_EXTENSION]: {} } } : {},
  "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1.0.0" },
});

/** A pinned 2.x client on the mesh, and raw requests on its own transport (string ids of their own). */
class RawClient {
  readonly client = new Client2026({ name: "pinned", version: "1.0.0" }, { versionNegotiation: { mode: { pin: REVISION } }, capabilities: { extensions: { [TASKS_EXTENSION]: {} } } });
  readonly #answers = new Map<string, (m: Json) => void>();
  #next = 0;
  #transport: MeshClientTransport;

  constructor(agent: Agent, to: string) {
    this.#transport = new MeshClientTransport({ agent, to, timeout: 10_000 });
  }

  async connect(): Promise<void> {
    await this.client.connect(this.#transport);
    const inner = this.#transport.onmessage;
    this.#transport.onmessage = ((message: Json, extra?: unknown) => {
      const id = message["id"];
      if (typeof id === "string" && !("method" in message) && this.#answers.has(id)) {
        this.#answers.get(id)!(message);
        this.#answers.delete(id);
        return;
      }
      (inner as (m: Json, e?: unknown) => void)?.(message, extra);
    }) as MeshClientTransport["onmessage"];
  }

  async ask(method: string, params: Json, withTasks = true): Promise<Json> {
    const id = `raw-${++this.#next}`;
    const answer = new Promise<Json>((resolve) => this.#answers.set(id, resolve));
    await this.#transport.send({ jsonrpc: "2.0", id, method, params: { ...params, _meta: envelope(withTasks) } } as never);
    const got = await answer;
    expect(got["id"]).toBe(id);
    return got;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

describe("the 2026 tasks extension over the mesh transport (serveMesh)", () => {
  let fx: CertFixture;
  let broker: Broker;
  let srv: Agent;
  let alice: Agent;
  let mallory: Agent;
  let serving: MeshServing;
  let a: RawClient;
  let m: RawClient;
  const store = new TaskStore();

  beforeAll(async () => {
    fx = tempCerts("srv", "alice", "mallory");
    broker = await startBroker(fx);
    srv = await connectAgent(fx, "srv", broker.endpoint);
    alice = await connectAgent(fx, "alice", broker.endpoint);
    mallory = await connectAgent(fx, "mallory", broker.endpoint);
    serving = await serveMesh(() => buildTaskingServer(store), { agent: srv, legacy: "reject" });
    a = new RawClient(alice, "srv");
    m = new RawClient(mallory, "srv");
    await a.connect();
    await m.connect();
  });

  afterAll(async () => {
    await a?.close();
    await m?.close();
    await serving?.close();
    for (const agent of [srv, alice, mallory]) await agent?.close();
    await broker?.close();
    fx?.cleanup();
  });

  /** Polls tasks/get until the task is terminal (bounded), returning every status seen. */
  async function follow(client: RawClient, taskId: unknown): Promise<Json[]> {
    const seen: Json[] = [];
    for (let i = 0; i < 200; i++) {
      const got = (await client.ask("tasks/get", { taskId }))["result"] as Json;
      seen.push(got);
      if (["completed", "failed", "cancelled"].includes(String(got["status"]))) return seen;
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    throw new Error("the task never ended");
  }

  it("create → get → result: a task-only tool answers with a task, tasks/get shows it working, then completed with its result", async () => {
    expect((await a.client.listTools()).tools.map((t) => t.name).sort()).toEqual(["research", "research_log"]);
    const created = (await a.ask("tools/call", { name: "research", arguments: { topic: "zeromq", steps: 3 } }))["result"] as Json;
    expect(created).toMatchObject({ resultType: "task", status: "working", taskId: expect.any(String) });
    const seen = await follow(a, created["taskId"]);
    expect(seen.some((t) => typeof t["statusMessage"] === "string" && String(t["statusMessage"]).startsWith("step"))).toBe(true);
    expect(seen.at(-1)).toMatchObject({ status: "completed", taskId: created["taskId"], result: { structuredContent: { topic: "zeromq", steps: 3 } } });
    // A failing task ends failed with its JSON-RPC error.
    const failing = (await a.ask("tools/call", { name: "research", arguments: { topic: "fail", steps: 1 } }))["result"] as Json;
    expect((await follow(a, failing["taskId"])).at(-1)).toMatchObject({ status: "failed", error: { code: -32603 } });
    // Without the extension declared there is no task: the server's own tool error.
    const plain = (await a.ask("tools/call", { name: "research", arguments: { topic: "x" } }, false))["result"] as Json;
    expect(plain).toMatchObject({ isError: true });
    // And the SDK client itself refuses a task answer (why these requests are raw).
    const refused = await a.client.callTool({ name: "research", arguments: { topic: "sdk" } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(SdkError);
    expect((refused as SdkError).code).toBe("UNSUPPORTED_RESULT_TYPE");
  });

  it("tasks/cancel stops the task: it ends cancelled and the server's log says so", async () => {
    const created = (await a.ask("tools/call", { name: "research", arguments: { topic: "long", steps: 50 } }))["result"] as Json;
    expect(created).toMatchObject({ status: "working" });
    expect(await a.ask("tasks/cancel", { taskId: created["taskId"] })).toMatchObject({ result: { resultType: "complete" } });
    expect((await a.ask("tasks/get", { taskId: created["taskId"] }))["result"]).toMatchObject({ status: "cancelled" });
    const log = JSON.parse(((await a.client.callTool({ name: "research_log", arguments: {} })).content as Array<{ text: string }>)[0]!.text) as Json;
    expect(log[String(created["taskId"])]).toBe("cancelled");
  });

  it("a second caller key can neither get nor cancel the first's task: not found (-32602), as an unknown id; the task runs on", async () => {
    const created = (await a.ask("tools/call", { name: "research", arguments: { topic: "private", steps: 6 } }))["result"] as Json;
    const id = created["taskId"];
    const unknown = (await m.ask("tasks/get", { taskId: "00000000-0000-4000-8000-000000000000" }))["error"] as Json;
    const theirs = (await m.ask("tasks/get", { taskId: id }))["error"] as Json;
    expect(theirs).toMatchObject({ code: -32602 });
    expect(theirs["message"]).toBe(unknown["message"]);
    expect((await m.ask("tasks/cancel", { taskId: id }))["error"]).toMatchObject({ code: -32602 });
    // The same through the binding's tool directly, as mallory's key: still not found.
    expect(await mallory.call("srv", MCP_RPC_TOOL, { jsonrpc: "2.0", id: 9, method: "tasks/cancel", params: { taskId: id, _meta: envelope(true) } })).toMatchObject({ id: 9, error: { code: -32602 } });
    // Mallory's attempts changed nothing: alice's task completes.
    expect((await follow(a, id)).at(-1)).toMatchObject({ status: "completed", result: { structuredContent: { topic: "private" } } });
    await waitFor(() => serving.running === 0, 5_000);
  });
});
