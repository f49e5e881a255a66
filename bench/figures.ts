/**
 * `npm run figures`: runs the fault, overload and hostile-input scenarios with full counts,
 * reads the outcome from the metrics (and from each caller's view of its calls), and writes
 * the table of RELIABILITY.md. The same scenarios run in CI with smaller counts (test/).
 * Then the durable-delivery fault scenarios (bench/durable-fault-scenarios.ts, on a
 * redis-server of their own), in a table of their own. `--quick`: a tenth of the counts;
 * `--only durable`: the durable part alone, rewriting only its section of the file.
 *
 *   node dist/bench/figures.js [--out RELIABILITY.md] [--quick] [--only durable]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { MiB, ROOT } from "../test/support/process.js";
import { fuzzAgent, fuzzBroker, fuzzFromBroker, type FuzzResult } from "../test/reliability/hostile.js";
import { redisAvailable } from "../test/support/redis.js";
import { durableFaults, durableFaultsTable, type DurableRow } from "./durable-fault-scenarios.js";
import { agentKilledMidJob, brokerKillRestart, connectionChurn, flood, garbageHandshakes, stalledReader, twoBrokersOneKilled, type Row } from "../test/reliability/scenarios.js";

const { values } = parseArgs({ options: { out: { type: "string", default: join(ROOT, "RELIABILITY.md") }, quick: { type: "boolean", default: false }, only: { type: "string" } } });
if (values.only !== undefined && values.only !== "durable") throw new Error(`--only takes "durable", not ${JSON.stringify(values.only)}`);
const q = values.quick ? 0.1 : 1;
const n = (full: number) => Math.max(1, Math.round(full * q));

function fuzzRow(scenario: string, r: FuzzResult, crashed: boolean): Row {
  return {
    scenario,
    faults: 0,
    survived: 0,
    sent: r.control,
    answered: r.control,
    refused: 0,
    lost: 0,
    duplicates: 0,
    badInputs: r.tried,
    crashes: crashed ? 1 : 0,
    peakRss: 0,
    codes: {},
    notes: `${r.typed} answered with a typed error, ${r.other} otherwise (ack / valid by chance), ${r.dropped} dropped with a log; ${r.control} control calls between them all answered`,
  };
}

async function guarded(name: string, run: () => Promise<Row>): Promise<Row> {
  const t = Date.now();
  process.stderr.write(`${name}...`);
  try {
    const r = await run();
    process.stderr.write(` ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
    return r;
  } catch (err) {
    process.stderr.write(` FAILED: ${String(err)}\n`);
    return { scenario: name, faults: 0, survived: 0, sent: 0, answered: 0, refused: 0, lost: 0, duplicates: 0, badInputs: 0, crashes: 1, peakRss: 0, codes: {}, notes: `scenario failed: ${String(err)}` };
  }
}

/** The fault, overload and hostile-input rows. */
async function faultRows(): Promise<Row[]> {
  const rows: Row[] = [];
  const calls = n(10_000);
  rows.push(await guarded("broker kill", () => brokerKillRestart(calls, 3)));
  rows.push(await guarded("two brokers", () => twoBrokersOneKilled(calls)));
  rows.push(await guarded("agent kill mid-job", () => agentKilledMidJob(3)));
  rows.push(await guarded("stalled reader", () => stalledReader(n(5000))));
  rows.push(await guarded("flood", () => flood(calls, 4, 400)));
  rows.push(await guarded("churn", () => connectionChurn(n(5000), 50)));
  rows.push(await guarded("garbage handshakes", () => garbageHandshakes(n(20))));
  for (const [name, fn] of [
    ["fuzz: peer → broker", fuzzBroker],
    ["fuzz: peer → agent (sealed bodies)", fuzzAgent],
    ["fuzz: hostile broker → agent", fuzzFromBroker],
  ] as const) {
    rows.push(await guarded(name, async () => fuzzRow(name, await fn(n(5000)), false)));
  }
  return rows;
}

/** The durable-delivery section of RELIABILITY.md (its heading to its end). */
async function durableSection(): Promise<{ lines: string[]; rows: DurableRow[] }> {
  const heading = "## Durable delivery under faults";
  if (!redisAvailable) return { rows: [], lines: [heading, "", "Not run: no `/usr/bin/redis-server` on this machine (`.ci/run` installs it).", ""] };
  const calls = n(1000);
  process.stderr.write(`durable delivery under faults (${calls} calls)...\n`);
  const rows = await durableFaults(calls);
  return {
    rows,
    lines: [
      heading,
      "",
      `\`bench/durable-fault-scenarios.ts\` (also \`npm run figures:durable\`): brokers with a store on a real \`redis-server\` per scenario (AOF \`everysec\`), ${calls} durable calls`,
      "(a fifth or a tenth where the row says fewer), faults as in `test/integration/durable*.test.ts`. *stored*: acked `stored` by a broker;",
      "*delivered*: stored messages sent to their recipient, answers included (an answer that finds its caller not yet reconnected is stored",
      "and delivered in turn: so above *sent* after a broker restart); for a service: requests retired by a replica's answer. *expired*: deleted",
      "unsent at their deadline; *lost*: sent, neither answered nor expired; *ran twice*: requests a tool ran more than once for (counted by",
      "the worker). What runs how many times is in docs/DURABLE.md \"Guarantees, exactly\".",
      "",
      ...durableFaultsTable(rows),
      "",
    ],
  };
}

