/**
 * The bench's orchestrator: deploys each selected system as processes, drives its caller,
 * reads the broker's CPU and memory from /proc, runs the zmcp scenarios (idle agents, a
 * second broker), and returns every number in one {@link BenchResults}.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import hdr from "hdr-histogram-js";
import * as zmq from "zeromq";
import { encode, newHistogram, percentiles } from "./driver.js";
import { cpuMs, memory, removeOnExit, sleep, type Proc } from "./proc.js";
import { evaluateGoals } from "./report.js";
import { FULL_SECURITY_IDS, SYSTEMS } from "./systems/index.js";
import { nativeLibzmqVersion } from "./systems/native.js";
import { natsServerVersion } from "./systems/nats.js";
import type { BenchEnv, CallerHandle, Deployment, SystemSpec } from "./systems/spec.js";
import type { BenchResults, BenchSettings, BrokersPoint, CpuPer10k, IdleAgentsPoint, LatencyResult, Machine, Scenarios, SystemResult, ThroughputResult } from "./types.js";

export type Profile = BenchSettings["profile"];
export const SCENARIOS = ["idle-agents", "brokers"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/**
 * The profiles. Latency warm-up: enough sequential calls for V8 to have optimised the whole
 * call path of every system before measuring (steady state, as a long-running agent is): with
 * 400 warm-up calls zmcp's sealed p50 read 693 µs, with 5,000 493 µs, NATS 185 and 193 µs
 * (one --quick run each, issue 12); its SDK's call path is larger than nats.js's.
 */
export function settingsFor(profile: Profile): BenchSettings {
  const base = { profile, headlinePayload: 256, windows: [1, 16, 256] };
  switch (profile) {
    case "quick":
      return { ...base, rounds: 1, payloads: [256], latencyCalls: 2000, latencyWarmup: 3000, throughputPayloads: [256], throughputMs: 800, throughputWarmupMs: 200, idleAgents: [0, 100], brokers: [1, 2] };
    case "default":
      return { ...base, rounds: 3, payloads: [64, 256, 1024, 65536, 1048576], latencyCalls: 12_000, latencyWarmup: 3000, throughputPayloads: [64, 256, 1024, 65536, 1048576], throughputMs: 1000, throughputWarmupMs: 300, idleAgents: [0, 1, 100, 1000], brokers: [1, 2] };
    case "full":
      return { ...base, rounds: 5, payloads: [64, 256, 1024, 65536, 1048576], latencyCalls: 50_000, latencyWarmup: 5000, throughputPayloads: [64, 256, 1024, 65536, 1048576], throughputMs: 3000, throughputWarmupMs: 500, idleAgents: [0, 1, 100, 1000], brokers: [1, 2] };
  }
}

/**
 * Calls of one latency cell in one round: `latencyCalls` shared by the rounds, and large
 * payloads (slower per call) get a fifth (1 MiB a sixtieth), so every payload takes a similar time.
 */
export function callsFor(settings: BenchSettings, payload: number): { calls: number; warmup: number } {
  const scale = payload >= 1048576 ? 60 : payload >= 65536 ? 5 : 1;
  return { calls: Math.max(1, Math.round(settings.latencyCalls / scale / settings.rounds)), warmup: Math.round(settings.latencyWarmup / scale) };
}

export interface Progress {
  /** Replaces the progress line. */
  update(text: string): void;
  /** Prints a line that stays. */
  log(text: string): void;
  done(): void;
}

export interface RunOptions {
  settings: BenchSettings;
  /** System ids to run; undefined runs them all. */
  systems: string[] | undefined;
  /** Scenarios to run. */
  scenarios: ScenarioName[];
  progress: Progress;
}

