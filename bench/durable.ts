/**
 * Durable delivery figures, in one run (docs/DURABLE.md "Figures"): the latency of a durable
 * call to an online recipient next to a plain call (alternating blocks, same machine noise), and
 * how fast durable messages are stored for an offline recipient and delivered when it starts.
 * A redis-server of its own (temp dir, AOF on, appendfsync everysec), a zmq-broker process with
 * --store, the reference agent as `bob`, the caller in this process.
 *
 *   npm run build && node dist/bench/durable.js [--calls 2000] [--blocks 10] [--stored 2000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Agent, generateCertificate, saveCertificate } from "../src/index.js";
import { built, spawnBroker, spawnChild, type Child } from "../test/support/process.js";
import { startRedis } from "../test/support/redis.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "2000" }, blocks: { type: "string", default: "10" }, stored: { type: "string", default: "2000" } } });
const calls = Number(values.calls);
const blocks = Number(values.blocks);
const storedCount = Number(values.stored);

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const fmt = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;

const redis = await startRedis();
const certs = mkdtempSync(join(tmpdir(), "zmcp-durable-bench-"));
const children: Child[] = [];
try {
  for (const name of ["alice", "bob"]) saveCertificate(generateCertificate({ name }), certs, name);
  const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs, "--store", redis.url]);
  children.push(broker);
  const startBob = async () => {
    const bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", join(certs, "bob.key_secret"), "--certs", certs], "agent ready");
    children.push(bob);
    return bob;
  };
  let bob = await startBob();
  const alice = await Agent.connect({ broker: broker.endpoint, cert: join(certs, "alice.key_secret"), certs });
  const args = { numbers: [1, 2, 3] };
  for (let i = 0; i < 200; i++) await alice.call("bob", "batch_sum", args, { durable: i % 2 === 0 }); // warm-up

  const plain: number[] = [];
  const durable: number[] = [];
  const per = Math.ceil(calls / blocks);
  for (let b = 0; b < blocks; b++) {
    for (const [out, isDurable] of [[plain, false], [durable, true]] as const) {
      for (let i = 0; i < per; i++) {
        const t = performance.now();
        await alice.call("bob", "batch_sum", args, { durable: isDurable });
        out.push(performance.now() - t);
      }
    }
  }
  plain.sort((a, b) => a - b);
  durable.sort((a, b) => a - b);

  // Stored for an offline recipient, then delivered when it starts.
  await bob.stop();
  await new Promise((r) => setTimeout(r, 7000)); // past the broker's liveness timeout: bob is offline
  let stored = 0;
  const t0 = performance.now();
  let tStored = 0;
  const pending = Array.from({ length: storedCount }, () =>
    alice.call("bob", "batch_sum", args, {
      durable: true,
      timeout: 120_000,
      onStored: () => {
        if (++stored === storedCount) tStored = performance.now();
      },
    }),
  );
  while (stored < storedCount) await new Promise((r) => setTimeout(r, 5));
  const t1 = performance.now();
  bob = await startBob();
  await Promise.all(pending);
  const t2 = performance.now();

  console.log(`durable delivery, one run (${new Date().toISOString()}, node ${process.version}, redis AOF everysec)`);
  console.log("");
  console.log("| measure | plain call | durable call (recipient online) |");
  console.log("|---|---|---|");
  console.log(`| median round trip | ${fmt(pct(plain, 50))} | ${fmt(pct(durable, 50))} |`);
  console.log(`| p99 round trip | ${fmt(pct(plain, 99))} | ${fmt(pct(durable, 99))} |`);
  console.log(`| calls | ${plain.length} | ${durable.length} |`);
  console.log("");
  console.log(`| ${storedCount} durable calls to an offline recipient | rate |`);
  console.log("|---|---|");
  console.log(`| stored (all acked \`stored\`) | ${Math.round(storedCount / ((tStored || t1) - t0) * 1000)} msg/s |`);
  console.log(`| delivered and answered after it started (incl. its start, ${((t2 - t1) / 1000).toFixed(2)} s) | ${Math.round(storedCount / (t2 - t1) * 1000)} msg/s |`);
  await alice.close();
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await redis.dispose();
  rmSync(certs, { recursive: true, force: true });
}
