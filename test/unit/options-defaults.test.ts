/**
 * One home for every default: AGENT_DEFAULTS and BROKER_DEFAULTS are what the README's option
 * tables state, and resolveAgentOptions / resolveBrokerOptions refuse a bad value when the
 * agent or broker is built (not at first use).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AGENT_DEFAULTS, BROKER_DEFAULTS, ConfigError, generateCertificate, resolveAgentOptions, resolveBrokerOptions } from "../../src/index.js";
import { ROOT } from "../support/process.js";

/** The README table whose header starts with `| \`title\``: option name → default cell. */
function table(readme: string, title: string): Map<string, string> {
  const lines = readme.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`| \`${title}`));
  if (start < 0) throw new Error(`no README table headed ${title}`);
  const rows = new Map<string, string>();
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    const cells = line.split(" | ").map((c) => c.replace(/^\|\s*|\s*\|$/g, "").trim());
    const names = cells[0]!.split(/,\s*/).map((n) => n.replace(/`/g, ""));
    if (names.length === 1) rows.set(names[0]!, cells[cells.length - 1]!);
  }
  return rows;
}

/** "10,000" → 10000, "1 MiB" → 1048576, "`mesh`" → "mesh". */
function parseDefault(cell: string): number | string {
  const m = /^([\d,]+)(?:\s*(KiB|MiB|GiB))?$/.exec(cell);
  if (!m) return cell.replace(/`/g, "");
  const n = Number(m[1]!.replace(/,/g, ""));
  return n * ({ KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m[2] ?? ""] ?? 1);
}

/** Defaults that are not stated as one value in a table row, and why. */
const NOT_IN_TABLE: Record<string, string> = {
  serveTimeout: "an argument of serve(), not an AgentOptions field",
  jobLimits: "an object, stated in words (checked below)",
  answerLimits: "an object, stated in words (checked below)",
  storeLimits: "an object, stated in words (checked below)",
  circuit: "an object, stated in words (checked below)",
};

describe("one home for defaults", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");

  for (const [title, defaults] of [
    ["Agent.connect", AGENT_DEFAULTS],
    ["Broker.start", BROKER_DEFAULTS],
  ] as const) {
    it(`the README's ${title} table states the defaults of the constant`, () => {
      const rows = table(readme, `${title}\` option`);
      const stated: Record<string, unknown> = {};
      const expected: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(defaults)) {
        if (name in NOT_IN_TABLE) continue;
        expected[name] = value;
        stated[name] = rows.has(name) ? parseDefault(rows.get(name)!) : "(no row)";
      }
      expect(stated).toEqual(expected);
    });
  }

  it("the job and answer limits in the README are the constants'", () => {
    const rows = table(readme, "Agent.connect` option");
    const mib = (n: number) => `${n / 1024 ** 2} MiB`;
    const words = (l: typeof AGENT_DEFAULTS.jobLimits) =>
      `${l.maxEntries.toLocaleString("en-US")} / ${mib(l.maxBytes)} total, ${l.maxEntriesPerOwner.toLocaleString("en-US")} / ${mib(l.maxBytesPerOwner)} per caller`;
    expect(rows.get("jobLimits")).toContain(words(AGENT_DEFAULTS.jobLimits));
    expect(rows.get("answerLimits")).toContain(words(AGENT_DEFAULTS.answerLimits));
    const { failures, openFor } = AGENT_DEFAULTS.circuit;
    expect(rows.get("circuit")).toContain(`${failures} failures, ${openFor.toLocaleString("en-US")} ms`);
  });

  it("the store limits in the README are the constants'", () => {
    const l = BROKER_DEFAULTS.storeLimits;
    const mib = (n: number) => (n >= 1024 ** 3 ? `${n / 1024 ** 3} GiB` : `${n / 1024 ** 2} MiB`);
    expect(table(readme, "Broker.start` option").get("storeLimits")).toBe(
      `${l.perRecipientCount.toLocaleString("en-US")} / ${mib(l.perRecipientBytes)} per recipient, ${l.totalCount.toLocaleString("en-US")} / ${mib(l.totalBytes)} total`,
    );
  });

  it("the constants are frozen", () => {
    expect(Object.isFrozen(AGENT_DEFAULTS) && Object.isFrozen(BROKER_DEFAULTS) && Object.isFrozen(AGENT_DEFAULTS.jobLimits) && Object.isFrozen(AGENT_DEFAULTS.circuit)).toBe(true);
  });

  it("resolveAgentOptions applies every default and refuses bad values at construction", () => {
    const base = { broker: "tcp://127.0.0.1:1", cert: "unused" };
    const r = resolveAgentOptions(base);
    expect(r.timeout).toBe(AGENT_DEFAULTS.timeout);
    expect(r.startGrace).toBe(AGENT_DEFAULTS.startGrace);
    expect(r.tokenClockSkew).toBe(AGENT_DEFAULTS.tokenClockSkew);
    expect(resolveAgentOptions({ ...base, clockSkew: 5 }).tokenClockSkew).toBe(5); // the deprecated alias
    expect(resolveAgentOptions({ ...base, tokenClockSkew: 7, clockSkew: 5 }).tokenClockSkew).toBe(7);
    expect(r.circuit).toEqual(AGENT_DEFAULTS.circuit);
    expect(resolveAgentOptions({ ...base, circuit: false }).circuit).toBe(false);
    for (const bad of [{ timeout: -1 }, { timeout: 0 }, { maxConcurrency: 0 }, { startGrace: -1 }, { jobTtl: Number.NaN }, { heartbeatInterval: -5 }, { broker: [] as string[] }, { requireToken: true }, { circuit: { failures: 0 } }, { circuit: { openFor: -1 } }, { log: {} as never }]) {
      const err = (() => {
        try {
          resolveAgentOptions({ ...base, ...bad });
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, JSON.stringify(bad)).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe("config");
    }
  });

  it("resolveBrokerOptions derives the high-water marks and refuses bad values", () => {
    const { publicKey, secretKey } = generateCertificate();
    const base = { bind: "tcp://127.0.0.1:*", publicKey, secretKey, allow: [] };
    const r = resolveBrokerOptions(base);
    expect(r.sendHighWaterMark).toBe(Math.min(1000, Math.floor(BROKER_DEFAULTS.queueBytes / BROKER_DEFAULTS.maxMessageBytes)));
    expect(r.heartbeatTimeout).toBe(3 * BROKER_DEFAULTS.heartbeatInterval);
    expect(resolveBrokerOptions({ ...base, heartbeatInterval: 0 }).heartbeatTimeout).toBe(0);
    for (const bad of [{ maxMessageBytes: 10 }, { queueBytes: 1 }, { clockSkew: -1 }, { logInterval: -1 }, { publicKey: "x" }]) {
      expect(() => resolveBrokerOptions({ ...base, ...bad }), JSON.stringify(bad)).toThrow(ConfigError);
    }
  });
});
