/**
 * The one process harness of the test suite and of the reliability figures (`npm run figures`,
 * `npm run soak`): spawn a built script, wait for its JSON `ready` line, keep its log lines,
 * stop it (and whatever it started). Brokers (the built `zmq-broker` bin, optionally with its
 * metrics endpoint) and worker agents (test/reliability/worker.ts) are built on it.
 *
 * Everything binds 127.0.0.1. Each child runs in its own process group so that `stop()` also
 * ends its children (zmq-mcp attach starts an MCP server, for one).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { metricSum, scrapeMetrics } from "../../src/support/metrics.js";
import type { CertFixture } from "./certs.js";
import { waitFor } from "./wait.js";

/** The package root, from either `test/support` (vitest) or `dist/test/support` (built scripts). */
const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = here.includes(join("dist", "test")) ? join(here, "..", "..", "..") : join(here, "..", "..");
export const DIST = join(ROOT, "dist");
/** A built bin: `BIN("zmq-broker")`. */
export const BIN = (name: string) => join(DIST, "bin", `${name}.js`);
/** A built file by its source path: `built("examples/replica.js")`. */
export const built = (path: string) => join(DIST, path);
const workerScript = built("test/reliability/worker.js");

export type LogEntry = Record<string, unknown>;

export interface Child {
  proc: ChildProcess;
  /** JSON log lines (stderr) so far; a line that is not JSON is kept as `{level: "raw", msg}`. */
  logs: LogEntry[];
  /** The first log line whose msg is the ready message. */
  ready: LogEntry;
  exited: Promise<number | null>;
  alive(): boolean;
  /** Sends `signal` to the process alone (faults: SIGKILL, SIGSTOP, SIGHUP...). */
  kill(signal: NodeJS.Signals): void;
  /** Waits for a log line that `match`es; fails if the process exits first. */
  waitLog(match: (entry: LogEntry) => boolean, what: string, timeoutMs?: number): Promise<LogEntry>;
  /**
   * Sends `signal` (SIGTERM by default) and waits for the exit (SIGKILL after `graceMs`), then
   * kills what is left of its process group. Resolves with the exit code (-1 if killed by a signal).
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

export interface SpawnOptions {
  timeoutMs?: number;
  /** Node flags before the script. */
  nodeArgs?: string[];
}

/** Spawns `node script args` and waits for a JSON log line with `msg === readyMsg`. */
export async function spawnChild(script: string, args: string[], readyMsg: string, options: SpawnOptions = {}): Promise<Child> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), script, ...args], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  const logs: LogEntry[] = [];
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const killGroup = () => {
    try {
      process.kill(-proc.pid!, "SIGKILL");
    } catch {
      // the group is gone already
    }
  };
  const ready = await new Promise<LogEntry>((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup();
      reject(new Error(`${script} not ready within ${timeoutMs} ms: ${JSON.stringify(logs.slice(-5))}`));
    }, timeoutMs);
    createInterface({ input: proc.stderr! }).on("line", (line) => {
      let entry: LogEntry;
      try {
        entry = JSON.parse(line) as LogEntry;
      } catch {
        entry = { level: "raw", msg: line };
      }
      if (logs.length < 10_000) logs.push(entry);
      if (entry["msg"] === readyMsg) {
        clearTimeout(timer);
        resolve(entry);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      killGroup();
      reject(new Error(`${script} exited with ${code} before ready: ${JSON.stringify(logs.slice(-5))}`));
    });
  });
  return {
    proc,
    logs,
    ready,
    exited,
    alive,
    kill: (signal) => {
      if (alive()) proc.kill(signal);
    },
    waitLog: (match, what, waitMs = 15_000) =>
      waitFor(() => {
        if (!alive()) throw new Error(`${script} exited with ${proc.exitCode} while waiting for ${what}: ${JSON.stringify(logs.slice(-20))}`);
        return logs.find(match);
      }, waitMs, what),
    async stop(signal = "SIGTERM", graceMs = 5000) {
      if (alive()) {
        proc.kill("SIGCONT"); // a stopped process cannot handle SIGTERM
        proc.kill(signal);
      }
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      killGroup();
      return code;
    },
  };
}

