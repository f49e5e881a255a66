/**
 * What every command shares, in one place: `--version` (from package.json), usage errors as one
 * `{code: "config", message}` JSON line on stderr with exit status 2 (never commander's help
 * dump and exit 1), "did you mean" for a mistyped option, and connection settings that may come
 * from the environment (flags win).
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { fail } from "./options.js";

/** The package's version, read from the package.json shipped beside dist/. */
export const VERSION = readVersion();

function readVersion(): string {
  // dist/bin/cli.js → ../../package.json (the same relative path from bin/cli.ts under vitest).
  try {
    return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "0.0.0";
  }
}

/** Environment variables the commands read when the matching flag is absent. */
export const ENV = {
  broker: "ZMCP_BROKER",
  cert: "ZMCP_CERT",
  certs: "ZMCP_CERTS",
} as const;

/** Exit status of a usage error (bad flag, missing argument, bad value), as POSIX tools do. */
export const USAGE_EXIT = 2;

/**
 * A command (or subcommand) with the shared behaviour: `--version`, no help dump on a usage
 * error, and suggestions for unknown options and commands. Parse it with {@link run}.
 */
export function command(name: string): Command {
  const cmd = new Command(name);
  cmd.version(VERSION, "-V, --version", "print the version and exit");
  return configure(cmd);
}

/** Applies the shared behaviour to a subcommand too (commander does not inherit it all). */
export function configure(cmd: Command): Command {
  return cmd
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: () => {} });
}

/** `--broker`, `--cert`, `--certs` with their environment variable (the flag wins). */
export function brokerOption(description: string, defaultValue?: string): Option {
  const o = new Option("--broker <endpoint>", description).env(ENV.broker);
  return defaultValue === undefined ? o : o.default(defaultValue);
}
export function certOption(description: string): Option {
  return new Option("--cert <file>", description).env(ENV.cert);
}
export function certsOption(description: string, defaultValue = "certs"): Option {
  return new Option("--certs <dir>", description).env(ENV.certs).default(defaultValue);
}

/** Usage error: one JSON line on stderr, exit 2. */
export function usageError(message: string): never {
  return fail({ code: "config", message }, USAGE_EXIT);
}

/**
 * Parses argv. Help and `--version` print and exit 0; any other commander error becomes a usage
 * error (its message keeps commander's "(Did you mean --broker?)").
 */
export function run(program: Command, argv: readonly string[] = process.argv): void {
  try {
    program.parse(argv as string[]);
  } catch (err) {
    exitOnCommanderError(err);
  }
}

/** {@link run} for a command whose actions are async. */
export async function runAsync(program: Command, argv: readonly string[] = process.argv): Promise<void> {
  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    exitOnCommanderError(err);
  }
}

/** Help and version end in exit 0; any other commander error is a usage error; anything else is rethrown. */
function exitOnCommanderError(err: unknown): never {
  if (err instanceof CommanderError) {
    if (err.exitCode === 0 || err.code === "commander.helpDisplayed" || err.code === "commander.version") process.exit(0);
    // `zmq-keygen` with no subcommand prints its help and ends with this code: that is usage.
    if (err.code === "commander.help") process.exit(USAGE_EXIT);
    usageError(err.message.replace(/^error: /, "").replace(/\n/g, " "));
  }
  throw err;
}

/**
 * An endpoint as given by a user → the endpoint, or a usage error that says what was probably
 * meant: `127.0.0.1:5555` → "did you mean tcp://127.0.0.1:5555".
 */
export function checkEndpoint(endpoint: string, flag = "--broker"): string {
  if (/^(tcp|ipc|inproc|ws|wss|tls\+tcp|pgm|epgm|vmci):\/\//.test(endpoint)) return endpoint;
  if (/^[^/:]+:(\d+|\*)$/.test(endpoint) || /^\[[0-9a-fA-F:.]+\]:\d+$/.test(endpoint)) {
    usageError(`${flag} ${endpoint}: a ZeroMQ endpoint names its transport; did you mean tcp://${endpoint}?`);
  }
  return usageError(`${flag} ${endpoint}: not a ZeroMQ endpoint (expected tcp://HOST:PORT or ipc://PATH)`);
}
