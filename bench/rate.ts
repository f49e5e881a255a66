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
 * 90% of what was offered, leaves requests unanswered, or fails more than 1%; higher rates are
 * then skipped for it.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { RateResult } from "./driver.js";
import { installCleanup, removeOnExit, ROOT } from "./proc.js";
import { machineInfo } from "./run.js";
import { findSystem } from "./systems/index.js";
import type { CallerHandle, Deployment } from "./systems/spec.js";

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
const deployed: Array<{ id: string; title: string; deployment: Deployment; caller: CallerHandle }> = [];
const rows: Array<Row & { payload: number; rate: number }> = [];
const startedAt = new Date().toISOString();
try {
  for (const id of systems) {
    const spec = findSystem(id);
    if (!spec) throw new Error(`unknown system ${id}`);
    const reason = await spec.check?.(env);
    if (reason) {
      process.stderr.write(`${id}: skipped: ${reason}\n`);
      continue;
    }
    process.stderr.write(`${id}: starting\n`);
    const deployment = await spec.start(env, {});
    const caller = await deployment.caller();
    if (!caller.rate) {
      process.stderr.write(`${id}: skipped: its caller has no offered-load mode\n`);
      await caller.stop();
      await deployment.stop();
      continue;
    }
    deployed.push({ id, title: spec.title, deployment, caller });
  }
  let turn = 0;
  for (const payload of payloads) {
    const saturated = new Map<string, number>();
    for (const rate of rates) {
      const order = deployed.map((_, i) => deployed[(i + turn) % deployed.length]!);
      turn++;
      for (const d of order) {
        const row = { system: d.id, title: d.title, payload, rate };
        if (saturated.has(d.id)) {
          rows.push({ ...row, skipped: `saturated at ${saturated.get(d.id)}/s` });
          continue;
        }
        process.stderr.write(`${d.id}: ${payload} B at ${rate}/s\n`);
        const result = await d.caller.rate!(payload, rate, durationMs, warmupMs, durationMs + warmupMs + 60_000);
        rows.push({ ...row, result });
        if (result.completed < 0.9 * result.offered || result.unfinished > 0 || result.errors > 0.01 * result.offered) saturated.set(d.id, rate);
      }
    }
  }
} finally {
  for (const d of deployed) {
    await d.caller.stop().catch(() => undefined);
    await d.deployment.stop().catch(() => undefined);
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
const table: string[][] = [head];
for (const r of rows) {
  const name = `${r.payload >= 1024 ? `${r.payload / 1024} KiB` : `${r.payload} B`}`;
  if (!r.result) {
    table.push([name, r.title, String(r.rate), r.skipped ?? "-", "", "", "", "", "", "", "", "", "", ""]);
    continue;
  }
  const c = r.result.corrected;
  const s = r.result.service;
  table.push([name, r.title, String(r.rate), String(r.result.achievedPerSecond), fmt(c.p50), fmt(c.p90), fmt(c.p99), fmt(c.p999), fmt(c.p9999), fmt(c.max), fmt(s.p50), fmt(s.p99), String(r.result.errors + r.result.unfinished), String(r.result.maxInFlight)]);
}
const widths = head.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
for (const [i, row] of table.entries()) {
  out.push(row.map((cell, j) => (j < 2 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join("  "));
  if (i === 0) out.push(widths.map((w) => "─".repeat(w)).join("  "));
}
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
