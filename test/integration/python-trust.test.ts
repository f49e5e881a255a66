/**
 * The trust-edges rules in the Python package (python/zmcp), against the real TypeScript
 * broker and agents and a stand-in broker: a broker notice closes the Python agent with a
 * typed error; the Python agent keeps liveness (`hb`), so a frozen one is routed around; a
 * forged answer is refused (bad_seal) while the real one still wins; a service call is not
 * resent after a timed-out attempt (one run per service); a Python replica's refusal is sealed
 * with the service key. Skipped, with a message, without /usr/bin/python3 and its modules.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { generateCertificate } from "../../src/auth/certs.js";
import { decodeHeader, decodeInner, encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header, type InnerDraft } from "../../src/wire/envelope.js";
import { RemoteError } from "../../src/errors.js";
import { Sealer } from "../../src/wire/seal.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { ROOT } from "../support/process.js";
import { PYTHON, PYTHON_PEER, pythonProblem } from "../support/python.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { startRelay, type Captured, type Relay } from "../support/stand-in-broker.js";

const PEER = PYTHON_PEER;
const problem = pythonProblem("python-trust");

/** Runs a Python script to its end and parses its last stdout line as JSON. */
function runPythonJson(script: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const proc = spawn(PYTHON, ["-c", script], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`python exited ${code ?? signal}:\n${out}\n${err}`));
      try {
        resolve(JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>);
      } catch {
        reject(new Error(`python printed no JSON:\n${out}\n${err}`));
      }
    });
  });
}

/** A Python script that connects as `name` and runs `body` (indented 8) inside `async with ... as a`, printing `out`. */
function pythonClient(fx: CertFixture, name: string, endpoint: string, body: string, options = "timeout=5"): string {
  return `
import asyncio, json, sys, time
sys.path.insert(0, ${JSON.stringify(join(ROOT, "python"))})
import zmcp
async def main():
    out = {}
    async with await zmcp.Agent.connect(broker=${JSON.stringify(endpoint)}, cert=${JSON.stringify(fx.secretPath(name))}, certs=${JSON.stringify(fx.dir)}, ${options}) as a:
${body}
    print(json.dumps(out))
asyncio.run(main())
`;
}

interface PythonPeer {
  proc: ChildProcess;
  key: string;
  /** JSON lines printed after "ready". */
  lines: Array<Record<string, unknown>>;
  exited: Promise<void>;
  stop(): Promise<void>;
}

