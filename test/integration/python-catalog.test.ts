/**
 * python/zmcp's caller side of the resource and prompt built-ins (zmcp/catalog.py) against a
 * TypeScript agent: a Python agent lists (across pages) and reads the TS agent's resources
 * and templates, lists and gets its prompts, completes an argument, and gets the typed errors
 * for what it may not read (token scope) and what is not there (unknown_tool). And the other
 * way: a Python agent offers resources and prompts (python/zmcp/catalog.py CatalogRegistry)
 * that a TypeScript agent lists, reads, gets and completes, with the same scope rules.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import { generateAuthority } from "../../src/auth/jwk.js";
import { createToken } from "../../src/auth/tokens.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { ROOT } from "../support/process.js";
import { PYTHON, pythonProblem } from "../support/python.js";

const problem = pythonProblem("python-catalog");

function runPython(script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(PYTHON, ["-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`python exited ${code ?? signal}:\n${out}\n${err}`));
    });
  });
}

describe.skipIf(problem !== undefined)("python catalog helpers", () => {
  let fx: CertFixture;
  let broker: Broker;
  let ts: Agent;
  const { privateJwk, publicJwk } = generateAuthority();

  beforeAll(async () => {
    fx = tempCerts("ts", "pyclient", "pyserver", "tscaller");
    broker = await startBroker(fx);
    ts = await connectAgent(fx, "ts", broker.endpoint, { authority: publicJwk });
    ts.resource("notes://index", { name: "index", mimeType: "text/plain" }, () => "groceries\nideas")
      .resource("notes://note/{id}", { name: "note", mimeType: "text/plain" }, (_uri, ctx) => `note ${ctx.params.id}`)
      .resource("secret://plans", { name: "plans" }, () => "not for python")
      .prompt(
        "summarize",
        { description: "Summarize a note", arguments: [{ name: "id", required: true }], complete: (arg) => ["7", "42", "43"].filter((v) => v.startsWith(arg.value)) },
        (args) => `Summarize note ${args.id}.`,
      );
    // More than one page of the built-in's listing (CATALOG_PAGE_SIZE is 100).
    for (let i = 0; i < 130; i++) ts.resource(`bulk://item/${i}`, { name: `item ${i}` }, () => `item ${i}`);
  }, 30_000);

  afterAll(async () => {
    await ts?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("a Python agent reads a TypeScript agent's resources and gets its prompt; scope and absence are typed errors", async () => {
    const token = createToken({ authority: privateJwk, sub: "pyclient", key: fx.key("pyclient"), scope: "read:notes://* read:bulk://* prompt:summarize" });
    const script = `
import asyncio, json, sys
sys.path.insert(0, ${JSON.stringify(join(ROOT, "python"))})
import zmcp
async def outcome(coro):
    try:
        return {"ok": await coro}
    except zmcp.ZmcpError as err:
        return {"error": err.code, "class": type(err).__name__}
async def main():
    out = {}
    async with await zmcp.Agent.connect(broker=${JSON.stringify(broker.endpoint)}, cert=${JSON.stringify(fx.secretPath("pyclient"))}, certs=${JSON.stringify(fx.dir)}, timeout=5, token=${JSON.stringify(token)}) as a:
        listed = await a.list_resources("ts")
        out["listed"] = len(listed)
        out["listed_secret"] = any(r["uri"] == "secret://plans" for r in listed)
        out["templates"] = [t["uriTemplate"] for t in await a.list_resource_templates("ts")]
        out["index"] = (await a.read_resource("ts", "notes://index"))["contents"][0]
        out["note"] = (await a.read_resource("ts", "notes://note/7"))["contents"][0]["text"]
        out["prompts"] = [p["name"] for p in await a.list_prompts("ts")]
        out["prompt"] = await a.get_prompt("ts", "summarize", {"id": "7"})
        out["complete"] = await a.complete("ts", {"type": "ref/prompt", "name": "summarize"}, {"name": "id", "value": "4"})
        out["secret"] = await outcome(a.read_resource("ts", "secret://plans"))
        out["missing"] = await outcome(a.read_resource("ts", "notes://nothing/here"))
        out["no_prompt"] = await outcome(a.get_prompt("ts", "summarize", {}))
    with zmcp.SyncAgent.connect(broker=${JSON.stringify(broker.endpoint)}, cert=${JSON.stringify(fx.secretPath("pyclient"))}, certs=${JSON.stringify(fx.dir)}, timeout=5, token=${JSON.stringify(token)}) as s:
        out["sync"] = s.read_resource("ts", "notes://note/9")["contents"][0]["text"]
    print(json.dumps(out))
asyncio.run(main())
`;
    const out = JSON.parse(await runPython(script)) as Record<string, unknown>;
    expect(out).toMatchObject({
      listed: 131, // notes://index and the 130 bulk items, across two pages; not secret://plans
      listed_secret: false,
      templates: ["notes://note/{id}"],
      index: { uri: "notes://index", mimeType: "text/plain", text: "groceries\nideas" },
      note: "note 7",
      prompts: ["summarize"],
      prompt: { messages: [{ role: "user", content: { type: "text", text: "Summarize note 7." } }] },
      complete: { values: ["42", "43"] },
      secret: { error: "token_scope", class: "TokenScopeError" },
      missing: { error: "unknown_tool", class: "UnknownToolError" },
      no_prompt: { error: "invalid_args", class: "InvalidArgsError" },
      sync: "note 9",
    });
  }, 90_000);

  it("a TypeScript agent reads a Python agent's resources and gets its prompts; scopes and bad shapes as in TS", async () => {
    const jwkPath = join(fx.dir, "..", `catalog-authority-${process.pid}.pub.jwk`);
    writeFileSync(jwkPath, JSON.stringify(publicJwk));
    const script = `
import asyncio, json, sys
sys.path.insert(0, ${JSON.stringify(join(ROOT, "python"))})
import zmcp
async def main():
    agent = await zmcp.Agent.connect(broker=${JSON.stringify(broker.endpoint)}, cert=${JSON.stringify(fx.secretPath("pyserver"))}, certs=${JSON.stringify(fx.dir)}, timeout=5, authority=${JSON.stringify(jwkPath)})
    agent.resource("py://motd", lambda uri: "hello from python", name="motd", mime_type="text/plain")
    @agent.resource("py://ctx")
    async def whoami(uri, ctx):
        return {"contents": [{"uri": uri, "text": ctx.sender_name or "?"}]}
    agent.resource("py://broken", lambda uri: 42)
    agent.resource("py://secret", lambda uri: "no")
    for i in range(120):
        agent.resource(f"py://item/{i}", lambda uri: uri)
    agent.prompt("review", lambda args: f"Review {args['file']}.", description="Review a file",
                 arguments=[{"name": "file", "required": True}], complete=lambda arg, ctx: [v for v in ["a.py", "b.py", "ab.ts"] if v.startswith(arg["value"])])
    try:
        agent.resource("py://t/{id}", lambda uri: "x")
    except zmcp.ZmcpError as err:
        template_refused = err.code
    print(json.dumps({"msg": "ready", "key": agent.public_key, "template_refused": template_refused}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await agent.close()
asyncio.run(main())
`;
    const proc = spawn(PYTHON, ["-c", script], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    try {
      const ready = await new Promise<{ template_refused: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`python agent not ready: ${stderr}`)), 20_000);
        void exited.then(() => reject(new Error(`python agent exited: ${stderr}`)));
        createInterface({ input: proc.stdout }).on("line", (line) => {
          clearTimeout(timer);
          resolve(JSON.parse(line) as { template_refused: string });
        });
      });
      expect(ready.template_refused).toBe("config");
      const token = createToken({ authority: privateJwk, sub: "tscaller", key: fx.key("tscaller"), scope: "read:py://motd read:py://ctx read:py://broken read:py://item/* prompt:review" });
      const caller = await connectAgent(fx, "tscaller", broker.endpoint, { token });
      try {
        const listed = await caller.listResources("pyserver");
        expect(listed).toHaveLength(123); // two pages; not py://secret
        expect(listed[0]).toEqual({ uri: "py://motd", name: "motd", mimeType: "text/plain" });
        expect(await caller.listResourceTemplates("pyserver")).toEqual([]);
        expect(await caller.readResource("pyserver", "py://motd")).toEqual({ contents: [{ uri: "py://motd", text: "hello from python", mimeType: "text/plain" }] });
        expect((await caller.readResource("pyserver", "py://ctx")).contents[0]).toMatchObject({ text: "tscaller" });
        expect(await caller.listPrompts("pyserver")).toEqual([{ name: "review", description: "Review a file", arguments: [{ name: "file", required: true }] }]);
        expect(await caller.getPrompt("pyserver", "review", { file: "a.py" })).toEqual({ messages: [{ role: "user", content: { type: "text", text: "Review a.py." } }] });
        expect(await caller.complete("pyserver", { type: "ref/prompt", name: "review" }, { name: "file", value: "a" })).toEqual({ values: ["a.py", "ab.ts"] });
        const refused = async (p: Promise<unknown>) => p.then(() => "resolved", (err: unknown) => (err instanceof RemoteError ? `${err.code}/${err.origin}` : String(err)));
        expect(await refused(caller.readResource("pyserver", "py://secret"))).toBe("token_scope/peer");
        expect(await refused(caller.readResource("pyserver", "py://item/none"))).toBe("unknown_tool/peer");
        expect(await refused(caller.readResource("pyserver", "py://broken"))).toBe("tool_failed/peer");
        expect(await refused(caller.getPrompt("pyserver", "review", {}))).toBe("invalid_args/peer");
        expect(await refused(caller.call("pyserver", "resources/read", { uri: "py://motd", extra: 1 }))).toBe("invalid_args/peer");
        expect(await refused(caller.call("pyserver", "resources/list", { cursor: "999" }))).toBe("invalid_args/peer");
      } finally {
        await caller.close();
      }
    } finally {
      proc.stdin.end();
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
  }, 90_000);
});
