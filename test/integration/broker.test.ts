import { decode } from "@msgpack/msgpack";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { rejectsWith } from "../support/assert.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { spawnBroker } from "../support/process.js";
import { waitFor } from "../support/wait.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";

function whoami(agent: Agent): Agent {
  return agent.tool("whoami", { input: z.object({}) }, (_args, ctx) => ({ caller: ctx.from, name: ctx.fromName ?? null }));
}


/** The broker's nack in a raw receive: `[empty from, header, empty body]`. */
function nackOf(frames: Buffer[]): Header {
  expect(frames).toHaveLength(3);
  expect(frames[0]!.length).toBe(0);
  const header = decodeHeader(frames[1]!);
  expect(header.k).toBe("nack");
  return header;
}

describe("broker as a process (built zmq-broker bin)", () => {
  it("admits listed keys, refuses unlisted ones, and carries a call from A to B", async () => {
    const fx = tempCerts("alice", "bob");
    fx.add("mallory", false); // not in the allowlist directory
    const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    const agents: Agent[] = [];
    try {
      expect(broker.publicKey).toBe(fx.key("broker"));
      const bob = whoami(await connectAgent(fx, "bob", broker.endpoint));
      const alice = await connectAgent(fx, "alice", broker.endpoint);
      agents.push(bob, alice);
      expect(await alice.call("bob", "whoami", {})).toEqual({ caller: fx.key("alice"), name: "alice" });
      expect(await alice.call(fx.key("bob"), "whoami", {})).toEqual({ caller: fx.key("alice"), name: "alice" });
      await rejectsWith(connectAgent(fx, "mallory", broker.endpoint), ZmcpError, "handshake_failed");
      await waitFor(() => broker.logs.some((l) => l["msg"] === "handshake refused: key not in allowlist" && l["key"] === fx.key("mallory")), 5000, "the broker's refusal logged"); // another process's log line: it may come after what the test saw
    } finally {
      await Promise.all(agents.map((a) => a.close()));
      expect(await broker.stop("SIGTERM")).toBe(0);
      fx.cleanup();
    }
  });

  it("reloads its allowlist on SIGHUP without dropping connected agents", async () => {
    const fx = tempCerts("alice", "bob");
    const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", fx.secretPath("broker"), "--allow", fx.dir]);
    const agents: Agent[] = [];
    try {
      const bob = whoami(await connectAgent(fx, "bob", broker.endpoint));
      const alice = await connectAgent(fx, "alice", broker.endpoint);
      agents.push(bob, alice);
      fx.add("carol");
      // Not admitted before the reload...
      await rejectsWith(connectAgent(fx, "carol", broker.endpoint, { connectTimeout: 3000 }), ZmcpError, "handshake_failed");
      broker.proc.kill("SIGHUP");
      await waitFor(() => broker.logs.some((l) => l["msg"] === "allowlist reloaded"), 5000, "reload");
      const carol = await connectAgent(fx, "carol", broker.endpoint);
      agents.push(carol);
      expect(await carol.call("bob", "whoami", {})).toMatchObject({ name: "carol" });
      expect(await alice.call("bob", "whoami", {})).toMatchObject({ name: "alice" }); // still connected
    } finally {
      await Promise.all(agents.map((a) => a.close()));
      await broker.stop();
      fx.cleanup();
    }
  });
});

