/**
 * The reference protocol's tools (seeds/002), offered by one agent: `server_identity` and
 * `batch_sum` (synchronous), `start_long_task` (a job: answers `accepted` with a job id) and
 * `poll_job`. Run it as a process:
 *
 *   node dist/examples/reference-agent.js --cert certs/bob.key_secret --certs certs
 *
 * With `--authority certs/authority.pub.jwk` it requires a capability token on every call
 * (see docs/SECURITY.md), and `--deny certs/deny.json` adds a deny list.
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { z } from "zod";
import { Agent, type AgentOptions } from "../src/index.js";

/** Registers the reference tools on `agent`. */
export function addReferenceTools(agent: Agent, serverId: string): Agent {
  const fingerprint = createHash("sha256").update(agent.publicKey).digest("hex").slice(0, 16);
  return agent
    .tool(
      "server_identity",
      {
        description: "Who this agent is: its id, key fingerprint and capabilities",
        input: z.strictObject({}),
        output: z.strictObject({ server_id: z.string(), public_key: z.string(), fingerprint: z.string(), capabilities: z.record(z.string(), z.unknown()) }),
      },
      () => ({
        server_id: serverId,
        public_key: agent.publicKey,
        fingerprint,
        capabilities: { tools: ["server_identity", "batch_sum", "start_long_task", "poll_job"], transport: "zmq+curve", seal: "nacl-box", jobs: true, protocol: 1 },
      }),
    )
    .tool(
      "batch_sum",
      {
        description: "Count and total of a list of numbers",
        input: z.strictObject({ numbers: z.array(z.number()).min(1) }),
        output: z.strictObject({ count: z.number().int(), total: z.number() }),
      },
      ({ numbers }) => ({ count: numbers.length, total: numbers.reduce((a, b) => a + b, 0) }),
    )
    .tool(
      "start_long_task",
      {
        description: "A long job: works for `seconds`, reporting progress each second, then returns `payload`",
        input: z.strictObject({ seconds: z.number().int().min(1).max(20), payload: z.record(z.string(), z.unknown()).default({}) }),
        job: true,
      },
      async ({ seconds, payload }, ctx) => {
        for (let s = 1; s <= seconds; s++) {
          await new Promise((resolve, reject) => {
            const timer = setTimeout(resolve, 1000);
            ctx.signal.addEventListener("abort", () => (clearTimeout(timer), reject(new Error("cancelled"))), { once: true });
          });
          ctx.progress({ progress: s, total: seconds, message: `${s}/${seconds} s` });
        }
        return { payload, seconds };
      },
    )
    .tool(
      "poll_job",
      { description: "Status of a job this caller started (same as the built-in jobs/poll)", input: z.strictObject({ job_id: z.string() }) },
      ({ job_id }, ctx) => agent.jobState(job_id, ctx.from),
    );
}

export async function startReferenceAgent(options: AgentOptions & { name: string }): Promise<Agent> {
  const agent = await Agent.connect(options);
  return addReferenceTools(agent, options.name);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      broker: { type: "string", default: "tcp://127.0.0.1:5555" },
      cert: { type: "string", default: "certs/bob.key_secret" },
      certs: { type: "string", default: "certs" },
      name: { type: "string", default: "bob" },
      authority: { type: "string" },
      deny: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: reference-agent [--broker tcp://127.0.0.1:5555] [--cert certs/bob.key_secret] [--certs certs] [--name bob] [--authority certs/authority.pub.jwk] [--deny certs/deny.json]\n",
    );
    process.exit(0);
  }
  const agent = await startReferenceAgent({
    broker: values.broker,
    cert: values.cert,
    certs: values.certs,
    name: values.name,
    ...(values.authority ? { authority: values.authority, requireToken: true } : {}),
    ...(values.deny ? { denyList: values.deny } : {}),
  });
  process.stderr.write(JSON.stringify({ level: "info", msg: "agent ready", name: values.name, publicKey: agent.publicKey }) + "\n");
  const stop = () => void agent.close().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
