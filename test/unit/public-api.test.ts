/**
 * The public API: the core entry (`zmcp`) names every type of its public signatures (this file
 * does not compile without them) and nothing only tests use; those are behind `zmcp/metrics`
 * and `zmcp/testing`, resolved through package.json's `exports` as a user's import would be.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type {
  AgentOptions,
  AgentStats,
  BrokerOptions,
  BrokerStats,
  CallOptions,
  ErrorBody,
  Job,
  JobEvents,
  JobState,
  JobStatus,
  Progress,
  Registry,
  RetryOptions,
  ToolContext,
  ToolInfo,
} from "../../src/index.js";
import * as core from "../../src/index.js";
import { ROOT } from "../support/process.js";

/** The names a module exports, imported by package name from the package root (self-reference). */
function exportsOf(specifier: string): string[] {
  const script = `const m = await import(${JSON.stringify(specifier)}); process.stdout.write(JSON.stringify(Object.keys(m).sort()));`;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, encoding: "utf8" })) as string[];
}

/** Every module the built file `file` imports, transitively (static imports only). */
function importGraph(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = readFileSync(file, "utf8");
  for (const [, spec] of text.matchAll(/^(?:import|export)\b[^;]*?from\s+"([^"]+)"/gms)) {
    if (spec!.startsWith(".")) importGraph(join(file, "..", spec!), seen);
    else seen.add(spec!);
  }
  return seen;
}

describe("public API", () => {
  it("the core entry names the types of its public signatures", () => {
    // Compile-time: the imports above. Run-time: values of those types are usable as such.
    const retry: RetryOptions = { attempts: 2 };
    const options: Partial<AgentOptions> & Partial<BrokerOptions> & CallOptions = { retry };
    const state: JobState = { job_id: "j", status: "done" satisfies JobStatus };
    const progress: Progress = { progress: 1 };
    const error: ErrorBody = { code: "tool_failed", message: "m" };
    const seen: Array<ToolInfo | ToolContext | AgentStats | BrokerStats | Registry | JobEvents | Job | undefined> = [];
    expect([options, state, progress, error, seen.length]).toHaveLength(5);
    expect(typeof core.Job).toBe("function");
    expect(typeof core.Agent.connect).toBe("function");
  });

  it("the core entry does not export what only tests and metrics tooling use", () => {
    for (const name of ["parsePrometheusText", "scrapeMetrics", "metricSum", "serveMetrics", "Registry", "ClockOffsets", "CNF_KEY"]) {
      expect(Object.keys(core), name).not.toContain(name);
    }
  });

  it("zmcp, zmcp/metrics, zmcp/testing and zmcp/mcp resolve through the exports map", () => {
    expect(exportsOf("zmcp")).toEqual(expect.arrayContaining(["Agent", "Broker", "Job", "ZmcpError", "RemoteError", "TimeoutError"]));
    expect(exportsOf("zmcp/metrics")).toEqual(["Registry", "metricSum", "parsePrometheusText", "scrapeMetrics", "serveMetrics"]);
    expect(exportsOf("zmcp/testing")).toEqual(["CNF_KEY", "ClockOffsets"]);
    expect(exportsOf("zmcp/mcp")).toEqual(expect.arrayContaining(["MeshExposer", "McpAttachment"]));
  });

  it("the core entry does not load the MCP SDK, and zmq-bench is not a published bin", () => {
    const graph = importGraph(join(ROOT, "dist", "src", "index.js"));
    expect([...graph].filter((m) => m.startsWith("@modelcontextprotocol/"))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: Record<string, string>; files: string[] };
    expect(Object.keys(pkg.bin)).not.toContain("zmq-bench");
    for (const target of Object.values(pkg.bin)) expect(pkg.files.some((f) => target.replace(/^\.\//, "").startsWith(f)), target).toBe(true);
  });
});
