/**
 * The SDK's own cost per call, without sockets: a caller's and a callee's parts linked in one
 * process by the in-memory transport (src/agent/transport.ts), the link stamping the sender's
 * key as a broker would. Everything a call does in JavaScript runs (seal, open, header binding,
 * replay guard, answer cache, validation, the echo tool, the caller's pending table); the
 * zeromq.js send and receive do not. So this is the part of a call's CPU that zmcp itself
 * spends, and what a change to the per-message path saves, measured in one quiet process.
 *
 *   npm run build && node dist/bench/sdkpath.js [--calls 20000] [--in-flight 256] [--rounds 7] [--bytes 256] [--base REV]
 *
 * `--base REV` builds that git revision (bench/revision.ts, as `bench:ab` does), loads its
 * modules into this same process next to this tree's, and alternates rounds between the two:
 * one process, one heap, the same machine noise on both sides, so a change of a few percent
 * shows (separate processes of the same build differ by up to a third on this machine).
 *
 * With `--cpu-prof` node writes a profile of exactly this path (summarise it with
 * `node dist/bench/cpuprofile.js FILE`).
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import type { AgentCore } from "../src/agent/core.js";
import type { AgentParts } from "../src/agent/parts.js";
import type { MemoryEnd } from "../src/agent/transport.js";
import { builtRevision } from "./revision.js";

const { values } = parseArgs({
  options: {
    calls: { type: "string", default: "20000" },
    "in-flight": { type: "string", default: "256" },
    rounds: { type: "string", default: "7" },
    bytes: { type: "string", default: "256" },
    base: { type: "string" },
  },
});
const calls = Number(values.calls);
const inFlight = Number(values["in-flight"]);
const rounds = Number(values.rounds);
const payload = new Uint8Array(Number(values.bytes));

// As the benchmark's responder (bench/systems/zmcp.ts): answers are kept for the replay window,
// so a fast caller holds more of them than the default per-caller limit. A 2 s replay window and
// 5 s deadlines: within a few rounds ids and answers are forgotten as fast as they come, the
// steady state of a long-running agent (with the defaults the heap only grows over a run).
const answerLimits = { maxEntries: 10_000_000, maxEntriesPerOwner: 10_000_000, maxBytesPerOwner: 64 * 1024 * 1024 };

/** A caller and a callee with an echo tool, built from the modules under `src` (this tree's, or a base revision's). */
async function setup(src: string): Promise<{ run(n: number): Promise<number>; close(): void }> {
  const load = async (path: string) => (await import(pathToFileURL(join(src, path)).href)) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const paths = ["auth/certs.js", "agent/directory.js", "agent/options.js", "agent/parts.js", "agent/stats.js", "agent/tools.js", "agent/transport.js", "support/log.js", "support/log-throttle.js", "wire/seal.js"];
  const modules: Record<string, any> = Object.assign({}, ...(await Promise.all(paths.map(load)))); // eslint-disable-line @typescript-eslint/no-explicit-any
  const { generateCertificate, Directory, resolveAgentOptions, createParts, newAgentStats, ToolRegistry, linkedPair, silentLogger, LogThrottle, Sealer } = modules;
  const brokerKey = generateCertificate().publicKey as string;
  const peer = (end: MemoryEnd): { key: string; parts: AgentParts; close(): void } => {
    const cert = generateCertificate();
    const closing = new AbortController();
    let closed = false;
    const core: AgentCore = {
      publicKey: cert.publicKey,
      sealer: new Sealer(cert.secretKey),
      options: resolveAgentOptions({ broker: "memory", cert, heartbeatInterval: 0, jobPollInterval: 0, answerLimits, replayWindow: 2000, timeout: 5000 }),
      transport: end,
      directory: new Directory(undefined, silentLogger),
      stats: newAgentStats(),
      log: silentLogger,
      throttle: new LogThrottle(silentLogger),
      tokenSource: undefined,
      closing: closing.signal,
      closedWith: () => undefined,
      isClosed: () => closed,
    };
    const parts = createParts(core, brokerKey, new ToolRegistry()) as AgentParts;
    end.onReceive = (frames) => parts.inbound.accept(frames);
    return {
      key: cert.publicKey,
      parts,
      close() {
        closed = true;
        closing.abort();
        parts.handler.close();
        parts.caller.close(new Error("closed"));
      },
    };
  };
  const keys = { a: "", b: "" };
  const [a, b] = linkedPair((frames: Buffer[], from: "a" | "b") => [Buffer.from(keys[from], "latin1"), ...frames]) as [MemoryEnd, MemoryEnd];
  const alice = peer(a);
  const bob = peer(b);
  keys.a = alice.key;
  keys.b = bob.key;
  bob.parts.tools.add("echo", { input: z.strictObject({ data: z.instanceof(Uint8Array) }) }, ({ data }) => ({ data }));
  bob.parts.handler.ready();
  return {
    /** µs per call with `inFlight` calls kept going until `n` are done. */
    async run(n) {
      let started = 0;
      const t0 = process.hrtime.bigint();
      const lane = async () => {
        while (started < n) {
          started++;
          const result = (await alice.parts.caller.call(bob.key, "echo", { data: payload }, {})) as { data: Uint8Array };
          if (result.data.length !== payload.length) throw new Error("echo of the wrong size");
        }
      };
      await Promise.all(Array.from({ length: Math.min(inFlight, n) }, lane));
      return Number(process.hrtime.bigint() - t0) / 1000 / n;
    },
    close() {
      alice.close();
      bob.close();
    },
  };
}

const here = join(import.meta.dirname, "..", "src");
const sides: Array<{ name: string; path: Awaited<ReturnType<typeof setup>>; samples: number[] }> = [{ name: "this tree", path: await setup(here), samples: [] }];
if (values.base) {
  const { rev, dir } = builtRevision(values.base);
  sides.unshift({ name: `base ${rev}`, path: await setup(join(dir, "dist", "src")), samples: [] });
}
for (const side of sides) await side.path.run(Math.max(5000, calls / 2)); // warm-up: V8 optimises the path
for (let r = 0; r < rounds; r++) for (const side of r % 2 ? [...sides].reverse() : sides) side.samples.push(await side.path.run(calls));
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
console.log(`SDK path, caller + callee in one process, ${payload.length} B echo, ${inFlight} in flight, ${rounds} rounds of ${calls} calls (medians, µs per call):`);
for (const side of sides) console.log(`  ${side.name.padEnd(12)} ${median(side.samples).toFixed(1)}  (min ${Math.min(...side.samples).toFixed(1)}, max ${Math.max(...side.samples).toFixed(1)}; rounds ${side.samples.map((x) => x.toFixed(0)).join(" ")})`);
if (sides.length === 2) console.log(`  this tree ÷ base: ${(median(sides[1]!.samples) / median(sides[0]!.samples)).toFixed(3)}×`);
for (const side of sides) side.path.close();
