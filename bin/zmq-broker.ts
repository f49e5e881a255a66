#!/usr/bin/env node
/** zmq-broker: the CURVE ROUTER broker. */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { Option } from "commander";
import { Broker, BROKER_DEFAULTS } from "../src/broker/broker.js";
import { generateCertificate, loadSecretCertificate, saveCertificate } from "../src/auth/certs.js";
import { ConfigError } from "../src/errors.js";
import { createLogger, type LogLevel } from "../src/support/log.js";
import { collectDefaultMetrics } from "prom-client";
import { serveMetrics, type MetricsServer } from "../src/support/metrics.js";
import { command, run } from "./cli.js";
import { applyConfigFile } from "./config-file.js";
import { fail, logLevel, nonNegativeInt, positiveInt, positiveNumber } from "./options.js";
import { peersMain } from "./broker-peers.js";

// `zmq-broker peers`: a client of a running broker's metrics endpoint, not a broker.
if (process.argv[2] === "peers") {
  await peersMain(process.argv.slice(3)).catch((err: unknown) => fail(err));
  process.exit(0);
}

// What `ps`, `pidof zmq-broker` and `pkill zmq-broker` see (node rewrites argv and the comm name).
process.title = "zmq-broker";

const program = command("zmq-broker")
  .description("Route sealed zmcp messages between CURVE-authenticated agents. Logs are JSON lines on stderr. `zmq-broker peers --metrics HOST:PORT` lists a running broker's connected peers.")
  .option("--config <file>", "JSON file of options (keys are these flags' long names); flags given on the command line win")
  .option("--bind <endpoint>", "endpoint to bind", "tcp://127.0.0.1:5555")
  .option("--key <file>", "broker secret certificate; created on first run if missing", "certs/broker.key_secret")
  .option("--allow <dir>", "directory of public certificates (*.key) admitted; reloaded on SIGHUP", "certs")
  .option("--max-message-bytes <n>", "largest message forwarded, bytes", positiveInt, 1024 * 1024)
  .option("--deny <file>", 'deny list, JSON {"jti": [...], "keys": [Z85...]}: listed keys are refused `revoked`; re-read on change and on SIGHUP')
  .option("--rate <perSecond>", "messages per second allowed per sender key (token bucket); above it: `rate_limited`", positiveNumber)
  .option("--burst <n>", "bucket size of --rate: messages a sender may send at once (default: --rate, at least 1)", positiveInt)
  .option("--metrics <host:port>", "serve Prometheus metrics on http://host:port/metrics, with /healthz, /readyz and /peers (port 0 picks one; keep it on loopback or a private address)")
  .option("--queue-bytes <n>", "bytes queued toward (and from) one peer at most; sets the high-water marks", positiveInt, 256 * 1024 * 1024)
  .option("--heartbeat-interval <ms>", "the hb interval agents keep (default timeout 3 × this); 0: never refuse a silent peer", nonNegativeInt, 2000)
  .option("--heartbeat-timeout <ms>", "a peer that sends hb and then is silent this long is refused no_route (default 3 × interval)", positiveInt)
  .option("--max-subscriptions <n>", "topic patterns held in the subscription directory, all keys together; past it a subscriber's heartbeat is refused busy", nonNegativeInt, BROKER_DEFAULTS.maxSubscriptions)
  .option("--log-interval <ms>", "lines a peer can cause (refused handshakes, busy, lost nacks) at most once per this per key, with a count", nonNegativeInt, 10_000)
  .option("--clock-skew <ms>", "clock difference allowed with senders on a message's deadline", nonNegativeInt, 60_000)
  .addOption(new Option("--log-level <level>", "debug, info, warn, error or silent").argParser(logLevel).default("info" as LogLevel))
  .option("--store <url>", "durable store (redis://host:port): messages marked durable wait there for offline or full recipients (docs/DURABLE.md)")
  .option("--store-max-per-recipient <n>", "messages stored for one recipient at most (then busy)", positiveInt, BROKER_DEFAULTS.storeLimits.perRecipientCount)
  .option("--store-max-per-sender <n>", "messages one sender may have stored for one recipient at most (then busy; default: a quarter of --store-max-per-recipient)", positiveInt)
  .option("--store-max-bytes <n>", "bytes stored in all at most (then busy)", positiveInt, BROKER_DEFAULTS.storeLimits.totalBytes)
  .option("--store-visibility <ms>", "a durable service request unanswered this long is handed to another replica", positiveInt, BROKER_DEFAULTS.storeVisibility)
  .option("--pid-file <file>", "write the process id here once ready (removed at exit): kill -HUP $(cat FILE)");
run(program);
applyConfigFile(program);

