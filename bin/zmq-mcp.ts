#!/usr/bin/env node
/**
 * zmq-mcp: the MCP bridge.
 *   expose  an MCP server on stdio whose tools are mesh agents' tools (for MCP clients)
 *   attach  a stdio MCP server, or one at a Streamable HTTP URL, joins the mesh as an agent (for MCP servers)
 * stdout is the MCP channel (expose) or unused (attach); logs are JSON lines on stderr.
 */
import { readFileSync } from "node:fs";
import { Option, type Command, InvalidArgumentError } from "commander";
import { Agent, type AgentOptions } from "../src/agent/agent.js";
import { ConfigError } from "../src/errors.js";
import { createLogger, type Logger, type LogLevel } from "../src/support/log.js";
import { McpAttachment } from "../src/mcp/attach.js";
import { MeshExposer, type PrefixMode } from "../src/mcp/expose.js";
import { brokerOption, certOption, certsOption, checkEndpoint, command, runAsync, VERSION } from "./cli.js";
import { checkHttpSetup, parseHostPort, serveHttp } from "../src/mcp/http.js";
import { OAuthResourceServer } from "../src/mcp/oauth.js";
import { fail, logLevel, positiveInt } from "./options.js";
import { TOKEN_ENV_HELP, TOKEN_HELP, tokenFromArgs } from "./token-option.js";

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be a non-negative integer");
  return n;
}

interface ConnectOpts {
  broker?: string[];
  cert: string;
  certs: string;
  serverKey?: string;
  connectTimeout: number;
  logLevel: LogLevel;
}

function withConnectOptions(command: Command): Command {
  return command
    .addOption(brokerOption("broker endpoint; repeat to connect to several (default tcp://127.0.0.1:5555)").argParser(collect))
    .addOption(certOption("this bridge's secret certificate (its key on the mesh)").makeOptionMandatory())
    .addOption(certsOption("public certificates: names, service keys, broker.key"))
    .option("--server-key <z85>", "broker public key (default: <certs>/broker.key)")
    .option("--connect-timeout <ms>", "how long to wait for the broker at start", positiveInt, 10_000)
    .option("--log-level <level>", "debug, info, warn, error or silent", logLevel, "info" as LogLevel);
}

function agentOptions(opts: ConnectOpts, log: Logger): AgentOptions {
  return {
    broker: (opts.broker ?? ["tcp://127.0.0.1:5555"]).map((e) => checkEndpoint(e)),
    cert: opts.cert,
    certs: opts.certs,
    connectTimeout: opts.connectTimeout,
    log,
    ...(opts.serverKey ? { serverKey: opts.serverKey } : {}),
  };
}

