/**
 * The Python package (python/zmcp) against the TypeScript broker and agents: Python calls
 * TypeScript, TypeScript calls Python, jobs both ways, a service with one replica of each,
 * tokens both ways, the Python unit tests and the conformance vectors, and the README's
 * Python quick start. Needs /usr/bin/python3 with pyzmq, PyNaCl and msgpack (.ci/run
 * installs them with apt); without them the file is skipped with a message saying so.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import { decodeHeader, decodeInner, encodeHeader, encodeInner, newId, type Header, type Response } from "../../src/wire/envelope.js";
import { generateAuthority } from "../../src/auth/jwk.js";
import { createToken } from "../../src/auth/tokens.js";
import { addReferenceTools } from "../../examples/reference-agent.js";
import { type CertFixture, tempCerts } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { ROOT } from "../support/process.js";
import { PYTHON, PYTHON_PEER, pythonProblem } from "../support/python.js";
import { rawPeer } from "../support/raw-peer.js";

const PEER = PYTHON_PEER;
const problem = pythonProblem("python-interop");

/** Runs a Python script to its end; resolves with stdout (and stderr after it with `withStderr`), rejects on a non-zero exit. */
function runPython(args: string[], timeoutMs = 60_000, cwd = ROOT, withStderr = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(PYTHON, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(withStderr ? out + err : out);
      else reject(new Error(`python ${args.join(" ")} exited ${code ?? signal}:\n${out}\n${err}`));
    });
  });
}

