/**
 * A bench worker process: `node dist/bench/worker.js <system> <role>`, driven over IPC by the
 * bench. It plays one role of one system (broker, responder, caller, idle agents) and exits
 * when told to, or as soon as the bench that forked it goes away.
 */
import { measureLatency, measureRate, measureThroughput } from "./driver.js";
import { findRole } from "./systems/index.js";
import type { Client, FromWorker, Service, ToWorker } from "./types.js";

const [systemId, role] = process.argv.slice(2) as [string, string];

function send(msg: FromWorker): void {
  if (process.connected) process.send!(msg);
}

function isClient(x: Client | Service): x is Client {
  return typeof (x as Client).call === "function";
}

let instance: Client | Service | undefined;
let stopping = false;

async function stop(code = 0): Promise<never> {
  if (!stopping) {
    stopping = true;
    const timer = setTimeout(() => process.exit(code), 2000);
    try {
      await instance?.close();
    } catch {
      // exiting anyway
    }
    clearTimeout(timer);
  }
  process.exit(code);
}

// An orphaned worker must not linger: the bench's IPC channel closing means it is gone.
process.on("disconnect", () => void stop(0));
process.once("SIGTERM", () => void stop(0));
process.once("SIGINT", () => void stop(0));

process.on("message", (raw) => {
  const msg = raw as ToWorker;
  void handle(msg).catch((err: unknown) => {
    const seq = "seq" in msg ? msg.seq : undefined;
    send({ type: "error", ...(seq === undefined ? {} : { seq }), message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  });
});

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case "init": {
      const start = findRole(systemId, role);
      instance = await start(msg.config);
      send({ type: "ready", ...("info" in instance && instance.info ? { info: instance.info } : {}) });
      return;
    }
    case "latency": {
      if (!instance || !isClient(instance)) throw new Error(`${role} is not a caller`);
      const result = await measureLatency(instance, msg.payload, msg.warmup, msg.calls);
      send({ type: "result", seq: msg.seq, result });
      return;
    }
    case "throughput": {
      if (!instance || !isClient(instance)) throw new Error(`${role} is not a caller`);
      const result = await measureThroughput(instance, msg.payload, msg.window, msg.durationMs, msg.warmupMs);
      send({ type: "result", seq: msg.seq, result });
      return;
    }
    case "rate": {
      if (!instance || !isClient(instance)) throw new Error(`${role} is not a caller`);
      const result = await measureRate(instance, msg.payload, msg.rate, msg.durationMs, msg.warmupMs);
      send({ type: "result", seq: msg.seq, result });
      return;
    }
    case "grow": {
      if (!instance || isClient(instance) || !instance.grow) throw new Error(`${role} cannot grow`);
      const result = await instance.grow(msg.agents);
      send({ type: "result", seq: msg.seq, result });
      return;
    }
    case "stop":
      await stop(0);
  }
}
