/**
 * Second adversarial pass on issue 12: the ToolContext handed to tools is now a RunContext
 * (src/agent/handler.ts) whose `signal` is one own accessor whose shared getter reads the
 * class's private fields (#assigned, #late, #closing) from `this`.
 *
 * Tool authors routinely derive a context from the one they are given: `Object.create(ctx)`
 * (a child context that inherits everything, the pattern of many middleware layers) or
 * `new Proxy(ctx, handler)` (logging, tracing, access wrappers). In both, the accessor runs with
 * `this` = the derived object, which has no private fields: reading `signal` throws
 * "Cannot read private member #assigned from an object whose class did not declare it".
 * Before 1ea2347 the getter closed over local variables and worked whatever `this` was; before
 * the lazy signal it was a plain data property. README and ToolContext (src/agent/tools.ts)
 * describe `signal` as a plain field; nothing says a derived context loses it.
 *
 * The claims that held are kept as regression tests: a spread keeps the signal, a plain call's
 * signal aborts at the caller's deadline whether read before or after it, a job's on cancel,
 * a resources/read reader's spread context works.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { ToolContext } from "../../src/agent/tools.js";
import type { Broker } from "../../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

let fx: CertFixture;
let broker: Broker;
let alice: Agent;
let bob: Agent;
const seen = new Map<string, unknown>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  fx = tempCerts("alice", "bob", "carol");
  broker = await startBroker(fx);
  bob = await connectAgent(fx, "bob", broker.endpoint);
  alice = await connectAgent(fx, "alice", broker.endpoint);
  bob.tool("derived-create", { input: z.object({}) }, (_args, ctx) => {
    const child = Object.create(ctx) as ToolContext; // a child context: inherits everything
    return { aborted: child.signal.aborted, from: child.from === ctx.from };
  });
  bob.tool("derived-proxy", { input: z.object({}) }, (_args, ctx) => {
    const wrapped = new Proxy(ctx, {}); // a transparent wrapper (logging, tracing)
    return { aborted: wrapped.signal.aborted };
  });
  bob.tool("derived-set", { input: z.object({}) }, (_args, ctx) => {
    const child = Object.create(ctx) as ToolContext;
    child.signal = AbortSignal.timeout(60_000); // narrowing the signal on a child context
    return { aborted: child.signal.aborted };
  });
  bob.tool("spread-late", { input: z.object({ wait: z.number() }) }, async ({ wait }, ctx) => {
    await sleep(wait); // past the caller's deadline, then read the signal (from a spread copy)
    const copy = { ...ctx };
    seen.set("spread-late", copy.signal.aborted);
    return null;
  });
  bob.tool("read-early", { input: z.object({ id: z.string() }) }, async ({ id }, ctx) => {
    const signal = ctx.signal;
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    seen.set(id, signal.reason instanceof Error ? signal.reason.name : String(signal.reason));
    return null;
  });
  bob.resource("mem://slow", {}, async (_uri, ctx) => {
    const signal = ctx.signal; // from the spread context resources.ts hands a reader
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    seen.set("reader", signal.aborted);
    return "late";
  });
  bob.tool("long-job", { input: z.object({}), job: true }, async (_args, ctx) => {
    const signal = ctx.signal;
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    seen.set("long-job", true);
    return null;
  });
});

afterAll(async () => {
  await alice?.close();
  await bob?.close();
  await broker?.close();
  fx?.cleanup();
});

describe("hotpath2-attack: a context derived from ctx keeps a working signal", () => {
  it("Object.create(ctx).signal works in a plain call", async () => {
    await expect(alice.call(fx.key("bob"), "derived-create", {})).resolves.toEqual({ aborted: false, from: true });
  });

  it("new Proxy(ctx, {}).signal works in a plain call", async () => {
    await expect(alice.call(fx.key("bob"), "derived-proxy", {})).resolves.toEqual({ aborted: false });
  });

  it("assigning signal on a child context works", async () => {
    await expect(alice.call(fx.key("bob"), "derived-set", {})).resolves.toEqual({ aborted: false });
  });
});

describe("hotpath2-attack (regression): what held about RunContext.signal", () => {
  it("a spread copy made after the caller's deadline carries an aborted signal", async () => {
    await expect(alice.call(fx.key("bob"), "spread-late", { wait: 900 }, { timeout: 400 })).rejects.toThrow();
    await sleep(800);
    expect(seen.get("spread-late")).toBe(true);
  });

  it("a signal read at once aborts at the caller's deadline with a TimeoutError", async () => {
    await expect(alice.call(fx.key("bob"), "read-early", { id: "early" }, { timeout: 400 })).rejects.toThrow();
    await sleep(300);
    expect(seen.get("early")).toBe("TimeoutError");
  });

  it("a job's ctx.signal aborts on cancel", async () => {
    const job = await alice.start(fx.key("bob"), "long-job", {});
    await sleep(100);
    await job.cancel();
    await sleep(300);
    expect(seen.get("long-job")).toBe(true);
  });
});

describe("hotpath2-attack (regression): signals of a resource reader and of a job on close", () => {
  it("a resources/read reader's ctx.signal aborts at the caller's deadline", async () => {
    await expect(alice.readResource(fx.key("bob"), "mem://slow", { timeout: 400 })).rejects.toThrow();
    await sleep(300);
    expect(seen.get("reader")).toBe(true);
  });

  it("a job's ctx.signal aborts when its agent closes", async () => {
    const carol = await connectAgent(fx, "carol", broker.endpoint);
    let reason: unknown = "not aborted";
    carol.tool("held-job", { input: z.object({}), job: true }, async (_args, ctx) => {
      const copy = { ...ctx }; // read through a spread, as a wrapper would
      await new Promise<void>((resolve) => copy.signal.addEventListener("abort", () => resolve(), { once: true }));
      reason = copy.signal.reason;
      return null;
    });
    const job = await alice.start(fx.key("carol"), "held-job", {});
    job.result.catch(() => undefined);
    await sleep(100);
    await carol.close();
    await sleep(100);
    expect(reason).not.toBe("not aborted");
  });
});
