/** Shared test fixtures: temporary certificates, brokers (in process or as the built bin), agents. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { expect } from "vitest";
import { Agent, type AgentOptions } from "../src/agent.js";
import { Broker, type BrokerOptions } from "../src/broker.js";
import { generateCertificate, saveCertificate, type Certificate } from "../src/certs.js";

export const ROOT = join(import.meta.dirname, "..");
export const BIN = (name: string) => join(ROOT, "dist", "bin", `${name}.js`);

export interface CertFixture {
  dir: string;
  certs: Record<string, Required<Certificate>>;
  secretPath(name: string): string;
  key(name: string): string;
  /** Adds a certificate; `admitted: false` writes it outside the allowlist directory. */
  add(name: string, admitted?: boolean): Required<Certificate>;
  /** Adds a service key `svc-NAME` (metadata `service = NAME`), trusted by the broker. */
  addService(name: string): Required<Certificate>;
  cleanup(): void;
}

/** A temporary certificate directory holding `broker` plus `names`. */
export function tempCerts(...names: string[]): CertFixture {
  const dir = mkdtempSync(join(tmpdir(), "zmcp-certs-"));
  const outside = mkdtempSync(join(tmpdir(), "zmcp-outside-"));
  const certs: Record<string, Required<Certificate>> = {};
  const paths: Record<string, string> = {};
  const fixture: CertFixture = {
    dir,
    certs,
    secretPath: (name) => paths[name]!,
    key: (name) => certs[name]!.publicKey,
    addService(name) {
      const cert = generateCertificate({ name: `svc-${name}`, service: name });
      certs[`svc-${name}`] = cert;
      paths[`svc-${name}`] = saveCertificate(cert, dir, `svc-${name}`).secretPath;
      return cert;
    },
    add(name, admitted = true) {
      const cert = generateCertificate({ name });
      certs[name] = cert;
      paths[name] = saveCertificate(cert, admitted ? dir : outside, name).secretPath;
      return cert;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
      rmSync(outside, { recursive: true, force: true });
    },
  };
  for (const name of ["broker", ...names]) fixture.add(name);
  return fixture;
}

/** A broker in this process on a free loopback port. */
export async function startBroker(fx: CertFixture, options: Partial<BrokerOptions> = {}): Promise<Broker> {
  return Broker.start({
    bind: "tcp://127.0.0.1:*",
    publicKey: fx.key("broker"),
    secretKey: fx.certs["broker"]!.secretKey,
    allow: fx.dir,
    ...options,
  });
}

export async function connectAgent(fx: CertFixture, name: string, endpoint: string | string[], options: Partial<AgentOptions> = {}): Promise<Agent> {
  return Agent.connect({ broker: endpoint, cert: fx.secretPath(name), certs: fx.dir, connectTimeout: 5000, timeout: 5000, ...options });
}

export interface BrokerProcess {
  proc: ChildProcess;
  endpoint: string;
  publicKey: string;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs the built `zmq-broker` bin and waits for its `ready` line. */
export async function spawnBroker(args: string[], timeoutMs = 10_000): Promise<BrokerProcess> {
  const proc = spawn(process.execPath, [BIN("zmq-broker"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker not ready within ${timeoutMs} ms: ${JSON.stringify(logs)}`)), timeoutMs);
    createInterface({ input: proc.stderr! }).on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        entry = { level: "raw", msg: line };
      }
      logs.push(entry);
      if (entry["msg"] === "ready") {
        clearTimeout(timer);
        resolve(entry);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before ready: ${JSON.stringify(logs)}`));
    });
  });
  const entry = await ready;
  return {
    proc,
    endpoint: String(entry["endpoint"]),
    publicKey: String(entry["publicKey"]),
    logs,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Polls `check` every 20 ms until it is truthy or `timeoutMs` passes. */
type Falsy = undefined | null | false | 0 | "";
export async function waitFor<T>(check: () => T | Falsy | Promise<T | Falsy>, timeoutMs = 5000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Spawns a built script and resolves once it logs a JSON line with `msg === readyMsg`. */
export async function spawnReady(script: string, args: string[], readyMsg: string, timeoutMs = 10_000): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [join(ROOT, "dist", script), ...args], { stdio: ["ignore", "ignore", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} not ready within ${timeoutMs} ms`)), timeoutMs);
    proc.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
    createInterface({ input: proc.stderr! }).on("line", (line) => {
      if (line.includes(`"msg":"${readyMsg}"`)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return proc;
}

/** Kills `proc` with `signal` and waits for it to exit. */
export async function kill(proc: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill(signal);
  await exited;
}

/** Expects `p` to reject with an instance of `cls` whose `code` is `code`; returns the error. */
export async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, code: string): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${cls.name}(${code})`).toBeInstanceOf(cls);
  expect((err as { code?: unknown }).code).toBe(code);
  return err as Error;
}
