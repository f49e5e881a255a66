/**
 * Resources, prompts and tool annotations across the bridge, with real processes:
 * - `zmq-mcp attach` puts @modelcontextprotocol/server-everything on the mesh; a mesh agent
 *   lists and reads its resources (static and from a template) and gets its prompts;
 * - an in-process agent offers its own `agent.resource` / `agent.prompt` and an annotated tool;
 * - an MCP client (the official SDK, over stdio) runs `zmq-mcp expose` in front of both and
 *   lists and reads resources, resource templates and prompts (prefixed per target, paginated),
 *   and sees tool annotations;
 * - scopes: with tokens required, listings are filtered and reads refused per item.
 */
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { writeFileSync } from "node:fs";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { generateAuthority } from "../../src/auth/jwk.js";
import { TokenIssuer } from "../../src/auth/tokens.js";
import { ConfigError, RemoteError } from "../../src/errors.js";
/** MCP's "resource not found" (src/mcp/expose-catalog.ts RESOURCE_NOT_FOUND). */
const RESOURCE_NOT_FOUND = -32002;
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { BIN, ROOT, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const ARCHITECTURE = "demo://resource/static/document/architecture.md";

async function mcpClient(args: string[]): Promise<{ client: Client; stderr: string[] }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [BIN("zmq-mcp"), "expose", ...args], stderr: "pipe" });
  const stderr: string[] = [];
  createInterface({ input: transport.stderr as Readable }).on("line", (line) => stderr.push(line));
  const client = new Client({ name: "zmcp-test", version: "1.0.0" });
  await client.connect(transport, { timeout: 15_000 });
  return { client, stderr };
}

async function rejection<T>(p: Promise<unknown>, cls: new (...args: never[]) => T): Promise<T> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(cls);
  return err as T;
}