export interface BrokerProcess extends Child {
  endpoint: string;
  publicKey: string;
  /** The metrics URL when the broker was started with `--metrics`. */
  metricsUrl: string;
  /** Broker metrics now (name{labels} → value); needs `--metrics`. */
  scrape(): Promise<Map<string, number>>;
}

/** Runs the built `zmq-broker` bin with `args` and waits for its `ready` line. */
export async function spawnBroker(args: string[], timeoutMs = 10_000, nodeArgs?: string[]): Promise<BrokerProcess> {
  const child = await spawnChild(BIN("zmq-broker"), args, "ready", { timeoutMs, ...(nodeArgs ? { nodeArgs } : {}) });
  const metricsUrl = String(child.ready["metrics"] ?? "");
  return {
    ...child,
    endpoint: String(child.ready["endpoint"]),
    publicKey: String(child.ready["publicKey"]),
    metricsUrl,
    scrape: () => scrapeMetrics(metricsUrl),
  };
}

/**
 * The built `zmq-broker` for `fx` with metrics on a free loopback port. `bind` may name a fixed
 * port (for restarts on the same endpoint); extra CLI arguments go in `args`.
 */
export async function startBrokerProcess(fx: CertFixture, options: { bind?: string; args?: string[] } = {}): Promise<BrokerProcess> {
  const args = ["--bind", options.bind ?? "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir];
  return spawnBroker([...args, "--metrics", "127.0.0.1:0", "--log-level", "info", ...(options.args ?? [])], 15_000);
}

export interface WorkerProcess extends Child {
  metricsUrl: string;
  scrape(): Promise<Map<string, number>>;
}

/**
 * Starts a worker agent (test/reliability/worker.ts) as a process. `clockOffsetMs` shifts its
 * clock (Date.now) to simulate skew between hosts.
 */
export async function startWorker(
  fx: CertFixture,
  name: string,
  brokers: string[],
  options: { clockOffsetMs?: number; args?: string[]; heartbeat?: number; probe?: string } = {},
): Promise<WorkerProcess> {
  const args = ["--cert", fx.secretPath(name), "--certs", fx.dir, "--name", name, "--metrics", "127.0.0.1:0"];
  for (const b of brokers) args.push("--broker", b);
  if (options.clockOffsetMs) args.push(`--clock-offset=${options.clockOffsetMs}`);
  if (options.probe) args.push("--probe", options.probe);
  if (options.heartbeat) args.push("--heartbeat", String(options.heartbeat));
  const child = await spawnChild(workerScript, [...args, ...(options.args ?? [])], "agent ready");
  const metricsUrl = String(child.ready["metrics"]);
  return { ...child, metricsUrl, scrape: () => scrapeMetrics(metricsUrl) };
}

/** Resident memory of a process, from its metrics (`process_resident_memory_bytes`). */
export async function rssOf(p: { scrape(): Promise<Map<string, number>> }): Promise<number> {
  return metricSum(await p.scrape(), "process_resident_memory_bytes");
}

/** Samples a process's RSS every `intervalMs` until stopped; keeps the peak. */
export class RssSampler {
  peak = 0;
  readonly samples: number[] = [];
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(
    private readonly target: { scrape(): Promise<Map<string, number>> },
    intervalMs = 250,
  ) {
    this.#timer = setInterval(() => void this.sample(), intervalMs);
  }

  async sample(): Promise<number> {
    if (this.#busy) return this.peak;
    this.#busy = true;
    try {
      const rss = await rssOf(this.target);
      if (rss > 0) {
        this.peak = Math.max(this.peak, rss);
        if (this.samples.length < 100_000) this.samples.push(rss);
      }
      return rss;
    } catch {
      return 0; // the process may be down (a fault being injected)
    } finally {
      this.#busy = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

export const MiB = 1024 * 1024;

/** Stops a process spawned by hand (not through spawnChild) and waits for it to exit. */
export async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill(signal);
  await exited;
}

/** Spawns a built script (path under dist/) and resolves with its process once it logs `readyMsg`; stop it with stopProcess. */
export async function spawnReady(script: string, args: string[], readyMsg: string, timeoutMs = 10_000): Promise<ChildProcess> {
  return (await spawnChild(built(script), args, readyMsg, { timeoutMs })).proc;
}
