/**
 * Schemas as users write them (issue 16): zod 4 is the supported range (a peer dependency); a
 * zod 3 schema is refused at agent.tool() rather than advertised as a bare {type: "object"};
 * tools/list describes what a caller may SEND (io: "input"), so a defaulted field is optional.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { z as z3 } from "zod/v3";
import { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { ConfigError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { ROOT } from "../support/process.js";

describe("tool schemas", () => {
  let fx: CertFixture;
  let broker: Broker;
  let bob: Agent;
  let alice: Agent;
  beforeAll(async () => {
    fx = tempCerts("alice", "bob");
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint);
    alice = await connectAgent(fx, "alice", broker.endpoint);
  });
  afterAll(async () => {
    await alice?.close();
    await bob?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("zod is a peer dependency with its supported range stated", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string>; peerDependencies?: Record<string, string> };
    expect(pkg.peerDependencies?.["zod"]).toBe("^4.0.0");
    expect(pkg.dependencies["zod"]).toBeUndefined();
  });

  it("a zod 3 schema is refused at agent.tool() with a ConfigError that says which zod to use", () => {
    const legacy = z3.object({ name: z3.string() });
    let caught: unknown;
    try {
      bob.tool("legacy", { input: legacy as unknown as z.ZodType }, () => "never");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect(caught).toMatchObject({ code: "config", message: expect.stringMatching(/zod 3 schema.*zod 4/) });
    // and not registered half-way
    expect(() => bob.tool("legacy", { input: z.object({}) }, () => "ok")).not.toThrow();
    let output: unknown;
    try {
      bob.tool("legacy_out", { input: z.object({}), output: z3.string() as unknown as z.ZodType }, () => "x");
    } catch (err) {
      output = err;
    }
    expect(output).toMatchObject({ code: "config", message: expect.stringContaining("output is a zod 3 schema") });
  });

  it("tools/list advertises the input side: a field with .default() is not required, and the call may omit it", async () => {
    bob.tool(
      "greet",
      {
        input: z.object({ name: z.string(), greeting: z.string().default("hello"), times: z.string().transform(Number) }),
        output: z.object({ text: z.string(), greeting: z.string().default("hi") }),
      },
      ({ name, greeting, times }) => ({ text: `${greeting} ${name} x${times}`, greeting }),
    );
    const tools = await alice.listTools("bob");
    const greet = tools.find((t) => t.name === "greet")!;
    expect(greet.inputSchema["required"]).toEqual(["name", "times"]);
    const props = greet.inputSchema["properties"] as Record<string, Record<string, unknown>>;
    expect(props["greeting"]).toMatchObject({ type: "string", default: "hello" });
    expect(props["times"]).toMatchObject({ type: "string" }); // what a caller sends, before the transform
    // The output side: what the tool returns, where the default is always filled in.
    expect(greet.outputSchema?.["required"]).toEqual(["text", "greeting"]);
    expect(await alice.call("bob", "greet", { name: "ann", times: "2" })).toEqual({ text: "hello ann x2", greeting: "hello" });
  });
});
