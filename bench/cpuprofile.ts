/**
 * Summarises V8 `.cpuprofile` files (from `zmq-bench --prof-dir DIR`): the functions with the
 * most self time, and the most inclusive time, each with its share of the samples.
 *
 *   node dist/bench/cpuprofile.js DIR/*.cpuprofile [--top 25]
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

function label(n: Node): string {
  const f = n.callFrame;
  const file = f.url ? basename(f.url.replace(/^file:\/\//, "")) : "";
  return `${f.functionName || "(anonymous)"}${file ? ` ${file}:${f.lineNumber + 1}` : ""}`;
}

export function summarise(profile: Profile, top = 25): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    all += dt;
    const n = byId.get(id)!;
    self.set(label(n), (self.get(label(n)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + dt);
    }
  });
  const idle = (self.get("(idle)") ?? 0) + (self.get("(program)") ?? 0);
  const busy = all - (self.get("(idle)") ?? 0);
  const fmt = (m: Map<string, number>) =>
    [...m]
      .filter(([l]) => l !== "(idle)" && l !== "(root)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([l, t]) => `${((100 * t) / busy).toFixed(1).padStart(5)}%  ${(t / 1000).toFixed(0).padStart(6)} ms  ${l}`)
      .join("\n");
  return [
    `sampled ${(all / 1e6).toFixed(2)} s, busy ${(busy / 1e6).toFixed(2)} s (idle+program ${(idle / 1e6).toFixed(2)} s); shares are of busy time`,
    "self:",
    fmt(self),
    "inclusive:",
    fmt(total),
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
  for (const file of args) {
    process.stdout.write(`== ${file}\n${summarise(JSON.parse(readFileSync(file, "utf8")) as Profile, top)}\n\n`);
  }
}
