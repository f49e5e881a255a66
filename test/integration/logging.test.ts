/**
 * Logging (issue 16): `log: pino()` works as it is; a tool that throws is logged at warn with
 * its stack, by default too; a deliberate ZmcpError answer is not a warning.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { createLogger } from "../../src/support/log.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

function lines(): { stream: Writable; entries: Array<Record<string, unknown>> } {
  const entries: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) entries.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { stream, entries };
}

function failingTools(agent: Agent): void {
  agent.tool("explode", { input: z.object({}) }, function explodeInsideTheTool() {
    throw new Error("disk on fire");
  });
  agent.tool("refuse", { input: z.object({}) }, () => {
    throw new ZmcpError("busy", "come back later");
  });
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(RemoteError);
  expect(err).toMatchObject({ code });
}

describe("agent logging", () => {
  let fx: CertFixture;
  let broker: Broker;
  let alice: Agent;
  beforeAll(async () => {
    fx = tempCerts("alice", "bob", "carol", "dave");
    broker = await startBroker(fx);
    alice = await connectAgent(fx, "alice", broker.endpoint);
  });
  afterAll(async () => {
    await alice?.close();
    await broker?.close();
    fx?.cleanup();
  });

  it("takes a real pino logger as it is: a throwing tool is a warn line (pino level 40) with its stack", async () => {
    const out = lines();
    const bob = await connectAgent(fx, "bob", broker.endpoint, { log: pino({ level: "info" }, out.stream) });
    try {
      failingTools(bob);
      await expectCode(alice.call("bob", "explode", {}, { retry: false }), "tool_failed");
      await expectCode(alice.call("bob", "refuse", {}, { retry: false }), "busy");
      const failed = out.entries.filter((e) => e["msg"] === "tool failed");
      expect(failed).toHaveLength(1); // the deliberate `busy` is at debug, below pino's info
      expect(failed[0]).toMatchObject({ level: 40, tool: "explode", code: "tool_failed", error: "disk on fire" });
      expect(String(failed[0]!["stack"])).toContain("explodeInsideTheTool");
    } finally {
      await bob.close();
    }
  });

  it("with no log option, the warning goes to stderr as a JSON line", async () => {
    const written: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      written.push(String(chunk));
      return (original as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stderr.write;
    const carol = await connectAgent(fx, "carol", broker.endpoint);
    try {
      failingTools(carol);
      await expectCode(alice.call("carol", "explode", {}, { retry: false }), "tool_failed");
    } finally {
      process.stderr.write = original;
      await carol.close();
    }
    const entries = written.flatMap((w) => w.split("\n")).filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    const failed = entries.find((e) => e["msg"] === "tool failed");
    expect(failed).toMatchObject({ level: "warn", tool: "explode", error: "disk on fire" });
    expect(String(failed!["stack"])).toContain("explodeInsideTheTool");
  });

  it("a zmcp Logger still works; a deliberate ZmcpError is logged at debug, not warn", async () => {
    const entries: Array<Record<string, unknown>> = [];
    const dave = await connectAgent(fx, "dave", broker.endpoint, { log: createLogger("debug", (l) => entries.push(JSON.parse(l) as Record<string, unknown>)) });
    try {
      failingTools(dave);
      await expectCode(alice.call("dave", "refuse", {}, { retry: false }), "busy");
      expect(entries.find((e) => e["msg"] === "tool failed")).toMatchObject({ level: "debug", tool: "refuse", code: "busy" });
    } finally {
      await dave.close();
    }
  });
});
