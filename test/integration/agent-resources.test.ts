/**
 * The agent SDK's resources and prompts (src/agent/resources.ts) between two agents over a
 * real broker: paging past one page, URI templates, result checks, completion caps, and
 * registration errors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import { uriTemplateMatcher } from "../../src/agent/resources.js";
import type { Broker } from "../../src/broker/broker.js";
import { ConfigError, RemoteError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

async function remoteCode(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RemoteError);
  return (err as RemoteError).code;
}

function configError(fn: () => unknown): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  expect((caught as ConfigError).code).toBe("config");
  return caught as ConfigError;
}

describe("agent resources and prompts", () => {
  let fx: CertFixture;
  let broker: Broker;
  let owner: Agent;
  let caller: Agent;

  beforeAll(async () => {
    fx = tempCerts("owner", "caller");
    broker = await startBroker(fx);
    owner = await connectAgent(fx, "owner", broker.endpoint);
    caller = await connectAgent(fx, "caller", broker.endpoint);
    for (let i = 0; i < 250; i++) owner.resource(`mem://item/${i}`, { name: `item ${i}` }, () => `value ${i}`);
    owner
      .resource("mem://files/{+path}", { name: "file" }, (_uri, ctx) => `path=${ctx.params["path"]}`)
      .resource("mem://blob", { name: "blob", mimeType: "application/octet-stream" }, (uri) => ({ contents: [{ uri, blob: Buffer.from("hi").toString("base64") }] }))
      .resource("mem://bad", { name: "bad" }, () => ({ contents: "not a list" }) as never)
      .resource("mem://unsendable", { name: "unsendable" }, (uri) => ({ contents: [{ uri, text: "x", extra: () => 1 } as never] }))
      .prompt("many", { complete: () => Array.from({ length: 150 }, (_, i) => `v${i}`) }, () => "many")
      .prompt("chat", {}, () => ({ description: "a chat", messages: [{ role: "user", content: { type: "text", text: "hi" } }, { role: "assistant", content: { type: "text", text: "hello" } }] }))
      .tool("plain", { input: z.object({}) }, () => 1);
  });
  afterAll(async () => {
    await caller?.close();
    await owner?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("lists every page of a long listing, in order", async () => {
    const listed = await caller.listResources("owner");
    expect(listed).toHaveLength(253);
    expect(listed.slice(0, 3).map((r) => r.uri)).toEqual(["mem://item/0", "mem://item/1", "mem://item/2"]);
    // One page by hand: 100 and a cursor.
    const first = (await caller.call("owner", "resources/list", {})) as { resources: unknown[]; nextCursor?: string };
    expect(first.resources).toHaveLength(100);
    expect(first.nextCursor).toBe("100");
    expect(await remoteCode(caller.call("owner", "resources/list", { cursor: "9999" }))).toBe("invalid_args");
    expect(await remoteCode(caller.call("owner", "resources/list", { cursor: 5 }))).toBe("invalid_args");
  });

  it("reads through templates ({+path}), blobs, and refuses results of the wrong shape", async () => {
    expect((await caller.readResource("owner", "mem://files/a/b.txt")).contents).toEqual([{ uri: "mem://files/a/b.txt", text: "path=a/b.txt" }]);
    expect((await caller.readResource("owner", "mem://blob")).contents).toEqual([{ uri: "mem://blob", blob: "aGk=" }]);
    expect(await remoteCode(caller.readResource("owner", "mem://bad"))).toBe("tool_failed");
    // Keys MCP does not define are dropped by the result's schema (a function among them never travels).
    expect((await caller.readResource("owner", "mem://unsendable")).contents).toEqual([{ uri: "mem://unsendable", text: "x" }]);
    expect(await remoteCode(caller.call("owner", "resources/read", { uri: "mem://blob", extra: 1 }))).toBe("invalid_args");
    expect(await remoteCode(caller.call("owner", "resources/read", {}))).toBe("invalid_args");
  });

  it("prompts: full results, completion capped at 100 with hasMore", async () => {
    expect(await caller.getPrompt("owner", "chat")).toEqual({
      description: "a chat",
      messages: [
        { role: "user", content: { type: "text", text: "hi" } },
        { role: "assistant", content: { type: "text", text: "hello" } },
      ],
    });
    const many = await caller.complete("owner", { type: "ref/prompt", name: "many" }, { name: "x", value: "" });
    expect(many.values).toHaveLength(100);
    expect(many).toMatchObject({ hasMore: true, total: 150 });
    // No completer: no values, not an error.
    expect(await caller.complete("owner", { type: "ref/prompt", name: "chat" }, { name: "x", value: "" })).toEqual({ values: [] });
    expect(await remoteCode(caller.complete("owner", { type: "ref/prompt", name: "nope" }, { name: "x", value: "" }))).toBe("unknown_tool");
    expect(await remoteCode(caller.call("owner", "prompts/get", { name: "chat", arguments: { n: 1 } }))).toBe("invalid_args");
  });

  it("an agent that offers none answers empty listings", async () => {
    expect(await owner.listResources("caller")).toEqual([]);
    expect(await owner.listResourceTemplates("caller")).toEqual([]);
    expect(await owner.listPrompts("caller")).toEqual([]);
  });

  it("refuses bad registrations with ConfigError, and reserves the built-in names", () => {
    configError(() => owner.resource("", {}, () => ""));
    configError(() => owner.resource("mem://blob", {}, () => ""));
    configError(() => owner.resource("mem://x", { scope: "has space" }, () => ""));
    configError(() => owner.resource("mem://{a}}", {}, () => ""));
    configError(() => owner.prompt("chat", {}, () => ""));
    configError(() => owner.resource("mem://annotated", { annotations: { f: () => 1 } }, () => ""));
    configError(() => owner.tool("resources/read", { input: z.object({}) }, () => 1));
    configError(() => owner.tool("annotated", { input: z.object({}), annotations: { readOnlyHint: "yes" as unknown as boolean } }, () => 1));
    expect(owner.removeResource("mem://blob")).toBe(true);
    expect(owner.removeResource("mem://blob")).toBe(false);
  });

  it("matches URI templates as MCP servers write them", () => {
    expect(uriTemplateMatcher("a://x/{id}")("a://x/1")).toEqual({ id: "1" });
    expect(uriTemplateMatcher("a://x/{id}")("a://x/1/2")).toBeUndefined();
    expect(uriTemplateMatcher("a://x/{+rest}")("a://x/1/2")).toEqual({ rest: "1/2" });
    expect(uriTemplateMatcher("a://{kind}/{id}.json")("a://user/a%20b.json")).toEqual({ kind: "user", id: "a b" });
    expect(uriTemplateMatcher("a://x{?q}")("a://x?q=1")).toBeDefined();
  });
});