describe("broker routing and refusals", () => {
  let fx: CertFixture;
  let broker: Broker;
  let alice: Agent;
  let bob: Agent;
  const raws: RawPeer[] = [];
  beforeEach(async () => {
    fx = tempCerts("alice", "bob", "mallory");
    broker = await startBroker(fx, { maxMessageBytes: 64 * 1024 });
    bob = whoami(await connectAgent(fx, "bob", broker.endpoint));
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ text }));
    alice = await connectAgent(fx, "alice", broker.endpoint);
  });
  afterEach(async () => {
    raws.splice(0).forEach((r) => r.close());
    await Promise.all([alice.close(), bob.close()]);
    await broker.close();
    fx.cleanup();
  });
  const raw = async (name: string, opts: { routingId?: string } = {}) => {
    const r = await rawPeer(fx, name, broker.endpoint, opts);
    raws.push(r);
    return r;
  };
  /** After every refusal the broker must still carry traffic. */
  const stillServes = async () => expect(await alice.call("bob", "echo", { text: "still here" })).toEqual({ text: "still here" });

  it("spoofing: a client claiming B's routing id neither receives B's traffic nor speaks as A", async () => {
    const mallory = await raw("mallory", { routingId: fx.key("bob") });
    // Traffic for bob still reaches the real bob.
    expect(await alice.call("bob", "whoami", {})).toEqual({ caller: fx.key("alice"), name: "alice" });
    await expect(mallory.receive(300)).rejects.toMatchObject({ code: "EAGAIN" });
    // Claiming alice's id does not make bob see alice as the sender.
    const mallory2 = await raw("mallory", { routingId: fx.key("alice") });
    await mallory2.socket.send(mallory2.frames(fx.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "whoami", args: {} }));
    const [from, , body] = await mallory2.receive();
    expect(from!.toString()).toBe(fx.key("bob"));
    const reply = decode(mallory2.sealer.open(fx.key("bob"), body!)) as { result: unknown };
    expect(reply.result).toEqual({ caller: fx.key("mallory"), name: "mallory" });
  });

  it("every connection is renamed to its authenticated key, whatever id it claims (guards the ZAP Identity behaviour)", async () => {
    for (let i = 0; i < 60; i++) {
      const m = await rawPeer(fx, "mallory", broker.endpoint, { routingId: fx.key("alice") });
      // A message to itself comes back stamped with the sender id the ROUTER knows it by.
      await m.socket.send(m.frames(fx.key("mallory"), { t: "req", ts: Date.now(), rid: newId(), tool: "x", args: {} }));
      const [from] = await m.receive();
      m.close();
      expect(from!.toString("latin1"), `connection ${i}`).toBe(fx.key("mallory"));
    }
  });

  it("the broker cannot read payloads: what it forwards holds no plaintext", async () => {
    await bob.close();
    const sniffer = await raw("bob"); // receives exactly what the broker forwards to bob
    const secret = "attack at dawn 0123456789";
    const call = alice.call("bob", "echo", { text: secret }, { timeout: 1000 }).catch((e: unknown) => e);
    const frames = await sniffer.receive();
    expect(frames).toHaveLength(3);
    for (const frame of frames) expect(Buffer.from(frame).includes(Buffer.from(secret))).toBe(false);
    expect(Buffer.from(frames[2]!).includes(Buffer.from("echo"))).toBe(false); // tool name is sealed too
    // bob's key can open it, so it was really there.
    const inner = decode(sniffer.sealer.open(fx.key("alice"), frames[2]!)) as { args: { text: string } };
    expect(inner.args.text).toBe(secret);
    await rejectsWith(call.then((e) => Promise.reject(e)), ZmcpError, "timeout");
  });

  it("unknown destination → no_route (by name: unknown_peer; by key: broker's no_route)", async () => {
    const stranger = "0000000000000000000000000000000000000000";
    const err = await rejectsWith(alice.call(stranger, "echo", { text: "x" }), RemoteError, "no_route");
    expect((err as RemoteError).origin).toBe("broker");
    await rejectsWith(alice.call("nobody", "echo", {}), ZmcpError, "unknown_peer");
    await stillServes();
  });

  it("an oversized message → too_large, locally and from the broker", async () => {
    await rejectsWith(alice.call("bob", "echo", { text: "x".repeat(70 * 1024) }), ZmcpError, "too_large");
    const m = await raw("mallory");
    const [header] = m.frames(fx.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: {} });
    await m.socket.send([header, new Uint8Array(65 * 1024)]);
    const nack = nackOf(await m.receive());
    expect(nack.code).toBe("too_large");
    expect(Buffer.from(nack.re!).equals(Buffer.from(decodeHeader(Buffer.from(header)).id))).toBe(true);
    await stillServes();
  });

  it("an expired message is answered expired and not forwarded", async () => {
    const m = await raw("mallory");
    await m.socket.send(m.frames(fx.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "whoami", args: {} }, { exp: Date.now() - 61_000 })); // past the 60 s clock-skew allowance
    expect(nackOf(await m.receive()).code).toBe("expired");
    await stillServes();
  });

  it("garbage frames get bad_frame / too_large, and the broker keeps serving", async () => {
    const m = await raw("mallory");
    const cases: Array<[string, Array<Uint8Array | string>, string]> = [
      ["one frame", ["only"], "bad_frame"],
      ["three frames", ["a", "b", "c"], "bad_frame"],
      ["non-msgpack header", [Buffer.from([0xc1, 0xff, 0x00]), "body"], "bad_frame"],
      ["header not a map", [encodeHeader([1, 2, 3] as unknown as Header), "body"], "bad_frame"],
      ["header with unknown key", [encodeHeader({ v: 1, k: "req", id: newId(), to: fx.key("bob"), exp: Date.now() + 5000, x: 1 } as Header), "b"], "bad_frame"],
      ["huge header", [new Uint8Array(4096), "body"], "too_large"],
      ["wrong version", [encodeHeader({ v: 99, k: "req", id: newId(), to: fx.key("bob"), exp: Date.now() + 5000 }), "b"], "unsupported_version"],
      ["agent sending a nack", [encodeHeader({ v: PROTOCOL_VERSION, k: "nack", id: newId(), to: fx.key("bob"), exp: Date.now() + 5000 }), ""], "bad_frame"],
    ];
    for (const [what, frames, code] of cases) {
      await m.socket.send(frames);
      expect(nackOf(await m.receive()).code, what).toBe(code);
    }
    expect(broker.stats.refused.bad_frame).toBeGreaterThanOrEqual(5);
    await stillServes();
  });

  it("a peer whose queue is full answers busy rather than dropping", async () => {
    // A receiver that never reads, with a tiny broker-side queue.
    await broker.close();
    broker = await startBroker(fx, { sendHighWaterMark: 2 });
    const slow = await raw("bob");
    slow.socket.receiveHighWaterMark = 1;
    const m = await raw("mallory");
    const codes: string[] = [];
    const big = new Uint8Array(48 * 1024); // fills socket buffers quickly
    for (let i = 0; i < 400 && !codes.includes("busy"); i++) {
      const [header] = m.frames(fx.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "x", args: {} });
      await m.socket.send([header, big]);
      try {
        const frames = await m.receive(5);
        codes.push(nackOf(frames).code!);
      } catch {
        // no nack: forwarded
      }
    }
    expect(codes).toContain("busy");
    expect(broker.stats.refused.busy).toBeGreaterThan(0);
  });

  it("an agent restarted with the same key receives its traffic again (handover)", async () => {
    expect(await alice.call("bob", "whoami", {})).toMatchObject({ name: "alice" });
    // A second connection with bob's key takes over at once, even while the first lingers.
    const bob2 = await connectAgent(fx, "bob", broker.endpoint);
    bob2.tool("whoami", { input: z.object({}) }, () => ({ replica: 2 }));
    expect(await alice.call("bob", "whoami", {})).toEqual({ replica: 2 });
    await bob2.close();
    await bob.close();
    bob = whoami(await connectAgent(fx, "bob", broker.endpoint));
    bob.tool("echo", { input: z.object({ text: z.string() }) }, ({ text }) => ({ text }));
    await stillServes();
  });
});
