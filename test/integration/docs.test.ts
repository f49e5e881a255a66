/**
 * Docs that run (issue 16): every fenced block of README.md and docs/*.md runs here, against a
 * broker and the demo's `bob` in a scratch folder with its own certs/, unless the line before
 * it is `<!-- illustrative: why -->` (README "Docs that run" states the convention):
 * - the `sh` blocks of a file, in order, in one bash session (`set -e`; the commands on PATH;
 *   ZMCP_BROKER pointing at this broker): a user's terminal;
 * - each `ts` block as its own program (transpiled, `zmcp` resolving to this package), which
 *   must exit 0 by itself: an agent left open keeps the process alive and fails it;
 * - each `json` block through JSON.parse.
 * `# → TEXT` / `// → TEXT` (up to two spaces) is output that must appear.
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateCertificate, saveCertificate } from "../../src/auth/certs.js";
import { createInterface } from "node:readline";
import { BIN, built, ROOT, spawnBroker, spawnChild, type BrokerProcess, type Child } from "../support/process.js";
import { waitFor } from "../support/wait.js";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");

interface Block {
  file: string;
  line: number;
  lang: string;
  body: string;
  illustrative: boolean;
}

const DOCS = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
const ILLUSTRATIVE = /^<!-- illustrative: .+ -->$/;

function blocks(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    out.push({ file, line: start + 1, lang: open[1]!, body: body.join("\n"), illustrative: ILLUSTRATIVE.test(lines[start - 1]?.trim() ?? "") });
  }
  return out;
}

/** `# → TEXT` and `// → TEXT`: the text up to two spaces or the end of the line. */
function expectedOutputs(body: string): string[] {
  return [...body.matchAll(/(?:#|\/\/) → (.+)$/gm)].map((m) => m[1]!.split(/\s{2,}/)[0]!.trim());
}

function exec(file: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeout: number }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(file, args, { ...options, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr })),
  );
}

const ALL = DOCS.flatMap(blocks);

it("every block is runnable here (sh, ts, json) or marked illustrative", () => {
  const orphans = ALL.filter((b) => !b.illustrative && !["sh", "ts", "json"].includes(b.lang)).map((b) => `${b.file}:${b.line} (${b.lang || "no language"})`);
  expect(orphans).toEqual([]);
  expect(ALL.filter((b) => !b.illustrative).length).toBeGreaterThan(5);
});