export function machineInfo(): Machine {
  let cpu = "unknown";
  try {
    cpu = readFileSync("/proc/cpuinfo", "latin1").match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux
  }
  const nativeZmq = nativeLibzmqVersion();
  const machine: Machine = {
    nproc: availableParallelism(),
    cpu,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    kernel: release(),
    libzmq: `zeromq.js ${zmq.version}${nativeZmq ? `, system ${nativeZmq}` : ""}`,
    loadAverage: Math.round(loadavg()[0]! * 100) / 100,
  };
  const natsVersion = natsServerVersion();
  if (natsVersion) machine.natsServer = natsVersion;
  return machine;
}

const sum = (xs: Array<number | undefined>) => (xs.some((x) => x === undefined) ? undefined : xs.reduce<number>((a, b) => a + b!, 0));
const per10k = (ms: number | undefined, calls: number) => (ms === undefined || calls <= 0 ? undefined : Math.round((ms * 10_000 * 10) / calls) / 10);
const fmtUs = (us: number) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${Math.round(us)} µs`);
const fmtBytes = (n: number) => (n >= 1024 ? `${n / 1024} KiB` : `${n} B`);

/** Throughput with CPU read from /proc around the run. */
async function throughputCell(
  dep: Deployment,
  caller: CallerHandle,
  payload: number,
  window: number,
  settings: BenchSettings,
): Promise<ThroughputResult> {
  const pids = { broker: dep.brokers.map((b) => b.pid), responder: dep.responder?.pid, caller: caller.pid };
  const read = () => ({
    broker: sum(pids.broker.map(cpuMs)),
    responder: pids.responder === undefined ? undefined : cpuMs(pids.responder),
    caller: pids.caller === undefined ? undefined : cpuMs(pids.caller),
  });
  const before = read();
  const timeout = settings.throughputMs + settings.throughputWarmupMs + 60_000;
  const run = await caller.throughput(payload, window, settings.throughputMs, settings.throughputWarmupMs, timeout);
  const after = read();
  const diff = (k: keyof typeof before) => (before[k] === undefined || after[k] === undefined ? undefined : after[k]! - before[k]!);
  const cpu: CpuPer10k = {};
  const b = per10k(diff("broker"), run.totalCalls);
  const r = per10k(diff("responder"), run.totalCalls);
  const c = per10k(run.callerCpuMs ?? diff("caller"), run.totalCalls);
  if (b !== undefined) cpu.broker = b;
  if (r !== undefined) cpu.responder = r;
  if (c !== undefined) cpu.caller = c;
  const { totalCalls: _total, callerCpuMs: _cpu, ...rest } = run;
  const result: ThroughputResult = { ...rest, cpuMsPer10k: cpu };
  const rss = sum(dep.brokers.map((p) => memory(p.pid)?.rssMiB));
  if (rss !== undefined) result.brokerRssMiB = Math.round(rss * 10) / 10;
  return result;
}

async function latencyCell(caller: CallerHandle, payload: number, settings: BenchSettings): Promise<LatencyResult> {
  const { calls, warmup } = callsFor(settings, payload);
  return caller.latency(payload, warmup, calls, (calls + warmup) * 50 + 60_000);
}

function usage(procs: Proc[]) {
  return procs.flatMap((p) => {
    const m = memory(p.pid);
    return m ? [{ pid: p.pid, rssMiB: Math.round(m.rssMiB * 10) / 10, peakRssMiB: Math.round(m.peakRssMiB * 10) / 10 }] : [];
  });
}

class Bench {
  readonly env: BenchEnv;
  readonly #checked = new Map<string, string | undefined>();

  constructor(
    readonly options: RunOptions,
    tmp: string,
  ) {
    this.env = { tmp, note: (text) => options.progress.update(text) };
  }

  get settings(): BenchSettings {
    return this.options.settings;
  }

  /** Settings for the scenarios, which run once: every call of the rounds in one pass. */
  get once(): BenchSettings {
    return { ...this.options.settings, rounds: 1 };
  }

  /** Why `spec` cannot run, or undefined; checked once per run. */
  async unavailable(spec: SystemSpec): Promise<string | undefined> {
    if (spec.skip !== undefined) return spec.skip;
    if (!this.#checked.has(spec.id)) {
      let reason: string | undefined;
      try {
        reason = await spec.check?.(this.env);
      } catch (err) {
        reason = `check failed: ${(err as Error).message}`;
      }
      this.#checked.set(spec.id, reason);
    }
    return this.#checked.get(spec.id);
  }

  async runSystem(spec: SystemSpec, index: number, count: number, round: number): Promise<SystemResult> {
    const result: SystemResult = { id: spec.id, title: spec.title, status: "ok", latency: [], throughput: [] };
    const rounds = this.settings.rounds;
    const tag = `${rounds > 1 ? `round ${round}/${rounds} ` : ""}[${index}/${count}] ${spec.id}`;
    const reason = await this.unavailable(spec);
    if (reason !== undefined) {
      if (round === 1) this.options.progress.log(`${tag}: skipped: ${reason}`);
      return { ...result, status: "skipped", note: reason };
    }
    const p = this.options.progress;
    let dep: Deployment | undefined;
    let caller: CallerHandle | undefined;
    try {
      p.update(`${tag}: starting`);
      dep = await spec.start(this.env, {});
      caller = await dep.caller();
      for (const payload of this.settings.payloads) {
        p.update(`${tag}: latency ${fmtBytes(payload)}, ${callsFor(this.settings, payload).calls} sequential calls`);
        const lat = await latencyCell(caller, payload, this.settings);
        result.latency.push(lat);
        p.update(`${tag}: latency ${fmtBytes(payload)}: p50 ${fmtUs(lat.us.p50)}, p99 ${fmtUs(lat.us.p99)}`);
      }
      for (const payload of this.settings.throughputPayloads) {
        for (const window of this.settings.windows) {
          p.update(`${tag}: throughput ${fmtBytes(payload)}, ${window} in flight`);
          const thr = await throughputCell(dep, caller, payload, window, this.settings);
          result.throughput.push(thr);
          p.update(`${tag}: throughput ${fmtBytes(payload)}, ${window} in flight: ${thr.perSecond}/s`);
        }
      }
      result.broker = usage(dep.brokers);
      const head = result.latency.find((l) => l.payload === this.settings.headlinePayload) ?? result.latency[0];
      const best = Math.max(0, ...result.throughput.map((t) => t.perSecond));
      p.log(`${tag}: ${head ? `p50 ${fmtUs(head.us.p50)}, p99 ${fmtUs(head.us.p99)} (${fmtBytes(head.payload)})` : ""}${best ? `, up to ${best} calls/s` : ""}`);
    } catch (err) {
      result.status = "failed";
      result.note = (err as Error).message.split("\n")[0]!;
      p.log(`${tag}: failed: ${(err as Error).message}`);
    } finally {
      await caller?.stop().catch(() => undefined);
      await dep?.stop().catch(() => undefined);
    }
    return result;
  }

  /** The zmcp system with every security step that can run (for the scenarios). */
  async fullSecurity(): Promise<SystemSpec | undefined> {
    for (const id of FULL_SECURITY_IDS) {
      const spec = SYSTEMS.find((s) => s.id === id);
      if (spec && (await this.unavailable(spec)) === undefined) return spec;
    }
    return undefined;
  }

  async idleAgents(spec: SystemSpec): Promise<NonNullable<Scenarios["idleAgents"]>> {
    const p = this.options.progress;
    const counts = [...new Set(this.settings.idleAgents)].sort((a, b) => a - b);
    const scenario: NonNullable<Scenarios["idleAgents"]> = { system: spec.id, status: "ok", points: [] };
    let dep: Deployment | undefined;
    let caller: CallerHandle | undefined;
    let idle: Awaited<ReturnType<NonNullable<Deployment["idle"]>>> | undefined;
    try {
      p.update(`idle agents: preparing ${Math.max(...counts)} certificates`);
      dep = await spec.start(this.env, { idleAgents: Math.max(...counts) });
      if (!dep.idle) throw new Error(`${spec.id} has no idle-agent role`);
      caller = await dep.caller();
      idle = await dep.idle();
      const broker = dep.brokers[0]!;
      // The broker's heap grows with its first traffic: warm it up before the baseline.
      p.update(`idle agents: warming up the broker`);
      await latencyCell(caller, this.settings.headlinePayload, this.once);
      let baseRss: number | undefined;
      for (const n of counts) {
        p.update(`idle agents: connecting ${n}`);
        if (n > 0) await idle.request({ type: "grow", seq: idle.nextSeq(), agents: n }, 300_000);
        await sleep(1500); // let handshakes and heartbeats settle
        p.update(`idle agents: ${n} connected, latency ${fmtBytes(this.settings.headlinePayload)}`);
        const latency = await latencyCell(caller, this.settings.headlinePayload, this.once);
        // Read after the same traffic at every point, so only the agents differ.
        const rss = memory(broker.pid)?.rssMiB ?? NaN;
        baseRss ??= rss;
        const point: IdleAgentsPoint = { agents: n, brokerRssMiB: Math.round(rss * 10) / 10, latency };
        if (n >= 100) point.rssPerAgentKiB = Math.round(((rss - baseRss) * 1024 * 10) / n) / 10;
        scenario.points.push(point);
        p.log(`idle agents ${n}: broker RSS ${point.brokerRssMiB} MiB, p50 ${fmtUs(latency.us.p50)}, p99 ${fmtUs(latency.us.p99)}`);
      }
    } catch (err) {
      scenario.status = "failed";
      scenario.note = (err as Error).message.split("\n")[0]!;
      p.log(`idle agents: failed: ${(err as Error).message}`);
    } finally {
      await idle?.stop(10_000).catch(() => undefined);
      await caller?.stop().catch(() => undefined);
      await dep?.stop().catch(() => undefined);
    }
    return scenario;
  }

  async brokers(spec: SystemSpec): Promise<NonNullable<Scenarios["brokers"]>> {
    const p = this.options.progress;
    const scenario: NonNullable<Scenarios["brokers"]> = { system: spec.id, status: "ok", points: [] };
    const window = Math.max(...this.settings.windows);
    for (const n of [...new Set(this.settings.brokers)].sort((a, b) => a - b)) {
      if (n > (spec.maxBrokers ?? 1)) continue;
      let dep: Deployment | undefined;
      let caller: CallerHandle | undefined;
      try {
        p.update(`brokers: ${n}, starting`);
        dep = await spec.start(this.env, { brokers: n });
        caller = await dep.caller();
        p.update(`brokers: ${n}, latency`);
        const latency = await latencyCell(caller, this.settings.headlinePayload, this.once);
        p.update(`brokers: ${n}, throughput with ${window} in flight`);
        const throughput = await throughputCell(dep, caller, this.settings.headlinePayload, window, this.once);
        scenario.points.push({ brokers: n, latency, throughput } satisfies BrokersPoint);
        p.log(`brokers ${n}: p50 ${fmtUs(latency.us.p50)}, p99 ${fmtUs(latency.us.p99)}, ${throughput.perSecond} calls/s with ${window} in flight`);
      } catch (err) {
        scenario.status = "failed";
        scenario.note = (err as Error).message.split("\n")[0]!;
        p.log(`brokers ${n}: failed: ${(err as Error).message}`);
      } finally {
        await caller?.stop().catch(() => undefined);
        await dep?.stop().catch(() => undefined);
      }
    }
    return scenario;
  }
}

/** Sums latency histograms over rounds; takes the median round of each throughput cell. */
export function mergeLatency(cells: LatencyResult[]): LatencyResult {
  if (cells.length === 1) return cells[0]!;
  const h = newHistogram();
  for (const c of cells) {
    const part = hdr.decodeFromCompressedBase64(c.histogram);
    h.add(part);
    part.destroy();
  }
  const merged: LatencyResult = {
    payload: cells[0]!.payload,
    warmup: cells[0]!.warmup,
    calls: cells.reduce((a, c) => a + c.calls, 0),
    errors: cells.reduce((a, c) => a + c.errors, 0),
    us: percentiles(h),
    histogram: encode(h),
  };
  h.destroy();
  return merged;
}

export function mergeThroughput(cells: ThroughputResult[]): ThroughputResult {
  const sorted = [...cells].sort((a, b) => a.perSecond - b.perSecond);
  const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return cells.length === 1 ? median : { ...median, perSecondRounds: cells.map((c) => c.perSecond) };
}

function mergeRounds(rounds: SystemResult[]): SystemResult {
  const first = rounds[0]!;
  if (rounds.length === 1) return first;
  const failed = rounds.find((r) => r.status === "failed");
  const ok = rounds.filter((r) => r.status === "ok");
  const merged: SystemResult = { id: first.id, title: first.title, status: failed ? "failed" : first.status, latency: [], throughput: [] };
  const note = failed?.note ?? first.note;
  if (note !== undefined) merged.note = failed && ok.length ? `${note} (in ${rounds.length - ok.length} of ${rounds.length} rounds)` : note;
  const payloads = [...new Set(ok.flatMap((r) => r.latency.map((l) => l.payload)))];
  for (const p of payloads) merged.latency.push(mergeLatency(ok.flatMap((r) => r.latency.filter((l) => l.payload === p))));
  const keys = [...new Set(ok.flatMap((r) => r.throughput.map((t) => `${t.payload}/${t.window}`)))];
  for (const key of keys) merged.throughput.push(mergeThroughput(ok.flatMap((r) => r.throughput.filter((t) => `${t.payload}/${t.window}` === key))));
  const last = ok[ok.length - 1]?.broker;
  if (last) merged.broker = last;
  return merged;
}

export async function runBench(options: RunOptions): Promise<BenchResults> {
  const startedAt = new Date().toISOString();
  const machine = machineInfo();
  const tmp = mkdtempSync(join(tmpdir(), "zmq-bench-"));
  removeOnExit(tmp);
  const bench = new Bench(options, tmp);
  const selected = options.systems ? SYSTEMS.filter((s) => options.systems!.includes(s.id)) : [...SYSTEMS];
  const systems: SystemResult[] = [];
  const scenarios: Scenarios = {};
  try {
    const byRound: SystemResult[][] = selected.map(() => []);
    for (let round = 1; round <= options.settings.rounds; round++) {
      // Rotate the order, so that no system always runs first (cold) or last.
      for (let k = 0; k < selected.length; k++) {
        const i = (k + round - 1) % selected.length;
        byRound[i]!.push(await bench.runSystem(selected[i]!, k + 1, selected.length, round));
      }
    }
    systems.push(...byRound.map(mergeRounds));
    if (options.scenarios.length > 0) {
      const full = await bench.fullSecurity();
      for (const name of options.scenarios) {
        const key = name === "idle-agents" ? "idleAgents" : "brokers";
        if (!full) {
          scenarios[key] = { system: FULL_SECURITY_IDS.join("|"), status: "skipped", note: "no zmcp system with full security can run", points: [] };
          continue;
        }
        if (name === "idle-agents") scenarios.idleAgents = await bench.idleAgents(full);
        else scenarios.brokers = await bench.brokers(full);
      }
    }
  } finally {
    options.progress.done();
    rmSync(tmp, { recursive: true, force: true });
  }
  const results: BenchResults = {
    schema: "zmq-bench/1",
    startedAt,
    finishedAt: new Date().toISOString(),
    machine,
    settings: options.settings,
    systems,
    scenarios,
    goals: [],
  };
  results.goals = evaluateGoals(results);
  return results;
}
