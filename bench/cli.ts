/**
 * zmq-bench's command line: `npm run bench` (node dist/bench/cli.js). Not a published bin: the
 * harness needs the dev dependencies (nats, the MCP SDK, hdr-histogram-js) and runs from a clone.
 */
import { join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { installCleanup, ROOT, setNodeFlags } from "./proc.js";
import { formatReport, writeResults } from "./report.js";
import { runBench, SCENARIOS, settingsFor, type Profile, type Progress, type ScenarioName } from "./run.js";
import { SYSTEMS } from "./systems/index.js";
import { positiveInt } from "../bin/options.js";

const intList = (value: string): number[] =>
  value.split(",").map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be a comma-separated list of integers");
    return n;
  });

const program = new Command("zmq-bench")
  .description(
    "Measure zmcp next to its peers (libzmq and zeromq.js floors, NATS, MCP Streamable HTTP): round-trip latency, " +
      "throughput with calls in flight, broker CPU and memory. Every system runs as separate processes on 127.0.0.1.",
  )
  .option("--quick", "a short run (under a minute): 256 B only, no scenarios unless named in --systems", false)
  .option("--full", "everything, with long runs", false)
  .option("--systems <ids>", `comma-separated systems and scenarios to run (default: all): ${[...SYSTEMS.map((s) => s.id), ...SCENARIOS].join(", ")}`)
  .option("--out <dir>", "directory for the JSON and SVG results", join(ROOT, "bench", "results"))
  .option("--name <name>", "base name of the result files (default: zmq-bench-<profile>-<time>)")
  .option("--list", "list the systems and exit", false)
  .addOption(new Option("--calls <n>", "sequential calls per payload").argParser(positiveInt).hideHelp())
  .addOption(new Option("--warmup <n>", "warm-up calls per payload").argParser((v) => Number(v)).hideHelp())
  .addOption(new Option("--duration <ms>", "measured time per throughput cell").argParser(positiveInt).hideHelp())
  .addOption(new Option("--throughput-warmup <ms>", "unmeasured time before each throughput cell").argParser((v) => Number(v)).hideHelp())
  .addOption(new Option("--payloads <list>", "payload sizes, bytes (latency and throughput)").argParser(intList).hideHelp())
  .addOption(new Option("--windows <list>", "calls in flight").argParser(intList).hideHelp())
  .addOption(new Option("--idle-agents <list>", "idle agent counts").argParser(intList).hideHelp())
  .addOption(new Option("--rounds <n>", "passes over all systems (histograms merged, median throughput)").argParser(positiveInt).hideHelp())
  .addOption(new Option("--prof-dir <dir>", "run every node process with --cpu-prof into this directory").hideHelp())
  .showHelpAfterError()
  .parse();

interface Opts {
  quick: boolean;
  full: boolean;
  systems?: string;
  out: string;
  name?: string;
  list: boolean;
  calls?: number;
  warmup?: number;
  duration?: number;
  throughputWarmup?: number;
  payloads?: number[];
  windows?: number[];
  idleAgents?: number[];
  rounds?: number;
  profDir?: string;
}
const opts = program.opts<Opts>();

if (opts.list) {
  for (const s of SYSTEMS) process.stdout.write(`${s.id.padEnd(14)} ${s.describe}${s.skip ? ` [skipped: ${s.skip}]` : ""}\n`);
  for (const s of SCENARIOS) process.stdout.write(`${s.padEnd(14)} scenario: ${s === "idle-agents" ? "zmcp broker with 0…1,000 idle agents connected" : "1 broker against 2"}\n`);
  process.exit(0);
}
if (opts.quick && opts.full) program.error("--quick and --full exclude each other");

const profile: Profile = opts.quick ? "quick" : opts.full ? "full" : "default";
const settings = settingsFor(profile);
if (opts.rounds !== undefined) settings.rounds = opts.rounds;
if (opts.calls !== undefined) settings.latencyCalls = opts.calls * settings.rounds; // --calls is per round
if (opts.warmup !== undefined) settings.latencyWarmup = opts.warmup;
if (opts.duration !== undefined) settings.throughputMs = opts.duration;
if (opts.throughputWarmup !== undefined) settings.throughputWarmupMs = opts.throughputWarmup;
if (opts.payloads) {
  settings.payloads = opts.payloads;
  settings.throughputPayloads = opts.payloads;
  if (!opts.payloads.includes(settings.headlinePayload)) settings.headlinePayload = opts.payloads[0]!;
}
if (opts.windows) settings.windows = opts.windows;
if (opts.idleAgents) settings.idleAgents = [0, ...opts.idleAgents.filter((n) => n > 0)];

let systems: string[] | undefined;
let scenarios: ScenarioName[] = profile === "quick" ? [] : [...SCENARIOS];
if (opts.systems) {
  const wanted = opts.systems.split(",").map((s) => s.trim()).filter(Boolean);
  const known = new Set<string>([...SYSTEMS.map((s) => s.id), ...SCENARIOS]);
  const unknown = wanted.filter((w) => !known.has(w));
  if (unknown.length) program.error(`unknown system(s) ${unknown.join(", ")}; known: ${[...known].join(", ")}`);
  systems = wanted.filter((w) => SYSTEMS.some((s) => s.id === w));
  scenarios = SCENARIOS.filter((s) => wanted.includes(s));
}
if (opts.profDir) setNodeFlags(["--cpu-prof", `--cpu-prof-dir=${opts.profDir}`]);

/** One progress line on stderr, rewritten in place on a terminal. */
function progress(): Progress {
  const tty = process.stderr.isTTY;
  const t0 = Date.now();
  const stamp = () => {
    const s = Math.round((Date.now() - t0) / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  };
  let shown = false;
  return {
    update(text) {
      if (tty) {
        process.stderr.write(`\r\x1b[K${stamp()} ${text.slice(0, (process.stderr.columns || 120) - 7)}`);
        shown = true;
      } else process.stderr.write(`${stamp()} ${text}\n`);
    },
    log(text) {
      process.stderr.write(`${tty && shown ? "\r\x1b[K" : ""}${stamp()} ${text}\n`);
      shown = false;
    },
    done() {
      if (tty && shown) process.stderr.write("\r\x1b[K");
      shown = false;
    },
  };
}

installCleanup();
const results = await runBench({ settings, systems, scenarios, progress: progress() });
const name = opts.name ?? `zmq-bench-${profile}-${results.startedAt.replace(/[:.]/g, "-").slice(0, 19)}`;
const paths = writeResults(results, opts.out, name);
process.stdout.write(formatReport(results) + "\n\n");
process.stdout.write(`results: ${paths.json}\nchart:   ${paths.svg}\n`);
const failed = results.systems.some((s) => s.status === "failed") || Object.values(results.scenarios).some((s) => s?.status === "failed");
process.exit(failed ? 1 : 0);
