/**
 * Adversarial pass on 5f2cb7c (handler.ts #runTool: one hand-made promise settled once, instead
 * of async wrappers and a Promise.race). The old code ran the handler, `await`ed its result and
 * checked it inside one try/catch, and gave the concurrency slot back in a `finally`: whatever
 * happened, `#active` came back down. The new executor calls `Promise.resolve(result).then(...)`
 * and `failed(err)` outside any guard, so:
 * - a native promise whose `constructor` getter throws makes Promise.resolve throw
 *   synchronously (the old `await` caught it in the try);
 * - a native promise with an own `then` that throws makes `.then` throw synchronously;
 * - a thrown value on which `instanceof` throws (a Proxy whose getPrototypeOf trap throws)
 *   makes `failed` itself throw;
 * each escaping the executor before `settle`: the slot was never given back (a job: for ever;
 * a plain call: until its deadline), so an agent with maxConcurrency 1 answered `busy` to
 * everything after. Thrown asynchronously, the Proxy made `.then`'s derived promise reject
 * unhandled and the call was never answered.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

let fx: CertFixture;
let broker: Broker;
let alice: Agent;
let bob: Agent;

function ctorGetterPromise(): Promise<number> {
  const p = Promise.resolve(1);
  Object.defineProperty(p, "constructor", {
    get() {
      throw new Error("constructor getter");
    },
  });
  return p;
}
function ownThenThrows(): Promise<number> {
  const p = Promise.resolve(2);
  Object.defineProperty(p, "then", {
    value() {
      throw new Error("own then");
    },
  });
  return p;
}
function hostileProxy(): object {
  return new Proxy(
    {},
    {
      getPrototypeOf() {
        throw new Error("getPrototypeOf trap");
      },
    },
  );
}

beforeAll(async () => {
  fx = tempCerts("alice", "bob");
  broker = await startBroker(fx);
  bob = await connectAgent(fx, "bob", broker.endpoint, { maxConcurrency: 1 });
  alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
  bob.tool("ok", { input: z.object({}) }, () => "fine");
  bob.tool("ctor-getter", { input: z.object({}) }, () => ctorGetterPromise());
  bob.tool("own-then", { input: z.object({}) }, () => ownThenThrows());
  bob.tool("throw-proxy", { input: z.object({}) }, () => {
    throw hostileProxy();
  });
  bob.tool("reject-proxy", { input: z.object({}) }, async () => {
    await null;
    throw hostileProxy();
  });
  // A schema whose safeParse returns no result object (a wrapped or patched schema).
  const odd = z.number();
  Object.defineProperty(odd, "safeParse", { value: () => null });
  bob.tool("output-null", { input: z.object({}), output: odd }, () => 3);
  const thrown: Record<string, () => unknown> = {
    null: () => null,
    undefined: () => undefined,
    symbol: () => Symbol("s"),
    "toString-throws": () => ({
      toString() {
        throw new Error("no");
      },
    }),
  };
  for (const [name, make] of Object.entries(thrown)) {
    bob.tool(`throw-${name}`, { input: z.object({}) }, () => {
      throw make();
    });
  }
  bob.tool("never", { input: z.object({}) }, () => new Promise(() => {}));
  bob.tool("job-ctor-getter", { input: z.object({}), job: true }, () => ctorGetterPromise());
});

afterAll(async () => {
  await alice?.close();
  await bob?.close();
  await broker?.close();
  fx?.cleanup();
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

describe("a tool run's slot comes back whatever the handler's result does (maxConcurrency 1)", () => {
  for (const tool of ["ctor-getter", "own-then", "throw-proxy", "output-null"]) {
    it(`${tool}: answered tool_failed, and the next call is served`, async () => {
      expect(await codeOf(alice.call(fx.key("bob"), tool, {}, { timeout: 20_000 }))).toBe("tool_failed");
      await expect(alice.call(fx.key("bob"), "ok", {})).resolves.toBe("fine");
    });
  }

  it("a Proxy thrown asynchronously is answered tool_failed (not left to the deadline)", async () => {
    expect(await codeOf(alice.call(fx.key("bob"), "reject-proxy", {}, { timeout: 3000 }))).toBe("tool_failed");
    await expect(alice.call(fx.key("bob"), "ok", {})).resolves.toBe("fine");
  });

  it("a job whose promise's constructor getter throws fails, and gives its slot back", async () => {
    expect(await codeOf(alice.call(fx.key("bob"), "job-ctor-getter", {}, { timeout: 5000 }))).toBe("tool_failed");
    await expect(alice.call(fx.key("bob"), "ok", {})).resolves.toBe("fine");
  });

  for (const name of ["null", "undefined", "symbol", "toString-throws"]) {
    it(`(held) throwing ${name} is tool_failed and frees the slot`, async () => {
      expect(await codeOf(alice.call(fx.key("bob"), `throw-${name}`, {}))).toBe("tool_failed");
      await expect(alice.call(fx.key("bob"), "ok", {})).resolves.toBe("fine");
    });
  }

  it("(held) a promise that never settles frees its slot at the caller's deadline", async () => {
    expect(await codeOf(alice.call(fx.key("bob"), "never", {}, { timeout: 300 }))).toBe("timeout");
    await new Promise((r) => setTimeout(r, 300));
    await expect(alice.call(fx.key("bob"), "ok", {})).resolves.toBe("fine");
  });
});
