/**
 * issue 10, callee side: the job table and the idempotency answer cache are capped in entries
 * and bytes, per caller and in total (past the caps: `busy`; for the answer cache's bytes, the
 * oldest bodies are dropped instead), and a message's value count is capped before it is decoded.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { ProtocolError, RemoteError } from "../../src/errors.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { encode } from "@msgpack/msgpack";
import { decode } from "@msgpack/msgpack";
import { decodeHeader, encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { generateAuthority, saveAuthority } from "../../src/auth/jwk.js";
import { createToken } from "../../src/auth/tokens.js";
import { rejectsWith } from "../support/assert.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { metricSum, parsePrometheusText } from "../../src/support/metrics.js";
import { rawPeer } from "../support/raw-peer.js";

let fx: CertFixture;
let broker: Broker;
let bob: Agent;
let alice: Agent;
let carol: Agent;
const KB60 = "x".repeat(60_000);

beforeAll(async () => {
  fx = tempCerts("alice", "bob", "carol", "dave", "erin", "mallory");
  broker = await startBroker(fx);
  bob = await connectAgent(fx, "bob", broker.endpoint, {
    jobLimits: { maxBytesPerOwner: 100_000, maxEntriesPerOwner: 50 },
    answerLimits: { maxBytesPerOwner: 100_000, maxBytes: 250_000 },
  });
  bob.tool("big", { input: z.object({ n: z.number() }) }, ({ n }) => ({ n, blob: KB60 }));
  bob.tool("big-job", { input: z.object({ n: z.number() }), job: true }, ({ n }) => ({ n, blob: KB60 }));
  alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false, timeout: 5000, jobPollInterval: 200 });
  carol = await connectAgent(fx, "carol", broker.endpoint, { retry: false, timeout: 5000, jobPollInterval: 200 });
});

afterAll(async () => {
  await Promise.all([alice?.close(), carol?.close(), bob?.close()]);
  await broker?.close();
  fx?.cleanup();
});

describe("byte budgets", () => {
  it("finished jobs count their result bytes per caller: past the cap a new job is refused busy; other callers still start jobs", async () => {
    for (let n = 0; n < 2; n++) expect(await (await alice.start("bob", "big-job", { n })).result).toMatchObject({ n });
    const err = await rejectsWith(alice.start("bob", "big-job", { n: 2 }), RemoteError, "busy");
    expect(err.message).toMatch(/job table full/);
    expect(await (await carol.start("bob", "big-job", { n: 9 })).result).toMatchObject({ n: 9 });
  });

  it("remembered answers count their bytes per caller and in total: past the byte caps the oldest bodies are dropped (calls still answered, the cache stays bounded)", async () => {
    const answers = async () => {
      const values = parsePrometheusText(await bob.metrics.metrics());
      return { bytes: metricSum(values, "zmcp_agent_answer_cache_bytes"), dropped: metricSum(values, "zmcp_agent_answer_bodies_dropped_total") };
    };
    // alice: four 60 KB answers against her 100 KB; carol: four more against the 250 KB total.
    // Before, the third of each was refused busy; now the oldest bodies make room.
    for (let n = 0; n < 4; n++) expect(await alice.call("bob", "big", { n })).toMatchObject({ n });
    for (let n = 0; n < 4; n++) expect(await carol.call("bob", "big", { n })).toMatchObject({ n });
    const held = await answers();
    expect(held.dropped).toBeGreaterThan(0);
    // Bounded: each answer is admitted when what is held is under the caps, so at most one
    // answer (60 KB) over the total.
    expect(held.bytes).toBeLessThanOrEqual(250_000 + 61_000);
  });
});

describe("decoding cost", () => {
  it("a message holding more values than the cap (all containers together) is refused before decoding", () => {
    // 40 maps of 2,000 keys: no single container is large, together they hold 160,000 values.
    const many = Array.from({ length: 40 }, () => Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, i])));
    let err: unknown;
    try {
      checkMsgpack(encode(many), 32);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe("bad_frame");
    expect(String((err as Error).message)).toMatch(/values in one message/);
  });
});

describe("authorization before decoding the arguments", () => {
  it("a request without a token is refused token_missing before its args are decoded; with a token the same args are decoded (and refused bad_frame)", async () => {
    const authority = generateAuthority();
    const publicPath = saveAuthority(authority.privateJwk, fx.dir, "authority").publicPath;
    const dave = await connectAgent(fx, "dave", broker.endpoint, { authority: publicPath, requireToken: true });
    dave.tool("echo", { input: z.unknown() }, (args) => args);
    const m = await rawPeer(fx, "mallory", broker.endpoint);
    try {
      /** A request whose args are a map keyed by a map: valid msgpack that the decoder refuses. */
      const send = async (tok: string | undefined) => {
        const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: fx.key("dave"), exp: Date.now() + 5000 };
        const headerBytes = encodeHeader(header);
        const marker = "ARGS-MARKER";
        const plain = Buffer.from(encodeInner({ t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: marker, ...(tok ? { tok } : {}) }, headerBytes));
        const at = plain.indexOf(Buffer.from(marker));
        const spliced = Buffer.concat([plain.subarray(0, at - 1), Buffer.from([0x81, 0x80, 0x01]), plain.subarray(at + marker.length)]);
        await m.socket.send([headerBytes, m.sealer.seal(fx.key("dave"), spliced)]);
        const [, h, body] = await m.receive(3000);
        expect(decodeHeader(h!).k).toBe("res");
        return decode(m.sealer.open(fx.key("dave"), body!)) as { st: string; error?: { code: string } };
      };
      expect((await send(undefined)).error?.code).toBe("token_missing");
      const tok = createToken({ authority: authority.privateJwk, sub: "mallory", key: fx.key("mallory"), scope: "call:echo" });
      expect((await send(tok)).error?.code).toBe("bad_frame");
      // And well-formed args still reach the tool once the token is checked.
      const erin = await connectAgent(fx, "erin", broker.endpoint, { token: createToken({ authority: authority.privateJwk, sub: "erin", key: fx.key("erin"), scope: "call:echo" }) });
      try {
        expect(await erin.call("dave", "echo", { deep: [1, { x: "y" }] })).toEqual({ deep: [1, { x: "y" }] });
      } finally {
        await erin.close();
      }
    } finally {
      m.close();
      await dave.close();
    }
  });
});

