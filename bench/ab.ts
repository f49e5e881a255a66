/**
 * Before/after in one run: the benchmark of a base revision and of this working tree,
 * interleaved round by round (base, head, head, base, ...) so that a burst of other work on
 * the machine weighs on both sides alike. Every optimisation of issue 12 is committed with
 * this table.
 *
 *   npm run bench:ab -- --base HEAD~1                      # zmcp-sealed, zmcp-direct, nats
 *   npm run bench:ab -- --base abc123 --rounds 5 --systems zmcp-sealed,nats --payloads 256,65536
 *
 * The base is checked out into a git worktree under the system's temp directory and built
 * there once (node_modules shared); its own broker, agents and bench run. Reported: the median
 * over rounds of p50 and p99 of sequential calls, round trips/s at the largest window, and CPU
 * per 10k calls of all processes, for both sides, with head ÷ base and each side ÷ NATS of its
 * own round.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { ROOT } from "./proc.js";
import { builtRevision } from "./revision.js";

const program = new Command()
  .name("zmq-bench-ab")
  .description("Before/after: the benchmark of a base revision and of this tree, interleaved in one run")
  .requiredOption("--base <rev>", "git revision to compare against (built in a worktree)")
  .option("--rounds <n>", "rounds per side", (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("a positive integer");
    return n;
  }, 3)
  .option("--systems <ids>", "systems (as zmq-bench --systems)", "zmcp-sealed,zmcp-direct,nats")
  .option("--payloads <list>", "payload sizes, bytes", "256")
  .option("--calls <n>", "sequential calls per payload and round", "3000")
  .option("--warmup <n>", "warm-up calls before the sequential calls (the same on both sides)", "3000")
  .option("--duration <ms>", "measured time per throughput cell", "1500")
  .addOption(new Option("--windows <list>", "calls in flight").default("1,16,256"))
  .showHelpAfterError()
  .parse();
const opts = program.opts<{ base: string; rounds: number; systems: string; payloads: string; calls: string; warmup: string; duration: string; windows: string }>();

const git = (...args: string[]) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim();
const { rev: baseRev, dir: baseDir } = builtRevision(opts.base);

interface Row {
  p50: number;
  p99: number;
  rate: number;
  cpu: number;
}
type Side = "base" | "head";
const results: Record<Side, Map<string, Row[]>> = { base: new Map(), head: new Map() };
const out = join(tmpdir(), "zmcp-ab", "results");
mkdirSync(out, { recursive: true });

function runSide(side: Side, round: number): void {
  const root = side === "base" ? baseDir : ROOT;
  const name = `${side}-${round}-${Date.now()}`;
  const args = [join(root, "dist", "bench", "cli.js"), "--quick", "--systems", opts.systems, "--payloads", opts.payloads, "--calls", opts.calls, "--warmup", opts.warmup, "--duration", opts.duration, "--windows", opts.windows, "--out", out, "--name", name];
  process.stderr.write(`round ${round + 1}/${opts.rounds}: ${side} (${side === "base" ? baseRev : "working tree"})\n`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0 && r.status !== 1) throw new Error(`${side} run failed (${r.status})`);
  const json = JSON.parse(readFileSync(join(out, `${name}.json`), "utf8")) as {
    systems: Array<{ id: string; status: string; latency?: Array<{ payload: number; us: { p50: number; p99: number } }>; throughput?: Array<{ payload: number; window: number; perSecond: number; cpuMsPer10k: Record<string, number> }> }>;
  };
  for (const s of json.systems) {
    if (s.status !== "ok") continue;
    for (const l of s.latency ?? []) {
      const tp = (s.throughput ?? []).filter((t) => t.payload === l.payload).sort((a, b) => b.window - a.window)[0];
      const key = `${l.payload}\t${s.id}`;
      const row: Row = { p50: l.us.p50, p99: l.us.p99, rate: tp?.perSecond ?? NaN, cpu: tp ? Object.values(tp.cpuMsPer10k).reduce((a, b) => a + b, 0) : NaN };
      results[side].set(key, [...(results[side].get(key) ?? []), row]);
    }
  }
}

for (let i = 0; i < opts.rounds; i++) {
  const order: Side[] = i % 2 === 0 ? ["base", "head"] : ["head", "base"];
  for (const side of order) runSide(side, i);
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const med = (rows: Row[] | undefined, k: keyof Row) => median((rows ?? []).map((r) => r[k]));
const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "-");
const x = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "-");

console.log(`A/B: base ${baseRev} vs working tree (${git("rev-parse", "--short", "HEAD")}${git("status", "--porcelain").length ? " + changes" : ""}), ${opts.rounds} rounds each, interleaved; medians over rounds`);
console.log(`windows ${opts.windows}: rate and CPU at the largest; CPU = ms per 10k calls, all processes; ×NATS against the same side's NATS`);
console.log(["payload", "system", "p50 base", "p50 head", "head÷base", "p99 base", "p99 head", "head÷base", "rate base", "rate head", "head÷base", "cpu base", "cpu head", "head÷base", "p50×NATS b/h", "rate×NATS b/h", "cpu×NATS b/h"].join("\t"));
for (const key of results.head.keys()) {
  const [payload] = key.split("\t");
  const natsKey = `${payload}\tnats`;
  const b = results.base.get(key);
  const h = results.head.get(key);
  const nb = results.base.get(natsKey);
  const nh = results.head.get(natsKey);
  const cols = [
    ...key.split("\t"),
    f(med(b, "p50")), f(med(h, "p50")), x(med(h, "p50") / med(b, "p50")),
    f(med(b, "p99")), f(med(h, "p99")), x(med(h, "p99") / med(b, "p99")),
    f(med(b, "rate")), f(med(h, "rate")), x(med(h, "rate") / med(b, "rate")),
    f(med(b, "cpu")), f(med(h, "cpu")), x(med(h, "cpu") / med(b, "cpu")),
    `${x(med(b, "p50") / med(nb, "p50"))}/${x(med(h, "p50") / med(nh, "p50"))}`,
    `${x(med(b, "rate") / med(nb, "rate"))}/${x(med(h, "rate") / med(nh, "rate"))}`,
    `${x(med(b, "cpu") / med(nb, "cpu"))}/${x(med(h, "cpu") / med(nh, "cpu"))}`,
  ];
  console.log(cols.join("\t"));
}
