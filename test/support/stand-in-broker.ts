/**
 * A stand-in broker for the caller-trust tests: a plain CURVE ROUTER (no ZAP: agents ask for
 * their own key as routing id, raw peers must pass it) that forwards as zmq-broker does,
 * records every message it receives, and lets a test swallow, forge or resend messages: what
 * a compromised broker can do.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { decode } from "@msgpack/msgpack";
import * as zmq from "zeromq";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { parseServiceAddress } from "../../src/wire/services.js";
import { SocketWriter } from "../../src/support/writer.js";
import type { CertFixture } from "./certs.js";
import { ROOT } from "./process.js";

export interface Captured {
  /** The sender's routing id (its key). */
  from: string;
  header: Header;
  /** `[header, body]` exactly as sent. */
  frames: [Buffer, Buffer];
}

export interface Relay {
  endpoint: string;
  captured: Captured[];
  /** Service name → replicas in the order they first announced themselves. */
  replicas: Map<string, string[]>;
  /** Picks the replica for `svc:NAME`; default the first announced. */
  pick: (service: string, replicas: string[]) => string | undefined;
  /** Called for each request, response or event before it is forwarded; false swallows it. */
  onMessage: ((m: Captured) => boolean | void) | undefined;
  /** Sends `[from, header, body]` to `to`, as the broker forwards. */
  send(to: string, from: string, header: Uint8Array, body: Uint8Array): Promise<void>;
  /** Sends a captured message again, byte for byte, to `to` (default: where it was going). */
  resend(m: Captured, to?: string): Promise<void>;
  close(): void;
}

export async function startRelay(fx: CertFixture): Promise<Relay> {
  const router = new zmq.Router({
    curveServer: true,
    curvePublicKey: fx.key("broker"),
    curveSecretKey: fx.certs["broker"]!.secretKey,
    mandatory: true,
    handover: true,
    linger: 0,
  });
  await router.bind("tcp://127.0.0.1:*");
  const writer = new SocketWriter(router);
  let closed = false;
  const relay: Relay = {
    endpoint: router.lastEndpoint!,
    captured: [],
    replicas: new Map(),
    pick: (_service, replicas) => replicas[0],
    onMessage: undefined,
    send: (to, from, header, body) => writer.send([to, from, header, body]).catch(() => undefined),
    resend: (m, to) => relay.send(to ?? destination(m.header.to) ?? "", m.from, m.frames[0], m.frames[1]),
    close() {
      closed = true;
      router.close();
    },
  };
  const destination = (to: string): string | undefined => {
    const service = parseServiceAddress(to);
    if (!service) return to;
    return service.replica ?? relay.pick(service.name, relay.replicas.get(service.name) ?? []);
  };
  const brokerMessage = (to: string, header: Header) => relay.send(to, "", encodeHeader(header), new Uint8Array(0));
  void (async () => {
    while (!closed) {
      let frames: Buffer[];
      try {
        frames = await router.receive();
      } catch {
        return;
      }
      if (frames.length !== 3) continue;
      const [fromBytes, headerBytes, body] = frames as [Buffer, Buffer, Buffer];
      const from = fromBytes.toString("latin1");
      let header: Header;
      try {
        header = decodeHeader(headerBytes);
      } catch {
        continue;
      }
      const exp = Date.now() + 5000;
      if (header.k === "hb") {
        const { svc } = decode(body) as { svc: Array<{ name: string }> };
        for (const { name } of svc) {
          const list = relay.replicas.get(name) ?? [];
          if (!list.includes(from)) list.push(from);
          relay.replicas.set(name, list);
        }
        void brokerMessage(from, { v: PROTOCOL_VERSION, k: "ack", id: newId(), to: "", exp, re: header.id });
        continue;
      }
      const m: Captured = { from, header, frames: [headerBytes, body] };
      relay.captured.push(m);
      if (relay.onMessage?.(m) === false) continue;
      const to = destination(header.to);
      if (to) void relay.send(to, from, headerBytes, body);
      else void brokerMessage(from, { v: PROTOCOL_VERSION, k: "nack", id: newId(), to: "", exp, re: header.id, code: "no_route", msg: "no replica" });
    }
  })();
  return relay;
}

/** A replica process (examples/replica.js --log-runs) and the runs it logged. */
export interface ReplicaProcess {
  proc: ChildProcess;
  /** Request ids of every run of `summarize`, in order. */
  runs: string[];
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function spawnReplica(fx: CertFixture, name: string, endpoint: string, workMs: number, extra: string[] = []): Promise<ReplicaProcess> {
  const script = join(ROOT, "dist", "examples", "replica.js");
  const proc = spawn(process.execPath, [script, "--broker", endpoint, "--cert", fx.secretPath(name), "--certs", fx.dir, "--service", "summarize", "--work-ms", String(workMs), "--log-runs", ...extra], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const runs: string[] = [];
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica ${name} not ready`)), 10_000);
    void exited.then(() => reject(new Error(`replica ${name} exited before ready`)));
    createInterface({ input: proc.stderr! }).on("line", (line) => {
      let entry: { msg?: string; requestId?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (entry.msg === "ran" && entry.requestId) runs.push(entry.requestId);
      if (entry.msg === "replica ready") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return {
    proc,
    runs,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}
