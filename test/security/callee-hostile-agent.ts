/**
 * An agent process whose tools fail in every way a tool can (for test/security/callee-*.test.ts):
 * throwing schemas, unprintable throws, unsendable results, bad progress, handlers that hang.
 * Usage: node callee-hostile-agent.js BROKER CERT CERTS MAX_CONCURRENCY
 */
import { z } from "zod";
import { Agent } from "../../src/agent/agent.js";
import { createLogger } from "../../src/support/log.js";

const [broker, cert, certs, maxConcurrency] = process.argv.slice(2) as [string, string, string, string];
const agent = await Agent.connect({ broker, cert, certs, maxConcurrency: Number(maxConcurrency), jobLostAfter: 60_000, log: createLogger("warn") });
let aborted = 0;
const nested = (n: number): unknown => (n === 0 ? 1 : { a: nested(n - 1) });
agent
  .tool("echo", { input: z.object({}).passthrough() }, (args) => args)
  .tool("parse", { input: z.object({ s: z.string().transform((s) => JSON.parse(s) as unknown) }) }, (args) => args.s)
  .tool("url", { input: z.object({ u: z.string().refine((u) => new URL(u).protocol === "https:") }) }, (args) => args.u)
  .tool("throw-null-proto", { input: z.object({}) }, () => {
    throw Object.assign(Object.create(null) as object, { why: "no prototype" });
  })
  .tool("bad-output", { input: z.object({}), output: z.string().transform((): string => { throw Object.create(null) as Error; }) }, () => "x")
  .tool("result", { input: z.object({ kind: z.enum(["date", "map", "bigint", "deep", "set"]) }) }, ({ kind }) => {
    if (kind === "date") return { when: new Date() };
    if (kind === "map") return { m: new Map([["a", 1]]) };
    if (kind === "set") return [new Set([1])];
    if (kind === "bigint") return { n: 1n };
    return nested(40);
  })
  .tool("progress", { input: z.object({ kind: z.enum(["number", "nan", "infinity"]) }), job: true }, ({ kind }, ctx) => {
    if (kind === "number") ctx.progress(0.5 as never);
    if (kind === "nan") ctx.progress({ progress: NaN });
    if (kind === "infinity") ctx.progress({ progress: 1, total: Infinity });
    return "unreachable";
  })
  .tool("job-result", { input: z.object({ kind: z.enum(["map", "deep"]) }), job: true }, ({ kind }) => (kind === "map" ? new Map([["a", 1]]) : nested(31)))
  .tool("hang", { input: z.object({}) }, (_args, ctx) => {
    // Read from a copy: a spread context keeps its (lazily made) signal (handler.ts RunContext).
    const copy = { ...ctx };
    copy.signal.addEventListener("abort", () => aborted++);
    return new Promise(() => undefined);
  })
  .tool("aborted", { input: z.object({}) }, () => aborted);
process.stderr.write(JSON.stringify({ msg: "agent ready" }) + "\n");
process.on("SIGTERM", () => void agent.close().then(() => process.exit(0)));
