/**
 * Process harness for the reliability scenarios (tests, `npm run figures`, `npm run soak`):
 * temporary certificates, the built `zmq-broker` bin as a child process with its metrics
 * endpoint, worker agents as child processes, and RSS sampling through the metrics.
 *
 * Everything binds 127.0.0.1 and every process started here is stopped by `stop()`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { generateCertificate, saveCertificate, type Certificate } from "../../src/certs.js";
import { metricSum, scrapeMetrics } from "../../src/metrics.js";

/** The package root, from either `examples/reliability` (vitest) or `dist/examples/reliability`. */
const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = here.includes(`${join("dist", "examples")}`) ? join(here, "..", "..", "..") : join(here, "..", "..");
export const DIST = join(ROOT, "dist");
export const brokerBin = join(DIST, "bin", "zmq-broker.js");
export const workerScript = join(DIST, "examples", "reliability", "worker.js");

export interface Keys {
  dir: string;
  certs: Record<string, Required<Certificate>>;
  secretPath(name: string): string;
  key(name: string): string;
  add(name: string): Required<Certificate>;
  cleanup(): void;
}

/** A temporary certificate directory with `broker` and `names`. */
export function makeKeys(...names: string[]): Keys {
  const dir = mkdtempSync(join(tmpdir(), "zmcp-rel-"));
  const certs: Record<string, Required<Certificate>> = {};
  const keys: Keys = {
    dir,
    certs,
    secretPath: (name) => join(dir, `${name}.key_secret`),
    key: (name) => certs[name]!.publicKey,
    add(name) {
      const cert = generateCertificate({ name });
      saveCertificate(cert, dir, name);
      certs[name] = cert;
      return cert;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  for (const name of ["broker", ...names]) keys.add(name);
  return keys;
}

export interface Child {
  proc: ChildProcess;
  /** JSON log lines (stderr) so far. */
  logs: Array<Record<string, unknown>>;
  /** The first log line whose msg is the ready message. */
  ready: Record<string, unknown>;
  exited: Promise<number | null>;
  alive(): boolean;
  kill(signal: NodeJS.Signals): void;
  /** Sends `signal` (SIGTERM by default) and waits for the exit; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

/** Spawns `node script args` and waits for a JSON log line with `msg === readyMsg`. */
export async function spawnChild(script: string, args: string[], readyMsg: string, timeoutMs = 15_000, nodeArgs: string[] = []): Promise<Child> {
  const proc = spawn(process.execPath, [...nodeArgs, script, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${script} not ready within ${timeoutMs} ms: ${JSON.stringify(logs.slice(-5))}`));
    }, timeoutMs);
    createInterface({ input: proc.stderr! }).on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
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
      reject(new Error(`${script} exited with ${code} before ready: ${JSON.stringify(logs.slice(-5))}`));
    });
  });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  return {
    proc,
    logs,
    ready,
    exited,
    alive,
    kill: (signal) => {
      if (alive()) proc.kill(signal);
    },
    async stop(signal = "SIGTERM", graceMs = 5000) {
      if (!alive()) return exited;
      proc.kill("SIGCONT"); // a stopped process cannot handle SIGTERM
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface BrokerProcess extends Child {
  endpoint: string;
  metricsUrl: string;
  /** Broker metrics now (name{labels} → value). */
  scrape(): Promise<Map<string, number>>;
}

/**
 * Starts the built `zmq-broker` with metrics on a free loopback port. `bind` may name a fixed
 * port (for restarts on the same endpoint); extra CLI arguments go in `args`.
 */
export async function startBroker(keys: Keys, options: { bind?: string; args?: string[] } = {}): Promise<BrokerProcess> {
  const child = await spawnChild(
    brokerBin,
    [
      "--bind",
      options.bind ?? "tcp://127.0.0.1:*",
      "--key",
      keys.secretPath("broker"),
      "--allow",
      keys.dir,
      "--metrics",
      "127.0.0.1:0",
      "--log-level",
      "info",
      ...(options.args ?? []),
    ],
    "ready",
  );
  const metricsUrl = String(child.ready["metrics"]);
  return { ...child, endpoint: String(child.ready["endpoint"]), metricsUrl, scrape: () => scrapeMetrics(metricsUrl) };
}

export interface WorkerProcess extends Child {
  metricsUrl: string;
  scrape(): Promise<Map<string, number>>;
}

/**
 * Starts a worker agent (worker.ts) as a process. `clockOffsetMs` shifts its clock (Date.now)
 * to simulate skew between hosts.
 */
export async function startWorker(
  keys: Keys,
  name: string,
  brokers: string[],
  options: { clockOffsetMs?: number; args?: string[]; heartbeat?: number; probe?: string } = {},
): Promise<WorkerProcess> {
  const args = ["--cert", keys.secretPath(name), "--certs", keys.dir, "--name", name, "--metrics", "127.0.0.1:0"];
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

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every 25 ms until truthy or `timeoutMs` passes. */
export async function until<T>(check: () => T | Promise<T>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

export const MiB = 1024 * 1024;
