/**
 * The MCP bridge treats mesh peers (and its own environment) as untrusted (issue 10):
 * - expose: one mesh tool the MCP tool schema refuses, or with a schema over the size limit,
 *   is skipped and logged once; the other tools stay listed for the official SDK client;
 * - expose: schemas are compiled once per distinct schema, in a cache bounded in bytes;
 * - attach: the MCP server gets the SDK's safe environment unless told otherwise, and a
 *   start without required tokens is warned about.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { DEFAULT_INHERITED_ENV_VARS, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent, ToolInfo } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { generateCertificate } from "../../src/auth/certs.js";
import { serverEnv } from "../../src/mcp/attach.js";
import { MeshExposer } from "../../src/mcp/expose.js";
import { canonicalJson, SchemaCache } from "../../src/mcp/schemas.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN, ROOT, stopProcess } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");

function parseLine(line: string): Record<string, unknown> {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { msg: "raw", line };
  }
}

function text(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : "")).join("");
}

describe("expose skips bad mesh tools instead of failing tools/list", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;

  beforeAll(async () => {
    fx = tempCerts("bob", "mcp");
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint);
    const args = z.record(z.string(), z.unknown());
    bob.tool("add", { description: "adds", input: z.object({ a: z.number(), b: z.number() }) }, ({ a, b }) => ({ sum: a + b }));
    // `required` must be an array of strings in the MCP tool schema: the SDK client refuses the
    // whole tools/list answer that holds this tool.
    bob.tool("broken_required", { input: args, inputSchema: { type: "object", required: 5 } }, () => "never");
    // `properties` members must be objects.
    bob.tool("broken_properties", { input: args, inputSchema: { type: "object", properties: { x: 7 } } }, () => "never");
    // Larger than the 64 KiB a schema may have.
    const huge = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`p${i}`, { type: "string", description: "x".repeat(40) }]));
    bob.tool("huge_schema", { input: args, inputSchema: { type: "object", properties: huge } }, () => "never");
    // An output schema that does not compile: the tool stays, without its output schema.
    bob.tool("odd_output", { input: args, outputSchema: { type: "object", properties: { a: { type: "no-such-type" } } } }, () => ({ a: 1 }));
  });
  afterAll(async () => {
    await bob?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("a real expose process lists the good tools to the SDK client, logs each bad one once, and calls still work", async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [BIN("zmq-mcp"), "expose", "--to", "bob", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("mcp"), "--refresh", "0"],
      stderr: "pipe",
    });
    const logs: Array<Record<string, unknown>> = [];
    createInterface({ input: transport.stderr as Readable }).on("line", (line) => logs.push(parseLine(line)));
    const client = new Client({ name: "trust-mcp-test", version: "1.0.0" });
    await client.connect(transport, { timeout: 15_000 });
    try {
      const first = await client.listTools();
      expect(first.tools.map((t) => t.name).sort()).toEqual(["add", "odd_output"]);
      expect(first.tools.find((t) => t.name === "odd_output")!.outputSchema).toBeUndefined();
      const sum = (await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })) as CallToolResult;
      expect(JSON.parse(text(sum))).toEqual({ sum: 5 });

      const skipped = () => logs.filter((e) => e["msg"] === "tool skipped");
      await waitFor(() => skipped().length >= 3, 5000, "skip warnings");
      expect(skipped().map((e) => e["tool"]).sort()).toEqual(["broken_properties", "broken_required", "huge_schema"]);
      expect(skipped().find((e) => e["tool"] === "broken_required")).toMatchObject({ level: "warn", target: "bob", reason: expect.stringMatching(/^not a valid MCP tool: inputSchema\.required/) });
      expect(skipped().find((e) => e["tool"] === "huge_schema")!["reason"]).toMatch(/^input schema: schema of \d+ bytes exceeds the limit of 65536/);

      // Listing again (a name not listed makes the bridge re-list too) does not log them again.
      await client.callTool({ name: "broken_required", arguments: {} }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const again = await client.listTools();
      expect(again.tools.map((t) => t.name).sort()).toEqual(["add", "odd_output"]);
      expect(skipped()).toHaveLength(3);
    } finally {
      await client.close();
    }
  });
});

/** A stand-in for the bridge's agent: `listTools` answers from a table (the bridge only lists here). */
function fakeAgent(listing: (key: string) => ToolInfo[]): Agent {
  const fake = {
    nameOf: () => undefined,
    resolve: (to: string) => to,
    listTools: async (to: string) => listing(to),
  };
  return fake as unknown as Agent;
}

