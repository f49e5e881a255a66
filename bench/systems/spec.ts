/**
 * What a benchmarked system is: how the bench deploys its server side (broker or server,
 * responder) as processes, how it gets a caller, and the roles its worker processes play.
 */
import { startWorker, type Proc, type Worker } from "../proc.js";
import type { RateResult } from "../driver.js";
import type { LatencyResult, RoleStarter, ThroughputResult } from "../types.js";

export interface BenchEnv {
  /** A temporary directory of this run, removed at the end. */
  tmp: string;
  /** Prints a note on the progress line. */
  note(text: string): void;
}

export interface StartOptions {
  /** Brokers to run (systems that support a fleet; see {@link SystemSpec.maxBrokers}). Default 1. */
  brokers?: number;
  /** Certificates to prepare for idle agents (zmcp only). Default 0. */
  idleAgents?: number;
}

export type ThroughputRun = Omit<ThroughputResult, "cpuMsPer10k" | "brokerRssMiB"> & {
  totalCalls: number;
  /** CPU of the caller over the run, ms, when the caller measures it itself (native). */
  callerCpuMs?: number;
};

/** The measuring end of a deployed system. */
export interface CallerHandle {
  /** The caller's pid, for CPU accounting (undefined while no caller process runs). */
  pid: number | undefined;
  latency(payload: number, warmup: number, calls: number, timeoutMs: number): Promise<LatencyResult>;
  throughput(payload: number, window: number, durationMs: number, warmupMs: number, timeoutMs: number): Promise<ThroughputRun>;
  /** A fixed offered-load run (driver.ts measureRate); node callers only. */
  rate?(payload: number, rate: number, durationMs: number, warmupMs: number, timeoutMs: number): Promise<RateResult>;
  stop(): Promise<void>;
}

export interface Deployment {
  /** Processes reported as the broker (or, without one, the server). */
  brokers: Proc[];
  /** The echoing process, when it is not the server itself. */
  responder?: Proc;
  caller(): Promise<CallerHandle>;
  /** A worker holding idle agents (zmcp only); grown with `request({type: "grow"})`. */
  idle?(): Promise<Worker>;
  stop(): Promise<void>;
}

export interface SystemSpec {
  /** Short id, used by `--systems`. */
  id: string;
  /** Row label in the report. */
  title: string;
  /** One line: what is measured. */
  describe: string;
  /** Listed in the report but never run, with this reason (e.g. a feature not merged yet). */
  skip?: string;
  /** Why it cannot run on this machine, or undefined when it can. May install or build. */
  check?(env: BenchEnv): Promise<string | undefined>;
  /** Largest broker fleet it supports. Default 1. */
  maxBrokers?: number;
  start(env: BenchEnv, options: StartOptions): Promise<Deployment>;
  /** Roles played in `dist/bench/worker.js` processes, by name. */
  roles: Record<string, RoleStarter>;
}

/** A caller played by a node worker process (every system but the native one). */
export async function nodeCaller(system: string, config: Record<string, unknown>, env?: Record<string, string>): Promise<CallerHandle> {
  const worker = await startWorker(system, "caller", config, undefined, env);
  return {
    pid: worker.pid,
    latency(payload, warmup, calls, timeoutMs) {
      return worker.request<LatencyResult>({ type: "latency", seq: worker.nextSeq(), payload, warmup, calls }, timeoutMs);
    },
    throughput(payload, window, durationMs, warmupMs, timeoutMs) {
      return worker.request<ThroughputRun>({ type: "throughput", seq: worker.nextSeq(), payload, window, durationMs, warmupMs }, timeoutMs);
    },
    rate(payload, rate, durationMs, warmupMs, timeoutMs) {
      return worker.request<RateResult>({ type: "rate", seq: worker.nextSeq(), payload, rate, durationMs, warmupMs }, timeoutMs);
    },
    stop: () => worker.stop(),
  };
}

/** Stops processes in order, ignoring the ones already gone. */
export async function stopAll(procs: Array<Proc | undefined>): Promise<void> {
  for (const p of procs) {
    try {
      await p?.stop();
    } catch {
      // already gone
    }
  }
}
