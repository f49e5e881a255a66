/**
 * The commands as an operator meets them (issue 16): --version, usage errors as one JSON line
 * with exit 2 and a "did you mean", settings from the environment (flags win), zmq-broker
 * --config / --pid-file / process title, connection diagnostics of zmq-call, and jobs from the
 * shell (--job, --poll, --cancel, Ctrl-C, the deadline).
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { generateCertificate, saveCertificate } from "../../src/auth/certs.js";
import { startReferenceAgent } from "../../examples/reference-agent.js";
import { tokenFromArgs } from "../../bin/token-option.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { startBroker } from "../support/mesh.js";
import { BIN, ROOT, spawnBroker } from "../support/process.js";

const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const COMMANDS = ["zmq-broker", "zmq-call", "zmq-keygen", "zmq-mcp"] as const;

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a built command to its end, with only PATH (plus `env`) in its environment. */
function cli(name: string, args: string[], env: Record<string, string> = {}, cwd?: string): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN(name), ...args], { env: { PATH: process.env["PATH"] ?? "", ...env }, timeout: 30_000, ...(cwd ? { cwd } : {}) }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
      resolve({ status: typeof code === "number" ? code : null, stdout, stderr });
    });
  });
}

/** The one `{code, message}` line a failing command prints on stderr. */
function errorLine(r: Ran): { code: string; message: string } {
  const lines = r.stderr.trim().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  return JSON.parse(lines[0]!) as { code: string; message: string };
}

