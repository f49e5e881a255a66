/**
 * A real `redis-server` for the durable-store tests: a free loopback port, a temp directory of
 * its own, append-only file on (appendfsync everysec, the default). `restart()` reuses both, so
 * what the AOF kept comes back. Skips (available false) where redis-server is not installed.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REDIS_SERVER = "/usr/bin/redis-server";
export const redisAvailable = spawnSync(REDIS_SERVER, ["--version"]).status === 0;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisFixture {
  port: number;
  url: string;
  dir: string;
  alive(): boolean;
  /** SIGTERM and wait (the AOF is flushed). */
  stop(): Promise<void>;
  /** SIGKILL and wait: what `appendfsync everysec` had not written is lost. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  dispose(): Promise<void>;
}

export async function startRedis(extra: string[] = []): Promise<RedisFixture> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "zmcp-redis-"));
  let proc: ChildProcess | undefined;
  const launch = async () => {
    const child = spawn(REDIS_SERVER, ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", "", ...extra], { stdio: ["ignore", "pipe", "pipe"] });
    proc = child;
    await new Promise<void>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited ${code}: ${out}`));
      });
    });
    child.stdout!.resume();
    child.stderr!.resume();
  };
  const end = async (signal: NodeJS.Signals) => {
    const child = proc;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    alive: () => proc !== undefined && proc.exitCode === null && proc.signalCode === null,
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
    restart: launch,
    dispose: async () => {
      await end("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