describe("the docs' blocks, run", () => {
  let sandbox: string;
  let broker: BrokerProcess;
  let bob: Child;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    sandbox = mkdtempSync(join(tmpdir(), "zmcp-docs-"));
    symlinkSync(join(ROOT, "dist"), join(sandbox, "dist"));
    mkdirSync(join(sandbox, "node_modules"));
    symlinkSync(ROOT, join(sandbox, "node_modules", "zmcp"));
    symlinkSync(join(ROOT, "node_modules", "zod"), join(sandbox, "node_modules", "zod"));
    const certs = join(sandbox, "certs");
    for (const name of ["broker", "alice", "bob", "carol", "keys"]) saveCertificate(generateCertificate({ name }), certs, name);
    // The commands as an installed package puts them on PATH.
    const bin = join(sandbox, ".bin");
    mkdirSync(bin);
    for (const name of ["zmq-broker", "zmq-call", "zmq-keygen", "zmq-mcp"]) {
      writeFileSync(join(bin, name), `#!/bin/sh\nexec "${process.execPath}" "${BIN(name)}" "$@"\n`, { mode: 0o755 });
    }
    broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs]);
    bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", join(certs, "bob.key_secret"), "--certs", certs, "--name", "bob"], "agent ready");
    env = { PATH: `${bin}:${process.env["PATH"] ?? ""}`, HOME: sandbox, ZMCP_BROKER: broker.endpoint };
  }, 30_000);
  afterAll(async () => {
    await bob?.stop();
    await broker?.stop();
    if (sandbox) rmSync(sandbox, { recursive: true, force: true });
  });

  for (const file of DOCS) {
    const sh = ALL.filter((b) => b.file === file && b.lang === "sh" && !b.illustrative);
    if (sh.length > 0) {
      it(`${file}: the sh blocks, in order, in one shell (${sh.map((b) => `line ${b.line}`).join(", ")})`, async () => {
        const script = ["set -euo pipefail", ...sh.map((b, i) => `echo "@@block ${i}"\n${b.body}`)].join("\n");
        const r = await exec("bash", ["-c", script], { cwd: sandbox, env, timeout: 60_000 });
        expect(r.code, `${file}: ${r.stderr}`).toBe(0);
        const outputs = r.stdout.split(/^@@block \d+\n/m).slice(1);
        sh.forEach((b, i) => {
          for (const want of expectedOutputs(b.body)) expect(outputs[i], `${file}:${b.line} should print ${want}`).toContain(want);
        });
      }, 90_000);
    }
    for (const b of ALL.filter((x) => x.file === file && x.lang === "ts" && !x.illustrative)) {
      it(`${file}:${b.line}: the ts block runs and exits by itself`, async () => {
        const js = ts.transpileModule(b.body, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
        const path = join(sandbox, `block-${file.replace(/\W/g, "_")}-${b.line}.mjs`);
        writeFileSync(path, js);
        const r = await exec(process.execPath, [path], { cwd: sandbox, env, timeout: 30_000 });
        expect(r.code, `${file}:${b.line}: ${r.stderr}`).toBe(0);
        for (const want of expectedOutputs(b.body)) expect(r.stdout, `${file}:${b.line} should print ${want}`).toContain(want);
      }, 40_000);
    }
    for (const b of ALL.filter((x) => x.file === file && x.lang === "json" && !x.illustrative)) {
      it(`${file}:${b.line}: the json block parses`, () => {
        expect(() => JSON.parse(b.body)).not.toThrow();
      });
    }
  }

  it("README: the attach example (illustrative: it downloads a server) runs with the MCP everything server in its place", async () => {
    const block = ALL.find((b) => b.file === "README.md" && b.body.includes("zmq-mcp.js attach"))!;
    const lines = block.body.split("\n");
    const last = lines.pop()!;
    // This broker's pid, not every broker of the host; the same command otherwise.
    const setup = lines.join("\n").replaceAll("$(pidof zmq-broker)", String(broker.proc.pid));
    expect(setup).not.toBe(lines.join("\n"));
    const r = await exec("bash", ["-c", `set -euo pipefail\n${setup}`], { cwd: sandbox, env, timeout: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    await broker.waitLog((l) => l["msg"] === "allowlist reloaded" && Number(l["services"]) >= 1, "allowlist reload with svc-files");
    const command = last.replace(/\s+#.*$/, "").replace("npx -y @modelcontextprotocol/server-filesystem /srv/data", `"${process.execPath}" "${EVERYTHING}"`);
    expect(command).toContain(EVERYTHING);
    const attach = spawn("bash", ["-c", `exec ${command}`], { cwd: sandbox, env, detached: true, stdio: ["ignore", "ignore", "pipe"] });
    const logs: string[] = [];
    createInterface({ input: attach.stderr! }).on("line", (l) => logs.push(l));
    try {
      await waitFor(() => {
        if (attach.exitCode !== null) throw new Error(`attach exited: ${logs.join("\n")}`);
        return logs.some((l) => l.includes('"attach ready"'));
      }, 30_000, "attach ready");
      const listed = await exec("bash", ["-c", "node dist/bin/zmq-call.js --cert certs/alice.key_secret --to svc:files --list"], { cwd: sandbox, env, timeout: 30_000 });
      expect(listed.code, listed.stderr).toBe(0);
      expect((JSON.parse(listed.stdout) as Array<{ name: string }>).map((t) => t.name)).toContain("echo");
    } finally {
      try {
        process.kill(-attach.pid!, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }, 60_000);
});