/** A loopback port nobody listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe("every command", () => {
  it.each(COMMANDS)("%s --version prints the package version and exits 0", async (name) => {
    const r = await cli(name, ["--version"]);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(VERSION);
  });

  it.each([
    ["zmq-broker", ["--bnd", "tcp://127.0.0.1:*"], "--bind"],
    ["zmq-call", ["--to", "bob", "--brokr", "tcp://127.0.0.1:5555", "x"], "--broker"],
    ["zmq-keygen", ["cert", "x", "--dri", "/tmp"], "--dir"],
    ["zmq-mcp", ["expose", "--to", "bob", "--cert", "x", "--brokr", "tcp://127.0.0.1:5555"], "--broker"],
  ] as const)("%s: an unknown option exits 2 with one {code, message} line suggesting the close match", async (name, args, near) => {
    const r = await cli(name, [...args]);
    expect(r.status).toBe(2);
    const e = errorLine(r);
    expect(e.code).toBe("config");
    expect(e.message).toContain(`Did you mean ${near}?`);
    expect(r.stdout).toBe("");
  });

  it.each([
    ["zmq-broker", ["--max-message-bytes", "-1"]],
    ["zmq-call", ["--to", "bob", "--timeout", "soon", "x"]],
    ["zmq-keygen", ["cert"]],
    ["zmq-mcp", ["expose"]],
  ] as const)("%s: a bad value or a missing argument exits 2 with one {code, message} line, not the help", async (name, args) => {
    const r = await cli(name, [...args]);
    expect(r.status).toBe(2);
    expect(errorLine(r).code).toBe("config");
    expect(r.stderr).not.toContain("Usage:");
  });
});

it("zmq-keygen writes into ZMCP_CERTS when --dir is not given; --dir wins", async () => {
  const a = mkdtempSync(join(tmpdir(), "zmcp-kg-"));
  const b = mkdtempSync(join(tmpdir(), "zmcp-kg-"));
  try {
    expect((await cli("zmq-keygen", ["cert", "dave"], { ZMCP_CERTS: a })).status).toBe(0);
    expect(existsSync(join(a, "dave.key_secret"))).toBe(true);
    expect((await cli("zmq-keygen", ["cert", "erin", "--dir", b], { ZMCP_CERTS: a })).status).toBe(0);
    expect(existsSync(join(b, "erin.key_secret"))).toBe(true);
    expect(existsSync(join(a, "erin.key_secret"))).toBe(false);
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
});

describe("zmq-broker operations", () => {
  let fx: CertFixture;
  let dir: string;
  beforeAll(() => {
    fx = tempCerts();
    dir = mkdtempSync(join(tmpdir(), "zmcp-ops-"));
  });
  afterAll(() => {
    fx.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("--config FILE sets options (flags win) and refuses an unknown key with a suggestion", async () => {
    const config = join(dir, "broker.json");
    writeFileSync(config, JSON.stringify({ bind: "tcp://127.0.0.1:1", key: fx.secretPath("broker"), allow: fx.dir, "max-message-bytes": 4096, rate: 50 }));
    const broker = await spawnBroker(["--config", config, "--bind", "tcp://127.0.0.1:*"]);
    try {
      expect(broker.endpoint).not.toBe("tcp://127.0.0.1:1"); // the flag won
      expect(broker.publicKey).toBe(fx.key("broker")); // key from the file
      expect(broker.ready["rate"]).toBe(50); // parsed from the file like the flag
    } finally {
      await broker.stop();
    }
    writeFileSync(config, JSON.stringify({ bind: "tcp://127.0.0.1:*", "max-mesage-bytes": 10 }));
    const typo = await cli("zmq-broker", ["--config", config]);
    expect(typo.status).toBe(2);
    expect(errorLine(typo)).toMatchObject({ code: "config", message: expect.stringContaining('did you mean "max-message-bytes"') });
    writeFileSync(config, JSON.stringify({ "max-message-bytes": "lots" }));
    const bad = await cli("zmq-broker", ["--config", config]);
    expect(bad.status).toBe(2);
    expect(errorLine(bad).message).toContain("positive integer");
  });

  it("a failure at start is one line on stderr, not a log line and the error again", async () => {
    const r = await cli("zmq-broker", ["--key", join(dir, "nope.pem"), "--bind", "tcp://127.0.0.1:*"]);
    expect(r.status).toBe(1);
    expect(errorLine(r)).toMatchObject({ code: "config" });
  });

  it("--pid-file holds the pid while it runs; pidof zmq-broker finds it; kill -HUP reloads; the file goes at exit", async () => {
    const pidFile = join(dir, "broker.pid");
    const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir, "--pid-file", pidFile]);
    try {
      const pid = Number(readFileSync(pidFile, "utf8").trim());
      expect(pid).toBe(broker.proc.pid);
      const pidof = spawnSync("pidof", ["zmq-broker"], { encoding: "utf8" });
      expect(pidof.stdout.trim().split(/\s+/)).toContain(String(pid));
      expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("zmq-broker");
      spawnSync("kill", ["-HUP", String(pid)]);
      await broker.waitLog((l) => String(l["msg"]).startsWith("SIGHUP"), "SIGHUP reload");
      expect(broker.alive()).toBe(true);
    } finally {
      expect(await broker.stop()).toBe(0);
    }
    expect(existsSync(pidFile)).toBe(false);
  });
});

describe("zmq-call", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;
  beforeAll(async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    bob = await startReferenceAgent({ broker: broker.endpoint, cert: fx.secretPath("bob"), certs: fx.dir, name: "bob", connectTimeout: 5000 });
  });
  afterAll(async () => {
    await bob.close();
    await broker.close();
    fx.cleanup();
  });
  const conn = () => ["--broker", broker.endpoint, "--cert", fx.secretPath("alice"), "--certs", fx.dir];

  it("has no default identity: without --cert or ZMCP_CERT it says how to configure one (exit 2), even beside certs/alice.key_secret", async () => {
    // A working directory that holds the demo's identity: the old default would have used it.
    const cwd = mkdtempSync(join(tmpdir(), "zmcp-cwd-"));
    try {
      saveCertificate(generateCertificate({ name: "alice" }), join(cwd, "certs"), "alice");
      const r = await cli("zmq-call", ["--broker", broker.endpoint, "--certs", fx.dir, "--to", "bob", "server_identity"], {}, cwd);
      expect(r.status).toBe(2);
      const e = errorLine(r);
      expect(e.code).toBe("config");
      expect(e.message).toContain("ZMCP_CERT");
      expect(e.message).toContain("zmq-keygen cert");
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it("reads ZMCP_BROKER, ZMCP_CERT and ZMCP_CERTS; a flag wins over its variable", async () => {
    const env = { ZMCP_BROKER: broker.endpoint, ZMCP_CERT: fx.secretPath("alice"), ZMCP_CERTS: fx.dir };
    const r = await cli("zmq-call", ["--to", "bob", "batch_sum", '{"numbers":[2,3]}'], env);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ count: 2, total: 5 });
    const won = await cli("zmq-call", ["--broker", broker.endpoint, "--to", "bob", "batch_sum", '{"numbers":[4]}'], { ...env, ZMCP_BROKER: "tcp://127.0.0.1:1" });
    expect(won.status, won.stderr).toBe(0);
    expect(JSON.parse(won.stdout)).toEqual({ count: 1, total: 4 });
  });

  it("ZMCP_TOKEN may name a file (re-read like --token @FILE); a JWT-shaped value is still the token itself", () => {
    const file = join(fx.dir, "token.jwt");
    writeFileSync(file, "aaa.bbb.ccc\n");
    const fromFile = tokenFromArgs({}, { ZMCP_TOKEN: file });
    expect(typeof fromFile).toBe("function");
    expect((fromFile as () => string)()).toBe("aaa.bbb.ccc");
    expect(tokenFromArgs({}, { ZMCP_TOKEN: "xxx.yyy.zzz" })).toBe("xxx.yyy.zzz");
    expect(() => tokenFromArgs({}, { ZMCP_TOKEN: join(fx.dir, "missing") })).toThrow(/cannot read token file/);
  });

  it("nothing listening is `unreachable` at once, not a 10 s `timeout`", async () => {
    const port = await closedPort();
    const r = await cli("zmq-call", [...conn(), "--broker", `tcp://127.0.0.1:${port}`, "--connect-timeout", "60000", "--to", "bob", "server_identity"]);
    expect(r.status).toBe(1);
    expect(errorLine(r)).toEqual({ code: "unreachable", message: `no broker is listening at tcp://127.0.0.1:${port} (connection refused)` });
  }, 30_000);

  it("--poll/--cancel refuse what is not a job id (exit 2)", async () => {
    const r = await cli("zmq-call", [...conn(), "--poll", "1234"]);
    expect(r.status).toBe(2);
    expect(errorLine(r)).toMatchObject({ code: "config", message: expect.stringContaining("not a job id") });
  });

  it("an endpoint without tcp:// gets a did-you-mean (exit 2)", async () => {
    const r = await cli("zmq-call", [...conn(), "--broker", "127.0.0.1:5555", "--to", "bob", "server_identity"]);
    expect(r.status).toBe(2);
    expect(errorLine(r).message).toContain("did you mean tcp://127.0.0.1:5555?");
    const mcp = await cli("zmq-mcp", ["expose", "--to", "bob", "--cert", fx.secretPath("alice"), "--certs", fx.dir, "--broker", "127.0.0.1:5555"]);
    expect(mcp.status).toBe(2);
    expect(errorLine(mcp).message).toContain("did you mean tcp://127.0.0.1:5555?");
  });

  it("a stale broker.key and a key outside the allowlist get different hints", async () => {
    const stale = mkdtempSync(join(tmpdir(), "zmcp-stale-"));
    try {
      saveCertificate(generateCertificate({ name: "broker" }), stale, "broker"); // another broker's key
      const r = await cli("zmq-call", ["--broker", broker.endpoint, "--cert", fx.secretPath("alice"), "--certs", stale, "--to", fx.key("bob"), "server_identity"]);
      expect(r.status).toBe(1);
      const e = errorLine(r);
      expect(e.code).toBe("handshake_failed");
      expect(e.message).toContain("broker.key");
      expect(e.message).not.toContain("allowlist");
      fx.add("mallory", false); // a key outside the broker's allowlist directory
      const refused = await cli("zmq-call", ["--broker", broker.endpoint, "--cert", fx.secretPath("mallory"), "--certs", fx.dir, "--to", "bob", "server_identity"]);
      expect(refused.status).toBe(1);
      expect(errorLine(refused)).toMatchObject({ code: "handshake_failed", message: expect.stringContaining("allowlist") });
    } finally {
      rmSync(stale, { recursive: true, force: true });
    }
  });

  it("a short --timeout does not cap the handshake: the call times out, not the connection", async () => {
    const r = await cli("zmq-call", [...conn(), "--timeout", "1", "--to", "bob", "start_long_task", '{"seconds":2}']);
    expect(r.status).toBe(1);
    const e = errorLine(r);
    // The call's own deadline ran out: locally (`timeout`), or at the broker on a loaded machine
    // (`expired`); either way past the handshake, which used to get the same 1 ms.
    expect(["timeout", "expired"]).toContain(e.code);
    expect(e.message).not.toContain("handshake");
  });

  it("--job follows a job as JSON lines (states) off a terminal; the result is the last line", async () => {
    const r = await cli("zmq-call", [...conn(), "--timeout", "20000", "--to", "bob", "--job", "start_long_task", '{"seconds":2,"payload":{"k":1}}']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { job_id: string; status: string; progress?: unknown; result?: unknown });
    const id = lines[0]!.job_id;
    expect(lines[0]).toEqual({ job_id: id, status: "running" });
    expect(lines.filter((l) => l.progress !== undefined).map((l) => l.progress)).toContainEqual({ progress: 1, total: 2, message: "1/2 s" });
    expect(lines.at(-1)).toEqual({ job_id: id, status: "done", result: { payload: { k: 1 }, seconds: 2 } });
  });

  it("when --timeout passes with the job still running it says so (id, --poll, --cancel); --poll and --cancel work on that id", async () => {
    const r = await cli("zmq-call", [...conn(), "--timeout", "1500", "--to", "bob", "--job", "start_long_task", '{"seconds":20}']);
    expect(r.status).toBe(1);
    const e = errorLine(r);
    expect(e.code).toBe("timeout");
    const id = (JSON.parse(r.stdout.split("\n")[0]!) as { job_id: string }).job_id;
    expect(e.message).toContain(`job ${id} still runs on bob`);
    expect(e.message).toContain("--poll");
    expect(e.message).toContain("--cancel");
    // No --to needed: the id names the agent running the job.
    const polled = await cli("zmq-call", [...conn(), "--poll", id]);
    expect(polled.status, polled.stderr).toBe(0);
    expect(JSON.parse(polled.stdout)).toMatchObject({ job_id: id, status: "running" });
    const cancelled = await cli("zmq-call", [...conn(), "--to", "bob", "--cancel", id]);
    expect(cancelled.status, cancelled.stderr).toBe(0);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ job_id: id, status: "cancelled" });
  });

  it("Ctrl-C while following off a terminal cancels the job and says so", async () => {
    const proc = spawn(process.execPath, [BIN("zmq-call"), ...conn(), "--timeout", "30000", "--to", "bob", "--job", "start_long_task", '{"seconds":20}'], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | string | null>((r) => proc.once("exit", (code, signal) => r(code ?? signal)));
    try {
      const first = await new Promise<string>((resolve) => createInterface({ input: proc.stdout }).once("line", resolve));
      const id = (JSON.parse(first) as { job_id: string }).job_id;
      proc.kill("SIGINT");
      expect(await exited, stderr).toBe(130);
      expect(JSON.parse(stderr.trim())).toEqual({ code: "cancelled", message: `interrupted: cancelled job ${id} on bob` });
      const polled = await cli("zmq-call", [...conn(), "--to", "bob", "--poll", id]);
      expect(JSON.parse(polled.stdout)).toMatchObject({ status: "cancelled" });
    } finally {
      proc.kill("SIGKILL");
    }
  });

  it.skipIf(!existsSync("/usr/bin/python3"))("--job on a terminal draws a progress bar and prints the result", async () => {
    const script = "import os, pty, sys\nsys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))";
    const r = await new Promise<Ran>((resolve) =>
      execFile("/usr/bin/python3", ["-c", script, process.execPath, BIN("zmq-call"), ...conn(), "--timeout", "20000", "--to", "bob", "--job", "start_long_task", '{"seconds":2}'], { timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
      ),
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`[${"#".repeat(15)}${"-".repeat(15)}] 1/2 50%`);
    expect(r.stdout).toContain('{"payload":{},"seconds":2}');
  });
  it.skipIf(!existsSync("/usr/bin/python3"))("Ctrl-C while following on a terminal asks whether to cancel; y cancels", async () => {
    // A pseudo-terminal: wait for the bar, press Ctrl-C, wait for the question, answer y.
    const script = [
      "import os, pty, select, sys, time",
      "pid, fd = pty.fork()",
      "if pid == 0:",
      "    os.execv(sys.argv[1], sys.argv[1:])",
      "buf = b''",
      "def until(pat):",
      "    global buf",
      "    end = time.time() + 20",
      "    while pat not in buf:",
      "        if time.time() > end: sys.exit('no %r in %r' % (pat, buf))",
      "        if select.select([fd], [], [], 0.2)[0]:",
      "            try: data = os.read(fd, 4096)",
      "            except OSError: break",
      "            if not data: break",
      "            buf += data",
      "until(b'job ')",
      "os.write(fd, b'\\x03')",
      "until(b'[y/N]')",
      "os.write(fd, b'y\\n')",
      "until(b'cancelled job')",
      "_, status = os.waitpid(pid, 0)",
      "sys.stdout.buffer.write(buf)",
      "sys.exit(os.waitstatus_to_exitcode(status))",
    ].join("\n");
    const r = await new Promise<Ran>((resolve) =>
      execFile("/usr/bin/python3", ["-c", script, process.execPath, BIN("zmq-call"), ...conn(), "--timeout", "30000", "--to", "bob", "--job", "start_long_task", '{"seconds":20}'], { timeout: 40_000 }, (err, stdout, stderr) =>
        resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
      ),
    );
    expect(r.status, r.stdout + r.stderr).toBe(130);
    const id = /cancel job (\S+) on bob\? \[y\/N\]/.exec(r.stdout)?.[1];
    expect(id, r.stdout).toBeDefined();
    const line = r.stdout.split(/\r?\n/).find((l) => l.includes('"code":"cancelled"'))!;
    expect(JSON.parse(line.slice(line.indexOf("{")))).toEqual({ code: "cancelled", message: `interrupted: cancelled job ${id} on bob` });
    const polled = await cli("zmq-call", [...conn(), "--to", "bob", "--poll", id!]);
    expect(JSON.parse(polled.stdout)).toMatchObject({ status: "cancelled" });
  }, 60_000);
});
