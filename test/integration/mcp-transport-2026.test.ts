/**
 * MCP over the mesh in the 2026-07-28 era (src/mcp/transport-2026.ts, `serveMesh`): a
 * `@modelcontextprotocol/client` 2.x client pinned to 2026-07-28 on a MeshClientTransport and a
 * `@modelcontextprotocol/server` 2.x server served by `serveMesh`, through a real broker: tools,
 * resources, prompts, completion-free listings, progress (a mesh job), cancellation, the caller
 * as handlers see it, hostile envelopes, both eras on one address, a modern-only server
 * refusing a 2025 client, `subscriptions/listen` as one long mesh job (resource updates
 * reaching the clients listening for them; a hostile stream's non-notifications dropped), and
 * a `svc:` service with two replicas, one of them closed.
 */
import { Client as Client2026 } from "@modelcontextprotocol/client";
import { McpServer as McpServer2026 } from "@modelcontextprotocol/server";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { MCP_RPC_JOB_TOOL, MCP_RPC_TOOL, MeshClientTransport } from "../../src/mcp/transport.js";
import { MAX_LISTENS_PER_CALLER, serveMesh, type MeshServing } from "../../src/mcp/transport-2026.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { waitFor } from "../support/wait.js";

const REVISION = "2026-07-28";
const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": REVISION,
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1.0.0" },
};

function text(result: unknown): string {
  return (result as CallToolResult).content.map((c) => (c.type === "text" ? c.text : "")).join("");
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

/** The test server: the same tools for both eras (serveMesh calls it per era), naming its replica. */
function factory(replica: string, seen: { caller?: unknown; aborted: string[] }) {
  return () => {
    const server = new McpServer2026({ name: "mesh-2026", version: "1.0.0" });
    server.registerTool("add", { inputSchema: z.object({ a: z.number(), b: z.number() }), annotations: { readOnlyHint: true } }, async ({ a, b }) => ({
      content: [{ type: "text" as const, text: String(a + b) }],
      structuredContent: { sum: a + b },
    }));
    server.registerTool("where", { inputSchema: z.object({}) }, async () => ({ content: [{ type: "text" as const, text: replica }] }));
    server.registerTool("whoami", { inputSchema: z.object({}) }, async (_args, ctx) => {
      seen.caller = ctx.http?.authInfo;
      return { content: [{ type: "text" as const, text: ctx.http?.authInfo?.clientId ?? "?" }] };
    });
    server.registerTool("count", { inputSchema: z.object({ n: z.number().int().min(1).max(20) }) }, async ({ n }, ctx) => {
      for (let i = 1; i <= n; i++) {
        await new Promise((resolve) => setTimeout(resolve, 30));
        const token = ctx.mcpReq._meta?.progressToken;
        if (token !== undefined) await ctx.mcpReq.notify({ method: "notifications/progress", params: { progressToken: token, progress: i, total: n, message: `${i}/${n}` } });
      }
      return { content: [{ type: "text" as const, text: `${replica}:counted ${n}` }] };
    });
    server.registerTool("hang", { inputSchema: z.object({ tag: z.string() }) }, async ({ tag }, ctx) => {
      await new Promise<void>((resolve) => {
        if (ctx.mcpReq.signal.aborted) resolve();
        ctx.mcpReq.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      seen.aborted.push(tag);
      return { content: [{ type: "text" as const, text: "aborted" }] };
    });
    server.registerResource("motd", "mesh://motd", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: `hello from ${replica}` }] }));
    server.registerPrompt("greet", { argsSchema: z.object({ name: z.string() }) }, ({ name }) => ({ messages: [{ role: "user" as const, content: { type: "text" as const, text: `Greet ${name}.` } }] }));
    return server;
  };
}

async function pinned(agent: Agent, to: string, timeout = 20_000): Promise<Client2026> {
  const client = new Client2026({ name: "pinned", version: "1.0.0" }, { versionNegotiation: { mode: { pin: REVISION } } });
  await client.connect(new MeshClientTransport({ agent, to, timeout }));
  return client;
}