/** Starts `interop_peer.py serve` and waits for its ready line. Stopped by closing its stdin. */
async function startPythonPeer(args: string[]): Promise<{ proc: ChildProcess; key: string; stop(): Promise<void> }> {
  const proc = spawn(PYTHON, [PEER, "serve", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const key = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`python peer not ready: ${stderr}`)), 20_000);
    void exited.then(() => reject(new Error(`python peer exited: ${stderr}`)));
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line) as { msg: string; key: string };
      if (msg.msg === "ready") {
        clearTimeout(timer);
        resolve(msg.key);
      }
    });
  });
  return {
    proc,
    key,
    async stop() {
      proc.stdin!.end();
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

describe.skipIf(problem !== undefined)("python interop", () => {
  let fx: CertFixture;
  let broker: Broker;
  let ts: Agent;
  let caller: Agent;
  let py: Awaited<ReturnType<typeof startPythonPeer>>;

  beforeAll(async () => {
    fx = tempCerts("ts", "tscaller", "py", "pyclient", "tsdirect");
    fx.addService("mix");
    broker = await startBroker(fx);
    ts = addReferenceTools(await connectAgent(fx, "ts", broker.endpoint), "ts");
    ts.tool("svc_echo", { input: z.unknown() }, (args) => ({ replica: "ts", key: ts.publicKey, echo: args }));
    ts.tool("svc_job", { input: z.object({ steps: z.number().int() }), job: true }, async ({ steps }, ctx) => {
      for (let i = 1; i <= steps; i++) {
        await new Promise((r) => setTimeout(r, 100));
        ctx.progress({ progress: i, total: steps });
      }
      return { steps, by: "ts" };
    });
    await ts.serve("mix");
    caller = await connectAgent(fx, "tscaller", broker.endpoint);
    py = await startPythonPeer([broker.endpoint, fx.secretPath("py"), fx.dir, "--service", "mix"]);
  }, 30_000);

  afterAll(async () => {
    await py?.stop();
    await caller?.close();
    await ts?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("Python calls TypeScript: results, error codes as exception classes, tools/list, jobs (push, poll, cancel), a mixed service", async () => {
    const out = JSON.parse(await runPython([PEER, "client", broker.endpoint, fx.secretPath("pyclient"), fx.dir, "ts", "--service", "mix"])) as Record<string, unknown>;
    expect(out["sum"]).toEqual({ ok: { count: 3, total: 6.5 } });
    expect(out["invalid"]).toEqual({ error: "invalid_args", class: "InvalidArgsError", origin: "peer" });
    expect(out["unknown"]).toEqual({ error: "unknown_tool", class: "UnknownToolError", origin: "peer" });
    expect(out["tools"]).toEqual(["server_identity", "batch_sum", "start_long_task", "poll_job", "svc_echo", "svc_job"]);
    expect(out["job"]).toEqual({ result: { payload: { from: "python" }, seconds: 2 }, progress: [1, 2], runner_is_target: true });
    expect(out["job_via_call"]).toEqual({ ok: { payload: { k: 1 }, seconds: 1 } });
    expect(out["cancel"]).toEqual({ state: "cancelled", result: { error: "cancelled", class: "CancelledError", origin: "peer" } });
    expect(out["poll"]).toBe("done");
    expect(out["service_replicas"]).toEqual(["python", "ts"]);
    expect((out["service_job"] as { runner_known: boolean }).runner_known).toBe(true);
    expect((out["service_job"] as { result: { steps: number } }).result.steps).toBe(2);
  }, 60_000);

  it("TypeScript calls Python: results, schema refusals, handler failures, tools/list, the caller's identity", async () => {
    expect(await caller.call("py", "py_add", { a: 2, b: 40 })).toEqual({ sum: 42, by: "python" });
    const who = (await caller.call("py", "py_whoami", {})) as Record<string, unknown>;
    expect(who).toEqual({ key: py.key, caller: caller.publicKey, caller_name: "tscaller", token_sub: null });
    for (const [args, where] of [[{ a: 1 }, "b: is required"], [{ a: 1, b: "x" }, "b: expected number"], [{ a: 1, b: 2, c: 3 }, "c: is not allowed"]] as const) {
      const err = await caller.call("py", "py_add", args).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect(err).toMatchObject({ code: "invalid_args", origin: "peer" });
      expect((err as Error).message).toContain(where);
    }
    await expect(caller.call("py", "py_fail", {})).rejects.toMatchObject({ code: "tool_failed", message: expect.stringContaining("failed on purpose") });
    await expect(caller.call("py", "nope", {})).rejects.toMatchObject({ code: "unknown_tool" });
    const tools = await caller.listTools("py");
    expect(tools.map((t) => t.name)).toEqual(["py_add", "py_job", "py_whoami", "py_slow_count", "py_fail", "svc_job", "svc_echo"]);
    expect(tools[1]).toMatchObject({ job: true, inputSchema: { required: ["steps"] } });
  }, 30_000);

  it("a TypeScript caller with direct links calls Python (a v1 peer without them): link/endpoint is unknown_tool, every call goes through the broker", async () => {
    const direct = await connectAgent(fx, "tsdirect", broker.endpoint, { direct: true });
    try {
      await expect(direct.call("py", "link/endpoint", {})).rejects.toMatchObject({ code: "unknown_tool", origin: "peer" });
      const routed = broker.stats.routed;
      for (let a = 1; a <= 5; a++) expect(await direct.call("py", "py_add", { a, b: 1 })).toEqual({ sum: a + 1, by: "python" });
      expect(broker.stats.routed - routed).toBeGreaterThanOrEqual(10); // 5 requests and 5 answers at least (the endpoint asked once besides)
      expect(direct.direct.links).toMatchObject({ sent: 0, opened: 0, open: 0, failures: {} });
    } finally {
      await direct.close();
    }
  }, 30_000);

  it("a raw peer's malformed, replayed, tampered and duplicate requests get the protocol's answers from the Python agent", async () => {
    fx.add("raw");
    broker.reloadAllowlist();
    const raw = await rawPeer(fx, "raw", broker.endpoint);
    try {
      /** The Python agent's answers (sealed by its key) to the message ids given, in that order. */
      const answers = async (ids: Uint8Array[]): Promise<Response[]> => {
        const wanted = ids.map((id) => Buffer.from(id).toString("hex"));
        const got = new Map<string, Response>();
        while (got.size < wanted.length) {
          const [from, headerBytes, body] = await raw.receive(5000);
          const header = decodeHeader(headerBytes!);
          if (from!.length === 0) throw new Error(`broker refused: ${header.code} ${header.msg}`);
          expect(from!.toString("latin1")).toBe(py.key);
          const inner = decodeInner(raw.sealer.open(py.key, body!), headerBytes!, 1 << 20);
          expect(inner.t).toBe("res");
          got.set(Buffer.from(header.re!).toString("hex"), inner as Response);
        }
        return wanted.map((id) => got.get(id)!);
      };
      const answer = async (frames: [Uint8Array, Uint8Array]): Promise<Response> => {
        await raw.socket.send(frames);
        return (await answers([decodeHeader(frames[0]).id]))[0]!;
      };
      const req = (rid = newId(), tool = "py_add", args: unknown = { a: 1, b: 2 }, ts = Date.now()) => ({ t: "req" as const, ts, rid, tool, args });
      expect(await answer(raw.frames(py.key, req()))).toMatchObject({ st: "ok", result: { sum: 3 } });
      // The same frames again: the same message id.
      const once = raw.frames(py.key, req());
      expect((await answer(once)).st).toBe("ok");
      expect(await answer(once)).toMatchObject({ st: "error", error: { code: "replay" } });
      // A timestamp outside the replay window; a deadline past on the Python clock (within the broker's skew).
      expect(await answer(raw.frames(py.key, req(newId(), "py_add", { a: 1, b: 2 }, Date.now() - 120_000)))).toMatchObject({ error: { code: "replay" } });
      expect(await answer(raw.frames(py.key, req(), { exp: Date.now() - 30_000 }))).toMatchObject({ error: { code: "expired" } });
      // A header changed after sealing; a body that is not a box; a box holding no message.
      const [headerBytes, body] = raw.frames(py.key, req());
      const changed = encodeHeader({ ...decodeHeader(headerBytes), exp: decodeHeader(headerBytes).exp + 1 });
      expect(await answer([changed, body])).toMatchObject({ error: { code: "bad_seal" } });
      const header: Header = { v: 1, k: "req", id: newId(), to: py.key, exp: Date.now() + 5000 };
      expect(await answer([encodeHeader(header), new Uint8Array(64).fill(7)])).toMatchObject({ error: { code: "bad_seal" } });
      const h2: Header = { ...header, id: newId() };
      expect(await answer([encodeHeader(h2), raw.sealer.seal(py.key, new Uint8Array([0xc1]))])).toMatchObject({ error: { code: "bad_frame" } });
      const h3: Header = { ...header, id: newId() };
      const unknownKey = encodeInner({ ...req(), extra: 1 } as never, encodeHeader(h3));
      expect(await answer([encodeHeader(h3), raw.sealer.seal(py.key, unknownKey)])).toMatchObject({ error: { code: "bad_frame" } });
      // Two transmissions of one request (same rid, fresh ids) while the first still runs: one run, one answer.
      const rid = newId();
      const twice = [raw.frames(py.key, req(rid, "py_slow_count", {})), raw.frames(py.key, req(rid, "py_slow_count", {}))];
      for (const frames of twice) await raw.socket.send(frames);
      const [first, second] = await answers(twice.map((f) => decodeHeader(f[0]).id));
      expect(first).toMatchObject({ st: "ok", result: { runs: 1 } });
      expect(second!.result).toEqual(first!.result);
      expect(await answer(raw.frames(py.key, req(rid, "py_slow_count", {})))).toMatchObject({ result: { runs: 1 } });
      expect(await answer(raw.frames(py.key, req(newId(), "py_slow_count", {})))).toMatchObject({ result: { runs: 2 } });
      // Still serving.
      expect(await caller.call("py", "py_add", { a: 20, b: 22 })).toEqual({ sum: 42, by: "python" });
    } finally {
      raw.close();
    }
  }, 30_000);

  it("TypeScript runs jobs on Python: progress pushed, result pushed, poll, cancel, and ownership", async () => {
    const job = await caller.start("py", "py_job", { steps: 3 });
    expect(job.runner).toBe(py.key);
    const steps: number[] = [];
    job.on("progress", (p) => steps.push(p.progress));
    expect(await job.result).toEqual({ steps: 3, job_id: job.id });
    expect(steps).toEqual([1, 2, 3]);
    expect(await caller.poll("py", job.id)).toMatchObject({ job_id: job.id, status: "done", result: { steps: 3 } });
    // Only the caller that started a job may poll it.
    await expect(ts.poll("py", job.id)).rejects.toMatchObject({ code: "forbidden" });
    await expect(caller.poll("py", "0".repeat(32) + py.key)).rejects.toMatchObject({ code: "unknown_job" });
    const long = await caller.start("py", "py_job", { steps: 50 });
    const state = await long.cancel();
    expect(state.status).toBe("cancelled");
    await expect(long.result).rejects.toMatchObject({ code: "cancelled" });
    expect(await caller.call("py", "py_job", { steps: 1 }, { timeout: 10_000 })).toMatchObject({ steps: 1 });
  }, 30_000);

  it("TypeScript calls svc:mix and reaches both the Python and the TypeScript replica, jobs included", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 2; i++) seen.add(((await caller.call("svc:mix", "svc_echo", { i })) as { replica: string }).replica);
    expect([...seen].sort()).toEqual(["python", "ts"]);
    const runners = new Set<string>();
    for (let i = 0; i < 20 && runners.size < 2; i++) {
      const job = await caller.start("svc:mix", "svc_job", { steps: 1 });
      runners.add(job.runner);
      expect(await job.result).toMatchObject({ steps: 1 });
      expect(await caller.poll("svc:mix", job.id)).toMatchObject({ status: "done" });
    }
    expect([...runners].sort()).toEqual([py.key, ts.publicKey].sort());
  }, 30_000);

  it("capability tokens both ways: Python attaches them, Python verifies them (scope, binding)", async () => {
    const { privateJwk, publicJwk } = generateAuthority();
    const jwkPath = join(fx.dir, "..", `authority-${process.pid}.pub.jwk`);
    writeFileSync(jwkPath, JSON.stringify(publicJwk));
    fx.add("secure-ts");
    fx.add("secure-py");
    fx.add("tok-caller"); // its own key: a second connection with tscaller's key would displace `caller`
    broker.reloadAllowlist();
    const secureTs = addReferenceTools(await connectAgent(fx, "secure-ts", broker.endpoint, { authority: publicJwk }), "secure-ts");
    const securePy = await startPythonPeer([broker.endpoint, fx.secretPath("secure-py"), fx.dir, "--authority", jwkPath]);
    try {
      // Python → TS with a token bound to the Python client's key.
      const token = createToken({ authority: privateJwk, sub: "pyclient", key: fx.key("pyclient"), scope: "call:*" });
      const script = `
import asyncio, json, sys
sys.path.insert(0, ${JSON.stringify(join(ROOT, "python"))})
import zmcp
async def main():
    out = {}
    async with await zmcp.Agent.connect(broker=${JSON.stringify(broker.endpoint)}, cert=${JSON.stringify(fx.secretPath("pyclient"))}, certs=${JSON.stringify(fx.dir)}, timeout=5, token=${JSON.stringify(token)}) as a:
        out["with"] = await a.call("secure-ts", "batch_sum", {"numbers": [4]})
    async with await zmcp.Agent.connect(broker=${JSON.stringify(broker.endpoint)}, cert=${JSON.stringify(fx.secretPath("pyclient"))}, certs=${JSON.stringify(fx.dir)}, timeout=5) as a:
        try:
            await a.call("secure-ts", "batch_sum", {"numbers": [4]})
        except zmcp.TokenMissingError as err:
            out["without"] = err.code
    print(json.dumps(out))
asyncio.run(main())
`;
      expect(JSON.parse(await runPython(["-c", script]))).toEqual({ with: { count: 1, total: 4 }, without: "token_missing" });
      // TS → Python: the Python agent checks signature, binding, scope as src/auth/tokens.ts does.
      const caller2 = await connectAgent(fx, "tok-caller", broker.endpoint, {
        token: createToken({ authority: privateJwk, sub: "tok-caller", key: fx.key("tok-caller"), scope: "call:py_add call:py_whoami" }),
      });
      try {
        expect(await caller2.call("secure-py", "py_add", { a: 1, b: 1 })).toEqual({ sum: 2, by: "python" });
        expect(await caller2.call("secure-py", "py_whoami", {})).toMatchObject({ token_sub: "tok-caller" });
        await expect(caller2.call("secure-py", "py_fail", {})).rejects.toMatchObject({ code: "token_scope" });
        expect((await caller2.listTools("secure-py")).map((t) => t.name)).toEqual(["py_add", "py_whoami"]);
      } finally {
        await caller2.close();
      }
      await expect(caller.call("secure-py", "py_add", { a: 1, b: 1 })).rejects.toMatchObject({ code: "token_missing" });
      const stolen = await connectAgent(fx, "tok-caller", broker.endpoint, {
        token: createToken({ authority: privateJwk, sub: "ts", key: fx.key("ts"), scope: "call:*" }),
      });
      try {
        await expect(stolen.call("secure-py", "py_add", { a: 1, b: 1 })).rejects.toMatchObject({ code: "token_key_mismatch" });
      } finally {
        await stolen.close();
      }
      const other = generateAuthority();
      const forged = await connectAgent(fx, "tok-caller", broker.endpoint, {
        token: createToken({ authority: other.privateJwk, sub: "tok-caller", key: fx.key("tok-caller"), scope: "call:*" }),
      });
      try {
        await expect(forged.call("secure-py", "py_add", { a: 1, b: 1 })).rejects.toMatchObject({ code: "token_invalid" });
      } finally {
        await forged.close();
      }
    } finally {
      await securePy.stop();
      await secureTs.close();
    }
  }, 60_000);

  it("the Python unit tests and the conformance vectors pass (python -m unittest)", async () => {
    const out = await runPython(["-m", "unittest"], 120_000, join(ROOT, "python"), true);
    expect(out).toMatch(/\nOK/);
    expect(out).toMatch(/Ran [1-9]\d* tests?/);
  }, 130_000);

  it("the sync wrapper calls from a plain script", async () => {
    const script = `
import sys
sys.path.insert(0, ${JSON.stringify(join(ROOT, "python"))})
import zmcp
with zmcp.SyncAgent.connect(broker=${JSON.stringify(broker.endpoint)}, cert=${JSON.stringify(fx.secretPath("pyclient"))}, certs=${JSON.stringify(fx.dir)}, timeout=5) as a:
    print(a.call("ts", "batch_sum", {"numbers": [2, 3]})["total"])
    try:
        a.call("ts", "nope")
    except zmcp.UnknownToolError as err:
        print(err.code, err.origin)
`;
    expect((await runPython(["-c", script])).trim().split("\n")).toEqual(["5", "unknown_tool peer"]);
  }, 30_000);

  it("the README's Python quick start runs (examples/python_quickstart.py)", async () => {
    const out = await runPython([join(ROOT, "examples", "python_quickstart.py"), "--broker", broker.endpoint, "--certs", fx.dir, "--cert", fx.secretPath("pyclient"), "--to", "ts"]);
    expect(out).toContain('batch_sum → {"count": 3, "total": 6.5}');
    expect(out).toContain("invalid_args");
  }, 30_000);
});

/** Each Python unit test and vector check as a test of its own (python/tests/run_json.py). */
describe.skipIf(problem !== undefined)("python unit tests and conformance vectors", () => {
  const runner = join(ROOT, "python", "tests", "run_json.py");
  const ids = problem ? [] : (JSON.parse(execFileSync(PYTHON, [runner, "--list"], { encoding: "utf8" })) as string[]);
  let results: Record<string, { status: string; detail: string }> = {};
  beforeAll(async () => {
    results = JSON.parse(await runPython([runner], 120_000)) as typeof results;
  }, 130_000);

  it("the Python suite holds the vector checks", () => {
    expect(ids.filter((id) => id.startsWith("tests.test_vectors.")).length).toBeGreaterThanOrEqual(6);
  });
  for (const id of ids) {
    it(id, () => {
      expect(results[id], `${id} did not run`).toBeDefined();
      expect(results[id]!.detail).toBe("");
      expect(results[id]!.status).toBe("ok");
    });
  }
});

