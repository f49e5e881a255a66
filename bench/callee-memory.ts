/**
 * The callee's memory under many finished jobs with large results (issue 10): one caller
 * starts jobs whose results are `KIB` KiB each until the callee answers `busy` (or `MAX` jobs).
 * With MODE `calls`, plain calls instead (answers held for retries by the idempotency cache).
 * With MODE `entries`, no agents: the answer cache's own bookkeeping per kept answer (MAX small
 * answers from 10 callers), measured on the heap next to what its budget counts per entry.
 * Usage (after npm run build): node --expose-gc dist/bench/callee-memory.js [KIB=900] [MAX=417] [MODE=jobs|calls|entries]
 */
import { z } from "zod";
import { tempCerts } from "../test/support/certs.js";
import { connectAgent, startBroker } from "../test/support/mesh.js";

const [kib = 900, max = 417] = process.argv.slice(2, 4).map(Number);
const mode = process.argv[4] ?? "jobs";
if (mode === "entries") {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc");
  const { AnswerCache } = await import("../src/agent/idempotency.js");
  const { encodeKept } = await import("../src/wire/envelope.js");
  const cache = new AnswerCache(1e9, { maxEntries: 1e9, maxBytes: 1e15, maxEntriesPerOwner: 1e9, maxBytesPerOwner: 1e15 }, 1e9);
  const owners = Array.from({ length: 10 }, (_, i) => `${"K".repeat(39)}${i}`); // Z85 keys are 40 characters
  gc();
  const heap = process.memoryUsage().heapUsed;
  for (let i = 0; i < max; i++) {
    const owner = owners[i % owners.length]!;
    const key = `${owner}:${i.toString(16).padStart(32, "0")}`; // as the handler's: caller key and request id
    cache.begin(key, owner, 1e6, 1e6 + 1e8, 1e6 + 1e8);
    const answer = { st: "ok" as const, result: { n: i } };
    const kept = encodeKept(answer);
    cache.finish(key, answer, kept.length, true, 1e6, kept);
  }
  gc();
  console.log(`${max} kept answers: ${((process.memoryUsage().heapUsed - heap) / max).toFixed(0)} B of heap each, counted ${(cache.budget.bytes / max).toFixed(0)} B each`);
  process.exit(0);
}
const fx = tempCerts("alice", "bob");
const broker = await startBroker(fx);
const bob = await connectAgent(fx, "bob", broker.endpoint);
const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false, jobPollInterval: 0 });
bob.tool("blob-call", { input: z.object({ n: z.number() }) }, ({ n }) => ({ n, blob: String.fromCharCode(97 + (n % 26)).repeat(kib * 1024) }));
bob.tool("blob", { input: z.object({ n: z.number() }), job: true }, ({ n }) => ({ n, blob: String.fromCharCode(97 + (n % 26)).repeat(kib * 1024) }));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
gc();
const before = process.memoryUsage().rss;
let accepted = 0;
let refused = "";
for (let n = 0; n < max; n++) {
  try {
    if (mode === "calls") {
      await alice.call("bob", "blob-call", { n });
      accepted++;
      continue;
    }
    const job = await alice.start("bob", "blob", { n });
    accepted++;
    await Promise.race([job.result, new Promise((r) => setTimeout(r, 200))]);
  } catch (err) {
    refused = `${(err as { code?: string }).code}: ${(err as Error).message}`;
    break;
  }
}
gc();
const after = process.memoryUsage().rss;
console.log(JSON.stringify({ mode, kib, accepted, refused, rss_before_mib: Math.round(before / 2 ** 20), rss_after_mib: Math.round(after / 2 ** 20) }));
await alice.close();
await bob.close();
await broker.close();
fx.cleanup();
