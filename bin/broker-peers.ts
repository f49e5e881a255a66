/**
 * `zmq-broker peers`: who is connected to a running broker, asked at its metrics endpoint
 * (`GET /peers`). The broker is the one party that knows; asking it over the operator's HTTP
 * endpoint (bound to loopback or a private address, like the metrics) needs no protocol message
 * and gives no agent a way to list the mesh.
 */
import { Option } from "commander";
import { parseHostPort } from "../src/support/metrics.js";
import { command, run, usageError } from "./cli.js";
import { fail } from "./options.js";

interface Peer {
  key: string;
  name?: string;
  lastHeardMs: number;
  heartbeats: boolean;
}

export async function peersMain(argv: string[]): Promise<void> {
  const program = command("zmq-broker peers")
    .description("List the peers connected to a running broker now (keys heard within its heartbeat timeout), with certificate names")
    .addOption(new Option("--metrics <host:port>", "the broker's --metrics address").env("ZMCP_METRICS").default("127.0.0.1:9464"))
    .option("--json", "print the JSON list the broker answers (key, name, lastHeardMs, heartbeats)");
  run(program, [process.argv[0]!, "zmq-broker peers", ...argv]);
  const opts = program.opts<{ metrics: string; json?: boolean }>();
  let host: string;
  let port: number;
  try {
    ({ host, port } = parseHostPort(opts.metrics));
  } catch (err) {
    return usageError(`--metrics: ${(err as Error).message}`);
  }
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/peers`;
  let peers: Peer[];
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    peers = (await res.json()) as Peer[];
  } catch (err) {
    return fail({ code: "unreachable", message: `no broker metrics endpoint answers at ${url} (start the broker with --metrics ${opts.metrics}): ${(err as Error).message}` });
  }
  if (opts.json) {
    process.stdout.write(JSON.stringify(peers) + "\n");
    return;
  }
  const rows = peers.map((p) => [p.name ?? "-", p.key, `${(p.lastHeardMs / 1000).toFixed(1)} s ago`]);
  const widths = [4, 3].map((w, i) => Math.max(w, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c)).join("  ");
  process.stdout.write([line(["NAME", "KEY", "HEARD"]), ...rows.map(line)].join("\n") + "\n");
  process.stdout.write(`${peers.length} peer${peers.length === 1 ? "" : "s"} connected\n`);
}
