/**
 * Processes started by the bench: every child is tracked and killed when the bench exits, on
 * a signal, or on a crash. Node workers also exit by themselves when their IPC channel to
 * the bench closes; native children get a parent-death signal (prctl, or setpriv for
 * programs we do not build).
 */
import { execFileSync, fork, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { FromWorker, ToWorker, WorkerConfig } from "./types.js";

/** dist/bench (where the compiled worker lives). */
export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
/** The package root (dist/bench/../..). */
export const ROOT = join(BENCH_DIR, "..", "..");

const children = new Set<ChildProcess>();
let hooked = false;

const tempDirs = new Set<string>();

/** Removes `dir` when the bench exits, however it exits (but SIGKILL). */
export function removeOnExit(dir: string): void {
  tempDirs.add(dir);
}

function killAll(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}

/** Kills every tracked child on exit, SIGINT, SIGTERM, SIGHUP, or an uncaught error. */
export function installCleanup(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nzmq-bench: ${signal}, stopping ${children.size} child process(es)\n`);
      killAll();
      process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
    });
  }
  process.on("uncaughtException", (err) => {
    process.stderr.write(`zmq-bench: ${err.stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  });
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

let setprivChecked: string | null | undefined;
/** `setpriv --pdeathsig KILL` when available: the child dies with the bench even on SIGKILL. */
function deathSignalPrefix(): string[] {
  if (setprivChecked === undefined) {
    setprivChecked = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p)) ?? null;
  }
  return setprivChecked ? [setprivChecked, "--pdeathsig", "KILL", "--"] : [];
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  name: string;
  /** Resolves with the exit code (or signal) once the process ended. */
  exited: Promise<number | string | null>;
  /** Asks it to stop (SIGTERM), then kills it after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** The last lines of its stderr, for error messages. */
  tail(): string;
}

function wrap(child: ChildProcess, name: string, onLine?: (line: string) => void): Proc {
  track(child);
  const lines: string[] = [];
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 20) lines.shift();
    onLine?.(line);
  };
  if (child.stderr) createInterface({ input: child.stderr }).on("line", keep);
  const exited = new Promise<number | string | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  return {
    child,
    pid: child.pid!,
    name,
    exited,
    tail: () => lines.join("\n"),
    async stop(graceMs = 2000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface SpawnedProc extends Proc {
  /** Resolves with the first stdout/stderr line that matches, rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Spawns a program (not node) that dies with the bench. */
export function spawnProgram(name: string, file: string, args: string[], options: SpawnOptions & { pdeathsig?: boolean } = {}): SpawnedProc {
  const prefix = options.pdeathsig === false ? [] : deathSignalPrefix();
  const argv = [...prefix, file, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], ...options });
  const waiters: Array<{ pattern: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  const seen: string[] = [];
  const onLine = (line: string) => {
    seen.push(line);
    if (seen.length > 50) seen.shift();
    for (const w of [...waiters]) {
      const m = line.match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  const proc = wrap(child, name, onLine);
  if (child.stdout) createInterface({ input: child.stdout }).on("line", onLine);
  return {
    ...proc,
    waitFor(pattern, timeoutMs = 10_000) {
      const already = seen.map((l) => l.match(pattern)).find((m) => m);
      if (already) return Promise.resolve(already);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no line matching ${pattern} within ${timeoutMs} ms\n${seen.join("\n")}`)), timeoutMs);
        const entry = {
          pattern,
          resolve: (m: RegExpMatchArray) => {
            clearTimeout(timer);
            resolve(m);
          },
        };
        waiters.push(entry);
        void proc.exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`${name} exited (${code}) before printing ${pattern}\n${seen.join("\n")}`));
        });
      });
    },
  };
}

/** Node flags for every node child, e.g. `--cpu-prof --cpu-prof-dir=...` (hidden `--prof-dir`). */
let nodeFlags: string[] = [];
export function setNodeFlags(flags: string[]): void {
  nodeFlags = flags;
}

/** Spawns a node script (not a worker), e.g. the real `zmq-broker` bin. */
export function spawnNode(name: string, script: string, args: string[], env?: Record<string, string>): SpawnedProc {
  return spawnProgram(name, process.execPath, [...nodeFlags, script, ...args], { pdeathsig: true, ...(env ? { env: { ...process.env, ...env } } : {}) });
}

/** A worker process of `dist/bench/worker.js` playing one role of one system. */
export interface Worker extends Proc {
  info: Record<string, unknown>;
  request<T>(message: ToWorker & { seq: number }, timeoutMs: number): Promise<T>;
  nextSeq(): number;
}

/** Forks a worker, sends it `config` and waits for its `ready`. */
export async function startWorker(system: string, role: string, config: WorkerConfig, timeoutMs = 30_000, env?: Record<string, string>): Promise<Worker> {
  const child = fork(join(BENCH_DIR, "worker.js"), [system, role], {
    stdio: ["ignore", "ignore", "pipe", "ipc"],
    execArgv: nodeFlags,
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  const proc = wrap(child, `${system}/${role}`);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  let seq = 0;
  let readyResolve: ((info: Record<string, unknown>) => void) | undefined;
  let readyReject: ((err: Error) => void) | undefined;
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  child.on("message", (raw) => {
    const msg = raw as FromWorker;
    if (msg.type === "ready") readyResolve?.(msg.info ?? {});
    else if (msg.type === "result" || msg.type === "error") {
      const entry = msg.seq === undefined ? undefined : pending.get(msg.seq);
      if (msg.type === "error" && !entry) {
        readyReject?.(new Error(`${system}/${role}: ${msg.message}`));
        return;
      }
      if (!entry) return;
      pending.delete(msg.seq!);
      clearTimeout(entry.timer);
      if (msg.type === "result") entry.resolve(msg.result);
      else entry.reject(new Error(`${system}/${role}: ${msg.message}`));
    }
  });
  void proc.exited.then((code) => {
    const err = new Error(`${system}/${role} exited (${code})\n${proc.tail()}`);
    readyReject?.(err);
    for (const entry of pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(err);
    }
    pending.clear();
  });
  child.send({ type: "init", config } satisfies ToWorker);
  let timer: NodeJS.Timeout | undefined;
  let info: Record<string, unknown>;
  try {
    info = await Promise.race([
      ready,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${system}/${role} not ready within ${timeoutMs} ms\n${proc.tail()}`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    await proc.stop(0);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    ...proc,
    info,
    nextSeq: () => ++seq,
    request<T>(message: ToWorker & { seq: number }, requestTimeoutMs: number): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(message.seq);
          reject(new Error(`${system}/${role}: ${message.type} took longer than ${requestTimeoutMs} ms`));
        }, requestTimeoutMs);
        pending.set(message.seq, { resolve: resolve as (v: unknown) => void, reject, timer });
        child.send(message);
      });
    },
    async stop(graceMs = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ type: "stop" } satisfies ToWorker);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await proc.exited;
      clearTimeout(timer);
    },
  };
}

/** CPU time (user + system) of a process, ms, from /proc/<pid>/stat. */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / clockTicks();
  } catch {
    return undefined;
  }
}

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Resident set and its peak, MiB, from /proc/<pid>/status. */
export function memory(pid: number): { rssMiB: number; peakRssMiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "latin1");
    const kib = (name: string) => Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
    return { rssMiB: kib("VmRSS") / 1024, peakRssMiB: kib("VmHWM") / 1024 };
  } catch {
    return undefined;
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
