/**
 * python/zmcp's caller side of the resource and prompt built-ins (zmcp/catalog.py) against a
 * TypeScript agent: a Python agent lists (across pages) and reads the TS agent's resources
 * and templates, lists and gets its prompts, completes an argument, and gets the typed errors
 * for what it may not read (token scope) and what is not there (unknown_tool).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
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
    fx = tempCerts("ts", "pyclient");
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
});
