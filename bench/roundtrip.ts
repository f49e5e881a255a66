/**
 * Round-trip time of `batch_sum` through a zmq-broker process to a reference-agent process
 * (CURVE + sealed payload), next to a bare DEALER→ROUTER→DEALER relay of the same payload (the
 * benchmark's zeromq.js floor),
 * measured in one run in alternating blocks so that both see the same machine noise.
 *
 *   npm run roundtrip -- [--calls 10000] [--blocks 10] [--hops]
 *
 * `--hops`: every process also records when its sends are called and its receives resolve
 * (bench/hop-trace.ts), and the report splits the round trip into its hops and each process's
 * own time (bench/hops.ts), for zmcp and the bare relay side by side.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { encode } from "@msgpack/msgpack";
import { Agent, generateCertificate, saveCertificate } from "../src/index.js";
import { built, spawnBroker, spawnChild, type Child } from "../test/support/process.js";
import { hopMedians, SEGMENTS, type Trace } from "./hops.js";
import { installCleanup, setNodeFlags, startWorker, type Worker } from "./proc.js";
import { findRole } from "./systems/index.js";
import type { Client } from "./types.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "10000" }, blocks: { type: "string", default: "10" }, hops: { type: "boolean", default: false } } });
const calls = Number(values.calls);
const blocks = Number(values.blocks);
const children: Array<Child | Worker> = [];
installCleanup();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const certs = mkdtempSync(join(tmpdir(), "zmcp-rt-"));
// --hops: this process and every child record their sends and receives (hop-trace.ts).
const traceDir = values.hops ? mkdtempSync(join(tmpdir(), "zmcp-hops-")) : undefined;
const traceFlags = traceDir ? ["--import", join(import.meta.dirname, "hop-trace.js")] : [];
if (traceDir) {
  process.env["ZMCP_HOP_TRACE_DIR"] = traceDir;
  await import("./hop-trace.js");
  setNodeFlags(traceFlags);
}
try {
  for (const name of ["alice", "bob"]) saveCertificate(generateCertificate({ name }), certs, name);
  const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs], 10_000, traceFlags);
  children.push(broker);
  const bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", join(certs, "bob.key_secret"), "--certs", certs], "agent ready", { nodeArgs: traceFlags });
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
  if (traceDir) {
    await Promise.all(children.splice(0).map((child) => child.stop())); // each writes its trace as it exits
    await reportHops(traceDir);
  }
} finally {
  await Promise.all(children.map((child) => child.stop()));
  rmSync(certs, { recursive: true, force: true });
  if (traceDir) {
    delete process.env["ZMCP_HOP_TRACE_DIR"]; // this process's own trace was read in place
    rmSync(traceDir, { recursive: true, force: true });
  }
}

/** The round trip split into hops and each process's own time, zmcp next to the bare relay. */
async function reportHops(dir: string): Promise<void> {
  const { recorded } = await import("./hop-trace.js");
  const traces = readdirSync(dir).map((file) => JSON.parse(readFileSync(join(dir, file), "utf8")) as Trace & { argv: string[] });
  const find = (test: (argv: string) => boolean) => {
    const found = traces.find((t) => test(t.argv.join(" ")));
    if (!found) throw new Error("a process wrote no trace");
    return found;
  };
  const own = recorded();
  const zmcp = hopMedians(own, find((a) => a.includes("zmq-broker")), find((a) => a.includes("reference-agent")));
  const bareHops = hopMedians(own, find((a) => a.includes("zmq-floor broker")), find((a) => a.includes("zmq-floor responder")));
  process.stdout.write(`\nwhere the round trip goes, medians in µs at 1 call in flight (${zmcp.calls} zmcp calls, ${bareHops.calls} bare):\n`);
  process.stdout.write(`${"segment".padEnd(36)} ${"zmcp".padStart(8)} ${"bare".padStart(8)}\n`);
  SEGMENTS.forEach((name, i) => process.stdout.write(`${name.padEnd(36)} ${zmcp.segments[i]!.toFixed(1).padStart(8)} ${bareHops.segments[i]!.toFixed(1).padStart(8)}\n`));
  process.stdout.write(`${"caller send → caller receives".padEnd(36)} ${zmcp.total.toFixed(1).padStart(8)} ${bareHops.total.toFixed(1).padStart(8)}\n`);
}
