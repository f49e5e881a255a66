/**
 * `expose` (src/mcp/expose-subscriptions.ts): an MCP client (the official SDK) subscribes to
 * mesh resources and hears `notifications/resources/updated` when what the agent's read
 * returns changes, and the list-changed notifications when the agents' catalogs change. The
 * hostile side: a reader that fails (an outage) is not reported as a change, a resource the
 * bridge's token may not read cannot be watched, a URI nobody offers is not found, the number
 * of subscriptions is bounded, and stateless HTTP does not claim what it cannot deliver.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import {
  ErrorCode,
  McpError,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { generateAuthority } from "../../src/auth/jwk.js";
import { createToken } from "../../src/auth/tokens.js";
import { ConfigError } from "../../src/errors.js";
import { silentLogger } from "../../src/support/log.js";
import { MeshExposer, type ExposeOptions } from "../../src/mcp/expose.js";
import { serveHttp } from "../../src/mcp/http.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { BIN } from "../support/process.js";
import { sleep, waitFor } from "../support/wait.js";

const INTERVAL = 100;

describe("expose: resource subscriptions and list-changed (stdio-like long-lived connection)", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;
  let carol: Agent;
  let bridge: Agent;
  const state = { index: "v1", failing: false, notes: new Map([["7", "seven"]]) };
  const { privateJwk, publicJwk } = generateAuthority();
  const open: Array<{ exposer: MeshExposer; client: Client }> = [];

  beforeAll(async () => {
    fx = tempCerts("bob", "carol", "bridge", "stdio-bridge");
    broker = await startBroker(fx);
    // Silent: the failing reader below would log its (intended) failures.
    bob = await connectAgent(fx, "bob", broker.endpoint, { authority: publicJwk, log: silentLogger });
    bob
      .resource("notes://index", { name: "index" }, () => {
        if (state.failing) throw new Error("disk on fire");
        return state.index;
      })
      .resource("notes://note/{id}", { name: "note" }, (_uri, ctx) => state.notes.get(ctx.params.id ?? "") ?? "(none)")
      .resource("secret://plans", { name: "plans" }, () => "hidden")
      .tool("ping", { input: z.object({}) }, () => "pong");
    carol = await connectAgent(fx, "carol", broker.endpoint);
    carol.resource("carol://hello", { name: "hello" }, () => "hi");
    const token = createToken({ authority: privateJwk, sub: "bridge", key: fx.key("bridge"), scope: "call:* read:notes://* read:extra://* prompt:*" });
    bridge = await connectAgent(fx, "bridge", broker.endpoint, { token });
  }, 30_000);

  afterEach(async () => {
    for (const { exposer, client } of open.splice(0)) {
      await client.close();
      await exposer.close();
    }
  });

  afterAll(async () => {
    await bridge?.close();
    await carol?.close();
    await bob?.close();
    await broker?.close();
    fx?.cleanup();
  });

  /** An exposer of bob and carol (so URIs are zmcp://LABEL/...) and an SDK client on an in-memory link, recording notifications. */
  async function connect(options: Partial<ExposeOptions> = {}) {
    const exposer = new MeshExposer({ agent: bridge, targets: ["bob", "carol"], subscriptionInterval: INTERVAL, refreshInterval: INTERVAL, ...options });
    const client = new Client({ name: "sub-test", version: "1.0.0" });
    const seen = { updated: [] as string[], resources: 0, prompts: 0, tools: 0 };
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void seen.updated.push(n.params.uri));
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void seen.resources++);
    client.setNotificationHandler(PromptListChangedNotificationSchema, () => void seen.prompts++);
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void seen.tools++);
    const [a, b] = InMemoryTransport.createLinkedPair();
    await exposer.connect(a);
    await client.connect(b);
    open.push({ exposer, client });
    return { exposer, client, seen };
  }

  it("declares subscribe and listChanged; an update of what the agent's read returns is notified with the exposed URI, once", async () => {
    const { client, seen, exposer } = await connect();
    expect(client.getServerCapabilities()?.resources).toEqual({ subscribe: true, listChanged: true });
    expect(client.getServerCapabilities()?.prompts).toEqual({ listChanged: true });
    await client.subscribeResource({ uri: "zmcp://bob/notes://index" });
    await client.subscribeResource({ uri: "zmcp://bob/notes://note/7" }); // a URI of a template
    await client.subscribeResource({ uri: "zmcp://carol/carol://hello" });
    expect(exposer.subscriptions.sort()).toEqual(["zmcp://bob/notes://index", "zmcp://bob/notes://note/7", "zmcp://carol/carol://hello"]);
    await sleep(INTERVAL * 3);
    expect(seen.updated).toEqual([]); // nothing changed: nothing said
    state.index = "v2";
    await waitFor(() => seen.updated.length >= 1, 5000, "updated notification");
    state.notes.set("7", "SEVEN");
    await waitFor(() => seen.updated.length >= 2, 5000, "second updated notification");
    await sleep(INTERVAL * 3);
    expect(seen.updated).toEqual(["zmcp://bob/notes://index", "zmcp://bob/notes://note/7"]);
    // After an unsubscribe, changes are not notified.
    await client.unsubscribeResource({ uri: "zmcp://bob/notes://index" });
    state.index = "v3";
    await exposer.recheck();
    await sleep(INTERVAL * 3);
    expect(seen.updated).toHaveLength(2);
  });

  it("a reader that fails is not a change (an outage says nothing); recovering with the same contents is not one either", async () => {
    const { client, seen, exposer } = await connect();
    await client.subscribeResource({ uri: "zmcp://bob/notes://index" });
    state.failing = true;
    await exposer.recheck();
    await sleep(INTERVAL * 3);
    state.failing = false;
    await exposer.recheck();
    await sleep(INTERVAL * 2);
    expect(seen.updated).toEqual([]);
  });

  it("refuses what cannot be watched: a URI nobody offers, a resource the bridge's token may not read, more than maxSubscriptions", async () => {
    const { client } = await connect({ maxSubscriptions: 2 });
    await expect(client.subscribeResource({ uri: "zmcp://bob/notes://nothing" })).rejects.toMatchObject({ code: -32002 });
    await expect(client.subscribeResource({ uri: "zmcp://nobody/x://y" })).rejects.toMatchObject({ code: -32002 });
    const scoped = await client.subscribeResource({ uri: "zmcp://bob/secret://plans" }).catch((err: unknown) => err);
    expect(scoped).toBeInstanceOf(McpError);
    expect(scoped).toMatchObject({ code: ErrorCode.InvalidParams });
    expect((scoped as McpError).message).toMatch(/token_scope/);
    await client.subscribeResource({ uri: "zmcp://bob/notes://index" });
    await client.subscribeResource({ uri: "zmcp://bob/notes://note/7" });
    await expect(client.subscribeResource({ uri: "zmcp://carol/carol://hello" })).rejects.toMatchObject({ code: ErrorCode.InvalidRequest });
    expect(() => new MeshExposer({ agent: bridge, targets: ["bob"], maxSubscriptions: 0 })).toThrow(ConfigError);
    expect(() => new MeshExposer({ agent: bridge, targets: ["bob"], subscriptionInterval: -1 })).toThrow(ConfigError);
  });

  it("a resource that goes away is notified; catalog changes send resources, prompts and tools list_changed", async () => {
    const { client, seen, exposer } = await connect();
    await exposer.recheck(); // the first listing (the baseline of list-changed) has been taken
    bob.resource("extra://gone-soon", { name: "gone soon" }, () => "here");
    await waitFor(() => seen.resources >= 1, 5000, "resources/list_changed");
    await client.subscribeResource({ uri: "zmcp://bob/extra://gone-soon" });
    bob.removeResource("extra://gone-soon");
    await waitFor(() => seen.updated.includes("zmcp://bob/extra://gone-soon"), 5000, "updated for a removed resource");
    bob.prompt("greet", {}, () => "hello");
    await waitFor(() => seen.prompts >= 1, 5000, "prompts/list_changed");
    bob.tool("pong", { input: z.object({}) }, () => "ping");
    await waitFor(() => seen.tools >= 1, 5000, "tools/list_changed");
    expect((await client.listPrompts()).prompts.map((p) => p.name)).toContain("bob__greet");
  });

  it("subscriptionInterval 0 and refresh 0: neither subscribe nor listChanged is claimed", async () => {
    const { client } = await connect({ subscriptionInterval: 0, refreshInterval: 0 });
    expect(client.getServerCapabilities()?.resources).toEqual({ subscribe: false, listChanged: false });
    await expect(client.subscribeResource({ uri: "zmcp://bob/notes://index" })).rejects.toMatchObject({ code: ErrorCode.MethodNotFound });
  });

  it("stateless HTTP claims neither subscriptions nor list-changed, and refuses a subscribe", async () => {
    const exposer = new MeshExposer({ agent: bridge, targets: ["bob"] });
    const served = await serveHttp({ exposer, host: "127.0.0.1", port: 0, token: "subscription-test-token-0123456789" });
    const client = new Client({ name: "sub-http", version: "1.0.0" });
    try {
      await client.connect(new StreamableHTTPClientTransport(new URL(served.url), { requestInit: { headers: { authorization: "Bearer subscription-test-token-0123456789" } } }));
      expect(client.getServerCapabilities()?.resources).toEqual({});
      expect(client.getServerCapabilities()?.prompts).toEqual({});
      await expect(client.request({ method: "resources/subscribe", params: { uri: "notes://index" } }, z.object({}))).rejects.toMatchObject({ code: ErrorCode.MethodNotFound });
    } finally {
      await client.close();
      await served.close();
      await exposer.close();
    }
  });

  it("zmq-mcp expose over stdio: --subscription-interval, and SIGHUP re-reads and re-lists at once", async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      // Intervals too long to fire during the test: only the SIGHUP makes the bridge look.
      args: [BIN("zmq-mcp"), "expose", "--to", "bob", "--broker", broker.endpoint, "--cert", fx.secretPath("stdio-bridge"), "--certs", fx.dir, "--token-env", "SUB_TEST_TOKEN", "--refresh", "600000", "--subscription-interval", "600000", "--log-level", "error"],
      env: { ...(process.env as Record<string, string>), SUB_TEST_TOKEN: createToken({ authority: privateJwk, sub: "stdio-bridge", key: fx.key("stdio-bridge"), scope: "call:* read:notes://*" }) },
      stderr: "pipe",
    });
    const client = new Client({ name: "sub-stdio", version: "1.0.0" });
    const updated: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));
    try {
      await client.connect(transport);
      await client.subscribeResource({ uri: "notes://index" });
      state.index = "via stdio";
      await sleep(INTERVAL * 3);
      expect(updated).toEqual([]);
      process.kill(transport.pid!, "SIGHUP");
      await waitFor(() => updated.length > 0, 10_000, "updated after SIGHUP");
      expect(updated).toEqual(["notes://index"]);
    } finally {
      await client.close();
    }
  }, 60_000);
});