/** `--env NAME=VALUE` values → a map; throws ConfigError for one without `=` or with an empty name. */
function envAssignments(values: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--env ${JSON.stringify(value)}: expected NAME=VALUE (use --pass-env NAME to copy a variable)`);
    env[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return env;
}

/** Runs `stop` once on SIGTERM, SIGINT or `also`, then exits 0. */
function onShutdown(log: Logger, stop: () => Promise<void>, also?: (run: (why: string) => void) => void): void {
  let stopping = false;
  const run = (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { why });
    const force = setTimeout(() => process.exit(0), 5000).unref();
    stop()
      .catch((err) => log.error("shutdown failed", { error: String(err) }))
      .finally(() => {
        clearTimeout(force);
        process.exit(0);
      });
  };
  process.once("SIGTERM", () => run("SIGTERM"));
  process.once("SIGINT", () => run("SIGINT"));
  also?.(run);
}

const program = command("zmq-mcp").description("Bridge between MCP (stdio) and the zmcp mesh");

interface ExposeOpts extends ConnectOpts {
  to: string[];
  token?: string;
  tokenEnv?: string;
  prefix: PrefixMode;
  timeout: number;
  jobTimeout: number;
  listTimeout: number;
  refresh: number;
  subscriptionInterval: number;
  pageSize: number;
  http?: string;
  httpPublic?: boolean;
  httpToken?: string;
  httpTokenEnv?: string;
  oauthIssuer?: string;
  oauthAudience?: string;
  oauthResource?: string;
  oauthScope?: string[];
}

/** The environment variable read for the HTTP bearer token when neither --http-token nor --http-token-env is given. */
const HTTP_TOKEN_ENV = "ZMCP_HTTP_TOKEN";

/**
 * The bearer token HTTP clients must present: from a file (`--http-token @FILE`) or the
 * environment, never the command line (readable by every local user in /proc/PID/cmdline).
 */
/** The bearer token(s): a file holds one per line (one per client: each is an identity), the environment one. */
function httpToken(opts: ExposeOpts): string | string[] {
  if (opts.httpToken !== undefined && opts.httpTokenEnv !== undefined) throw new ConfigError("give --http-token @FILE or --http-token-env NAME, not both");
  if (opts.httpToken !== undefined) {
    if (!opts.httpToken.startsWith("@")) throw new ConfigError(`a token on the command line is readable by every local user; use --http-token @FILE or ${HTTP_TOKEN_ENV}`);
    try {
      const tokens = readFileSync(opts.httpToken.slice(1), "utf8")
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== "");
      return tokens.length === 1 ? tokens[0]! : tokens;
    } catch (err) {
      throw new ConfigError(`cannot read --http-token file: ${(err as Error).message}`);
    }
  }
  const name = opts.httpTokenEnv ?? HTTP_TOKEN_ENV;
  const value = process.env[name]?.trim();
  if (!value) throw new ConfigError(`--http needs a bearer token: --http-token @FILE, --http-token-env NAME or ${HTTP_TOKEN_ENV}`);
  return value;
}

withConnectOptions(
  program
    .command("expose")
    .description(
      "Run an MCP server on stdio whose tools are the tools of mesh agents or services (found with tools/list). " +
        "Point an MCP client's command at it. stdout is MCP; logs go to stderr.",
    )
    .requiredOption("--to <target>", "agent name, Z85 key or svc:NAME whose tools to expose; label=target names its prefix; repeat for several", collect),
)
  .option("--token <@file>", TOKEN_HELP)
  .option("--token-env <name>", TOKEN_ENV_HELP)
  .addOption(
    new Option("--prefix <mode>", "tool names as <label>__<tool>: auto (when several --to), always, never").choices(["auto", "always", "never"]).default("auto"),
  )
  .option("--timeout <ms>", "deadline of one mesh call (a tool call, or a job's start)", positiveInt, 60_000)
  .option("--job-timeout <ms>", "how long a job tool may run before it is cancelled", positiveInt, 600_000)
  .option("--list-timeout <ms>", "deadline of each target's tools/list", positiveInt, 5_000)
  .option("--refresh <ms>", "re-list the targets this often and notify the client of changes; 0 = never", nonNegativeInt, 30_000)
  .option("--subscription-interval <ms>", "re-read resources the client subscribed to this often, and notify it of changes (stdio); 0 = no subscriptions", nonNegativeInt, 5_000)
  .option("--page-size <n>", "entries per page of tools/list, resources/list, resources/templates/list and prompts/list; 0 = all in one page", nonNegativeInt, 0)
  .option("--http <host:port>", "serve MCP over stateless Streamable HTTP at http://HOST:PORT/mcp instead of stdio (port 0: a free one)")
  .option("--http-public", "allow --http on an address other than loopback")
  .option("--http-token <@file>", `bearer token HTTP clients must send, from a file; one per line for several clients, each its own identity (default: ${HTTP_TOKEN_ENV})`)
  .option("--http-token-env <name>", "bearer token HTTP clients must send, from this environment variable")
  .option("--oauth-issuer <url>", "with --http: accept OAuth access tokens (JWT) of this issuer instead of a shared token, and serve /.well-known/oauth-protected-resource")
  .option("--oauth-audience <aud>", "the audience tokens must name (default: the resource URL)")
  .option("--oauth-resource <url>", "the endpoint's canonical URL as clients dial it (default: http://HOST:PORT/mcp)")
  .option("--oauth-scope <scope>", "a scope every token must grant; repeatable", collect)
  .action(async (opts: ExposeOpts) => {
    const log = createLogger(opts.logLevel, undefined, { service: "zmq-mcp-expose" });
    try {
      const oauthGiven = opts.oauthIssuer !== undefined || opts.oauthAudience !== undefined || opts.oauthResource !== undefined || opts.oauthScope !== undefined;
      if (opts.http === undefined && (opts.httpPublic || opts.httpToken !== undefined || opts.httpTokenEnv !== undefined || oauthGiven)) {
        throw new ConfigError("--http-public, --http-token, --http-token-env and --oauth-* go with --http");
      }
      if (oauthGiven && opts.oauthIssuer === undefined) throw new ConfigError("--oauth-audience, --oauth-resource and --oauth-scope go with --oauth-issuer");
      if (opts.oauthIssuer !== undefined && (opts.httpToken !== undefined || opts.httpTokenEnv !== undefined)) {
        throw new ConfigError("give --http-token/--http-token-env or --oauth-issuer, not both");
      }
      // OAuth access tokens replace the shared token (oauth.ts).
      const oauth =
        opts.oauthIssuer === undefined
          ? undefined
          : new OAuthResourceServer(
              {
                issuer: opts.oauthIssuer,
                ...(opts.oauthAudience === undefined ? {} : { audience: opts.oauthAudience }),
                ...(opts.oauthResource === undefined ? {} : { resource: opts.oauthResource }),
                scopes: opts.oauthScope ?? [],
              },
              log,
            );
      // Checked before connecting: a bad HTTP setup fails at once.
      const http = opts.http === undefined ? undefined : { ...parseHostPort(opts.http), ...(oauth ? { oauth } : { token: httpToken(opts) }) };
      if (http) checkHttpSetup({ ...http, allowPublic: opts.httpPublic === true });
      const token = tokenFromArgs(opts);
      const agent = await Agent.connect({ ...agentOptions(opts, log), timeout: opts.timeout, ...(token ? { token } : {}) });
      const exposer = new MeshExposer({
        agent,
        targets: opts.to,
        prefix: opts.prefix,
        timeout: opts.timeout,
        jobTimeout: opts.jobTimeout,
        listTimeout: opts.listTimeout,
        refreshInterval: opts.refresh,
        subscriptionInterval: opts.subscriptionInterval,
        pageSize: opts.pageSize,
        serverInfo: { name: "zmq-mcp-expose", version: VERSION },
        log,
      });
      if (http) {
        const served = await serveHttp({ exposer, ...http, allowPublic: opts.httpPublic === true, log });
        onShutdown(log, async () => {
          await served.close();
          await exposer.close();
          await agent.close();
        });
        log.info("expose ready", { publicKey: agent.publicKey, targets: opts.to, http: served.url });
        void exposer.refresh().catch((err: Error) => log.warn("no target answered tools/list yet", { error: err.message }));
        return;
      }
      let closed: (() => void) | undefined;
      onShutdown(
        log,
        async () => {
          await exposer.close();
          await agent.close();
        },
        (run) => {
          // The client closing our stdin is the usual way an MCP stdio server is told to stop.
          process.stdin.once("end", () => run("stdin closed"));
          closed = () => run("MCP connection closed");
        },
      );
      // The era (2025 initialize, or 2026-07-28 per-request envelopes) is the client's first message's.
      await exposer.serveStdio({ onClose: () => closed?.() });
      // SIGHUP: re-list the targets and re-read subscribed resources now (an operator's "something changed").
      process.on("SIGHUP", () => void exposer.recheck().catch((err: Error) => log.warn("recheck failed", { error: err.message })));
      log.info("expose ready", { publicKey: agent.publicKey, targets: opts.to });
      // Learn the tools now, so that the first tools/list is quick and problems show in the log.
      void exposer.refresh().catch((err: Error) => log.warn("no target answered tools/list yet", { error: err.message }));
    } catch (err) {
      log.error("expose failed to start", { error: err instanceof Error ? err.message : String(err) });
      fail(err);
    }
  });

interface AttachOpts extends ConnectOpts {
  serve?: string[];
  serviceCert?: string;
  authority?: string[];
  requireToken?: boolean;
  audience?: string;
  deny?: string;
  job?: string[];
  tool?: string[];
  toolPrefix?: string;
  env?: string[];
  passEnv?: string[];
  inheritEnv?: boolean;
  resources?: boolean;
  prompts?: boolean;
  jobTimeout: number;
  startTimeout: number;
  restartDelay: number;
  maxRestartDelay: number;
  url?: string;
  header?: string[];
  bearer?: string;
  bearerEnv?: string;
  maxResponseBytes: number;
}

/**
 * The headers `attach --url` sends: `--header 'Name: value'` (a value `@FILE` is read from the
 * file), and `--bearer @FILE` / `--bearer-env NAME` for `Authorization: Bearer <token>`. A
 * credential is never taken from the command line (every local user can read /proc/PID/cmdline):
 * a literal `Authorization` or `Cookie` header value, or `--bearer <token>`, is a config error.
 */
function attachHeaders(opts: AttachOpts): Record<string, string> {
  const readSecret = (what: string, file: string): string => {
    try {
      const value = readFileSync(file, "utf8").trim();
      if (value === "") throw new Error("empty");
      return value;
    } catch (err) {
      throw new ConfigError(`cannot read ${what} file ${file}: ${(err as Error).message}`);
    }
  };
  const headers: Record<string, string> = {};
  for (const line of opts.header ?? []) {
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).trim() : "";
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new ConfigError(`--header ${JSON.stringify(line)}: expected 'Name: value'`);
    const raw = line.slice(colon + 1).trim();
    if (raw.startsWith("@")) headers[name] = readSecret(`--header ${name}`, raw.slice(1));
    else if (/^(authorization|proxy-authorization|cookie)$/i.test(name)) {
      throw new ConfigError(`a ${name} header on the command line is readable by every local user; use --header '${name}: @FILE', --bearer @FILE or --bearer-env NAME`);
    } else headers[name] = raw;
  }
  if (opts.bearer !== undefined && opts.bearerEnv !== undefined) throw new ConfigError("give --bearer @FILE or --bearer-env NAME, not both");
  let bearer: string | undefined;
  if (opts.bearer !== undefined) {
    if (!opts.bearer.startsWith("@")) throw new ConfigError("a token on the command line is readable by every local user; use --bearer @FILE or --bearer-env NAME");
    bearer = readSecret("--bearer", opts.bearer.slice(1));
  } else if (opts.bearerEnv !== undefined) {
    bearer = process.env[opts.bearerEnv]?.trim();
    if (!bearer) throw new ConfigError(`--bearer-env ${opts.bearerEnv}: the variable is unset or empty`);
  }
  if (bearer !== undefined) {
    if (Object.keys(headers).some((h) => h.toLowerCase() === "authorization")) throw new ConfigError("give --bearer or an Authorization --header, not both");
    headers.Authorization = `Bearer ${bearer}`;
  }
  return headers;
}

withConnectOptions(
  program
    .command("attach")
    .description(
      "Start a stdio MCP server, or connect to one over Streamable HTTP (--url), and join the mesh as an agent whose tools are that server's tools. " +
        "Put the server's command after --, e.g. zmq-mcp attach --cert certs/fs.key_secret -- npx @modelcontextprotocol/server-filesystem /data, " +
        "or give its endpoint: zmq-mcp attach --cert certs/web.key_secret --url http://127.0.0.1:8080/mcp --bearer @token",
    )
    .argument("[command]", "the MCP server's command (not with --url)")
    .argument("[args...]", "its arguments"),
)
  .option("--url <url>", "attach the MCP server at this Streamable HTTP endpoint instead of starting a command (a lost connection is reconnected with the restart backoff)")
  .option("--header <'Name: value'>", "with --url: send this header with every request; a value @FILE is read from the file (credentials must be); repeatable", collect)
  .option("--bearer <@file>", "with --url: send Authorization: Bearer <token>, the token read from FILE (the literal is refused: visible in /proc/PID/cmdline)")
  .option("--bearer-env <name>", "with --url: send Authorization: Bearer <token>, the token from this environment variable")
  .option("--max-response-bytes <n>", "with --url: cap of one answer's body (one event of an event stream); past it the call fails too_large", positiveInt, 16 * 1024 * 1024)
  .option("--serve <name>", "also serve as a replica of service NAME (its key: <certs>/svc-NAME.key_secret); repeatable", collect)
  .option("--service-cert <file>", "the service's secret certificate, when there is one --serve")
  .option("--authority <jwk>", "trusted token authority (public JWK or JWK Set file); repeatable", collect)
  .option("--require-token", "refuse calls without a valid token (default when --authority is given)")
  .option("--no-require-token", "accept calls without a token (a token that is present is still checked)")
  .option("--audience <aud>", "the audience tokens must name", "mesh")
  .option("--deny <file>", "deny list of revoked token ids and keys (JSON)")
  .option("--job <tool>", "run this tool as a mesh job (progress, cancel); '*' for all; repeatable", collect)
  .option("--tool <name>", "attach only this tool of the server; repeatable (default: all its tools)", collect)
  .option("--tool-prefix <prefix>", "put this in front of every tool name on the mesh, e.g. fs.")
  .option("--env <NAME=VALUE>", "set this variable in the server's environment; repeatable (the server gets only HOME, LOGNAME, PATH, SHELL, TERM, USER by default)", collect)
  .option("--pass-env <name>", "copy this variable from zmq-mcp's environment to the server's; repeatable", collect)
  .option("--inherit-env", "give the server zmq-mcp's whole environment (credentials included)")
  .option("--no-resources", "do not offer the server's resources and resource templates on the mesh")
  .option("--no-prompts", "do not offer the server's prompts on the mesh")
  .option("--job-timeout <ms>", "how long a job tool may run", positiveInt, 600_000)
  .option("--start-timeout <ms>", "how long the server may take to start and initialize", positiveInt, 30_000)
  .option("--restart-delay <ms>", "first delay before restarting a server that exited (doubles per quick failure)", positiveInt, 500)
  .option("--max-restart-delay <ms>", "largest delay before a restart", positiveInt, 30_000)
  .action(async (command: string | undefined, args: string[], opts: AttachOpts) => {
    const log = createLogger(opts.logLevel, undefined, { service: "zmq-mcp-attach" });
    let agent: Agent | undefined;
    let attachment: McpAttachment | undefined;
    try {
      if (opts.serviceCert && (opts.serve?.length ?? 0) !== 1) throw new ConfigError("--service-cert goes with exactly one --serve");
      if (opts.requireToken && !opts.authority) throw new ConfigError("--require-token needs --authority");
      if ((command === undefined) === (opts.url === undefined)) throw new ConfigError("give the MCP server's command (after --) or --url, one of them");
      if (opts.url === undefined && (opts.header !== undefined || opts.bearer !== undefined || opts.bearerEnv !== undefined)) {
        throw new ConfigError("--header, --bearer and --bearer-env go with --url");
      }
      if (opts.url !== undefined && (opts.env !== undefined || opts.passEnv !== undefined || opts.inheritEnv)) {
        throw new ConfigError("--env, --pass-env and --inherit-env set a started server's environment; with --url no server is started");
      }
      const env = envAssignments(opts.env ?? []);
      // Read before connecting: an unreadable token file fails at once.
      const server = opts.url === undefined ? { command: command!, args } : { url: opts.url, headers: attachHeaders(opts), maxResponseBytes: opts.maxResponseBytes };
      agent = await Agent.connect({
        ...agentOptions(opts, log),
        ...(opts.authority ? { authority: opts.authority, audience: opts.audience } : {}),
        ...(opts.authority && opts.requireToken !== undefined ? { requireToken: opts.requireToken } : {}),
        ...(opts.deny ? { denyList: opts.deny } : {}),
      });
      const connected = agent;
      onShutdown(log, async () => {
        await attachment?.close();
        await connected.close();
      });
      attachment = await McpAttachment.start({
        agent,
        ...server,
        jobs: opts.job ?? [],
        ...(opts.tool ? { only: opts.tool } : {}),
        ...(opts.toolPrefix ? { prefix: opts.toolPrefix } : {}),
        env,
        passEnv: opts.passEnv ?? [],
        inheritEnv: opts.inheritEnv === true,
        resources: opts.resources !== false,
        prompts: opts.prompts !== false,
        jobTimeout: opts.jobTimeout,
        startTimeout: opts.startTimeout,
        restartDelay: opts.restartDelay,
        maxRestartDelay: Math.max(opts.restartDelay, opts.maxRestartDelay),
        clientInfo: { name: "zmq-mcp-attach", version: VERSION },
        log,
      });
      for (const name of opts.serve ?? []) await agent.serve(name, opts.serviceCert ? { cert: opts.serviceCert } : {});
      if (!opts.authority || opts.requireToken === false) {
        // Said at every start: the server's tools (files, shells, ...) are then open to every admitted key.
        log.warn("serving tools without requiring tokens: any key the broker admits can call them; give --authority to require tokens", {
          tools: attachment.tools,
          reason: opts.authority ? "--no-require-token" : "no --authority",
        });
      }
      if (opts.inheritEnv) log.warn("the MCP server has zmq-mcp's whole environment (--inherit-env)");
      log.info("attach ready", { publicKey: agent.publicKey, tools: attachment.tools, resources: attachment.resources.length, prompts: attachment.prompts, services: opts.serve ?? [], ...(opts.url === undefined ? { pid: attachment.pid } : { url: opts.url }) });
    } catch (err) {
      // One line for the failure: fail's {code, message}, not a log line as well.
      await attachment?.close().catch(() => undefined);
      await agent?.close().catch(() => undefined);
      fail(err);
    }
  });

await runAsync(program);
