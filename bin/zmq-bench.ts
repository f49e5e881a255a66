#!/usr/bin/env node
/**
 * zmq-bench: latency and throughput of zmcp next to its peers, each as processes on loopback.
 * The harness lives in bench/ and needs the dev dependencies (nats, the MCP SDK,
 * hdr-histogram-js): it runs from a clone after `npm ci`, not from an installed package.
 */
try {
  await import("../bench/cli.js");
} catch (err) {
  const code = (err as { code?: string }).code;
  if (code !== "ERR_MODULE_NOT_FOUND") throw err;
  process.stderr.write(
    `zmq-bench needs a clone of the zmcp repository with its dev dependencies: npm ci && npm run bench\n(${(err as Error).message})\n`,
  );
  process.exit(1);
}
