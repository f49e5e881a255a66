/**
 * Round-trip time of `batch_sum` through a zmq-broker process to a reference-agent process
 * (CURVE + sealed payload), next to a bare DEALER→ROUTER→DEALER relay of the same payload,
 * measured in one run in alternating blocks so that both see the same machine noise.
 *
 *   npm run roundtrip -- [--calls 10000] [--blocks 10]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { encode } from "@msgpack/msgpack";
import * as zmq from "zeromq";
import { Agent, generateCertificate, saveCertificate } from "../src/index.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "10000" }, blocks: { type: "string", default: "10" } } });
const calls = Number(values.calls);
const blocks = Number(values.blocks);
const dist = join(import.meta.dirname, "..");
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

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const certs = mkdtempSync(join(tmpdir(), "zmcp-rt-"));
try {
  for (const name of ["alice", "bob"]) saveCertificate(generateCertificate({ name }), certs, name);
  const broker = await start("bin/zmq-broker.js", ["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs]);
  await start("examples/reference-agent.js", ["--broker", String(broker["endpoint"]), "--cert", join(certs, "bob.key_secret"), "--certs", certs]);
  const alice = await Agent.connect({ broker: String(broker["endpoint"]), cert: join(certs, "alice.key_secret"), certs });

  const relay = await start("examples/bare-relay.js", ["relay", "tcp://127.0.0.1:*"]);
  await start("examples/bare-relay.js", ["echo", String(relay["endpoint"])]);
  const bare = new zmq.Dealer({ linger: 0, receiveTimeout: 200 });
  bare.connect(String(relay["endpoint"]));
  // The bare relay drops what it cannot route: resend until the echo peer is connected.
  for (let connected = false; !connected; ) {
    await bare.send(["echo", "ping"]);
    connected = await bare.receive().then(
      () => true,
      () => false,
    );
  }
  bare.receiveTimeout = -1;

  const args = { numbers: [1, 2, 3, 4, 5, 6, 7, 8] };
  const payload = encode({ tool: "batch_sum", args });
  const zmcpCall = async () => {
    await alice.call("bob", "batch_sum", args);
  };
  const bareCall = async () => {
    await bare.send(["echo", payload]);
    await bare.receive();
  };

  for (let i = 0; i < 1000; i++) {
    await zmcpCall();
    await bareCall();
  }
  const samples: Record<string, number[]> = { zmcp: [], bare: [] };
  const perBlock = Math.ceil(calls / blocks);
  for (let b = 0; b < blocks; b++) {
    for (const [name, fn] of [["zmcp", zmcpCall], ["bare", bareCall]] as const) {
      for (let i = 0; i < perBlock; i++) {
        const t0 = process.hrtime.bigint();
        await fn();
        samples[name]!.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
    }
    process.stderr.write(`\rblock ${b + 1}/${blocks}`);
  }
  process.stderr.write("\n");
  const rows = Object.entries(samples).map(([name, s]) => {
    s.sort((a, b) => a - b);
    return { name, calls: s.length, p50: percentile(s, 50), p99: percentile(s, 99) };
  });
  const [z, r] = rows as [(typeof rows)[0], (typeof rows)[0]];
  process.stdout.write(`payload: batch_sum of 8 numbers (${payload.length} B bare)\n`);
  process.stdout.write(`${"system".padEnd(40)} ${"calls".padStart(7)} ${"p50 µs".padStart(9)} ${"p99 µs".padStart(9)}\n`);
  for (const row of [
    { ...z, name: "zmcp batch_sum (CURVE + sealed, broker)" },
    { ...r, name: "bare DEALER→ROUTER→DEALER relay" },
  ]) {
    process.stdout.write(`${row.name.padEnd(40)} ${String(row.calls).padStart(7)} ${row.p50.toFixed(0).padStart(9)} ${row.p99.toFixed(0).padStart(9)}\n`);
  }
  process.stdout.write(`ratio zmcp/bare: p50 ${(z.p50 / r.p50).toFixed(2)}×, p99 ${(z.p99 / r.p99).toFixed(2)}×\n`);
  await alice.close();
  bare.close();
} finally {
  for (const child of children) child.kill("SIGTERM");
  rmSync(certs, { recursive: true, force: true });
}
