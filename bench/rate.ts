/**
 * Fixed offered load: each system is driven at constant request rates, stepped up to
 * saturation, with latency taken from each request's intended send time (coordinated
 * omission counted, as wrk2 and the OpenMessaging benchmark do). Every system stays deployed
 * for the whole run and, at each rate, the systems take turns in rotated order, so a burst of
 * other work on the machine weighs on all of them alike.
 *
 *   npm run bench:rate -- [--systems nats,zmcp-sealed] [--payloads 256,65536]
 *                         [--rates 500,1000,2000,4000,8000] [--duration 4000] [--warmup 1000]
 *                         [--out bench/results] [--name rate]
 *
 * Prints a table (p50 to p99.99 and max, from the intended send time; p50/p99 from the actual
 * send beside it) and writes `<out>/<name>.json` with the machine, versions, load at start and
 * end, and every raw HDR histogram. A system is saturated at a rate when it completes less than
 * 90% of what was offered, leaves requests unanswered, fails more than 1%, or builds a backlog
 * of more than a second of requests in flight; higher rates are then skipped for it.
 *
 * Each cell gets a fresh deployment (broker, responder, caller): state a system keeps per caller
 * over minutes (zmcp's idempotency cache holds every answer 120 s, at most 25,000 answers and
 * 16 MiB per caller) then weighs on the cell that fills it, not on every cell after it.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { RateResult } from "./driver.js";
import { installCleanup, removeOnExit, ROOT } from "./proc.js";
import { machineInfo } from "./run.js";
import { findSystem } from "./systems/index.js";
import type { CallerHandle, Deployment, SystemSpec } from "./systems/spec.js";

const { values } = parseArgs({
  options: {
    systems: { type: "string", default: "nats,zmcp-sealed" },
    payloads: { type: "string", default: "256" },
    rates: { type: "string", default: "500,1000,2000,4000,8000,16000" },
    duration: { type: "string", default: "4000" },
    warmup: { type: "string", default: "1000" },
    out: { type: "string", default: join(ROOT, "bench", "results") },
    name: { type: "string", default: "rate" },
  },
});
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const systems = list(values.systems!);
const payloads = list(values.payloads!).map(Number);
const rates = list(values.rates!).map(Number);
const durationMs = Number(values.duration);
const warmupMs = Number(values.warmup);
for (const n of [...payloads, ...rates, durationMs, warmupMs]) if (!(Number.isFinite(n) && n >= 0)) throw new Error(`not a number: ${n}`);

installCleanup();
const tmp = mkdtempSync(join(tmpdir(), "zmq-bench-rate-"));
removeOnExit(tmp);
const env = { tmp, note: (text: string) => process.stderr.write(`  ${text}\n`) };

interface Row {
  system: string;
  title: string;
  result?: RateResult;
  skipped?: string;
}

function version(pkg: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, "node_modules", pkg, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

const machine = machineInfo();
const rows: Array<Row & { payload: number; rate: number }> = [];
const startedAt = new Date().toISOString();
const specs: SystemSpec[] = [];
for (const id of systems) {
  const spec = findSystem(id);
  if (!spec) throw new Error(`unknown system ${id}`);
  const reason = await spec.check?.(env);
  if (reason) process.stderr.write(`${id}: skipped: ${reason}\n`);
  else specs.push(spec);
}

/** One cell: deploy, drive at `rate`, stop. */
async function cell(spec: SystemSpec, payload: number, rate: number): Promise<RateResult> {
  const deployment: Deployment = await spec.start(env, {});
  let caller: CallerHandle | undefined;
  try {
    caller = await deployment.caller();
    if (!caller.rate) throw new Error("its caller has no offered-load mode");
    return await caller.rate(payload, rate, durationMs, warmupMs, durationMs + warmupMs + 60_000);
  } finally {
    await caller?.stop().catch(() => undefined);
    await deployment.stop().catch(() => undefined);
  }
}

