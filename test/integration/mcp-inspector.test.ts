/**
 * The MCP Inspector's CLI mode (`@modelcontextprotocol/inspector --cli`, a dev dependency)
 * against `zmq-mcp expose` over stdio: it spawns the bridge as its server, lists the mesh
 * agent's tools, calls one, and gets a mesh error back as an `isError` result.
 *
 * Version 0.15.0 is the newest that runs on Node 20 (later ones need Node >= 22.7.5), and its
 * CLI has no option to send a header: it cannot present the bearer token `expose --http`
 * requires, so HTTP is covered by the SDK clients (mcp-http.test.ts), not here.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN, ROOT } from "../support/process.js";

const run = promisify(execFile);
const INSPECTOR = join(ROOT, "node_modules", "@modelcontextprotocol", "inspector", "cli", "build", "cli.js");

describe("MCP Inspector CLI against zmq-mcp expose (stdio)", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;

  beforeAll(async () => {
    fx = tempCerts("bob", "bridge");
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint);
    bob.tool("add", { description: "a + b", input: z.object({ a: z.number(), b: z.number() }), annotations: { readOnlyHint: true } }, ({ a, b }) => ({ sum: a + b }));
  }, 30_000);

  afterAll(async () => {
    await bob?.close();
    await broker?.close();
    fx?.cleanup();
  });

  /** One inspector run: it starts `expose` as its stdio server, sends one method, prints the result as JSON, and stops the bridge. */
  async function inspect(method: string[]): Promise<unknown> {
    const expose = [BIN("zmq-mcp"), "expose", "--broker", broker.endpoint, "--cert", fx.secretPath("bridge"), "--certs", fx.dir, "--to", "bob", "--log-level", "error"];
    const { stdout } = await run(process.execPath, [INSPECTOR, "--cli", process.execPath, ...expose, ...method], { timeout: 60_000, killSignal: "SIGKILL" });
    return JSON.parse(stdout);
  }

  it("tools/list shows the mesh agent's tool with its schema and annotations", async () => {
    const out = (await inspect(["--method", "tools/list"])) as { tools: Array<{ name: string; inputSchema: { required?: string[] }; annotations?: unknown }> };
    expect(out.tools.map((t) => t.name)).toEqual(["add"]);
    expect(out.tools[0]!.inputSchema.required).toEqual(["a", "b"]);
    expect(out.tools[0]!.annotations).toMatchObject({ readOnlyHint: true });
  }, 90_000);

  it("tools/call runs the tool on the mesh; arguments the tool refuses come back as an isError result with the mesh code", async () => {
    expect(await inspect(["--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=2", "b=3"])).toMatchObject({
      structuredContent: { sum: 5 },
    });
    const refused = (await inspect(["--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=2", "b=oops"])) as { isError?: boolean; content: Array<{ text: string }> };
    expect(refused.isError).toBe(true);
    expect(refused.content[0]!.text).toMatch(/^invalid_args/);
  }, 90_000);
});