const opts = program.opts<{
  bind: string;
  key: string;
  allow: string;
  maxMessageBytes: number;
  queueBytes: number;
  logInterval: number;
  deny?: string;
  rate?: number;
  burst?: number;
  metrics?: string;
  heartbeatInterval: number;
  heartbeatTimeout?: number;
  maxSubscriptions: number;
  clockSkew: number;
  logLevel: LogLevel;
  pidFile?: string;
  store?: string;
  storeMaxPerRecipient: number;
  storeMaxPerSender?: number;
  storeMaxBytes: number;
  storeVisibility: number;
}>();

const log = createLogger(opts.logLevel, undefined, { service: "zmq-broker" });

async function main(): Promise<void> {
  if (!existsSync(opts.key)) {
    if (!opts.key.endsWith(".key_secret")) throw new ConfigError(`--key ${opts.key} does not exist (and is not a .key_secret path to create)`);
    const cert = generateCertificate({ name: "broker" });
    const paths = saveCertificate(cert, dirname(opts.key), basename(opts.key, ".key_secret"));
    log.info("created broker key", { secret: paths.secretPath, public: paths.publicPath, publicKey: cert.publicKey });
  }
  const cert = loadSecretCertificate(opts.key);
  if (opts.burst !== undefined && opts.rate === undefined) throw new ConfigError("--burst needs --rate");
  const broker = await Broker.start({
    bind: opts.bind,
    publicKey: cert.publicKey,
    secretKey: cert.secretKey,
    allow: opts.allow,
    maxMessageBytes: opts.maxMessageBytes,
    queueBytes: Math.max(opts.queueBytes, opts.maxMessageBytes),
    logInterval: opts.logInterval,
    ...(opts.deny ? { denyList: opts.deny } : {}),
    ...(opts.rate ? { rateLimit: { perSecond: opts.rate, burst: opts.burst ?? Math.max(1, Math.ceil(opts.rate)) } } : {}),
    heartbeatInterval: opts.heartbeatInterval,
    maxSubscriptions: opts.maxSubscriptions,
    ...(opts.heartbeatTimeout ? { heartbeatTimeout: opts.heartbeatTimeout } : {}),
    clockSkew: opts.clockSkew,
    ...(opts.store ? { store: opts.store, storeLimits: { perRecipientCount: opts.storeMaxPerRecipient, totalBytes: opts.storeMaxBytes, ...(opts.storeMaxPerSender ? { perSenderRecipientCount: opts.storeMaxPerSender } : {}) }, storeVisibility: opts.storeVisibility } : {}),
    log,
  });
  let metrics: MetricsServer | undefined;
  let stopping = false;
  if (opts.metrics) {
    // Process metrics (RSS, heap, handles, event loop lag) belong to the process: only here.
    collectDefaultMetrics({ register: broker.metrics });
    metrics = await serveMetrics(broker.metrics, opts.metrics, {
      // Not ready once shutting down: a load balancer stops sending before the socket closes.
      ready: () => (stopping ? { ready: false, reason: "shutting down" } : { ready: true, endpoint: broker.endpoint, allowed: broker.allowedCount, peers: broker.peers().length }),
      json: { "/peers": () => broker.peers() },
    });
  }
  // Signal handlers before the pid file and the ready line: whoever reads them may signal at once.
  process.on("SIGHUP", () => {
    log.info("SIGHUP: reloading the allowlist and the deny list");
    try {
      broker.reloadAllowlist();
    } catch (err) {
      log.error("allowlist reload failed; keeping the previous one", { error: String(err) });
    }
    broker.reloadDenyList(); // logs its own outcome
  });
  const stop = (signal: string) => {
    stopping = true;
    log.info("shutting down", { signal, routed: broker.stats.routed });
    void Promise.all([broker.close(), metrics?.close()]).then(() => process.exit(0));
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  const pidFile = opts.pidFile;
  if (pidFile) {
    // Written at ready, so a supervisor that waits for the file knows the broker is listening.
    writeFileSync(pidFile, `${process.pid}\n`);
    process.once("exit", () => rmSync(pidFile, { force: true }));
  }
  log.info("ready", {
    endpoint: broker.endpoint,
    publicKey: broker.publicKey,
    allowed: broker.allowedCount,
    pid: process.pid,
    ...(opts.deny ? { denyList: opts.deny } : {}),
    ...(opts.rate ? { rate: opts.rate, burst: opts.burst ?? Math.max(1, Math.ceil(opts.rate)) } : {}),
    ...(metrics ? { metrics: metrics.url } : {}),
    ...(pidFile ? { pidFile } : {}),
    ...(opts.store ? { store: opts.store.replace(/\/\/([^@/]*)@/, "//***@") } : {}),
  });
}

// One line per failure: the {code, message} line on stderr (fail), not a log line as well.
main().catch((err) => fail(err));