describe("resources, prompts and annotations through the bridge", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let attach: Child;
  let alice: Agent;
  let notes: Agent;

  beforeAll(async () => {
    fx = tempCerts("alice", "notes", "everything", "mcp");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    attach = await spawnChild(
      BIN("zmq-mcp"),
      ["attach", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("everything"), "--tool", "echo", "--", process.execPath, EVERYTHING, "stdio"],
      "attach ready",
    );
    alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 10_000 });
    notes = await connectAgent(fx, "notes", broker.endpoint);
    notes
      .tool("lookup", { description: "Looks a note up", input: z.object({ id: z.string() }), annotations: { title: "Look up", readOnlyHint: true, idempotentHint: true } }, ({ id }) => ({ id }))
      .resource("notes://index", { name: "index", mimeType: "text/plain", description: "All notes" }, () => "a\nb")
      .resource("notes://note/{id}", { name: "note", mimeType: "text/markdown" }, (uri, ctx) => ({ contents: [{ uri, mimeType: "text/markdown", text: `# note ${ctx.params["id"]}` }] }))
      .prompt(
        "summarize",
        {
          description: "Summarize a note",
          arguments: [{ name: "id", required: true }, { name: "style" }],
          complete: (arg) => (arg.name === "style" ? ["briefly", "in French", "in verse"].filter((v) => v.startsWith(arg.value)) : []),
        },
        (args) => `Summarize note ${args["id"]} ${args["style"] ?? "briefly"}.`,
      );
  });
  afterAll(async () => {
    await alice?.close();
    await notes?.close();
    await attach?.stop();
    await broker?.stop();
    fx?.cleanup();
  });

  it("a mesh agent lists and reads an attached MCP server's resources and gets its prompts", async () => {
    const resources = await alice.listResources("everything");
    expect(resources.map((r) => r.uri)).toContain(ARCHITECTURE);
    expect(resources.find((r) => r.uri === ARCHITECTURE)).toMatchObject({ name: "architecture.md", mimeType: "text/markdown" });
    const doc = await alice.readResource("everything", ARCHITECTURE);
    expect(doc.contents[0]).toMatchObject({ uri: ARCHITECTURE, mimeType: "text/markdown" });
    expect((doc.contents[0] as { text: string }).text.length).toBeGreaterThan(100);

    const templates = await alice.listResourceTemplates("everything");
    expect(templates.map((t) => t.uriTemplate)).toContain("demo://resource/dynamic/text/{resourceId}");
    // A URI the template matches is read through the server's template.
    const dynamic = await alice.readResource("everything", "demo://resource/dynamic/text/7");
    expect(dynamic.contents[0]).toMatchObject({ uri: "demo://resource/dynamic/text/7" });
    expect((dynamic.contents[0] as { text: string }).text).toMatch(/7/);

    const prompts = await alice.listPrompts("everything");
    expect(prompts.map((p) => p.name)).toEqual(expect.arrayContaining(["simple-prompt", "args-prompt"]));
    expect(prompts.find((p) => p.name === "args-prompt")!.arguments).toEqual(expect.arrayContaining([expect.objectContaining({ name: "city", required: true })]));
    const got = await alice.getPrompt("everything", "args-prompt", { city: "Lyon" });
    expect(got.messages[0]).toEqual({ role: "user", content: { type: "text", text: "What's weather in Lyon?" } });
    // The required argument is checked on the mesh side, before the server is asked.
    expect((await rejection(alice.getPrompt("everything", "args-prompt", {}), RemoteError)).code).toBe("invalid_args");
    // Something the server does not offer.
    expect((await rejection(alice.readResource("everything", "nothing://here"), RemoteError)).code).toBe("unknown_tool");

    // Completion passes through to the server, context included.
    const teams = await alice.complete("everything", { type: "ref/prompt", name: "completable-prompt" }, { name: "department", value: "S" });
    expect(teams.values).toEqual(["Sales", "Support"]);
    const leads = await alice.complete("everything", { type: "ref/prompt", name: "completable-prompt" }, { name: "name", value: "" }, { department: "Engineering" });
    expect(leads.values).toEqual(["Alice", "Bob", "Charlie"]);

    // Tool annotations pass from the MCP server into tools/list.
    const echo = (await alice.listTools("everything")).find((t) => t.name === "echo")!;
    expect(echo.annotations).toMatchObject({ readOnlyHint: true });
  });

  it("an agent's own resources, templates and prompts, read from the mesh", async () => {
    expect(await alice.listResources("notes")).toEqual([{ uri: "notes://index", name: "index", mimeType: "text/plain", description: "All notes" }]);
    expect(await alice.listResourceTemplates("notes")).toEqual([{ uriTemplate: "notes://note/{id}", name: "note", mimeType: "text/markdown" }]);
    expect(await alice.readResource("notes", "notes://index")).toEqual({ contents: [{ uri: "notes://index", mimeType: "text/plain", text: "a\nb" }] });
    expect(await alice.readResource("notes", "notes://note/42")).toEqual({ contents: [{ uri: "notes://note/42", mimeType: "text/markdown", text: "# note 42" }] });
    expect(await alice.getPrompt("notes", "summarize", { id: "42" })).toEqual({ messages: [{ role: "user", content: { type: "text", text: "Summarize note 42 briefly." } }] });
    expect((await rejection(alice.readResource("notes", "notes://note/a/b"), RemoteError)).code).toBe("unknown_tool");
    expect((await rejection(alice.getPrompt("notes", "nope"), RemoteError)).code).toBe("unknown_tool");
    // Registration errors are typed.
    const dup = (() => {
      try {
        notes.resource("notes://index", {}, () => "");
      } catch (err) {
        return err;
      }
    })();
    expect(dup).toBeInstanceOf(ConfigError);
    expect((dup as ConfigError).code).toBe("config");
  });

  it("over expose --http (stateless): resources, templates, prompts, completion and annotations", async () => {
    const token = "resources-http-token-0123456789abcdef";
    const tokenFile = join(fx.dir, "http.token");
    writeFileSync(tokenFile, token, { mode: 0o600 });
    const http = await spawnChild(
      BIN("zmq-mcp"),
      ["expose", "--to", "notes", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("mcp"), "--http", "127.0.0.1:0", "--http-token", `@${tokenFile}`],
      "expose ready",
    );
    const client = new Client({ name: "zmcp-test-http", version: "1.0.0" });
    try {
      await client.connect(new StreamableHTTPClientTransport(new URL(http.ready["http"] as string), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
      // One target: the agent's own URIs and names.
      expect((await client.listResources()).resources.map((r) => r.uri)).toEqual(["notes://index"]);
      expect((await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate)).toEqual(["notes://note/{id}"]);
      expect((await client.readResource({ uri: "notes://note/5" })).contents).toEqual([{ uri: "notes://note/5", mimeType: "text/markdown", text: "# note 5" }]);
      expect((await client.listPrompts()).prompts.map((p) => p.name)).toEqual(["summarize"]);
      expect((await client.getPrompt({ name: "summarize", arguments: { id: "5" } })).messages[0]!.content).toEqual({ type: "text", text: "Summarize note 5 briefly." });
      expect((await client.complete({ ref: { type: "ref/prompt", name: "summarize" }, argument: { name: "style", value: "b" } })).completion.values).toEqual(["briefly"]);
      expect((await client.listTools()).tools.find((t) => t.name === "lookup")!.annotations).toMatchObject({ readOnlyHint: true });
    } finally {
      await client.close();
      await http.stop();
    }
  });

  it("an MCP client sees both agents' resources, templates and prompts through expose, and tool annotations", async () => {
    const { client } = await mcpClient(["--to", "notes", "--to", "evt=everything", "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("mcp"), "--page-size", "3"]);
    try {
      expect(client.getServerCapabilities()?.resources).toBeTruthy();
      expect(client.getServerCapabilities()?.prompts).toBeTruthy();
      // Every page (page size 3: several pages).
      const uris: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const listed = await client.listResources(cursor === undefined ? {} : { cursor });
        uris.push(...listed.resources.map((r) => r.uri));
        cursor = listed.nextCursor;
        pages++;
      } while (cursor !== undefined && pages < 100);
      expect(pages).toBeGreaterThan(1);
      expect(uris).toContain("zmcp://notes/notes://index");
      expect(uris).toContain(`zmcp://evt/${ARCHITECTURE}`);

      const index = await client.readResource({ uri: "zmcp://notes/notes://index" });
      expect(index.contents).toEqual([{ uri: "zmcp://notes/notes://index", mimeType: "text/plain", text: "a\nb" }]);
      const arch = await client.readResource({ uri: `zmcp://evt/${ARCHITECTURE}` });
      expect(arch.contents[0]).toMatchObject({ uri: `zmcp://evt/${ARCHITECTURE}`, mimeType: "text/markdown" });

      const { resourceTemplates } = await client.listResourceTemplates();
      expect(resourceTemplates.map((t) => t.uriTemplate)).toContain("zmcp://notes/notes://note/{id}");
      expect(resourceTemplates.map((t) => t.uriTemplate)).toContain("zmcp://evt/demo://resource/dynamic/text/{resourceId}");
      const note = await client.readResource({ uri: "zmcp://notes/notes://note/9" });
      expect(note.contents).toEqual([{ uri: "zmcp://notes/notes://note/9", mimeType: "text/markdown", text: "# note 9" }]);

      const missing = await rejection(client.readResource({ uri: "zmcp://notes/notes://missing" }), McpError);
      expect(missing.code).toBe(RESOURCE_NOT_FOUND);
      const unrouted = await rejection(client.readResource({ uri: "zmcp://nobody/x" }), McpError);
      expect(unrouted.code).toBe(RESOURCE_NOT_FOUND);

      const names: string[] = [];
      cursor = undefined;
      pages = 0;
      do {
        const listed = await client.listPrompts(cursor === undefined ? {} : { cursor });
        names.push(...listed.prompts.map((p) => p.name));
        cursor = listed.nextCursor;
        pages++;
      } while (cursor !== undefined && pages < 100);
      expect(names).toEqual(expect.arrayContaining(["notes__summarize", "evt__args-prompt", "evt__simple-prompt"]));
      const summary = await client.getPrompt({ name: "notes__summarize", arguments: { id: "1", style: "in French" } });
      expect(summary.messages).toEqual([{ role: "user", content: { type: "text", text: "Summarize note 1 in French." } }]);
      const weather = await client.getPrompt({ name: "evt__args-prompt", arguments: { city: "Oslo" } });
      expect(weather.messages[0]!.content).toEqual({ type: "text", text: "What's weather in Oslo?" });
      const styles = await client.complete({ ref: { type: "ref/prompt", name: "notes__summarize" }, argument: { name: "style", value: "in" } });
      expect(styles.completion.values).toEqual(["in French", "in verse"]);
      const departments = await client.complete({ ref: { type: "ref/prompt", name: "evt__completable-prompt" }, argument: { name: "department", value: "M" } });
      expect(departments.completion.values).toEqual(["Marketing"]);
      const badPrompt = await rejection(client.getPrompt({ name: "notes__summarize", arguments: {} }), McpError);
      expect(badPrompt.code).toBe(ErrorCode.InvalidParams);

      const tools = new Map((await client.listTools()).tools.map((t) => [t.name, t]));
      expect(tools.get("notes__lookup")!.annotations).toEqual({ title: "Look up", readOnlyHint: true, idempotentHint: true });
      expect(tools.get("evt__echo")!.annotations).toMatchObject({ readOnlyHint: true });
    } finally {
      await client.close();
    }
  });
});

describe("resource and prompt scopes", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let owner: Agent;
  let reader: Agent;
  let stranger: Agent;

  beforeAll(async () => {
    fx = tempCerts("owner", "reader", "stranger");
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    const authority = generateAuthority();
    const issuer = new TokenIssuer(authority.privateJwk);
    owner = await connectAgent(fx, "owner", broker.endpoint, { authority: authority.publicJwk, requireToken: true });
    owner
      .resource("docs://public/readme", { name: "readme" }, () => "hello")
      .resource("docs://secret/plan", { name: "plan" }, () => "classified")
      .resource("docs://public/{page}", { name: "page" }, (_uri, ctx) => `page ${ctx.params["page"]}`)
      .prompt("greet", {}, () => "hi")
      .prompt("admin", {}, () => "root");
    const token = (name: string, scope: string) => issuer.issue({ sub: name, key: fx.key(name), scope, ttl: 300 });
    reader = await connectAgent(fx, "reader", broker.endpoint, { token: token("reader", "read:docs://public/* prompt:greet") });
    stranger = await connectAgent(fx, "stranger", broker.endpoint);
  });
  afterAll(async () => {
    await reader?.close();
    await stranger?.close();
    await owner?.close();
    await broker?.stop();
    fx?.cleanup();
  });

  it("filters listings by the token and refuses reads and gets it does not cover, before looking them up", async () => {
    expect((await reader.listResources("owner")).map((r) => r.uri)).toEqual(["docs://public/readme"]);
    expect((await reader.listResourceTemplates("owner")).map((t) => t.uriTemplate)).toEqual(["docs://public/{page}"]);
    expect((await reader.listPrompts("owner")).map((p) => p.name)).toEqual(["greet"]);
    expect((await reader.readResource("owner", "docs://public/readme")).contents).toEqual([{ uri: "docs://public/readme", text: "hello" }]);
    expect((await reader.readResource("owner", "docs://public/intro")).contents).toEqual([{ uri: "docs://public/intro", text: "page intro" }]);
    expect((await reader.getPrompt("owner", "greet")).messages).toHaveLength(1);
    expect((await rejection(reader.readResource("owner", "docs://secret/plan"), RemoteError)).code).toBe("token_scope");
    // Not offered and not covered: the same answer as offered and not covered.
    expect((await rejection(reader.readResource("owner", "docs://secret/none"), RemoteError)).code).toBe("token_scope");
    expect((await rejection(reader.getPrompt("owner", "admin"), RemoteError)).code).toBe("token_scope");
    // No token at all: the built-ins themselves are refused.
    expect((await rejection(stranger.listResources("owner"), RemoteError)).code).toBe("token_missing");
  });
});
