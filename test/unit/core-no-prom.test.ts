/**
 * The core entry (`zmcp`) does not load prom-client: an agent's or broker's `metrics` registry
 * is created, and prom-client loaded, on first access (support/metrics.ts). Checked on the
 * built files, statically and in a fresh process.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/process.js";

function importGraph(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  for (const [, spec] of readFileSync(file, "utf8").matchAll(/^(?:import|export)\b[^;]*?from\s+"([^"]+)"/gms)) {
    if (spec!.startsWith(".")) importGraph(join(file, "..", spec!), seen);
    else seen.add(spec!);
  }
  return seen;
}

describe("the core entry and prom-client", () => {
  it("no static import of prom-client from dist/src/index.js", () => {
    expect([...importGraph(join(ROOT, "dist", "src", "index.js"))].filter((m) => m.startsWith("prom-client"))).toEqual([]);
  });

  it("importing zmcp loads no prom-client module; reading zmcp/metrics does", () => {
    const script = (extra: string) =>
      `import { createRequire } from "node:module"; await import("zmcp"); ${extra} const cache = createRequire(import.meta.url).cache; process.stdout.write(String(Object.keys(cache).some((k) => k.includes("prom-client"))));`;
    const run = (extra: string) => execFileSync(process.execPath, ["--input-type=module", "-e", script(extra)], { cwd: ROOT, encoding: "utf8" });
    expect(run("")).toBe("false");
    expect(run(`await import("zmcp/metrics");`)).toBe("true");
  });
});