describe("expose compiles each distinct schema once, in a cache bounded in bytes", () => {
  const keys = Array.from({ length: 400 }, () => generateCertificate().publicKey);
  const outputSchema = (n: number) => ({
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    properties: { total: { type: "number", minimum: n }, items: { type: "array", items: { type: "string", maxLength: 100 + n } } },
    required: ["total"],
  });
  const toolsOf = (distinctPerPeer: boolean) => (key: string) =>
    Array.from({ length: 40 }, (_, i) => ({
      name: `tool_${i}`,
      description: `tool ${i}`,
      inputSchema: { type: "object", properties: { n: { type: "number" } } },
      outputSchema: outputSchema(distinctPerPeer ? keys.indexOf(key) * 40 + i : i),
      job: false,
    }));

  it("400 peers x 40 tools, listed three times: 40 compilations for 40 distinct schemas", async () => {
    const exposer = new MeshExposer({ agent: fakeAgent(toolsOf(false)), targets: keys, refreshInterval: 0 });
    for (let i = 0; i < 3; i++) expect((await exposer.refresh()).size).toBe(16_000);
    expect(exposer.schemaCache.compilations).toBe(40);
    expect(exposer.schemaCache.size).toBe(40);
    await exposer.close();
  });

  it("4,000 distinct schemas: the cache stays within its byte bound, and the tools are all exposed", async () => {
    const maxBytes = 256 * 1024;
    const exposer = new MeshExposer({ agent: fakeAgent(toolsOf(true)), targets: keys.slice(0, 100), refreshInterval: 0, schemaCacheBytes: maxBytes });
    for (let i = 0; i < 2; i++) {
      const routes = await exposer.refresh();
      expect(routes.size).toBe(4_000);
      expect([...routes.values()].every((r) => r.tool.outputSchema !== undefined)).toBe(true);
      expect(exposer.schemaCache.bytes).toBeLessThanOrEqual(maxBytes);
      expect(exposer.schemaCache.size).toBeLessThan(4_000);
    }
    await exposer.close();
  });

  it("skip warnings are rate-limited: each tool once, at most 20 lines a listing, the rest counted", async () => {
    const warnings: Array<{ msg: string; fields: Record<string, unknown> | undefined }> = [];
    const log = { debug() {}, info() {}, error() {}, enabled: () => true, warn: (msg: string, fields?: Record<string, unknown>) => warnings.push({ msg, fields }) };
    // 50 peers list the same 2 names; with bare names 98 tools clash, and each peer also lists one invalid tool.
    const peers = keys.slice(0, 50);
    const listing = () => [
      { name: "same_a", description: "", inputSchema: { type: "object" }, job: false },
      { name: "same_b", description: "", inputSchema: { type: "object" }, job: false },
      { name: "bad", description: "", inputSchema: { type: "object", required: 1 }, job: false },
    ];
    const exposer = new MeshExposer({ agent: fakeAgent(listing), targets: peers, prefix: "never", refreshInterval: 0, log });
    expect([...(await exposer.refresh()).keys()].sort()).toEqual(["same_a", "same_b"]);
    const first = warnings.filter((w) => w.msg === "tool skipped");
    expect(first).toHaveLength(20);
    expect(warnings.find((w) => w.msg === "more tools skipped")?.fields).toEqual({ count: 150 - 2 - 20 });
    await exposer.refresh();
    expect(warnings.filter((w) => w.msg === "tool skipped")).toHaveLength(40);
    // Once every skipped tool has been named, listing again logs nothing new.
    for (let i = 0; i < 10; i++) await exposer.refresh();
    const named = warnings.filter((w) => w.msg === "tool skipped").length;
    await exposer.refresh();
    expect(warnings.filter((w) => w.msg === "tool skipped")).toHaveLength(named);
    expect(named).toBe(148);
    await exposer.close();
  });

  it("the cache keys schemas canonically, and keeps two schemas with one $id apart", () => {
    const cache = new SchemaCache();
    const a = cache.check({ type: "object", properties: { x: { type: "number" } }, required: ["x"] });
    const b = cache.check({ required: ["x"], properties: { x: { type: "number" } }, type: "object" });
    expect(a.ok && b.ok).toBe(true);
    expect(cache.compilations).toBe(1);
    // Two peers' schemas with one $id: each is checked as itself, not as the first one.
    const numbers = cache.check({ $id: "https://example.com/shared.json", type: "object", properties: { v: { type: "number" } } });
    const strings = cache.check({ $id: "https://example.com/shared.json", type: "object", properties: { v: { type: "string" } } });
    if (!numbers.ok || !strings.ok || !numbers.validate || !strings.validate) throw new Error("both schemas compile, with validators");
    expect(numbers.validate({ v: 1 }).valid).toBe(true);
    expect(strings.validate({ v: 1 }).valid).toBe(false);
    expect(strings.validate({ v: "s" }).valid).toBe(true);
    // Too large: refused without compiling.
    const small = new SchemaCache({ maxSchemaBytes: 100, maxBytes: 1000 });
    const verdict = small.check({ type: "object", description: "y".repeat(200) });
    expect(verdict).toMatchObject({ ok: false, error: expect.stringMatching(/exceeds the limit of 100/) });
    expect(small.compilations).toBe(0);
    // `__proto__` is a member like any other in the canonical form.
    expect(canonicalJson(JSON.parse('{"b":1,"__proto__":{"x":1}}'), 1000)).toBe('{"__proto__":{"x":1},"b":1}');
  });
});

