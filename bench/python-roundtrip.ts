/**
 * Round trip of 2,000 sequential `batch_sum` calls, Python→TypeScript and TypeScript→TypeScript,
 * side by side in one run: a zmq-broker process, a reference-agent process (bob), a TypeScript
 * caller in this process and a Python caller (python/bench_roundtrip.py, /usr/bin/python3)
 * taking turns in blocks so that both see the same machine noise.
 *
 *   npm run roundtrip:python -- [--calls 2000] [--blocks 10]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Agent, generateCertificate, saveCertificate } from "../src/index.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "2000" }, blocks: { type: "string", default: "10" } } });
const calls = Number(values.calls);
const blocks = Number(values.blocks);
const dist = join(import.meta.dirname, "..");
const root = join(dist, "..");
const children: ChildProcess[] = [];

function start(script: string, args: string[]): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [join(dist, script), ...args], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
    createInterface({ input: child.stderr! }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry["msg"] === "ready" || entry["msg"] === "agent ready") resolve(entry);
      } catch {
        // not JSON
      }
    });
  });
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const certs = mkdtempSync(join(tmpdir(), "zmcp-pyrt-"));
try {
  for (const name of ["alice", "bob", "pyalice"]) saveCertificate(generateCertificate({ name }), certs, name);
  const broker = await start("bin/zmq-broker.js", ["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs]);
  const endpoint = String(broker["endpoint"]);
  await start("examples/reference-agent.js", ["--broker", endpoint, "--cert", join(certs, "bob.key_secret"), "--certs", certs]);
  const alice = await Agent.connect({ broker: endpoint, cert: join(certs, "alice.key_secret"), certs });
  const py = spawn("/usr/bin/python3", [join(root, "python", "bench_roundtrip.py"), endpoint, join(certs, "pyalice.key_secret"), certs, "bob"], { stdio: ["pipe", "pipe", "inherit"] });
  children.push(py);
  const lines = createInterface({ input: py.stdout! })[Symbol.asyncIterator]();
  const next = async () => JSON.parse(String((await lines.next()).value)) as { msg?: string; samples?: number[] };
  await next(); // ready
  const pyRun = async (n: number) => {
    py.stdin!.write(`${n}\n`);
    return (await next()).samples!;
  };

  const args = { numbers: [1, 2, 3, 4, 5, 6, 7, 8] };
  const tsRun = async (n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await alice.call("bob", "batch_sum", args);
      out.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    return out;
  };
  await tsRun(300); // warm-up (JIT, shared keys, token-free path)
  await pyRun(300);
  const samples: Record<string, number[]> = { python: [], ts: [] };
  const perBlock = Math.ceil(calls / blocks);
  for (let b = 0; b < blocks; b++) {
    samples["python"]!.push(...(await pyRun(perBlock)));
    samples["ts"]!.push(...(await tsRun(perBlock)));
    process.stderr.write(`\rblock ${b + 1}/${blocks}`);
  }
  process.stderr.write("\n");
  process.stdout.write(`${"caller → reference agent (TS), via zmq-broker".padEnd(48)} ${"calls".padStart(6)} ${"median µs".padStart(10)} ${"p99 µs".padStart(9)}\n`);
  for (const [name, label] of [["python", "Python (python/zmcp) → TypeScript"], ["ts", "TypeScript → TypeScript"]] as const) {
    const s = samples[name]!.sort((a, b) => a - b);
    process.stdout.write(`${label.padEnd(48)} ${String(s.length).padStart(6)} ${percentile(s, 50).toFixed(0).padStart(10)} ${percentile(s, 99).toFixed(0).padStart(9)}\n`);
  }
  py.stdin!.end();
  await alice.close();
} finally {
  for (const child of children) child.kill("SIGTERM");
  rmSync(certs, { recursive: true, force: true });
}
