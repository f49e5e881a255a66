/**
 * Prometheus metrics for brokers and agents.
 *
 * Each broker and agent owns a prom-client `Registry` of its own (never the global one), so
 * several in one process do not clash. Hot paths bump plain numbers (the `stats` objects of
 * Broker and Agent); the registry reads them when it is scraped, so routing a message costs
 * an integer increment, not a prom-client call. Only latency histograms are fed per call.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { Counter, Gauge, Histogram, Registry } from "prom-client";
import { ConfigError } from "../errors.js";

export type { Registry };

/**
 * prom-client, loaded on first use: the core SDK (`zmcp`) does not load it until an agent's or
 * a broker's `metrics` is read (it costs ~15 ms and a dependency tree at start).
 */
export function promClient(): typeof import("prom-client") {
  return createRequire(import.meta.url)("prom-client") as typeof import("prom-client");
}

/** A registry of its own (never the global one), so several agents and brokers in one process do not clash. */
export function newRegistry(): Registry {
  return new (promClient().Registry)();
}

/** A counter whose value is read from `read()` at scrape time. */
export function readCounter(registry: Registry, name: string, help: string, read: () => number): Counter {
  return new (promClient().Counter)({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A counter with one label, whose children are read from `read()` at scrape time. */
export function readLabelledCounter(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  read: () => Iterable<[string, number]>,
): Counter<string> {
  return new (promClient().Counter)({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, count] of read()) this.labels(value).inc(count);
    },
  });
}

/** A gauge read from `read()` at scrape time. */
export function readGauge(registry: Registry, name: string, help: string, read: () => number): Gauge {
  return new (promClient().Gauge)({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/**
 * A gauge whose series are all read from `read()` at scrape time (label values → value); a
 * series not read again is gone, so the set of series follows what exists now (peers
 * connected, circuits open). Keep the label values bounded.
 */
export function readGaugeSeries(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  read: () => Iterable<[labels: string[], value: number]>,
): Gauge<string> {
  return new (promClient().Gauge)({
    name,
    help,
    labelNames: [...labelNames],
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.labels(...labels).set(value);
    },
  });
}

/** Call latency buckets, seconds: 0.5 ms to 30 s. */
export const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A latency histogram with one `status` label (`ok` or `error`), children created once. */
export function latencyHistogram(registry: Registry, name: string, help: string): { ok: Histogram.Internal<string>; error: Histogram.Internal<string> } {
  const histogram = new (promClient().Histogram)({ name, help, labelNames: ["status"], buckets: LATENCY_BUCKETS_S, registers: [registry] });
  return { ok: histogram.labels("ok"), error: histogram.labels("error") };
}

export interface MetricsServer {
  /** `http://host:port/metrics`, with the port resolved. */
  url: string;
  close(): Promise<void>;
}

/**
 * Parses `host:port` (IPv4 or a name; port 0 picks a free one). Throws ConfigError.
 * Metrics say how busy a mesh is and who connects: bind them to a loopback or private address.
 */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new ConfigError(`expected host:port, got ${JSON.stringify(text)}`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

/** What `/readyz` reports: ready (HTTP 200) or not (503), with why and any detail. */
export interface Readiness {
  ready: boolean;
  reason?: string;
  [detail: string]: unknown;
}

export interface ServeMetricsOptions {
  /** Asked on every `GET /readyz`: 200 when ready, 503 otherwise. Default: always ready. */
  ready?: () => Readiness;
  /** Further read-only JSON endpoints, path → value (the broker's `/peers`). */
  json?: Record<string, () => unknown>;
}

/**
 * Serves `registry` as Prometheus text on `GET /metrics` at `address` (`host:port`), and for
 * probes `GET /healthz` (200 while the process serves: liveness) and `GET /readyz` (200 when
 * `options.ready` says so, 503 with its reason otherwise: readiness), as JSON.
 */
export async function serveMetrics(registry: Registry, address: string, options: ServeMetricsOptions = {}): Promise<MetricsServer> {
  const { host, port } = parseHostPort(address);
  const json = (res: ServerResponse, status: number, value: unknown) =>
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value) + "\n");
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method === "GET" && path === "/healthz") return void json(res, 200, { status: "ok" });
    if (req.method === "GET" && path === "/readyz") {
      let readiness: Readiness;
      try {
        readiness = options.ready?.() ?? { ready: true };
      } catch (err) {
        readiness = { ready: false, reason: `readiness check failed: ${String(err)}` };
      }
      return void json(res, readiness.ready ? 200 : 503, { status: readiness.ready ? "ready" : "not ready", ...readiness });
    }
    const extra = req.method === "GET" ? options.json?.[path] : undefined;
    if (extra) {
      try {
        return void json(res, 200, extra());
      } catch (err) {
        return void json(res, 500, { error: String(err) });
      }
    }
    if (req.method !== "GET" || (path !== "/metrics" && path !== "/")) {
      const paths = ["/metrics", "/healthz", "/readyz", ...Object.keys(options.json ?? {})].join(", ");
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found; try ${paths}\n`);
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new ConfigError(`cannot serve metrics on ${address}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  const boundPort = typeof bound === "object" && bound ? bound.port : port;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${boundPort}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Prometheus text → `"name{labels}"` → value (labels as written, e.g.
 * `zmcp_broker_messages_refused_total{code="busy"}`). For tests, the soak and the figures.
 */
export function parsePrometheusText(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    if (cut < 0) continue;
    values.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return values;
}

/** Fetches and parses a metrics endpoint. */
export async function scrapeMetrics(url: string, timeoutMs = 5000): Promise<Map<string, number>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return parsePrometheusText(await res.text());
}

/** Sum of every series of `name` (all label values). */
export function metricSum(values: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [series, value] of values) if (series === name || series.startsWith(`${name}{`)) sum += value;
  return sum;
}
