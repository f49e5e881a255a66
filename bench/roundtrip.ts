/**
 * Round-trip time of `batch_sum` through a zmq-broker process to a reference-agent process
 * (CURVE + sealed payload), next to a bare DEALER→ROUTER→DEALER relay of the same payload (the
 * benchmark's zeromq.js floor),
 * measured in one run in alternating blocks so that both see the same machine noise.
 *
 *   npm run roundtrip -- [--calls 10000] [--blocks 10]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { encode } from "@msgpack/msgpack";
import { Agent, generateCertificate, saveCertificate } from "../src/index.js";
import { built, spawnBroker, spawnChild, type Child } from "../test/support/process.js";
import { installCleanup, startWorker, type Worker } from "./proc.js";
import { findRole } from "./systems/index.js";
import type { Client } from "./types.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "10000" }, blocks: { type: "string", default: "10" } } });
const calls = Number(values.calls);
const blocks = Number(values.blocks);
const children: Array<Child | Worker> = [];
installCleanup();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const certs = mkdtempSync(join(tmpdir(), "zmcp-rt-"));
try {
  for (const name of ["alice", "bob"]) saveCertificate(generateCertificate({ name }), certs, name);
  const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs]);
  children.push(broker);
  const bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", join(certs, "bob.key_secret"), "--certs", certs], "agent ready");
  children.push(bob);
  const alice = await Agent.connect({ broker: broker.endpoint, cert: join(certs, "alice.key_secret"), certs });

  // The bare relay is the benchmark's zeromq.js floor (bench/systems/zmq-floor.ts): relay and
  // echo peer as processes, its caller here (it probes until the echo peer is connected).
  const relay = await startWorker("zmq-floor", "broker", {});
  children.push(relay);
  const endpoint = String(relay.info["endpoint"]);
  children.push(await startWorker("zmq-floor", "responder", { endpoint }));
  const bare = (await findRole("zmq-floor", "caller")({ endpoint })) as Client;

  const args = { numbers: [1, 2, 3, 4, 5, 6, 7, 8] };
  const payload = encode({ tool: "batch_sum", args });
  const zmcpCall = async () => {
    await alice.call("bob", "batch_sum", args);
  };
  const bareCall = () => bare.call(Buffer.from(payload));

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
  await bare.close();
} finally {
  await Promise.all(children.map((child) => child.stop()));
  rmSync(certs, { recursive: true, force: true });
}