/** `interop_peer.py serve`, ready once it printed its key. Stopped by closing stdin (SIGKILL after 5 s). */
async function startPythonPeer(args: string[]): Promise<PythonPeer> {
  const proc = spawn(PYTHON, [PEER, "serve", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const lines: Array<Record<string, unknown>> = [];
  const key = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`python peer not ready: ${stderr}`)), 20_000);
    void exited.then(() => reject(new Error(`python peer exited: ${stderr}`)));
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line) as Record<string, unknown>;
      if (msg["msg"] === "ready") {
        clearTimeout(timer);
        resolve(msg["key"] as string);
      } else lines.push(msg);
    });
  });
  return {
    proc,
    key,
    lines,
    exited,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGCONT");
      proc.stdin!.end();
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(problem !== undefined)("python trust edges", () => {
  let fx: CertFixture | undefined;
  let broker: Broker | undefined;
  let relay: Relay | undefined;
  const agents: Agent[] = [];
  const peers: PythonPeer[] = [];
  const raws: RawPeer[] = [];
  afterEach(async () => {
    await Promise.all(peers.splice(0).map((p) => p.stop()));
    for (const r of raws.splice(0)) r.close();
    await Promise.all(agents.splice(0).map((a) => a.close()));
    relay?.close();
    relay = undefined;
    await broker?.close();
    broker = undefined;
    fx?.cleanup();
    fx = undefined;
  });

  it("a Python caller whose resend is answered 'already ran once; its answer was dropped' waits for the first answer, still on its way (before: tool_failed)", async () => {
    fx = tempCerts("pyc", "bob", "carol");
    relay = await startRelay(fx);
    // Room for one answer's bytes in all: another caller's request drops the first answer's body.
    const bob = await connectAgent(fx, "bob", relay.endpoint, { answerLimits: { maxEntries: 1000, maxBytes: 1500, maxEntriesPerOwner: 1000, maxBytesPerOwner: 1 << 20 } });
    const carol = await connectAgent(fx, "carol", relay.endpoint);
    agents.push(bob, carol);
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ echo: text }));
    const pyKey = fx.key("pyc");
    let held: Captured | undefined;
    relay.onMessage = (m) => {
      if (m.header.k !== "res" || m.header.to !== pyKey || held !== undefined) return true;
      held = m; // the first answer to the Python caller: on its way for 1.5 s
      setTimeout(() => void relay!.resend(m), 1500);
      return false;
    };
    const long = "x".repeat(2000);
    const python = runPythonJson(pythonClient(fx, "pyc", relay.endpoint, `
        try:
            out["result"] = await a.call("bob", "echo", {"text": ${JSON.stringify(long)}}, timeout=4)
        except zmcp.ZmcpError as err:
            out["error"] = err.code`));
    await until("the first answer held", () => held);
    expect(await carol.call("bob", "echo", { text: "b" })).toEqual({ echo: "b" }); // drops the first answer's body
    expect(await python).toEqual({ result: { echo: long } });
  }, 30_000);

  it("a second connection with the Python agent's key: the broker's displaced notice closes it with DisplacedError, and later calls raise it too", async () => {
    fx = tempCerts("pyd");
    broker = await startBroker(fx);
    const py = await startPythonPeer([broker.endpoint, fx.secretPath("pyd"), fx.dir]);
    peers.push(py);
    // The same key started again (here by a TypeScript agent): it takes the route.
    agents.push(await connectAgent(fx, "pyd", broker.endpoint));
    const closed = await until("the Python agent's closed line", () => py.lines.find((l) => l["msg"] === "closed"));
    expect(closed).toEqual({ msg: "closed", code: "displaced", class: "DisplacedError", origin: "broker", after: "DisplacedError" });
    await py.exited;
  }, 30_000);

  it("the Python agent keeps liveness with hb: once it freezes, the broker refuses calls to it no_route instead of letting them time out", async () => {
    fx = tempCerts("pyl", "caller");
    broker = await startBroker(fx, { heartbeatInterval: 500, heartbeatTimeout: 1500 });
    const py = await startPythonPeer([broker.endpoint, fx.secretPath("pyl"), fx.dir, "--heartbeat", "0.5"]);
    peers.push(py);
    const caller = await connectAgent(fx, "caller", broker.endpoint, { retry: false, timeout: 3000 });
    agents.push(caller);
    expect(await caller.call("pyl", "py_add", { a: 1, b: 2 })).toEqual({ sum: 3, by: "python" });
    py.proc.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 2500));
    const err = await caller.call("pyl", "py_add", { a: 1, b: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err).toMatchObject({ code: "no_route", origin: "broker" });
    py.proc.kill("SIGCONT");
  }, 30_000);

  it("a fake broker answering the Python caller's call itself: refused, the call fails BadSealError (not a timeout), bob's tool never ran", async () => {
    fx = tempCerts("pya", "bob");
    relay = await startRelay(fx);
    const bob = await connectAgent(fx, "bob", relay.endpoint);
    agents.push(bob);
    let runs = 0;
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => {
      runs++;
      return { echo: text, by: "bob" };
    });
    const throwaway = generateCertificate({ name: "throwaway" });
    const fake = new Sealer(throwaway.secretKey);
    const pyKey = fx.key("pya");
    let requests = 0;
    relay.onMessage = (m) => {
      if (m.header.k !== "req" || m.from !== pyKey) return true;
      const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: pyKey, exp: Date.now() + 5000, re: m.header.id };
      const headerBytes = encodeHeader(header);
      const draft: InnerDraft = { t: "res", ts: Date.now(), st: "ok", result: { echo: "forged", by: "fake broker" } };
      // The first call's request is answered stamped with the throwaway key, the second's stamped as bob.
      const stamp = requests++ === 0 ? throwaway.publicKey : fx!.key("bob");
      void relay!.send(pyKey, stamp, headerBytes, fake.seal(pyKey, encodeInner(draft, headerBytes)));
      return false;
    };
    const out = await runPythonJson(pythonClient(fx, "pya", relay.endpoint, `
        for label in ("throwaway", "as_bob"):
            try:
                out[label] = {"ok": await a.call("bob", "echo", {"text": "hi"}, timeout=2)}
            except zmcp.ZmcpError as err:
                out[label] = {"class": type(err).__name__, "code": err.code}`));
    expect(out).toEqual({ throwaway: { class: "BadSealError", code: "bad_seal" }, as_bob: { class: "BadSealError", code: "bad_seal" } });
    expect(runs).toBe(0);
  }, 30_000);

  it("an admitted peer that learnt the request id forges an answer first: the Python caller still gets bob's real one", async () => {
    fx = tempCerts("pya", "bob", "mallory");
    relay = await startRelay(fx);
    const bob = await connectAgent(fx, "bob", relay.endpoint);
    agents.push(bob);
    bob.tool("slow_echo", { input: z.object({ text: z.string() }) }, async ({ text }) => {
      await new Promise((r) => setTimeout(r, 300));
      return { echo: text, by: "bob" };
    });
    const mallory = await rawPeer(fx, "mallory", relay.endpoint, { routingId: fx.key("mallory") });
    raws.push(mallory);
    const pyKey = fx.key("pya");
    let forged = 0;
    relay.onMessage = (m) => {
      if (m.header.k === "req" && m.from === pyKey) {
        void mallory.socket.send(mallory.frames(pyKey, { t: "res", ts: Date.now(), st: "ok", result: { echo: "forged", by: "mallory" } }, { k: "res", re: m.header.id }));
        forged++;
      }
      return true;
    };
    const out = await runPythonJson(pythonClient(fx, "pya", relay.endpoint, `
        out["result"] = await a.call("bob", "slow_echo", {"text": "real"})`));
    expect(out).toEqual({ result: { echo: "real", by: "bob" } });
    expect(forged).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it("a Python call to svc:NAME whose replica is slower than an attempt is not resent: one run, and the call fails TimeoutError (code timeout) at its deadline", async () => {
    fx = tempCerts("r1", "r2", "pyc");
    fx.addService("slowsvc");
    broker = await startBroker(fx);
    const runs: string[] = [];
    for (const name of ["r1", "r2"]) {
      const r = await connectAgent(fx, name, broker.endpoint);
      agents.push(r);
      r.tool("slow", { input: z.object({}) }, async (_args, ctx) => {
        runs.push(ctx.requestId);
        await new Promise((res) => setTimeout(res, 3000));
        return { by: name };
      });
      await r.serve("slowsvc");
    }
    // timeout 2 s: the retry policy's attempt would be 0.5 s, so the old caller resent 2 to 3 times.
    const out = await runPythonJson(pythonClient(fx, "pyc", broker.endpoint, `
        t0 = time.monotonic()
        try:
            out["result"] = await a.call("svc:slowsvc", "slow", {}, timeout=2)
        except zmcp.ZmcpError as err:
            out["error"] = {"class": type(err).__name__, "code": err.code, "after_deadline": time.monotonic() - t0 >= 1.9}`));
    expect(out).toEqual({ error: { class: "TimeoutError", code: "timeout", after_deadline: true } });
    await new Promise((r) => setTimeout(r, 1500)); // any resent attempt would have started by now
    expect(runs.length).toBe(1);
  }, 30_000);

  it("a Python replica's refusal of a request to its service is sealed with the service key (as: svc:NAME), so binding callers can read it", async () => {
    fx = tempCerts("pyr", "raw");
    const svc = fx.addService("pyonly");
    broker = await startBroker(fx);
    const py = await startPythonPeer([broker.endpoint, fx.secretPath("pyr"), fx.dir, "--service", "pyonly"]);
    peers.push(py);
    const raw = await rawPeer(fx, "raw", broker.endpoint);
    raws.push(raw);
    // A timestamp outside the replay window: refused `replay` before anything runs.
    const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: "svc:pyonly", exp: Date.now() + 5000 };
    const headerBytes = encodeHeader(header);
    const draft: InnerDraft = { t: "req", ts: Date.now() - 120_000, rid: newId(), tool: "py_add", args: { a: 1, b: 2 } };
    await raw.socket.send([headerBytes, raw.sealer.seal(svc.publicKey, encodeInner(draft, headerBytes))]);
    const [from, answerHeader, body] = await raw.receive(5000);
    expect(from!.toString("latin1")).toBe(py.key);
    const h = decodeHeader(answerHeader!);
    expect(h).toMatchObject({ k: "res", as: "svc:pyonly" });
    expect(Buffer.from(h.re!).equals(Buffer.from(header.id))).toBe(true);
    const inner = decodeInner(raw.sealer.open(svc.publicKey, body!), answerHeader!, 1 << 20);
    expect(inner).toMatchObject({ t: "res", st: "error", error: { code: "replay" } });
  }, 30_000);
});

