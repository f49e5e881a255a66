/**
 * The quick-start demo (`npm start`): creates development keys on first run, starts the
 * broker and the reference agent `bob` as real processes, and has `alice` call bob's tools
 * through the broker. Leaves broker and bob running for `zmq-call` until Ctrl-C, unless
 * `--exit` is given (as CI does).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Agent, generateCertificate, RemoteError, saveCertificate } from "../src/index.js";

const { values } = parseArgs({
  options: {
    bind: { type: "string", default: "tcp://127.0.0.1:5555" },
    certs: { type: "string", default: "certs" },
    exit: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write("usage: demo [--bind tcp://127.0.0.1:5555] [--certs certs] [--exit]\n");
  process.exit(0);
}
const certs = values.certs;
const dist = join(import.meta.dirname, "..");
const children: ChildProcess[] = [];
const say = (line: string) => process.stdout.write(line + "\n");

/** Creates the development certificates that are missing. */
function ensureDevKeys(): void {
  // carol: the README's SDK examples serve as her, beside the demo's running bob (no shared key).
  for (const name of ["alice", "bob", "carol"]) {
    if (existsSync(join(certs, `${name}.key_secret`))) continue;
    saveCertificate(generateCertificate({ name }), certs, name);
    say(`created development key ${join(certs, `${name}.key_secret`)}`);
  }
}

/** Spawns a node script and resolves with the first JSON log line whose msg is `readyMsg`. */
function start(script: string, args: string[], readyMsg: string): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [join(dist, script), ...args], { stdio: ["ignore", "inherit", "pipe"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} not ready within 15 s`)), 15_000);
    child.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
    createInterface({ input: child.stderr! }).on("line", (line) => {
      process.stderr.write(`  [${script.split("/").pop()}] ${line}\n`);
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry["msg"] === readyMsg) {
          clearTimeout(timer);
          resolve(entry);
        }
      } catch {
        // not a log line
      }
    });
  });
}

function stopAll(): void {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
}

async function main(): Promise<void> {
  ensureDevKeys(); // the broker creates its own key on first run
  const broker = await start("bin/zmq-broker.js", ["--bind", values.bind, "--key", join(certs, "broker.key_secret"), "--allow", certs], "ready");
  const endpoint = String(broker["endpoint"]);
  await start("examples/reference-agent.js", ["--broker", endpoint, "--cert", join(certs, "bob.key_secret"), "--certs", certs, "--name", "bob"], "agent ready");

  const alice = await Agent.connect({ broker: endpoint, cert: join(certs, "alice.key_secret"), certs });
  try {
    say(`\nalice (${alice.publicKey}) → bob, through the broker at ${endpoint}:`);
    say(`  server_identity → ${JSON.stringify(await alice.call("bob", "server_identity", {}))}`);
    say(`  batch_sum [1, 2, 3.5] → ${JSON.stringify(await alice.call("bob", "batch_sum", { numbers: [1, 2, 3.5] }))}`);
    say(`  tools/list → ${(await alice.listTools("bob")).map((t) => `${t.name}${t.job ? " (job)" : ""}`).join(", ")}`);
    const job = await alice.start("bob", "start_long_task", { seconds: 2, payload: { report: "ready" } });
    say(`  start_long_task {seconds: 2} → accepted, job ${job.id.slice(0, 8)}…`);
    job.on("progress", (p) => say(`    progress ${p.progress}/${p.total}`));
    say(`  job result (pushed) → ${JSON.stringify(await job.result)}`);
    for (const [tool, args] of [["batch_sum", { numbers: [] }], ["no_such_tool", {}]] as const) {
      try {
        await alice.call("bob", tool, args);
        throw new Error(`${tool} should have failed`);
      } catch (err) {
        if (!(err instanceof RemoteError)) throw err;
        say(`  ${tool} ${JSON.stringify(args)} → error ${err.code}: ${err.message}`);
      }
    }
  } finally {
    await alice.close();
  }
  if (values.exit) {
    say("\ndemo done");
    stopAll();
    return;
  }
  say(`\nbroker and bob keep running. In another terminal try:`);
  say(`  node dist/bin/zmq-call.js --broker ${endpoint} --cert ${join(certs, "alice.key_secret")} --to bob batch_sum '{"numbers":[1,2,3]}'`);
  say(`Ctrl-C stops them.`);
  process.once("SIGINT", stopAll);
  process.once("SIGTERM", stopAll);
}

main().catch((err) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  stopAll();
  process.exitCode = 1;
});
