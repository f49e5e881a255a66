/**
 * `zmq-mcp attach` of a 2026-only server offering the tasks extension
 * (`io.modelcontextprotocol/tasks`): test/support/mcp-server-2026.ts `--tasks`, whose `research`
 * tool runs only as a task (a call that does not declare the extension gets a tool error). The
 * bridge declares the extension on its calls and follows the task: status messages as the mesh
 * job's progress, the task's result as the job's, a failed task as `tool_failed`, the mesh job's
 * cancel as `tasks/cancel`, jobTimeout as the bound.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { RemoteError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { BIN, built, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";

type Text = { content: Array<{ type: string; text: string }>; structuredContent?: unknown };

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe("attach: a 2026 server's task-only tool, through the tasks extension", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let attach: Child;
  let slowAttach: Child;
  let alice: Agent;

  beforeAll(async () => {
    fx = tempCerts("alice", "modern", "modern2");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    const server = [process.execPath, built("test/support/mcp-server-2026.js"), "--tasks"];
    attach = await spawnChild(BIN("zmq-mcp"), ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("modern"), "--job", "research", "--", ...server], "attach ready", { timeoutMs: 30_000 });
    // The same server with a job timeout shorter than a long task.
    slowAttach = await spawnChild(BIN("zmq-mcp"), ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("modern2"), "--job", "research", "--job-timeout", "400", "--", ...server], "attach ready", { timeoutMs: 30_000 });
    alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 10_000 });
  }, 60_000);

  afterAll(async () => {
    await alice?.close();
    await attach?.stop();
    await slowAttach?.stop();
    await broker?.stop();
    fx?.cleanup();
  });

  it("the task-only tool is offered as a mesh job; its status messages are the job's progress, the task's result the job's", async () => {
    const research = (await alice.listTools("modern")).find((t) => t.name === "research");
    expect(research).toMatchObject({ job: true });
    const job = await alice.start("modern", "research", { topic: "bridges", steps: 3 });
    const steps: Array<{ progress: number; message?: string | undefined }> = [];
    job.on("progress", (p) => void steps.push(p));
    const result = (await job.result) as Text;
    expect(result.content[0]!.text).toBe("researched bridges");
    expect(result.structuredContent).toEqual({ topic: "bridges", steps: 3 });
    expect(result).not.toHaveProperty("resultType");
    expect(steps.map((s) => s.message)).toEqual(expect.arrayContaining(["step 3/3"]));
    expect(steps.map((s) => s.progress)).toEqual(steps.map((_, i) => i + 1));
    await waitFor(() => attach.logs.some((l) => l["msg"] === "MCP task started" && l["tool"] === "research"), 5000, "the attach process logged the task start"); // another process's log line: it may come after what the test saw
  }, 30_000);

  it("a failed task is the job's tool_failed, with the task's error", async () => {
    const job = await alice.start("modern", "research", { topic: "fail", steps: 1 });
    const err = await failure(job.result);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe("tool_failed");
    expect((err as RemoteError).message).toContain("research failed");
  }, 30_000);

  it("cancelling the mesh job cancels the task on the server (tasks/cancel); the attachment serves on", async () => {
    const before = attach.logs.filter((l) => l["msg"] === "MCP task started").length;
    const job = await alice.start("modern", "research", { topic: "tunnels", steps: 40 });
    await waitFor(() => attach.logs.filter((l) => l["msg"] === "MCP task started").length > before, 10_000, "task started");
    const taskId = attach.logs.filter((l) => l["msg"] === "MCP task started").at(-1)!["task"] as string;
    await job.cancel();
    const err = await failure(job.result);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe("cancelled");
    let log: Record<string, string> = {};
    await waitFor(async () => {
      log = JSON.parse(((await alice.call("modern", "research_log", {})) as Text).content[0]!.text) as Record<string, string>;
      return log[taskId] !== undefined;
    }, 10_000, "the server saw the cancel");
    expect(log[taskId]).toBe("cancelled");
  }, 30_000);

  it("a task running past jobTimeout is cancelled on the server and the job fails tool_failed", async () => {
    const job = await alice.start("modern2", "research", { topic: "forever", steps: 40 });
    const err = await failure(job.result);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe("tool_failed");
    expect((err as RemoteError).message).toContain("did not end within");
    const taskId = slowAttach.logs.filter((l) => l["msg"] === "MCP task started").at(-1)!["task"] as string;
    let log: Record<string, string> = {};
    await waitFor(async () => {
      log = JSON.parse(((await alice.call("modern2", "research_log", {})) as Text).content[0]!.text) as Record<string, string>;
      return log[taskId] !== undefined;
    }, 10_000, "the server saw the cancel");
    expect(log[taskId]).toBe("cancelled");
  }, 30_000);
});
