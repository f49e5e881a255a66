#!/usr/bin/env node
/**
 * zmq-call: call one tool of one agent and print the result as JSON; start a job and follow
 * it (`--job`), poll it (`--poll ID`) or cancel it (`--cancel ID`).
 */
import { createInterface } from "node:readline";
import { Agent } from "../src/agent/agent.js";
import { ZmcpError } from "../src/errors.js";
import { silentLogger } from "../src/support/log.js";
import { jobRunner, type Job, type JobState } from "../src/agent/jobs.js";
import { BUILTIN_TOOLS } from "../src/agent/tools.js";
import { parseServiceAddress, serviceAddress } from "../src/wire/services.js";
import type { Progress } from "../src/index.js";
import { brokerOption, certOption, certsOption, checkEndpoint, command, ENV, run, usageError } from "./cli.js";
import { fail, positiveInt } from "./options.js";
import { TOKEN_ENV_HELP, TOKEN_HELP, tokenFromArgs } from "./token-option.js";

const program = command("zmq-call")
  .description(
    "Call a tool on a zmcp agent through the broker; prints the result as JSON, or {code, message} on stderr. " +
      `Connection settings may come from ${ENV.broker}, ${ENV.cert}, ${ENV.certs} (flags win).`,
  )
  .argument("[tool]", "tool name (not with --list, --poll, --cancel)")
  .argument("[json-args]", "arguments as a JSON object", "{}")
  .option("--to <agent>", "recipient: certificate name (in --certs), Z85 public key, or svc:NAME (with --poll/--cancel: default, the agent the job id names)")
  .option("--list", "print the tools the recipient offers (tools/list) instead of calling one", false)
  .option("--job", "start TOOL as a job and follow it: a progress bar on a terminal, JSON lines (job states) otherwise", false)
  .option("--poll <job-id>", "print the state of a job this identity started on --to")
  .option("--cancel <job-id>", "cancel a job this identity started on --to")
  .addOption(brokerOption("broker endpoint", "tcp://127.0.0.1:5555"))
  .addOption(certOption("this caller's secret certificate (required: its key is the caller's identity)"))
  .addOption(certsOption("public certificates (names, and broker.key)"))
  .option("--server-key <z85>", "broker public key (default: <certs>/broker.key)")
  .option("--timeout <ms>", "deadline of the call; with --job, of following the job", positiveInt, 10_000)
  .option("--durable", "a broker with a durable store keeps the call for an offline recipient until --timeout (docs/DURABLE.md); a line on stderr says when it is stored", false)
  .option("--connect-timeout <ms>", "how long to wait for the broker's CURVE handshake", positiveInt, 10_000)
  .option("--token <@file>", TOKEN_HELP)
  .option("--token-env <name>", TOKEN_ENV_HELP);
run(program);

const [tool, rawArgs] = program.processedArgs as [string | undefined, string];
const opts = program.opts<{
  list: boolean;
  durable: boolean;
  job: boolean;
  poll?: string;
  cancel?: string;
  to?: string;
  broker: string;
  cert?: string;
  certs: string;
  serverKey?: string;
  timeout: number;
  connectTimeout: number;
  token?: string;
  tokenEnv?: string;
}>();

/** An address as a shell word (a job id is hex, a Z85 key may hold `#{]>`, never a single quote). */
const shellWord = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s}'`);
const how = (to: string, id: string) =>
  `follow it with: zmq-call --to ${shellWord(to)} --poll ${shellWord(id)}; stop it with: zmq-call --to ${shellWord(to)} --cancel ${shellWord(id)}`;
// (--to is kept in the hint: for a service, polls go to the replica through svc:NAME@KEY.)

/** Where a job's poll or cancel goes: for a service, the very replica running it. */
function jobAddress(to: string, id: string): string {
  const service = parseServiceAddress(to);
  const runner = jobRunner(id);
  return service && runner ? serviceAddress(service.name, runner) : to;
}

function write(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}

