/**
 * NATS: `nats-server` with the `nats` client, request/reply through a queue-group
 * subscriber that echoes. No TLS: the plain loopback setup that most NATS numbers quote.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { spawnProgram, startWorker } from "../proc.js";
import type { Client, Service, WorkerConfig } from "../types.js";
import { nodeCaller, stopAll, type SystemSpec } from "./spec.js";

const SUBJECT = "bench.echo";

/** `$NATS_SERVER`, then `nats-server` on PATH, then the usual install places. */
export function findNatsServer(): string | undefined {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"];
  const candidates = [process.env["NATS_SERVER"], ...dirs.filter(Boolean).map((d) => join(d, "nats-server"))];
  for (const c of candidates) {
    if (!c) continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

export function natsServerVersion(): string | undefined {
  const bin = findNatsServer();
  if (!bin) return undefined;
  try {
    return execFileSync(bin, ["--version"], { encoding: "utf8", timeout: 5000 }).trim();
  } catch {
    return undefined;
  }
}

export const nats: SystemSpec = {
  id: "nats",
  title: "NATS req/reply",
  describe: "nats-server + nats.js, request/reply to a queue-group subscriber",
  async check() {
    if (!findNatsServer()) return "nats-server not found (install it, e.g. `apt-get install nats-server`, or set NATS_SERVER)";
    try {
      await import("nats");
    } catch {
      return "the `nats` npm package is not installed (npm install)";
    }
    return undefined;
  },
  async start() {
    // max_payload 8 MB (the default, 1 MB, refuses the 1 MiB rows); only a config file sets it.
    const conf = join(mkdtempSync(join(tmpdir(), "zmq-bench-nats-")), "nats.conf");
    writeFileSync(conf, "max_payload: 8MB\n");
    const server = spawnProgram("nats-server", findNatsServer()!, ["-c", conf, "-a", "127.0.0.1", "-p", "-1"]);
    let servers: string;
    try {
      const m = await server.waitFor(/Listening for client connections on ([\d.]+:\d+)/, 10_000);
      servers = m[1]!;
      await server.waitFor(/Server is ready/, 10_000);
    } catch (err) {
      await server.stop(0);
      throw err;
    }
    const responder = await startWorker("nats", "responder", { servers }).catch(async (err) => {
      await server.stop();
      throw err;
    });
    return {
      brokers: [server],
      responder,
      caller: () => nodeCaller("nats", { servers }),
      stop: () => stopAll([responder, server]),
    };
  },
  roles: {
    async responder(config: WorkerConfig): Promise<Service> {
      const { connect } = await import("nats");
      const nc = await connect({ servers: String(config["servers"]), noEcho: true });
      const sub = nc.subscribe(SUBJECT, { queue: "echo" });
      void (async () => {
        for await (const m of sub) m.respond(m.data);
      })();
      await nc.flush();
      return {
        async close() {
          await nc.drain().catch(() => nc.close());
        },
      };
    },
    async caller(config: WorkerConfig): Promise<Client> {
      const { connect } = await import("nats");
      const nc = await connect({ servers: String(config["servers"]) });
      return {
        async call(payload) {
          const reply = await nc.request(SUBJECT, payload, { timeout: 10_000 });
          if (reply.data.length !== payload.length) throw new Error(`echo of ${reply.data.length} bytes for a call of ${payload.length}`);
        },
        async close() {
          await nc.close();
        },
      };
    },
  },
};
