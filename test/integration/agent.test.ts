import { decode } from "@msgpack/msgpack";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { decodeHeader, newId, type Header } from "../../src/wire/envelope.js";
import { ConfigError, RemoteError, TimeoutError, ZmcpError } from "../../src/errors.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { rejectsWith } from "../support/assert.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";


interface Reply {
  header: Header;
  inner: { st: string; result?: unknown; error?: { code: string; message: string } };
}

describe("agent: sealed calls, checks and typed errors", () => {
  let fx: CertFixture;
  let broker: Broker;
  let alice: Agent;
  let bob: Agent;
  let runs = 0;
  const raws: RawPeer[] = [];
  beforeEach(async () => {
    runs = 0;
    fx = tempCerts("alice", "bob", "mallory");
    broker = await startBroker(fx);
    bob = await connectAgent(fx, "bob", broker.endpoint);
    bob
      .tool("batch_sum", { input: z.strictObject({ numbers: z.array(z.number()).min(1) }) }, ({ numbers }) => {
        runs++;
        return { count: numbers.length, total: numbers.reduce((a, b) => a + b, 0) };
      })
      .tool("explode", { input: z.object({}) }, () => {
        throw new Error("kaboom");
      })
      .tool("busy_tool", { input: z.object({}) }, () => {
        throw new ZmcpError("busy", "try later");
      })
      .tool("slow", { input: z.object({ ms: z.number() }) }, ({ ms }) => new Promise((r) => setTimeout(() => r("done"), ms)))
      .tool("bad_output", { input: z.object({}), output: z.object({ n: z.number() }) }, () => ({ n: "nope" }) as unknown as { n: number });
    alice = await connectAgent(fx, "alice", broker.endpoint);
  });
  afterEach(async () => {
    raws.splice(0).forEach((r) => r.close());
    await Promise.all([alice.close(), bob.close()]);
    await broker.close();
    fx.cleanup();
  });
  const mallory = async () => {
    const r = await rawPeer(fx, "mallory", broker.endpoint);
    raws.push(r);
    return r;
  };
  const replyOf = (r: RawPeer, frames: Buffer[]): Reply => {
    expect(frames[0]!.toString("latin1")).toBe(fx.key("bob"));
    return { header: decodeHeader(frames[1]!), inner: decode(r.sealer.open(fx.key("bob"), frames[2]!)) as Reply["inner"] };
  };
  const request = (tool: string, args: unknown) => ({ t: "req" as const, ts: Date.now(), rid: newId(), tool, args });

  it("calls a tool and gets its result", async () => {
    expect(await alice.call("bob", "batch_sum", { numbers: [1, 2, 3.5] })).toEqual({ count: 3, total: 6.5 });
  });

  it("unknown tool → unknown_tool", async () => {
    const err = await rejectsWith(alice.call("bob", "nope", {}), RemoteError, "unknown_tool");
    expect((err as RemoteError).origin).toBe("peer");
  });

  it("invalid arguments → invalid_args, and the tool does not run", async () => {
    await rejectsWith(alice.call("bob", "batch_sum", { numbers: [] }), RemoteError, "invalid_args");
    await rejectsWith(alice.call("bob", "batch_sum", { numbers: ["1"] }), RemoteError, "invalid_args");
    await rejectsWith(alice.call("bob", "batch_sum", { numbers: [1], extra: true }), RemoteError, "invalid_args");
    expect(runs).toBe(0);
  });

  it("a throwing tool → tool_failed, and the agent keeps serving", async () => {
    const err = await rejectsWith(alice.call("bob", "explode", {}), RemoteError, "tool_failed");
    expect(err.message).toContain("kaboom");
    await rejectsWith(alice.call("bob", "busy_tool", {}), RemoteError, "busy");
    await rejectsWith(alice.call("bob", "bad_output", {}), RemoteError, "tool_failed");
    expect(await alice.call("bob", "batch_sum", { numbers: [2] })).toEqual({ count: 1, total: 2 });
  });

  it("a call past its timeout → TimeoutError; an aborted call → aborted; a closed agent → closed", async () => {
    await rejectsWith(alice.call("bob", "slow", { ms: 500 }, { timeout: 100 }), TimeoutError, "timeout");
    const ac = new AbortController();
    const p = alice.call("bob", "slow", { ms: 500 }, { signal: ac.signal });
    ac.abort();
    await rejectsWith(p, ZmcpError, "aborted");
    const pending = alice.call("bob", "slow", { ms: 500 });
    await alice.close();
    await rejectsWith(pending, ZmcpError, "closed");
    await rejectsWith(alice.call("bob", "batch_sum", { numbers: [1] }), ZmcpError, "closed");
  });

  it("arguments that cannot be encoded → invalid_args before anything is sent", async () => {
    await rejectsWith(alice.call("bob", "batch_sum", { numbers: [1n] }), ZmcpError, "invalid_args");
    await rejectsWith(alice.call("bob", "batch_sum", {}, { timeout: -1 }), ConfigError, "config");
  });

  it("a tampered header → bad_seal", async () => {
    const m = await mallory();
    const [, body] = m.frames(fx.key("bob"), request("batch_sum", { numbers: [1] }));
    // Another header (other deadline): it no longer matches the digest sealed in the body.
    const [forged] = m.frames(fx.key("bob"), request("batch_sum", { numbers: [1] }), { exp: Date.now() + 9999 });
    await m.socket.send([forged, body]);
    const reply = replyOf(m, await m.receive());
    expect(reply.inner.st).toBe("error");
    expect(reply.inner.error?.code).toBe("bad_seal");
    expect(runs).toBe(0);
  });

  it("a tampered body → bad_seal", async () => {
    const m = await mallory();
    const [header, body] = m.frames(fx.key("bob"), request("batch_sum", { numbers: [1] }));
    body[body.length - 1] = body[body.length - 1]! ^ 0x01;
    await m.socket.send([header, body]);
    const reply = replyOf(m, await m.receive());
    expect(reply.inner.error?.code).toBe("bad_seal");
    expect(Buffer.from(reply.header.re!).equals(Buffer.from(decodeHeader(Buffer.from(header)).id))).toBe(true);
    expect(runs).toBe(0);
  });

  it("a box sealed for someone else → bad_seal", async () => {
    const m = await mallory();
    const [header] = m.frames(fx.key("bob"), request("batch_sum", { numbers: [1] }));
    const [, bodyForAlice] = m.frames(fx.key("alice"), request("batch_sum", { numbers: [1] }));
    await m.socket.send([header, bodyForAlice]);
    expect(replyOf(m, await m.receive()).inner.error?.code).toBe("bad_seal");
  });

  it("a replayed message → replay, and the tool runs once", async () => {
    const m = await mallory();
    const frames = m.frames(fx.key("bob"), request("batch_sum", { numbers: [4] }));
    await m.socket.send(frames);
    expect(replyOf(m, await m.receive()).inner).toMatchObject({ st: "ok", result: { count: 1, total: 4 } });
    await m.socket.send(frames);
    expect(replyOf(m, await m.receive()).inner.error?.code).toBe("replay");
    expect(runs).toBe(1);
  });

  it("a message stamped outside the replay window → replay", async () => {
    const m = await mallory();
    await m.socket.send(m.frames(fx.key("bob"), { ...request("batch_sum", { numbers: [1] }), ts: Date.now() - 120_000 }));
    expect(replyOf(m, await m.receive()).inner.error?.code).toBe("replay");
    expect(runs).toBe(0);
  });

  it("an inner message with unknown keys or the wrong shape → bad_frame", async () => {
    const m = await mallory();
    await m.socket.send(m.frames(fx.key("bob"), { ...request("batch_sum", { numbers: [1] }), extra: 1 } as never));
    expect(replyOf(m, await m.receive()).inner.error?.code).toBe("bad_frame");
    let deep: unknown = 1;
    for (let i = 0; i < 50; i++) deep = [deep]; // deeper than MAX_DEPTH (32)
    await m.socket.send(m.frames(fx.key("bob"), request("batch_sum", { numbers: deep })));
    expect(replyOf(m, await m.receive()).inner.error?.code).toBe("bad_frame");
    expect(await alice.call("bob", "batch_sum", { numbers: [1] })).toEqual({ count: 1, total: 1 });
  });
});
