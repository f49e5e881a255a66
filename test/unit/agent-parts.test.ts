/**
 * The agent's parts without sockets: two sets of parts linked by the in-memory transport
 * (src/agent/transport.ts), the link standing in for the broker by stamping the sender's key.
 * Covers the inbound step order, the handler's guard (authorization before tool lookup, a
 * throwing schema), the caller's retry of a lost request and its binding of answers to the
 * party asked.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { generateAuthority, generateCertificate, RemoteError, ForgedAnswerError, type AgentOptions } from "../../src/index.js";
import { HANDLER_STEPS } from "../../src/agent/handler.js";
import { INBOUND_STEPS } from "../../src/agent/inbound.js";
import { createParts, type AgentParts } from "../../src/agent/parts.js";
import { type AgentStats } from "../../src/agent/stats.js";
import { ToolRegistry } from "../../src/agent/tools.js";
import { linkedPair, type MemoryEnd } from "../../src/agent/transport.js";
import { decodeHeader, type Header } from "../../src/wire/envelope.js";
import { memoryCore } from "../support/memory-core.js";

interface MemoryPeer {
  key: string;
  parts: AgentParts;
  stats: AgentStats;
  close(): void;
}

const BROKER_KEY = generateCertificate().publicKey;
const open: MemoryPeer[] = [];

function memoryPeer(end: MemoryEnd, options: Partial<AgentOptions> = {}): MemoryPeer {
  const { cert, core, close } = memoryCore(end, options);
  const stats = core.stats;
  const parts = createParts(core, BROKER_KEY, new ToolRegistry());
  end.onReceive = (frames) => parts.inbound.accept(frames);
  const peer = {
    key: cert.publicKey,
    parts,
    stats,
    close() {
      close();
      parts.handler.close();
      parts.caller.close(new Error("closed"));
    },
  };
  open.push(peer);
  return peer;
}

/**
 * Alice and Bob over one linked pair. `rewrite` sees each message as [header, body] with the
 * decoded header and who sent it, and returns the sender key to stamp, or undefined to lose it.
 */
function pair(options: { alice?: Partial<AgentOptions>; bob?: Partial<AgentOptions>; rewrite?: (header: Header, from: "alice" | "bob", key: string) => string | undefined } = {}) {
  const keys: Record<"a" | "b", string> = { a: "", b: "" };
  const [a, b] = linkedPair((frames, from) => {
    const who = from === "a" ? "alice" : "bob";
    const stamp = options.rewrite ? options.rewrite(decodeHeader(frames[0]!), who, keys[from]) : keys[from];
    return stamp === undefined ? undefined : [Buffer.from(stamp, "latin1"), ...frames];
  });
  const alice = memoryPeer(a, options.alice);
  const bob = memoryPeer(b, options.bob);
  keys.a = alice.key;
  keys.b = bob.key;
  return { alice, bob };
}

afterEach(() => {
  for (const peer of open.splice(0)) peer.close();
});

describe("agent parts over the in-memory transport", () => {
  it("the inbound steps run in their fixed order: nothing opened before it is bound, nothing delivered unchecked", () => {
    const at = (name: (typeof INBOUND_STEPS)[number]) => INBOUND_STEPS.indexOf(name);
    expect(at("header")).toBeLessThan(at("route"));
    expect(at("size")).toBeLessThan(at("open"));
    expect(at("binding")).toBeLessThan(at("open"));
    expect(at("open")).toBeLessThan(at("replay"));
    expect(at("deliver")).toBe(INBOUND_STEPS.length - 1);
    const { alice } = pair();
    expect(alice.parts.inbound.steps.map((s) => s.name)).toEqual([...INBOUND_STEPS]);
    expect(HANDLER_STEPS.indexOf("authorize")).toBeLessThan(HANDLER_STEPS.indexOf("lookup"));
  });

  it("a call goes through and is answered, no socket involved", async () => {
    const { alice, bob } = pair();
    bob.parts.tools.add("add", { input: z.object({ a: z.number(), b: z.number() }) }, ({ a, b }) => a + b);
    expect(await alice.parts.caller.call(bob.key, "add", { a: 2, b: 3 }, {})).toBe(5);
    expect(bob.stats.requests).toBe(1);
  });

  it("authorization comes before tool lookup: an unknown tool without a token is token_missing, not unknown_tool", async () => {
    const { alice, bob } = pair({ bob: { authority: generateAuthority().publicJwk } });
    const err = await alice.parts.caller.call(bob.key, "no-such-tool", {}, { retry: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe("token_missing");
  });

  it("while the callee is still connecting, an unknown tool is busy (its tools come after connect: a stored durable request can arrive first); once ready, unknown_tool", async () => {
    const { alice, bob } = pair();
    bob.parts.handler.connecting();
    const early = await alice.parts.caller.call(bob.key, "later", {}, { retry: false }).catch((e: unknown) => e);
    expect((early as RemoteError).code).toBe("busy");
    bob.parts.tools.add("later", { input: z.object({}) }, () => "registered after connect");
    bob.parts.handler.ready();
    expect(await alice.parts.caller.call(bob.key, "later", {}, {})).toBe("registered after connect");
    const err = await alice.parts.caller.call(bob.key, "never", {}, { retry: false }).catch((e: unknown) => e);
    expect((err as RemoteError).code).toBe("unknown_tool");
  });

  it("a schema whose transform throws is answered invalid_args, and the callee goes on", async () => {
    const { alice, bob } = pair();
    const input = z.object({ s: z.string() }).transform(({ s }) => JSON.parse(s) as unknown);
    bob.parts.tools.add("parse", { input }, (v) => v);
    const err = await alice.parts.caller.call(bob.key, "parse", { s: "{" }, { retry: false }).catch((e: unknown) => e);
    expect((err as RemoteError).code).toBe("invalid_args");
    expect(await alice.parts.caller.call(bob.key, "parse", { s: "[1]" }, {})).toEqual([1]);
  });

  it("a lost request is retried with the same request id and the tool runs once", async () => {
    let lost = 0;
    const { alice, bob } = pair({
      rewrite: (header, from, key) => (from === "alice" && header.k === "req" && lost++ === 0 ? undefined : key),
    });
    let runs = 0;
    bob.parts.tools.add("once", { input: z.object({}) }, () => ++runs);
    expect(await alice.parts.caller.call(bob.key, "once", {}, { timeout: 4000 })).toBe(1);
    expect([lost, runs]).toEqual([2, 1]);
  });

  it("an answer that does not come from the party asked is refused: the call fails bad_seal, not with that answer", async () => {
    const mallory = generateCertificate().publicKey;
    // The link stamps Bob's answers as coming from another key (a broker that lies, or a forger).
    const { alice, bob } = pair({ rewrite: (header, from, key) => (from === "bob" && header.k === "res" ? mallory : key) });
    bob.parts.tools.add("add", { input: z.object({}) }, () => 1);
    const err = await alice.parts.caller.call(bob.key, "add", {}, { timeout: 300, retry: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ForgedAnswerError);
    expect((err as ForgedAnswerError).code).toBe("bad_seal");
    expect(alice.stats.dropped["bad_seal"]).toBe(1);
  });
});
