/**
 * Native floor: the zeromq.js floor's relay in C against the system's libzmq
 * (`bench/native/zmq-native.c`), compiled at run time. Needs a C compiler and libzmq's
 * headers (Debian: `libzmq3-dev`, installed by .ci/run); without them the system is skipped
 * with that reason. The bench itself installs nothing.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import hdr from "hdr-histogram-js";
import { encode, newHistogram, percentiles } from "../driver.js";
import { ROOT, spawnProgram } from "../proc.js";
import type { LatencyResult } from "../types.js";
import { stopAll, type CallerHandle, type SystemSpec, type ThroughputRun } from "./spec.js";

const SOURCE = join(ROOT, "bench", "native", "zmq-native.c");
let binary: string | undefined;

function which(name: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(":").concat("/usr/bin", "/usr/local/bin")) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function hasZmqHeader(): boolean {
  return ["/usr/include/zmq.h", "/usr/local/include/zmq.h"].some((p) => existsSync(p));
}

/** Compiles the relay once per source version into the temp dir; returns the reason on failure. */
function build(): string | undefined {
  if (!existsSync(SOURCE)) return `${SOURCE} is missing`;
  const cc = process.env["CC"] ?? which("cc") ?? which("gcc");
  if (!cc) return "no C compiler (install gcc)";
  // The bench never installs system packages itself: .ci/run and the README say what to install.
  if (!hasZmqHeader()) return "libzmq headers not found: install libzmq3-dev (Debian) to measure the native floor";
  const source = readFileSync(SOURCE);
  const hash = createHash("sha256").update(source).digest("hex").slice(0, 12);
  const dir = join(tmpdir(), `zmq-bench-native-${hash}`);
  const out = join(dir, "zmq-native");
  if (existsSync(out)) {
    binary = out;
    return undefined;
  }
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync(cc, ["-O2", "-o", `${out}.tmp`, SOURCE, "-lzmq"], { stdio: ["ignore", "ignore", "pipe"], timeout: 60_000 });
    renameSync(`${out}.tmp`, out);
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().split("\n").slice(0, 3).join(" ") ?? (err as Error).message;
    return `cannot compile the native relay: ${stderr}`;
  }
  binary = out;
  return undefined;
}

/** The libzmq version the native relay links, e.g. "4.3.4", when known. */
export function nativeLibzmqVersion(): string | undefined {
  try {
    const header = readFileSync("/usr/include/zmq.h", "latin1");
    const v = (name: string) => header.match(new RegExp(`#define ${name} (\\d+)`))?.[1];
    return `${v("ZMQ_VERSION_MAJOR")}.${v("ZMQ_VERSION_MINOR")}.${v("ZMQ_VERSION_PATCH")}`;
  } catch {
    return undefined;
  }
}

/** Runs one measuring command of the native caller and returns its output lines. */
async function runCaller(args: string[], timeoutMs: number, onPid: (pid: number | undefined) => void): Promise<string[]> {
  const proc = spawnProgram("zmq-native caller", binary!, args);
  onPid(proc.pid);
  const lines: string[] = [];
  proc.child.stdout!.setEncoding("latin1");
  let rest = "";
  proc.child.stdout!.on("data", (chunk: string) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    lines.push(...parts);
  });
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  onPid(undefined);
  if (code !== 0) throw new Error(`native caller exited (${code}): ${proc.tail()}`);
  if (rest) lines.push(rest);
  return lines;
}

function readSamples(lines: string[]): { h: hdr.Histogram; fields: Record<string, number> } {
  const h = newHistogram();
  const fields: Record<string, number> = {};
  for (const line of lines) {
    if (!line) continue;
    const sp = line.indexOf(" ");
    if (sp < 0) h.recordValue(Number(line));
    else fields[line.slice(0, sp)] = Number(line.slice(sp + 1));
  }
  return { h, fields };
}

export const native: SystemSpec = {
  id: "native-floor",
  title: "libzmq C floor",
  describe: "the same relay in C against the system libzmq (no node at all)",
  async check() {
    return build();
  },
  async start() {
    const broker = spawnProgram("zmq-native broker", binary!, ["broker"]);
    let endpoint: string;
    try {
      endpoint = (await broker.waitFor(/^ready (\S+)/))[1]!;
    } catch (err) {
      await broker.stop(0);
      throw err;
    }
    const responder = spawnProgram("zmq-native echo", binary!, ["echo", endpoint]);
    try {
      await responder.waitFor(/^ready/);
    } catch (err) {
      await stopAll([responder, broker]);
      throw err;
    }
    return {
      brokers: [broker],
      responder,
      async caller(): Promise<CallerHandle> {
        const handle: CallerHandle = {
          pid: undefined,
          async latency(payload, warmup, calls, timeoutMs): Promise<LatencyResult> {
            const lines = await runCaller(["lat", endpoint, String(payload), String(warmup), String(calls)], timeoutMs, (pid) => (handle.pid = pid));
            const { h } = readSamples(lines);
            const result = { payload, warmup, calls, errors: calls - h.totalCount, us: percentiles(h), histogram: encode(h) };
            h.destroy();
            return result;
          },
          async throughput(payload, window, durationMs, warmupMs, timeoutMs): Promise<ThroughputRun> {
            const lines = await runCaller(["thr", endpoint, String(payload), String(window), String(durationMs), String(warmupMs)], timeoutMs, (pid) => (handle.pid = pid));
            const { h, fields } = readSamples(lines);
            const elapsedNs = fields["elapsed"] ?? durationMs * 1e6;
            const result: ThroughputRun = {
              payload,
              window,
              durationMs: Math.round(elapsedNs / 1e6),
              calls: h.totalCount,
              perSecond: Math.round((h.totalCount * 1e9) / elapsedNs),
              errors: 0,
              us: percentiles(h),
              totalCalls: fields["total"] ?? h.totalCount,
            };
            if (fields["cpu"] !== undefined) result.callerCpuMs = fields["cpu"];
            h.destroy();
            return result;
          },
          async stop() {},
        };
        return handle;
      },
      stop: () => stopAll([responder, broker]),
    };
  },
  roles: {},
};