const mib = (b: number) => (b > 0 ? `${(b / MiB).toFixed(0)} MiB` : "—");
const total = (k: keyof Row) => rows.reduce((a, r) => a + (r[k] as number), 0);
const section = (text: string, heading: string) => {
  const at = text.indexOf(heading);
  if (at < 0) return undefined;
  const next = text.indexOf("\n## ", at + heading.length);
  return [text.slice(0, at), next < 0 ? "" : text.slice(next + 1)] as const;
};

if (values.only === "durable") {
  // The durable part alone: its section of the existing file is replaced, the rest kept as it was generated.
  const durable = await durableSection();
  const old = readFileSync(values.out, "utf8");
  const parts = section(old, "## Durable delivery under faults");
  const text = parts ? parts[0] + durable.lines.join("\n") + (parts[1] ? "\n" + parts[1] : "") : old.trimEnd() + "\n\n" + durable.lines.join("\n");
  writeFileSync(values.out, text);
  process.stdout.write(durable.lines.join("\n") + "\n");
  process.exit(durable.rows.some((r) => r.failed !== undefined || (r.twice > 0 && !r.scenario.includes("SIGKILLed mid-request"))) ? 1 : 0);
}

const rows = await faultRows();
const durable = await durableSection();
const lines = [
  "# Reliability figures",
  "",
  "Generated by `npm run figures` (`bench/figures.ts`): real broker and worker processes on 127.0.0.1,",
  "real signals (SIGKILL, SIGSTOP), counts read from the brokers' and agents' Prometheus metrics and from each",
  "caller's view of how its calls ended. The same scenarios run in CI with smaller counts (`test/reliability/faults.test.ts`,",
  "`test/reliability/overload.test.ts`, `test/reliability/fuzz.test.ts`); SIGSTOP and clock skew are covered there only.",
  "",
  `Run: ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB${values.quick ? " (--quick: a tenth of the counts)" : ""}. Timings are not figures here: the machine is shared.`,
  "",
  "| scenario | faults injected / survived | requests sent | answered | refused explicitly | lost | ran twice | bad inputs | crashes | peak broker RSS |",
  "|---|---|---|---|---|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.scenario} | ${r.faults ? `${r.faults} / ${r.survived}` : "—"} | ${r.sent} | ${r.answered} | ${r.refused} | ${r.lost} | ${r.duplicates} | ${r.badInputs || "—"} | ${r.crashes} | ${mib(r.peakRss)} |`),
  `| **total** | ${total("faults")} / ${total("survived")} | ${total("sent")} | ${total("answered")} | ${total("refused")} | ${total("lost")} | ${total("duplicates")} | ${total("badInputs")} | ${total("crashes")} | ${mib(Math.max(...rows.map((r) => r.peakRss)))} |`,
  "",
  "- *answered*: the call returned its result. *refused explicitly*: it failed with a typed error naming why",
  "  (`busy`, `no_route`, a job whose runner died: `timeout`). *lost*: no answer, or a plain timeout where an answer",
  "  was owed. *ran twice*: a tool executed more than once for one request id (counted by the worker).",
  "- Fault rows: calls are idempotent and retried by the SDK (`busy`, `no_route`, lost answers) within their deadline.",
  "- Flood and stalled-reader rows call with retries off, so every refusal shows. At full counts (without `--quick`) the flood row's",
  "  400 calls in flight per caller exceed the broker's default queue toward a caller (256 messages: `queueBytes` / `maxMessageBytes`,",
  "  README), so a few answers may be dropped (`queue is full` in the broker's log) and, retries being off, those calls end `timeout`:",
  "  0 to 33 of 10,000 in four runs. With retries on, the resend recovers them; size `queueBytes` for the calls in flight you expect.",
  "",
  "## Details",
  "",
  ...rows.map((r) => `- **${r.scenario}**: ${r.notes}${Object.keys(r.codes).length ? `; outcomes: ${JSON.stringify(r.codes)}` : ""}`),
  "",
  ...durable.lines,
];
writeFileSync(values.out, lines.join("\n"));
process.stdout.write(lines.join("\n") + "\n");
// A durable service request may run twice only when its replica was killed mid-request (docs/DURABLE.md).
const bad = rows.some((r) => r.crashes > 0 || r.duplicates > 0 || (r.faults > 0 && r.survived !== r.faults && r.scenario !== "connection churn")) || durable.rows.some((r) => r.failed !== undefined || (r.twice > 0 && !r.scenario.includes("SIGKILLed mid-request")));
process.exit(bad ? 1 : 0);
