/**
 * Adversarial review of `attach`: the attached MCP server is the attacker (a real child process,
 * test/security/mcp-hostile-server.ts).
 *
 * A list_changed storm: each `notifications/{tools,resources,prompts}/list_changed` used to
 * queue one more full re-listing (tools/list, resources/list, templates, prompts/list) behind
 * the running one, so n notifications cost n listings, one after the other, and n queued
 * closures: 3,000 notifications sent in a millisecond kept the bridge listing for seconds and
 * its memory growing with n. A notification now only marks the listing dirty: one runs, at
 * most one more follows (it lists after every change seen), whatever n is.
 *
 * A task that never ends: a task-only tool (2025 experimental tasks) was polled by the SDK's
 * callToolStream, whose `timeout` bounds each tasks/get, not the task: a server answering
 * `working` for ever kept the mesh job running past `jobTimeout` for good, polling every 10 ms
 * as the server asked. Now the job's deadline ends it: the task is cancelled on the server,
 * the polling stops, and the caller gets `tool_failed` (as for a plain job tool past it).
 *
 * Held: responses to request ids the bridge never sent and progress for tokens nobody holds
 * (the SDK drops them; calls go on).
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import { McpAttachment } from "../../src/mcp/attach.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { DIST } from "../support/process.js";
import { sleep } from "../support/wait.js";

type Counts = { tools: number; resources: number; templates: number; prompts: number; taskGets: number; taskCancels: number };

describe("mcp adversarial: a hostile attached MCP server", () => {
  let fx: CertFixture;
  let broker: Broker;
  let host: Agent;
  let caller: Agent;
  let attachment: McpAttachment;

  beforeAll(async () => {
    fx = tempCerts("host", "caller");
    broker = await startBroker(fx);
    host = await connectAgent(fx, "host", broker.endpoint);
    caller = await connectAgent(fx, "caller", broker.endpoint, { timeout: 20_000 });
    attachment = await McpAttachment.start({ agent: host, command: process.execPath, args: [join(DIST, "test/security/mcp-hostile-server.js")], jobTimeout: 1500 });
  }, 30_000);

  afterAll(async () => {
    await attachment?.close();
    await caller?.close();
    await host?.close();
    await broker?.close();
    fx?.cleanup();
  });

  const stats = async () => ((await caller.call("host", "stats", {}, { timeout: 20_000 })) as { structuredContent: Counts }).structuredContent;

  /** The server's counts once they stop moving (two readings 300 ms apart agree), bounded. */
  async function settled(): Promise<Counts> {
    let last = await stats();
    for (let i = 0; i < 200; i++) {
      await sleep(300);
      const now = await stats();
      if (JSON.stringify(now) === JSON.stringify(last)) return now;
      last = now;
    }
    throw new Error(`listings never stopped: ${JSON.stringify(last)}`);
  }

  for (const kind of ["tools", "resources"] as const) {
    it(`a storm of 3,000 ${kind}/list_changed costs at most two listings, not one per notification; calls go on`, async () => {
      const before = await settled();
      await caller.call("host", "storm", { kind, n: 3000 }, { timeout: 20_000 });
      const after = await settled();
      // One listing running when the storm began, at most one more after it.
      expect(after.tools - before.tools).toBeLessThanOrEqual(2);
      expect(after.resources - before.resources).toBeLessThanOrEqual(2);
      expect(after.prompts - before.prompts).toBeLessThanOrEqual(2);
      expect(after.tools - before.tools).toBeGreaterThanOrEqual(1);
      expect(attachment.tools).toEqual(["storm", "forge", "stats", "forever"]);
    }, 90_000);
  }

  it("responses to ids never sent and progress for no one's token are dropped; the server's tools serve on", async () => {
    expect(await caller.call("host", "forge", { n: 2000 }, { timeout: 20_000 })).toMatchObject({ content: [{ text: "forged 2000" }] });
    expect(await stats()).toMatchObject({ tools: expect.any(Number) });
  }, 30_000);

  it("a task-only tool whose task never ends: the mesh job ends at jobTimeout (tool_failed), the task is cancelled, polling stops", async () => {
    const before = await stats();
    const job = await caller.start("host", "forever", {}, { timeout: 5000 });
    const outcome = await Promise.race([
      job.result.then(
        () => ({ ended: "resolved" as const, err: undefined }),
        (err: unknown) => ({ ended: "rejected" as const, err }),
      ),
      sleep(10_000).then(() => ({ ended: "still running after 10 s" as const, err: undefined })),
    ]);
    expect(outcome.ended).toBe("rejected");
    expect(outcome.err).toBeInstanceOf(RemoteError);
    expect(outcome.err).toMatchObject({ code: "tool_failed", message: expect.stringContaining("did not end within") });
    const after = await settled();
    expect(after.taskCancels - before.taskCancels).toBeGreaterThanOrEqual(1);
    // Polling stopped: no tasks/get since.
    await sleep(300);
    expect((await stats()).taskGets).toBe(after.taskGets);
    if (!job.settled) await job.cancel().catch(() => undefined);
  }, 30_000);
});