let turn = 0;
for (const payload of payloads) {
  const saturated = new Map<string, number>();
  for (const rate of rates) {
    const order = specs.map((_, i) => specs[(i + turn) % specs.length]!);
    turn++;
    for (const spec of order) {
      const row = { system: spec.id, title: spec.title, payload, rate };
      if (saturated.has(spec.id)) {
        rows.push({ ...row, skipped: `saturated at ${saturated.get(spec.id)}/s` });
        continue;
      }
      process.stderr.write(`${spec.id}: ${payload} B at ${rate}/s\n`);
      try {
        const result = await cell(spec, payload, rate);
        rows.push({ ...row, result });
        if (result.completed < 0.9 * result.offered || result.unfinished > 0 || result.errors > 0.01 * result.offered || result.maxInFlight > rate) saturated.set(spec.id, rate);
      } catch (err) {
        rows.push({ ...row, skipped: `failed: ${(err as Error).message.split("\n")[0]}` });
        saturated.set(spec.id, rate);
      }
    }
  }
}

const loadEnd = Math.round(loadavg()[0]! * 100) / 100;
const fmt = (us: number) => (us >= 10_000 ? `${Math.round(us / 1000)}k` : String(Math.round(us)));
const out: string[] = [];
out.push(`zmq-bench rate (fixed offered load) on ${machine.nproc} × ${machine.cpu}, node ${machine.node}, ${machine.libzmq}${machine.natsServer ? `, ${machine.natsServer}` : ""}`);
out.push(`nats.js ${version("nats")}, sodium-native ${version("sodium-native")}, zeromq ${version("zeromq")}; load average ${machine.loadAverage} at start, ${loadEnd} at end`);
out.push(`each cell: ${warmupMs} ms warm-up, ${durationMs} ms measured; latency in µs from the intended send time (service: from the actual send;`);
out.push(`the difference at low rates is mostly the sender's timer lateness, up to ~1 ms, the same for every system)`);
out.push("");
const head = ["payload", "system", "rate/s", "done/s", "p50", "p90", "p99", "p99.9", "p99.99", "max", "svc p50", "svc p99", "errors", "max in flight"];
const codes = (r: RateResult) => Object.entries(r.errorCodes).map(([code, n]) => `${n} ${code}`).join(", ");
const table: string[][] = [head];
const notes: string[] = [];
for (const r of rows) {
  const name = `${r.payload >= 1024 ? `${r.payload / 1024} KiB` : `${r.payload} B`}`;
  if (!r.result) {
    table.push([name, r.title, String(r.rate), r.skipped ?? "-", "", "", "", "", "", "", "", "", "", ""]);
    continue;
  }
  const c = r.result.corrected;
  const s = r.result.service;
  table.push([name, r.title, String(r.rate), String(r.result.achievedPerSecond), fmt(c.p50), fmt(c.p90), fmt(c.p99), fmt(c.p999), fmt(c.p9999), fmt(c.max), fmt(s.p50), fmt(s.p99), String(r.result.errors + r.result.unfinished), String(r.result.maxInFlight)]);
  if (r.result.errors > 0) notes.push(`${name} ${r.title} at ${r.rate}/s: errors ${codes(r.result)}`);
}
const widths = head.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
for (const [i, row] of table.entries()) {
  out.push(row.map((cell, j) => (j < 2 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join("  "));
  if (i === 0) out.push(widths.map((w) => "─".repeat(w)).join("  "));
}
if (notes.length) out.push("", ...notes);
process.stdout.write(out.join("\n") + "\n");
mkdirSync(values.out!, { recursive: true });
const file = join(values.out!, `${values.name}.json`);
writeFileSync(
  file,
  JSON.stringify(
    { kind: "rate", startedAt, finishedAt: new Date().toISOString(), machine: { ...machine, loadAverageEnd: loadEnd }, versions: { nats: version("nats"), "sodium-native": version("sodium-native"), zeromq: version("zeromq"), tweetnacl: version("tweetnacl") }, settings: { systems, payloads, rates, durationMs, warmupMs }, rows },
    null,
    1,
  ),
);
process.stderr.write(`results: ${file}\n`);
process.exit(0);