async function main(): Promise<void> {
  const modes = [opts.list, opts.job, opts.poll !== undefined, opts.cancel !== undefined].filter(Boolean).length;
  if (modes > 1) usageError("give one of --list, --job, --poll, --cancel");
  const needsTool = !opts.list && opts.poll === undefined && opts.cancel === undefined;
  if (needsTool && !tool) usageError("a tool name is required (or --list, --poll ID, --cancel ID)");
  if (!needsTool && tool) usageError(`no tool name with --list, --poll or --cancel (got ${JSON.stringify(tool)})`);
  if (!opts.cert) {
    usageError(
      `no identity: give --cert FILE.key_secret or set ${ENV.cert} (make one with: zmq-keygen cert NAME; the broker must admit its .key); ` +
        "the quick start's demo identity is certs/alice.key_secret",
    );
  }
  checkEndpoint(opts.broker);
  const jobId = opts.poll ?? opts.cancel;
  // A job id ends with the key of the agent running it, so --poll/--cancel need no --to.
  const runner = jobId === undefined ? undefined : jobRunner(jobId);
  if (jobId !== undefined && runner === undefined) usageError(`${JSON.stringify(jobId)} is not a job id (96 lowercase hex characters: the job's 16 random bytes, then the runner's key)`);
  const to = opts.to ?? runner;
  if (to === undefined) usageError("--to is required: certificate name, Z85 key or svc:NAME");
  let args: unknown;
  try {
    args = JSON.parse(rawArgs);
  } catch (err) {
    fail({ code: "invalid_args", message: `arguments are not JSON: ${(err as Error).message}` }, 2);
  }
  let token: ReturnType<typeof tokenFromArgs>;
  try {
    token = tokenFromArgs(opts);
  } catch (err) {
    fail(err, 2);
  }
  const agent = await Agent.connect({
    broker: opts.broker,
    cert: opts.cert,
    certs: opts.certs,
    ...(opts.serverKey ? { serverKey: opts.serverKey } : {}),
    // Its own setting: a short call deadline must not cut a slow handshake short, nor the reverse.
    connectTimeout: opts.connectTimeout,
    log: silentLogger, // the outcome is the one {code, message} line; no log line besides it
    ...(token ? { token } : {}),
  });
  try {
    const call = { timeout: opts.timeout, ...(opts.durable ? { durable: true, onStored: () => process.stderr.write(`stored by the broker: ${to} cannot take it now; waiting until the deadline\n`) } : {}) };
    if (opts.list) write(await agent.listTools(to, call));
    else if (opts.poll !== undefined) write(await agent.poll(to, opts.poll, call));
    else if (opts.cancel !== undefined) write(await agent.call(jobAddress(to, opts.cancel), BUILTIN_TOOLS.cancel, { job_id: opts.cancel }, call));
    else if (opts.job) await follow(await agent.start(to, tool!, args, call), to);
    else write(await agent.call(to, tool!, args, call));
  } finally {
    await agent.close();
  }
}

/**
 * Follows a started job to its end, within `--timeout`. On a terminal: a progress bar on stderr
 * and the result on stdout; otherwise one JSON job state per line on stdout. Ctrl-C asks whether
 * to cancel (terminal) or cancels and says so (otherwise).
 */
async function follow(job: Job, to: string): Promise<void> {
  const tty = process.stderr.isTTY === true;
  if (job.id === "") {
    // Not a job tool: it answered at once.
    write(await job.result);
    return;
  }

  let interrupted: Promise<"cancel" | "leave"> | undefined;
  const onSigint = () => {
    if (interrupted) return;
    interrupted = tty && process.stdin.isTTY ? ask(`\ncancel job ${job.id} on ${to}? [y/N] `).then((a) => (/^y/i.test(a) ? "cancel" : "leave")) : Promise.resolve("cancel");
    void interrupted.then(async (choice) => {
      process.stderr.write(tty ? "\r\x1b[2K" : "");
      if (choice === "leave") fail({ code: "aborted", message: `interrupted; job ${job.id} still runs on ${to}: ${how(to, job.id)}` }, 130);
      const state = await job.cancel().catch((err: unknown) => err);
      if (state instanceof Error) fail({ code: (state as ZmcpError).code ?? "error", message: `interrupted; cancelling job ${job.id} failed: ${state.message}; ${how(to, job.id)}` }, 130);
      fail({ code: "cancelled", message: `interrupted: cancelled job ${job.id} on ${to}` }, 130);
    });
  };
  process.on("SIGINT", onSigint);
  // Only now say the job runs: whoever reads that line may press Ctrl-C at once.
  const bar = tty ? new ProgressBar(job.id) : undefined;
  if (!tty) write({ job_id: job.id, status: "running" } satisfies JobState);
  job.on("progress", (p) => (bar ? bar.draw(p) : write({ job_id: job.id, status: "running", progress: p } satisfies JobState)));

  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ZmcpError("timeout", `--timeout ${opts.timeout} ms passed; job ${job.id} still runs on ${to}: ${how(to, job.id)}`)), opts.timeout);
  });
  try {
    const result = await Promise.race([job.result, deadline]);
    bar?.clear();
    write(tty ? result : ({ job_id: job.id, status: "done", result } satisfies JobState));
  } catch (err) {
    bar?.clear();
    if (interrupted) await new Promise(() => {}); // the SIGINT path ends the process
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      resolve(answer);
    });
    rl.on("SIGINT", () => {
      rl.close();
      resolve("n");
    });
  });
}

/** A one-line progress bar on stderr, redrawn in place. */
class ProgressBar {
  #drawn = false;
  constructor(private readonly id: string) {
    this.draw({ progress: 0 });
  }
  draw(p: Progress): void {
    const width = 30;
    const label = `job ${this.id.slice(0, 8)}…`;
    let line: string;
    if (p.total !== undefined && p.total > 0) {
      const ratio = Math.min(1, Math.max(0, p.progress / p.total));
      const filled = Math.round(ratio * width);
      line = `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${p.progress}/${p.total} ${Math.round(ratio * 100)}%`;
    } else {
      line = `${label} ${p.progress}`;
    }
    if (p.message) line += ` ${p.message}`;
    process.stderr.write(`\r\x1b[2K${line}`);
    this.#drawn = true;
  }
  clear(): void {
    if (this.#drawn) process.stderr.write("\r\x1b[2K");
    this.#drawn = false;
  }
}

main().then(
  () => process.exit(0),
  (err) => fail(err),
);
