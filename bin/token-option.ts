/**
 * Where a command-line tool takes its capability token from, so that the token never has to
 * be on the command line: every local user can read `/proc/PID/cmdline` (and `ps` shows it),
 * and a shell history keeps it. So:
 * - `--token @FILE`: read from a file (trimmed); re-read as the token nears its expiry, so an
 *   issuer can replace the file under a long-running process;
 * - `--token-env NAME`: read from the environment variable NAME (which only the process's
 *   user and root can read, in `/proc/PID/environ`);
 * - neither: the variable `ZMCP_TOKEN`, if set: a file path (`@` optional, re-read like
 *   `--token @FILE`), or, when it has the shape of a compact JWT, the token itself;
 * - `--token <jwt>` (the literal) is refused with a `config` error that says how instead.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "../src/errors.js";
import type { TokenProvider } from "../src/auth/token-source.js";

/** The environment variable read when neither `--token` nor `--token-env` is given. */
export const TOKEN_ENV = "ZMCP_TOKEN";

export const TOKEN_HELP = "capability token from a file: @FILE (re-read as it nears expiry); the literal token is refused (visible in /proc/PID/cmdline)";
export const TOKEN_ENV_HELP = `capability token from this environment variable (default: ${TOKEN_ENV}, if set)`;

export interface TokenArgs {
  token?: string | undefined;
  tokenEnv?: string | undefined;
}

/**
 * The token source the options name, or undefined for none. A file is read once here, so a
 * bad path fails at start. Throws ConfigError for a literal token, both options at once, an
 * unset or empty variable named by `--token-env`, or an unreadable or empty file.
 */
export function tokenFromArgs(args: TokenArgs, env: NodeJS.ProcessEnv = process.env): TokenProvider | undefined {
  if (args.token !== undefined && args.tokenEnv !== undefined) throw new ConfigError("give --token @FILE or --token-env NAME, not both");
  if (args.token !== undefined) {
    if (!args.token.startsWith("@")) {
      throw new ConfigError(
        `a token on the command line is readable by every local user (/proc/PID/cmdline); use --token @FILE, --token-env NAME or the ${TOKEN_ENV} variable`,
      );
    }
    return fileToken(args.token.slice(1));
  }
  const name = args.tokenEnv ?? TOKEN_ENV;
  const value = env[name]?.trim();
  if (value && args.tokenEnv === undefined && !JWT_SHAPE.test(value)) return fileToken(value.startsWith("@") ? value.slice(1) : value, TOKEN_ENV);
  if (value) return value;
  if (args.tokenEnv !== undefined) throw new ConfigError(`environment variable ${name} (--token-env) is not set or empty`);
  return undefined;
}

/** Three base64url segments: a compact JWT, never a plausible file path. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** A token re-read from `path` each time it is needed; read once now, so a bad path fails at start. */
function fileToken(path: string, from = "--token"): TokenProvider {
  const read = () => {
    let token: string;
    try {
      token = readFileSync(path, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`cannot read token file (${from}): ${(err as Error).message}`);
    }
    if (token === "") throw new ConfigError(`token file ${path} is empty`);
    return token;
  };
  read();
  return read;
}