describe("MCP over the mesh, 2026-07-28 era (serveMesh)", () => {
  let fx: CertFixture;
  let broker: Broker;
  let srv: Agent;
  let strictAgent: Agent;
  let cli: Agent;
  let cli2: Agent;
  let serving: MeshServing;
  let strict: MeshServing;
  const seen: { caller?: unknown; aborted: string[] } = { aborted: [] };

  beforeAll(async () => {
    fx = tempCerts("srv", "strict", "cli", "cli2", "r1", "r2", "lsn", "fake");
    fx.addService("calc26");
    broker = await startBroker(fx);
    srv = await connectAgent(fx, "srv", broker.endpoint);
    strictAgent = await connectAgent(fx, "strict", broker.endpoint);
    cli = await connectAgent(fx, "cli", broker.endpoint);
    cli2 = await connectAgent(fx, "cli2", broker.endpoint);
    serving = await serveMesh(factory("srv", seen), { agent: srv });
    strict = await serveMesh(factory("strict", seen), { agent: strictAgent, legacy: "reject" });
  });

  afterAll(async () => {
    await serving?.close();
    await strict?.close();
    for (const a of [srv, strictAgent, cli, cli2]) await a?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("a 2.x client pinned to 2026-07-28 lists and calls tools, reads resources, gets prompts: every request in the 2026 era", async () => {
    const client = await pinned(cli, "srv");
    try {
      const tools = (await client.listTools()).tools;
      expect(tools.map((t) => t.name).sort()).toEqual(["add", "count", "hang", "where", "whoami"]);
      expect(tools.find((t) => t.name === "add")?.annotations?.readOnlyHint).toBe(true);
      const sum = await client.callTool({ name: "add", arguments: { a: 20, b: 22 } });
      expect(sum.structuredContent).toEqual({ sum: 42 });
      expect((await client.listResources()).resources.map((r) => r.uri)).toEqual(["mesh://motd"]);
      const read = await client.readResource({ uri: "mesh://motd" });
      expect((read.contents[0] as { text: string }).text).toBe("hello from srv");
      expect((await client.listPrompts()).prompts.map((p) => p.name)).toEqual(["greet"]);
      const prompt = await client.getPrompt({ name: "greet", arguments: { name: "Ada" } });
      expect((prompt.messages[0]?.content as { text: string }).text).toBe("Greet Ada.");
      // The era as the server saw it: the 2026 answer's resultType, which no 2025 result has.
      const raw = await cli.call("srv", MCP_RPC_TOOL, { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "add", arguments: { a: 1, b: 2 }, _meta: ENVELOPE } });
      expect(raw).toMatchObject({ jsonrpc: "2.0", id: 1, result: { resultType: "complete", structuredContent: { sum: 3 } } });
    } finally {
      await client.close();
    }
  });

  it("progress of a 2026 request runs as a mesh job; the handler sees the caller's broker-authenticated key", async () => {
    const client = await pinned(cli, "srv");
    try {
      const progress: Array<{ progress: number }> = [];
      const result = await client.callTool({ name: "count", arguments: { n: 3 } }, { onprogress: (p) => progress.push(p) });
      expect(text(result)).toBe("srv:counted 3");
      expect(progress.map((p) => p.progress)).toEqual([1, 2, 3]);
      expect(text(await client.callTool({ name: "whoami", arguments: {} }))).toBe(cli.publicKey);
      expect(seen.caller).toMatchObject({ clientId: cli.publicKey });
    } finally {
      await client.close();
    }
  });

  it("cancellation: a 2026 job request cancelled by the client aborts the handler; a plain one is aborted by its notifications/cancelled", async () => {
    const client = await pinned(cli, "srv");
    try {
      const controller = new AbortController();
      const call = client.callTool({ name: "hang", arguments: { tag: "job" } }, { signal: controller.signal, onprogress: () => undefined });
      await waitFor(() => serving.running === 1, 5_000);
      controller.abort();
      expect(await rejection(call)).toBeInstanceOf(Error);
      await waitFor(() => seen.aborted.includes("job"), 5_000);
      const plain = new AbortController();
      const call2 = client.callTool({ name: "hang", arguments: { tag: "plain" } }, { signal: plain.signal });
      await waitFor(() => serving.running === 1, 5_000);
      plain.abort();
      expect(await rejection(call2)).toBeInstanceOf(Error);
      await waitFor(() => seen.aborted.includes("plain"), 5_000);
      await waitFor(() => serving.running === 0, 5_000);
    } finally {
      await client.close();
    }
  });

  it("one address serves both eras: a v1 client (2025, initialize) and a pinned 2.x client side by side", async () => {
    const legacy = new Client({ name: "v1", version: "1.0.0" });
    await legacy.connect(new MeshClientTransport({ agent: cli2, to: "srv" }));
    const modern = await pinned(cli, "srv");
    try {
      expect(legacy.getServerVersion()?.name).toBe("mesh-2026");
      expect(text(await legacy.callTool({ name: "add", arguments: { a: 1, b: 1 } }))).toBe("2");
      expect(text(await modern.callTool({ name: "add", arguments: { a: 2, b: 2 } }))).toBe("4");
    } finally {
      await legacy.close();
      await modern.close();
    }
  });

  it("legacy: reject serves the 2026 era only: a 2025 initialize is refused with -32022 naming 2026-07-28", async () => {
    const legacy = new Client({ name: "v1", version: "1.0.0" });
    const err = await rejection(legacy.connect(new MeshClientTransport({ agent: cli2, to: "strict" })));
    const cause = (err as { cause?: unknown }).cause ?? err;
    expect(cause).toBeInstanceOf(McpError);
    expect((cause as McpError).code).toBe(-32022);
    expect((cause as McpError).data).toMatchObject({ supported: expect.arrayContaining([REVISION]) });
    await legacy.close().catch(() => undefined);
    const modern = await pinned(cli, "strict");
    try {
      expect(text(await modern.callTool({ name: "where", arguments: {} }))).toBe("strict");
    } finally {
      await modern.close();
    }
  });

  it("hostile 2026 requests get the SDK's ladder answers, and the server answers on", async () => {
    const ask = (message: unknown) => cli.call("srv", MCP_RPC_TOOL, message);
    // A revision it does not speak: -32022 with the supported list.
    expect(await ask({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { _meta: { ...ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01" } } })).toMatchObject({
      id: 1,
      error: { code: -32022, data: { supported: expect.arrayContaining([REVISION]), requested: "2099-01-01" } },
    });
    // A claim with a required key missing: -32602.
    expect(await ask({ jsonrpc: "2.0", id: 2, method: "tools/list", params: { _meta: { "io.modelcontextprotocol/protocolVersion": REVISION } } })).toMatchObject({ id: 2, error: { code: -32602 } });
    // A method no header could carry, and a tool name that needs the Base64 header form: answered, not thrown.
    expect(await ask({ jsonrpc: "2.0", id: 3, method: "tools/\nlist", params: { _meta: ENVELOPE } })).toMatchObject({ id: 3, error: {} });
    expect(await ask({ jsonrpc: "2.0", id: 4, method: "tools/call", params: { name: "nö such\ttool", arguments: {}, _meta: ENVELOPE } })).toMatchObject({ id: 4 });
    // A listen stream would outlive the request: refused at once.
    expect(await ask({ jsonrpc: "2.0", id: 5, method: "subscriptions/listen", params: { _meta: ENVELOPE, filter: {} } })).toMatchObject({ id: 5, error: { code: -32601 } });
    // The same id twice at once from one caller.
    const first = cli.call("srv", MCP_RPC_TOOL, { jsonrpc: "2.0", id: 6, method: "tools/call", params: { name: "hang", arguments: { tag: "dup" }, _meta: ENVELOPE } }, { timeout: 3_000 }).catch((e: unknown) => e);
    await waitFor(() => serving.running === 1, 5_000);
    const dup = await rejection(ask({ jsonrpc: "2.0", id: 6, method: "tools/list", params: { _meta: ENVELOPE } }));
    expect(dup).toMatchObject({ code: "invalid_args" });
    await cli.call("srv", MCP_RPC_TOOL, { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 6, _meta: ENVELOPE } });
    await waitFor(() => seen.aborted.includes("dup"), 5_000);
    await first;
    // And it answers on.
    expect(await ask({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "add", arguments: { a: 5, b: 5 }, _meta: ENVELOPE } })).toMatchObject({ id: 7, result: { structuredContent: { sum: 10 } } });
  });

  it("another caller's request id is its own: cli2 cannot cancel cli's running request", async () => {
    const call = cli.call("srv", MCP_RPC_TOOL, { jsonrpc: "2.0", id: 42, method: "tools/call", params: { name: "hang", arguments: { tag: "mine" }, _meta: ENVELOPE } }, { timeout: 3_000 }).catch((e: unknown) => e);
    await waitFor(() => serving.running === 1, 5_000);
    await cli2.call("srv", MCP_RPC_TOOL, { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 42, _meta: ENVELOPE } });
    expect(serving.running).toBe(1);
    expect(seen.aborted).not.toContain("mine");
    // The request ends at its deadline (3 s): the handler is aborted then, not before.
    const err = await call;
    expect(err).toMatchObject({ code: expect.stringMatching(/timeout|expired/) });
    await waitFor(() => seen.aborted.includes("mine"), 5_000);
  });

  describe("subscriptions/listen: one long mesh job per stream", () => {
    let lsn: Agent;
    let listening: MeshServing;

    beforeAll(async () => {
      lsn = await connectAgent(fx, "lsn", broker.endpoint);
      listening = await serveMesh(
        () => {
          const server = new McpServer2026({ name: "listening", version: "1.0.0" }, { capabilities: { resources: { subscribe: true, listChanged: true } } });
          server.registerResource("motd", "mesh://motd", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "motd" }] }));
          server.registerResource("other", "mesh://other", { mimeType: "text/plain" }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "other" }] }));
          return server;
        },
        { agent: lsn, legacy: "reject" },
      );
    });

    afterAll(async () => {
      await listening?.close();
      await lsn?.close();
    });

    it("a resource update reaches each pinned 2.x client that listens for it, and only those; close ends the server's stream", async () => {
      const a = await pinned(cli, "lsn");
      const b = await pinned(cli2, "lsn");
      const gotA: string[] = [];
      const gotB: string[] = [];
      a.setNotificationHandler("notifications/resources/updated", (n) => void gotA.push(n.params.uri));
      b.setNotificationHandler("notifications/resources/updated", (n) => void gotB.push(n.params.uri));
      try {
        const subA = await a.listen({ resourceSubscriptions: ["mesh://motd"] });
        const subB = await b.listen({ resourceSubscriptions: ["mesh://other"] });
        expect(subA.honoredFilter).toMatchObject({ resourceSubscriptions: ["mesh://motd"] });
        expect(listening.running).toBe(2);
        listening.notify.resourceUpdated("mesh://motd");
        listening.notify.resourceUpdated("mesh://other");
        listening.notify.resourceUpdated("mesh://motd");
        await waitFor(() => gotA.length === 2 && gotB.length === 1, 5_000);
        expect(gotA).toEqual(["mesh://motd", "mesh://motd"]);
        expect(gotB).toEqual(["mesh://other"]);
        // Closing cancels the listen job: the server's stream ends, later updates go nowhere.
        await subA.close();
        expect(await subA.closed).toBe("local");
        await waitFor(() => listening.running === 1, 5_000);
        listening.notify.resourceUpdated("mesh://motd");
        listening.notify.resourceUpdated("mesh://other");
        await waitFor(() => gotB.length === 2, 5_000);
        expect(gotA).toHaveLength(2);
        await subB.close();
        await waitFor(() => listening.running === 0, 5_000);
        // A listen on the plain tool has no stream to be carried on: refused at once.
        expect(await cli.call("lsn", MCP_RPC_TOOL, { jsonrpc: "2.0", id: 1, method: "subscriptions/listen", params: { _meta: ENVELOPE, filter: {} } })).toMatchObject({ id: 1, error: { code: -32601 } });
      } finally {
        await a.close();
        await b.close();
      }
    });
    it("one caller holds at most MAX_LISTENS_PER_CALLER open listen streams (each is a running job against maxConcurrency): the next is refused at once, another caller and plain calls are served", async () => {
      const a = await pinned(cli, "lsn");
      const b = await pinned(cli2, "lsn");
      const subs: Array<{ close(): Promise<void> }> = [];
      try {
        for (let i = 0; i < MAX_LISTENS_PER_CALLER; i++) subs.push(await a.listen({ resourceSubscriptions: ["mesh://motd"] }));
        expect(listening.running).toBe(MAX_LISTENS_PER_CALLER);
        const refused = await a.listen({ resourceSubscriptions: ["mesh://motd"] }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(String((refused as Error)?.message)).toMatch(/too many subscriptions\/listen streams/);
        subs.push(await b.listen({ resourceSubscriptions: ["mesh://other"] }));
        expect((await b.readResource({ uri: "mesh://other" })).contents).toHaveLength(1);
      } finally {
        for (const sub of subs) await sub.close().catch(() => undefined);
        await a.close();
        await b.close();
      }
      await waitFor(() => listening.running === 0, 5_000);
    });
  });

  it("a hostile listen stream: progress messages that are not one notification (not JSON, a response, a request) are dropped; the notification after them is delivered", async () => {
    const fake = await connectAgent(fx, "fake", broker.endpoint);
    const pause = () => new Promise((resolve) => setTimeout(resolve, 50));
    fake.tool(MCP_RPC_JOB_TOOL, { description: "a hostile listen stream", input: z.unknown(), job: true }, async (_args, ctx) => {
      const notification = (uri: string) => JSON.stringify({ jsonrpc: "2.0", method: "notifications/resources/updated", params: { uri } });
      const steps: Array<[number, string]> = [
        [1, "not json"],
        [2, JSON.stringify({ jsonrpc: "2.0", id: "listen:1", result: {} })],
        [3, JSON.stringify({ jsonrpc: "2.0", id: 99, method: "roots/list" })],
        [3, notification("fake://repeated-step")], // a step not after the last one is not delivered
        [4, notification("fake://x")],
      ];
      for (const [progress, message] of steps) {
        await pause();
        ctx.progress({ progress, message });
      }
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
      return null;
    });
    const transport = new MeshClientTransport({ agent: cli, to: "fake", timeout: 5_000 });
    const got: unknown[] = [];
    transport.onmessage = (m) => void got.push(m);
    await transport.start();
    try {
      await transport.send({ jsonrpc: "2.0", id: "listen:1", method: "subscriptions/listen", params: { _meta: ENVELOPE, filter: { resourceSubscriptions: ["fake://x"] } } } as never);
      await waitFor(() => got.length > 0, 10_000);
      expect(got).toEqual([{ jsonrpc: "2.0", method: "notifications/resources/updated", params: { uri: "fake://x" } }]);
    } finally {
      await transport.close();
      await fake.close();
    }
  });

  describe("svc: two replicas of a 2026 server", () => {
    let r1: Agent;
    let r2: Agent;
    let s1: MeshServing;
    let s2: MeshServing;

    beforeAll(async () => {
      r1 = await connectAgent(fx, "r1", broker.endpoint);
      r2 = await connectAgent(fx, "r2", broker.endpoint);
      s1 = await serveMesh(factory("r1", seen), { agent: r1, legacy: "reject" });
      s2 = await serveMesh(factory("r2", seen), { agent: r2, legacy: "reject" });
      await r1.serve("calc26");
      await r2.serve("calc26");
    });

    afterAll(async () => {
      await s1?.close();
      await s2?.close();
      await r1?.close();
      await r2?.close();
    });

    it("a pinned client through svc:NAME is answered by both replicas (no session: any replica answers any request), and by the survivor when one goes", async () => {
      expect((await cli.listTools("svc:calc26")).map((t) => t.name).sort()).toEqual([MCP_RPC_TOOL, MCP_RPC_JOB_TOOL].sort());
      const client = await pinned(cli, "svc:calc26", 6_000);
      try {
        const where = new Set<string>();
        for (let i = 0; i < 12 && where.size < 2; i++) where.add(text(await client.callTool({ name: "where", arguments: {} })));
        expect([...where].sort()).toEqual(["r1", "r2"]);
        const progress: number[] = [];
        expect(text(await client.callTool({ name: "count", arguments: { n: 2 } }, { onprogress: (p) => progress.push(p.progress) }))).toMatch(/^r[12]:counted 2$/);
        expect(progress).toEqual([1, 2]);
        await s2.close();
        await r2.close();
        // Until the broker has seen r2 go, a request may still be routed to it: that one gets no
        // answer and is not sent again (at most once per service), so the client sees a timeout.
        // Once one answer has come from r1, every later request is r1's.
        let settled = false;
        for (let i = 0; i < 5 && !settled; i++) {
          settled = await client.callTool({ name: "where", arguments: {} }).then(
            (r) => text(r) === "r1",
            (e: unknown) => {
              expect((e as { data?: { code?: unknown } }).data?.code).toBe("timeout");
              return false;
            },
          );
        }
        expect(settled).toBe(true);
        for (let i = 0; i < 4; i++) expect(text(await client.callTool({ name: "where", arguments: {} }))).toBe("r1");
        expect((await client.listTools()).tools.length).toBe(5);
      } finally {
        await client.close();
      }
    });
  });
});
