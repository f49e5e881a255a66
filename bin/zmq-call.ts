#!/usr/bin/env node
/** zmq-call: call one tool of one agent and print the result as JSON. */
import { Command } from "commander";
import { Agent } from "../src/agent/agent.js";
import { fail, positiveInt } from "./options.js";
import { TOKEN_ENV_HELP, TOKEN_HELP, tokenFromArgs } from "./token-option.js";

const program = new Command("zmq-call")
  .description("Call a tool on a zmcp agent through the broker; prints the result as JSON, or {code, message} on stderr")
  .argument("[tool]", "tool name (not with --list)")
  .argument("[json-args]", "arguments as a JSON object", "{}")
  .requiredOption("--to <agent>", "recipient: certificate name (in --certs), Z85 public key, or svc:NAME")
  .option("--list", "print the tools the recipient offers (tools/list) instead of calling one", false)
  .option("--broker <endpoint>", "broker endpoint", "tcp://127.0.0.1:5555")
  .option("--cert <file>", "this caller's secret certificate", "certs/alice.key_secret")
  .option("--certs <dir>", "public certificates (names, and broker.key)", "certs")
  .option("--server-key <z85>", "broker public key (default: <certs>/broker.key)")
  .option("--timeout <ms>", "deadline of the call", positiveInt, 10_000)
  .option("--token <@file>", TOKEN_HELP)
  .option("--token-env <name>", TOKEN_ENV_HELP)
  .showHelpAfterError()
  .parse();

const [tool, rawArgs] = program.processedArgs as [string | undefined, string];
const opts = program.opts<{ list: boolean; to: string; broker: string; cert: string; certs: string; serverKey?: string; timeout: number; token?: string; tokenEnv?: string }>();

async function main(): Promise<void> {
  if (!opts.list && !tool) fail({ code: "config", message: "a tool name is required (or --list)" }, 2);
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
    connectTimeout: opts.timeout,
    ...(token ? { token } : {}),
  });
  try {
    const result = opts.list ? await agent.listTools(opts.to, { timeout: opts.timeout }) : await agent.call(opts.to, tool!, args, { timeout: opts.timeout });
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    await agent.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => fail(err),
);