describe.skipIf(problem !== undefined)("python callee limits", () => {
  let fx: CertFixture | undefined;
  let broker: Broker | undefined;
  const agents: Agent[] = [];
  const peers: PythonPeer[] = [];
  afterEach(async () => {
    await Promise.all(peers.splice(0).map((p) => p.stop()));
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker?.close();
    broker = undefined;
    fx?.cleanup();
    fx = undefined;
  });

  it("the Python callee's answer cache is bounded in bytes per caller: past it, busy (not remembered); another caller still gets answers", async () => {
    fx = tempCerts("pyb", "c1", "c2");
    broker = await startBroker(fx);
    const py = await startPythonPeer([broker.endpoint, fx.secretPath("pyb"), fx.dir, "--extra-tools", "--answer-bytes-per-caller", "20000"]);
    peers.push(py);
    const c1 = await connectAgent(fx, "c1", broker.endpoint, { retry: false });
    const c2 = await connectAgent(fx, "c2", broker.endpoint, { retry: false });
    agents.push(c1, c2);
    expect(((await c1.call("pyb", "py_blob", { size: 15_000 })) as { blob: string }).blob.length).toBe(15_000);
    expect(((await c1.call("pyb", "py_blob", { size: 15_000 })) as { blob: string }).blob.length).toBe(15_000);
    const err = await c1.call("pyb", "py_blob", { size: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err).toMatchObject({ code: "busy", origin: "peer", message: expect.stringContaining("answer cache") });
    expect(await c2.call("pyb", "py_blob", { size: 10 })).toEqual({ blob: "x".repeat(10) });
  }, 30_000);

  it("the Python callee refuses to send what its caller could not read: a too-deep result is tool_failed at once, a NaN progress raises TypeError in the handler", async () => {
    fx = tempCerts("pyu", "c1");
    broker = await startBroker(fx);
    const py = await startPythonPeer([broker.endpoint, fx.secretPath("pyu"), fx.dir, "--extra-tools"]);
    peers.push(py);
    const c1 = await connectAgent(fx, "c1", broker.endpoint, { retry: false, timeout: 5000 });
    agents.push(c1);
    const err = await c1.call("pyu", "py_unsendable", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err).toMatchObject({ code: "tool_failed", origin: "peer", message: expect.stringContaining("deeper than 32") });
    expect(await c1.call("pyu", "py_bad_progress", {})).toMatchObject({ refused: "TypeError" });
  }, 30_000);

  it("a plain call to the Python callee ends at its caller's deadline: a hung handler gives its concurrency slot back", async () => {
    fx = tempCerts("pyh", "c1");
    broker = await startBroker(fx);
    const py = await startPythonPeer([broker.endpoint, fx.secretPath("pyh"), fx.dir, "--extra-tools", "--max-concurrency", "1"]);
    peers.push(py);
    const c1 = await connectAgent(fx, "c1", broker.endpoint, { retry: false });
    agents.push(c1);
    await expect(c1.call("pyh", "py_hang", {}, { timeout: 800 })).rejects.toMatchObject({ code: "timeout" });
    // Past the deadline the one slot is free again (the old callee answered busy forever).
    await new Promise((r) => setTimeout(r, 300));
    expect(await c1.call("pyh", "py_add", { a: 1, b: 2 }, { timeout: 3000 })).toEqual({ sum: 3, by: "python" });
  }, 30_000);

});
