/**
 * `zmcp/metrics`: serve an agent's or a broker's registry as Prometheus text, and read one
 * back (scrape, parse, sum). Apart from the core entry so an application that does not serve
 * or scrape metrics does not name these.
 */
export { Registry } from "prom-client";
export { serveMetrics, scrapeMetrics, parsePrometheusText, metricSum } from "./support/metrics.js";
export type { MetricsServer, Readiness, ServeMetricsOptions } from "./support/metrics.js";
