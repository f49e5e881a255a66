/**
 * The callee's answer cache in its steady state (one request a millisecond from four callers,
 * each answer kept 50 s: 50,000 entries held, as many forgotten as kept), `begin` + `finish`
 * per request, this tree's next to a base revision's (built as bench:ab builds it), in one
 * process, alternating rounds; medians of 7, ns per request.
 *
 *   npm run build && node dist/bench/answer-cache.js --base REV
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { AnswerCache } from "../src/agent/idempotency.js";
import { encodeKept } from "../src/wire/envelope.js";
import { builtRevision } from "./revision.js";

const { values } = parseArgs({ options: { base: { type: "string", default: "HEAD~1" } } });
const { rev, dir } = builtRevision(values.base);
const base = (await import(pathToFileURL(join(dir, "dist", "src", "agent", "idempotency.js")).href)) as { AnswerCache: typeof AnswerCache };

const limits = { maxEntries: 1e9, maxBytes: 1e15, maxEntriesPerOwner: 1e9, maxBytesPerOwner: 1e15 };
const owners = Array.from({ length: 4 }, (_, i) => `${"K".repeat(39)}${i}`);
const answer = { st: "ok" as const, result: { n: 1 } };
const kept = encodeKept(answer);

function side(Cache: typeof AnswerCache) {
  const cache = new Cache(1e9, limits, 50_000);
  let t = 0;
  return (n: number): number => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++, t++) {
      const owner = owners[t & 3]!;
      const key = `${owner}:${t.toString(16).padStart(32, "0")}`;
      cache.begin(key, owner, t, t + 10, t + 10);
      // The tree before the kept bytes took no sixth argument: it encoded (or kept) the answer itself.
      cache.finish(key, answer, kept.length, true, t, kept);
    }
    return Number(process.hrtime.bigint() - t0) / n;
  };
}
const sides = [
  { name: `base ${rev}`, run: side(base.AnswerCache), samples: [] as number[] },
  { name: "this tree", run: side(AnswerCache), samples: [] as number[] },
];
for (const s of sides) s.run(120_000); // warm-up, and the first 50,000 entries
for (let r = 0; r < 7; r++) for (const s of r % 2 ? [...sides].reverse() : sides) s.samples.push(s.run(100_000));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const s of sides) console.log(`${s.name.padEnd(14)} ${median(s.samples).toFixed(0)} ns per request`);
console.log(`this tree ÷ base: ${(median(sides[1]!.samples) / median(sides[0]!.samples)).toFixed(2)}×`);