describe("a result larger than a message", () => {
  it("becomes too_large before it is remembered: other callers are not refused busy for holding it", async () => {
    const fx2 = tempCerts("alice", "bob", "carol");
    const broker2 = await startBroker(fx2);
    const agents: Agent[] = [];
    try {
      // A total of 1.5 MB for remembered answers: one 2 MB result held whole would fill it alone.
      const bob2 = await connectAgent(fx2, "bob", broker2.endpoint, { answerLimits: { maxBytes: 1_500_000, maxBytesPerOwner: 1_500_000 } });
      agents.push(bob2);
      bob2.tool("huge", { input: z.object({}) }, () => ({ blob: "x".repeat(2_000_000) }));
      bob2.tool("ping", { input: z.object({}) }, () => "pong");
      const alice2 = await connectAgent(fx2, "alice", broker2.endpoint, { retry: false, timeout: 5000 });
      const carol2 = await connectAgent(fx2, "carol", broker2.endpoint, { retry: false, timeout: 5000 });
      agents.push(alice2, carol2);
      await rejectsWith(alice2.call("bob", "huge", {}), RemoteError, "too_large");
      expect(await carol2.call("bob", "ping", {})).toBe("pong");
      expect(await alice2.call("bob", "ping", {})).toBe("pong");
    } finally {
      for (const a of agents) await a.close();
      await broker2.close();
      fx2.cleanup();
    }
  });
});
