/**
 * The shapes shared by the bench's orchestrator, its worker processes and its report.
 *
 * A system (zmcp at one security step, NATS, MCP, a floor) is deployed as separate processes
 * on loopback: a broker or server, a responder that echoes, and a caller that measures.
 */

/** Latency summary in microseconds, read from an HDR histogram recorded in nanoseconds. */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  count: number;
}

/** Sequential calls of one payload size. */
export interface LatencyResult {
  payload: number;
  warmup: number;
  calls: number;
  errors: number;
  us: Percentiles;
  /** The HDR histogram (ns), compressed base64 as read by `decodeFromCompressedBase64`. */
  histogram: string;
}

/** CPU time per 10,000 calls (round trips), ms, by role; undefined where not measured. */
export interface CpuPer10k {
  broker?: number;
  responder?: number;
  caller?: number;
}

/** `window` calls kept in flight for `durationMs`. */
export interface ThroughputResult {
  payload: number;
  window: number;
  durationMs: number;
  /** Calls completed inside the measured window. */
  calls: number;
  perSecond: number;
  errors: number;
  /** Failed calls by error code (or the start of the message), when any failed. */
  errorCodes?: Record<string, number>;
  /** Latency of the calls under this load. */
  us: Percentiles;
  /** Calls/s of every round, in run order; the cell reported is the round with the median. */
  perSecondRounds?: number[];
  cpuMsPer10k: CpuPer10k;
  /** Resident set of the broker (or server) processes after the run, MiB (summed over brokers). */
  brokerRssMiB?: number;
}

export interface ProcessUsage {
  pid: number;
  rssMiB: number;
  peakRssMiB: number;
}

export interface SystemResult {
  id: string;
  title: string;
  status: "ok" | "skipped" | "failed";
  /** Why a system was skipped or failed, or a caveat about how it ran. */
  note?: string;
  latency: LatencyResult[];
  throughput: ThroughputResult[];
  /** Broker (or server) processes, read from /proc at the end of the system's run. */
  broker?: ProcessUsage[];
}

/** zmcp broker with idle agents connected. */
export interface IdleAgentsPoint {
  agents: number;
  brokerRssMiB: number;
  /** (RSS with N agents - RSS with none) / N, KiB; only for N >= 100 (below, heap noise dominates). */
  rssPerAgentKiB?: number;
  latency: LatencyResult;
}

export interface BrokersPoint {
  brokers: number;
  latency: LatencyResult;
  throughput: ThroughputResult;
}

export interface Scenarios {
  idleAgents?: { system: string; status: "ok" | "skipped" | "failed"; note?: string; points: IdleAgentsPoint[] };
  brokers?: { system: string; status: "ok" | "skipped" | "failed"; note?: string; points: BrokersPoint[] };
}

export interface Goal {
  name: string;
  target: string;
  value: string;
  /** undefined when a number it needs was not measured. */
  met?: boolean;
}

export interface Machine {
  nproc: number;
  cpu: string;
  node: string;
  platform: string;
  kernel: string;
  libzmq: string;
  natsServer?: string;
  /** 1-minute load average when the run started: other work on the machine skews every number. */
  loadAverage: number;
}

export interface BenchSettings {
  profile: "quick" | "default" | "full";
  /**
   * Passes over all systems, in rotated order: latency histograms are merged over the
   * rounds and throughput takes the median round, so a burst of other work on the machine
   * weighs on every system alike rather than on the one running at that moment.
   */
  rounds: number;
  payloads: number[];
  /** The payload that the summary table, ratios and goals use. */
  headlinePayload: number;
  latencyCalls: number;
  latencyWarmup: number;
  windows: number[];
  throughputPayloads: number[];
  throughputMs: number;
  throughputWarmupMs: number;
  idleAgents: number[];
  brokers: number[];
}

export interface BenchResults {
  schema: "zmq-bench/1";
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  settings: BenchSettings;
  systems: SystemResult[];
  scenarios: Scenarios;
  goals: Goal[];
}

/** Messages from the orchestrator to a worker. */
export type ToWorker =
  | { type: "init"; config: WorkerConfig }
  | { type: "latency"; seq: number; payload: number; warmup: number; calls: number }
  | { type: "throughput"; seq: number; payload: number; window: number; durationMs: number; warmupMs: number }
  | { type: "rate"; seq: number; payload: number; rate: number; durationMs: number; warmupMs: number }
  | { type: "grow"; seq: number; agents: number }
  | { type: "stop" };

/** Messages from a worker to the orchestrator. */
export type FromWorker =
  | { type: "ready"; info?: Record<string, unknown> }
  | { type: "result"; seq: number; result: unknown }
  | { type: "error"; seq?: number; message: string };

/** What a worker needs to play its role: endpoints, keys, paths. Role-specific and JSON-safe. */
export type WorkerConfig = Record<string, unknown>;

/** The caller side of a system, inside the caller process: one echo round trip per call. */
export interface Client {
  /** Sends `payload` and resolves once its echo came back (rejects on error or mismatch). */
  call(payload: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** A server-side role (broker, responder, idle agents) inside a worker process. */
export interface Service {
  info?: Record<string, unknown>;
  /** For the idle-agents role: connect more agents until `agents` are connected. */
  grow?(agents: number): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export type RoleStarter = (config: WorkerConfig) => Promise<Client | Service>;