describe("attach: the server's environment, and the warning without tokens", () => {
  let fx: CertFixture;
  let broker: Broker;
  let attach: ChildProcess | undefined;

  beforeAll(async () => {
    fx = tempCerts("alice", "carol");
    broker = await startBroker(fx);
  });
  afterAll(async () => {
    if (attach) await stopProcess(attach);
    await broker?.close();
    fx?.cleanup();
  });

  it("the server gets only the SDK's safe variables plus those passed on purpose; the start warns that no token is required", async () => {
    const env = { ...process.env, ZMCP_TEST_SECRET: "s3cr3t", ZMCP_TEST_PASSED: "passed", PATH: process.env["PATH"] ?? "/usr/bin" };
    const args = ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("carol"), "--tool", "get-env"];
    args.push("--pass-env", "ZMCP_TEST_PASSED", "--env", "ZMCP_TEST_SET=set=here", "--", process.execPath, EVERYTHING, "stdio");
    attach = spawn(process.execPath, [BIN("zmq-mcp"), ...args], { stdio: ["ignore", "ignore", "pipe"], env });
    const logs: Array<Record<string, unknown>> = [];
    createInterface({ input: attach.stderr! }).on("line", (line) => logs.push(parseLine(line)));
    await waitFor(() => {
      if (attach!.exitCode !== null) throw new Error(`attach exited: ${JSON.stringify(logs)}`);
      return logs.find((e) => e["msg"] === "attach ready");
    }, 20_000, "attach ready");
    const warning = logs.find((e) => typeof e["msg"] === "string" && (e["msg"] as string).startsWith("serving tools without requiring tokens"));
    expect(warning).toMatchObject({ level: "warn", tools: ["get-env"], reason: "no --authority" });

    const alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 10_000 });
    try {
      const result = (await alice.call("carol", "get-env", {})) as CallToolResult;
      const serverEnvironment = JSON.parse(text(result)) as Record<string, string>;
      expect(serverEnvironment["ZMCP_TEST_SECRET"]).toBeUndefined();
      expect(serverEnvironment["ZMCP_TEST_PASSED"]).toBe("passed");
      expect(serverEnvironment["ZMCP_TEST_SET"]).toBe("set=here");
      expect(serverEnvironment["PATH"]).toBe(env.PATH);
    } finally {
      await alice.close();
    }
  });

  it("serverEnv: the SDK's safe default, names passed on, values set, or everything on request", () => {
    const from = { HOME: "/h", PATH: "/p", AWS_SECRET_ACCESS_KEY: "k", KEEP: "1" };
    expect(Object.keys(serverEnv({})).every((k) => DEFAULT_INHERITED_ENV_VARS.includes(k))).toBe(true);
    expect(serverEnv({}, from)).not.toHaveProperty("AWS_SECRET_ACCESS_KEY");
    expect(serverEnv({ passEnv: ["KEEP", "UNSET_NAME"], env: { X: "y" } }, from)).toMatchObject({ KEEP: "1", X: "y" });
    expect(serverEnv({ passEnv: ["UNSET_NAME"] }, from)).not.toHaveProperty("UNSET_NAME");
    expect(serverEnv({ inheritEnv: true }, from)).toMatchObject({ AWS_SECRET_ACCESS_KEY: "k", HOME: "/h" });
  });
});
