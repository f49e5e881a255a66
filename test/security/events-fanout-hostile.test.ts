/**
 * Publish-subscribe against hostile peers (docs/EVENTS.md): subscription floods and malformed
 * patterns or topics get typed refusals and leave the broker process up with a bounded
 * directory; forged, tampered, replayed and stale publications are dropped by subscribers
 * and counted; handlers that throw anything or never settle harm nothing else; values
 * subscribers could not read are refused at the sender; a sealer's refusal to join
 * propagates; a displaced or revoked key's subscriptions are gone.
 */
import { unlinkSync } from "node:fs";
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { metricSum } from "../../src/support/metrics.js";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { rejectsWith } from "../support/assert.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { PskSealer, pskEvents } from "../support/events-psk.js";
import type { EventKeyContext } from "../../src/events/sealer.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import { rssOf, startBrokerProcess, MiB, type BrokerProcess } from "../support/process.js";
import { drain, rawPeer, type RawPeer } from "../support/raw-peer.js";
import { sleep, waitFor } from "../support/wait.js";

/** A heartbeat as a raw peer sends it, with any body. */
async function heartbeat(raw: RawPeer, body: unknown): Promise<Header> {
  const header: Header = { v: PROTOCOL_VERSION, k: "hb", id: newId(), to: "", exp: Date.now() + 5000 };
  await raw.socket.send([encodeHeader(header), Buffer.from(encode(body))]);
  return answerTo(raw, header);
}

/** The broker's answer (ack or nack) to `sent`, skipping anything else. */
async function answerTo(raw: RawPeer, sent: Header): Promise<Header> {
  for (let i = 0; i < 1000; i++) {
    const frames = await raw.receive(5000);
    if (frames[0]!.length !== 0) continue;
    const header = decodeHeader(frames[1]!);
    if (header.re && Buffer.from(header.re).equals(Buffer.from(sent.id))) return header;
  }
  throw new Error("no answer");
}

/** A `pub` as a raw peer sends it: header fields patched at will, body given. */
function pubFrames(topic: string, body: Uint8Array, patch: Partial<Header> = {}): [Uint8Array, Uint8Array, Header] {
  const header: Header = { v: PROTOCOL_VERSION, k: "pub", id: newId(), to: topic, exp: Date.now() + 60_000, sq: 1, ...patch };
  return [encodeHeader(header), body, header];
}

describe("events, hostile: subscription floods and malformed patterns against a broker process", () => {
  let fx: CertFixture;
  let broker: BrokerProcess | undefined;
  const agents: Agent[] = [];
  const raws: RawPeer[] = [];
  beforeEach(() => {
    fx = tempCerts("alice", "bob", "mallory", "eve");
  });
  afterEach(async () => {
    raws.splice(0).forEach((r) => r.close());
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker?.stop("SIGKILL");
    broker = undefined;
    fx.cleanup();
  });
  const raw = async (name: string) => {
    const r = await rawPeer(fx, name, broker!.endpoint);
    raws.push(r);
    return r;
  };

  it("10,000 patterns, huge patterns, invalid patterns and topics are refused with typed nacks; the directory stays bounded and the broker serves on", async () => {
    broker = await startBrokerProcess(fx, { args: ["--max-subscriptions", "300"] });
    const mallory = await raw("mallory");
    const rssBefore = await rssOf(broker);

    expect(await heartbeat(mallory, { svc: [], sub: Array.from({ length: 10_000 }, (_, i) => `t${i}`) })).toMatchObject({ k: "nack", code: "bad_frame" });
    expect(await heartbeat(mallory, { svc: [], sub: ["a".repeat(10_000)] })).toMatchObject({ k: "nack", code: "bad_frame" });
    expect(await heartbeat(mallory, { svc: [], sub: ["a".repeat(129)] })).toMatchObject({ k: "nack", code: "bad_frame" });
    for (const bad of ["a..b", ">.a", "a.*x", "ünï", "", 7, null, { a: 1 }]) {
      expect(await heartbeat(mallory, { svc: [], sub: [bad] }), JSON.stringify(bad)).toMatchObject({ k: "nack", code: "bad_frame" });
    }
    expect(await heartbeat(mallory, { svc: [], sub: "a.b" })).toMatchObject({ k: "nack", code: "bad_frame" });
    expect(metricSum(await broker.scrape(), "zmcp_broker_subscription_patterns")).toBe(0);

    // A flood of full heartbeats, each with 256 fresh patterns: each replaces the last.
    for (let round = 0; round < 200; round++) {
      const answer = await heartbeat(mallory, { svc: [], sub: Array.from({ length: 256 }, (_, i) => `r${round}.p${i}.${"x".repeat(100)}`) });
      expect(answer.k).toBe("ack");
    }
    expect(metricSum(await broker.scrape(), "zmcp_broker_subscription_patterns")).toBe(256);
    // Past the broker's bound (300 here) another key's set is refused busy, whole.
    const eve = await raw("eve");
    expect(await heartbeat(eve, { svc: [], sub: Array.from({ length: 100 }, (_, i) => `e${i}`) })).toMatchObject({ k: "nack", code: "busy" });
    expect(metricSum(await broker.scrape(), "zmcp_broker_subscription_patterns")).toBe(256);
    expect(await heartbeat(eve, { svc: [], sub: Array.from({ length: 44 }, (_, i) => `e${i}`) })).toMatchObject({ k: "ack" });
    expect(metricSum(await broker.scrape(), "zmcp_broker_subscription_patterns")).toBe(300);

    // Publications with a bad topic or without their sequence number: refused, answered with their id.
    for (const [topic, patch, why] of [
      ["a.*", {}, "wildcard"],
      ["", {}, "empty"],
      ["a..b", {}, "empty token"],
      ["svc:x", {}, "a service address"],
      ["a.b", { sq: undefined }, "no sq"],
      ["a.b", { dur: true as const }, "dur"],
    ] as Array<[string, Partial<Header>, string]>) {
      const [h, b, header] = pubFrames(topic, new Uint8Array(64), patch); // an undefined field is not encoded
      await mallory.socket.send([h, b]);
      expect(await answerTo(mallory, header), why).toMatchObject({ k: "nack", code: "bad_frame" });
    }

    // Still up and routing: a subscriber gets a publication.
    const bob = await connectAgent(fx, "bob", broker.endpoint, { events: pskEvents() });
    agents.push(bob);
    const alice = await connectAgent(fx, "alice", broker.endpoint, { events: pskEvents() });
    agents.push(alice);
    // The directory is full: bob's subscription is refused busy, typed, and not held.
    await rejectsWith(bob.subscribe("ok.*", () => undefined), RemoteError, "busy");
    for (const r of raws.splice(0)) r.close();
    // Mallory and eve gone and unheard, their entries expire; bob's next try is accepted.
    const got: unknown[] = [];
    await waitFor(
      async () => {
        try {
          await bob.subscribe("ok.*", (e) => void got.push(e.data));
          return true;
        } catch {
          return false;
        }
      },
      20_000,
      "room in the directory once mallory's and eve's heartbeats stop",
    );
    await alice.publish("ok.go", { fine: true });
    await waitFor(() => got.length === 1, 5000, "the publication");
    expect(await rssOf(broker) - rssBefore).toBeLessThan(64 * MiB);
    expect(broker.alive()).toBe(true);
  }, 90_000);
});

describe("events, hostile: what subscribers drop", () => {
  let fx: CertFixture;
  let broker: Broker;
  const agents: Agent[] = [];
  const raws: RawPeer[] = [];
  beforeEach(async () => {
    fx = tempCerts("alice", "bob", "mallory", "carol");
    broker = await startBroker(fx);
  });
  afterEach(async () => {
    raws.splice(0).forEach((r) => r.close());
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await broker.close();
    fx.cleanup();
  });
  const connect = async (name: string, options: Parameters<typeof connectAgent>[3] = {}) => {
    const a = await connectAgent(fx, name, broker.endpoint, { events: pskEvents(), ...options });
    agents.push(a);
    return a;
  };
  const raw = async (name: string) => {
    const r = await rawPeer(fx, name, broker.endpoint);
    raws.push(r);
    return r;
  };

  it("a publication re-sent under another key, with a tampered header, claiming another publisher, or not sealed is dropped bad_seal; an honest one goes through", async () => {
    const bob = await connect("bob");
    const alice = await connect("alice");
    const got: Array<{ from: string; data: unknown }> = [];
    const sub = await bob.subscribe("news.>", (e) => void got.push({ from: e.from, data: e.data }));
    const mallory = await raw("mallory");
    expect(await heartbeat(mallory, { svc: [], sub: ["news.>"] })).toMatchObject({ k: "ack" });
    await alice.publish("news.today", { honest: "alice" });
    await waitFor(() => got.length === 1, 5000, "alice's publication");
    // Mallory captured alice's publication as a subscriber.
    let captured: Buffer[] | undefined;
    for (const frames of await drain(mallory, 500)) if (frames[0]!.length > 0) captured = frames;
    expect(captured![0]!.toString("latin1")).toBe(alice.publicKey);
    const [, aliceHeader, aliceBody] = captured!;

    // 1. Re-published under mallory's key as it is: the sealed publisher is alice, the sender mallory.
    await mallory.socket.send([aliceHeader!, aliceBody!]);
    // 2. Alice's body under a header of mallory's making (another sequence number): the digest fails.
    const tampered = { ...decodeHeader(aliceHeader!), id: newId(), sq: 99 };
    await mallory.socket.send([encodeHeader(tampered), aliceBody!]);
    // 3. Sealed with the group key (mallory is a member) but claiming to be alice.
    const forger = new PskSealer({ publicKey: alice.publicKey, call: () => Promise.resolve(undefined), signal: new AbortController().signal });
    const [fh] = pubFrames("news.today", new Uint8Array(0), { sq: 5 });
    await mallory.socket.send([fh, await forger.seal("news.today", fh, { forged: true })]);
    // 4. Not sealed at all.
    const [gh, gb] = pubFrames("news.today", new Uint8Array(Buffer.from("garbage".repeat(10))), { sq: 6 });
    await mallory.socket.send([gh, gb]);
    await waitFor(() => (bob.stats.dropped["bad_seal"] ?? 0) === 4, 5000, "four publications dropped bad_seal");
    // 5. Honest: mallory's own publication under her own key is delivered, from her.
    const honest = new PskSealer({ publicKey: fx.key("mallory"), call: () => Promise.resolve(undefined), signal: new AbortController().signal });
    const [hh] = pubFrames("news.today", new Uint8Array(0), { sq: 7 });
    await mallory.socket.send([hh, await honest.seal("news.today", hh, { from: "mallory" })]);
    await waitFor(() => got.length === 2, 5000, "mallory's honest publication");
    expect(got).toEqual([
      { from: alice.publicKey, data: { honest: "alice" } },
      { from: fx.key("mallory"), data: { from: "mallory" } },
    ]);
    expect(bob.stats.dropped["bad_seal"]).toBe(4);
    expect(sub.gaps.total).toBe(0);
  }, 30_000);

  it("a sealer slow to open one publication does not let later ones overtake it: delivered in arrival order, no false gap", async () => {
    let opens = 0;
    const slowFirst = (context: EventKeyContext) => {
      const psk = new PskSealer(context);
      return Object.assign(Object.create(psk) as PskSealer, {
        open: async (...args: Parameters<PskSealer["open"]>) => {
          if (++opens === 1) await sleep(300); // the first publication's key takes a while
          return psk.open(...args);
        },
        join: (p: string) => psk.join(p),
        leave: (p: string) => psk.leave(p),
        close: () => psk.close(),
        seal: (...args: Parameters<PskSealer["seal"]>) => psk.seal(...args),
      });
    };
    const bob = await connect("bob", { events: slowFirst });
    const alice = await connect("alice");
    const seen: number[] = [];
    const sub = await bob.subscribe("o.*", (e) => void seen.push(e.sequence));
    for (let i = 0; i < 5; i++) await alice.publish("o.x", i);
    await waitFor(() => seen.length === 5, 5000, "five publications");
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(sub.gaps.total).toBe(0);
  });

  it("a publication older than the replay window, and the same publication twice, are dropped and counted", async () => {
    const bob = await connect("bob");
    const got: unknown[] = [];
    await bob.subscribe("t.*", (e) => void got.push(e.data));
    const mallory = await raw("mallory");
    const sealer = new PskSealer({ publicKey: fx.key("mallory"), call: () => Promise.resolve(undefined), signal: new AbortController().signal });
    // Published 90 s ago (exp = its time + 60 s): still within the broker's clock skew, outside bob's 60 s window.
    const [oh] = pubFrames("t.old", new Uint8Array(0), { exp: Date.now() - 30_000, sq: 1 });
    await mallory.socket.send([oh, await sealer.seal("t.old", oh, "old")]);
    const [nh] = pubFrames("t.new", new Uint8Array(0), { sq: 2 });
    const nb = await sealer.seal("t.new", nh, "new");
    await mallory.socket.send([nh, nb]);
    await mallory.socket.send([nh, nb]);
    await waitFor(() => (bob.stats.dropped["refused"] ?? 0) === 2, 5000, "the old one and the replay dropped");
    await sleep(100);
    expect(got).toEqual(["new"]);
  });

  it("handlers that throw anything, reject, have a throwing then, or never settle harm neither the agent nor other subscriptions", async () => {
    const bob = await connect("bob");
    bob.tool("ping", { input: z.object({}) }, () => "pong");
    const alice = await connect("alice");
    const runs: Record<string, number> = {};
    const count = (k: string) => (runs[k] = (runs[k] ?? 0) + 1);
    const weird: Record<string, () => unknown> = {
      error: () => {
        throw new Error("boom");
      },
      string: () => {
        throw "a string";
      },
      nullProto: () => {
        throw Object.create(null);
      },
      rejectUndefined: () => Promise.reject(undefined),
      thenThrows: () => ({
        then() {
          throw new Error("then throws");
        },
      }),
      never: () => new Promise(() => undefined),
      value: () => 42,
    };
    for (const [name, fn] of Object.entries(weird)) {
      await bob.subscribe("w.*", () => {
        count(name);
        return fn();
      });
    }
    let normal = 0;
    await bob.subscribe("w.*", () => void normal++);
    for (let i = 0; i < 5; i++) await alice.publish("w.x", i);
    await waitFor(() => normal === 5, 5000, "the normal subscription to get all 5");
    await waitFor(() => bob.stats.publicationHandlerErrors === 25, 5000, "25 handler failures counted");
    expect(runs).toMatchObject({ error: 5, string: 5, nullProto: 5, rejectUndefined: 5, thenThrows: 5, never: 1, value: 5 });
    expect(await alice.call("bob", "ping", {})).toBe("pong");
  });

  it("publications draw on the sender's rate limit and are held to the size cap: refused with nacks, counted at the publisher", async () => {
    const limited = await startBroker(fx, { rateLimit: { perSecond: 1, burst: 2 }, maxMessageBytes: 64 * 1024 });
    try {
      const mallory = await rawPeer(fx, "mallory", limited.endpoint);
      raws.push(mallory);
      const sealer = new PskSealer({ publicKey: fx.key("mallory"), call: () => Promise.resolve(undefined), signal: new AbortController().signal });
      for (let i = 1; i <= 5; i++) {
        const [h] = pubFrames("rl.x", new Uint8Array(0), { sq: i });
        await mallory.socket.send([h, await sealer.seal("rl.x", h, i)]);
      }
      // An accepted publication is not answered; a refused one is, with a nack.
      const codes = (await drain(mallory, 500)).map((f) => decodeHeader(f[1]!)).map((h) => `${h.k} ${h.code}`);
      expect(codes.length).toBeGreaterThanOrEqual(3);
      expect(new Set(codes)).toEqual(new Set(["nack rate_limited"]));
      expect(limited.stats.published).toBe(5 - codes.length);
      const alice = await connectAgent(fx, "alice", limited.endpoint, { events: pskEvents(), maxMessageBytes: 1 << 20 });
      agents.push(alice);
      await alice.publish("big.x", "z".repeat(100_000)); // resolves: refusals come back later
      await waitFor(() => (limited.stats.refused.too_large ?? 0) === 1, 5000, "too_large");
      await waitFor(() => (alice.stats.dropped["nack"] ?? 0) === 1, 5000, "the refusal counted at the publisher");
      await rejectsWith(alice.publish("big.x", "z".repeat(2 << 20)), ZmcpError, "too_large"); // past its own cap: refused before sending
    } finally {
      await limited.close();
    }
  });

  it("a value subscribers could not read is refused at the publisher with invalid_args, and nothing is sent", async () => {
    const alice = await connect("alice");
    const deep: Record<string, unknown> = {};
    let at = deep;
    for (let i = 0; i < 40; i++) at = at["d"] = {};
    for (const [what, value] of [
      ["a Date", new Date()],
      ["a Map", new Map([["a", 1]])],
      ["a BigInt", 1n],
      ["a lone surrogate", "\ud800"],
      ["a function", () => 1],
      ["a class instance", new (class Thing {})()],
      ["nested too deep", deep],
    ] as Array<[string, unknown]>) {
      const err = await rejectsWith(alice.publish("t.x", { value }), ZmcpError, "invalid_args");
      expect(err.message, what).toMatch(/data/);
    }
    expect(alice.stats.published).toBe(0);
    expect(broker.stats.published).toBe(0);
  });

  it("a sealer that refuses to join makes subscribe reject with its error, and the broker never hears of the pattern", async () => {
    const calls: string[] = [];
    const bob = await connect("bob", { events: pskEvents({ calls, refuseJoin: (p) => (p.startsWith("secret.") ? new ZmcpError("token_scope", `no sub:${p}`) : undefined) }) });
    await rejectsWith(bob.subscribe("secret.>", () => undefined), ZmcpError, "token_scope");
    expect(broker.subscriptions()).toEqual({});
    const sub = await bob.subscribe("open.*", () => undefined);
    expect(broker.subscriptions()).toEqual({ [bob.publicKey]: ["open.*"] });
    await sub.close();
    expect(calls).toEqual(["join secret.>", "join open.*", "leave open.*"]);
    await waitFor(() => Object.keys(broker.subscriptions()).length === 0, 5000, "the pattern withdrawn");
  });

  it("a second process with the same key displaces the first: its subscriptions are gone from the broker, nothing is delivered to either", async () => {
    const bob = await connect("bob");
    const alice = await connect("alice");
    let got = 0;
    await bob.subscribe("d.*", () => void got++);
    expect(Object.keys(broker.subscriptions())).toEqual([bob.publicKey]);
    const bob2 = await connect("bob");
    expect((await bob.closed)?.code).toBe("displaced");
    expect(broker.subscriptions()).toEqual({});
    await alice.publish("d.x", 1);
    await sleep(300);
    expect(got).toBe(0);
    expect(bob2.stats.dropped["unsolicited"] ?? 0).toBe(0);
    expect(broker.stats.fanout).toBe(0);
  });

  it("a key removed from the allowlist loses its subscriptions at the reload", async () => {
    const carol = await connect("carol");
    const alice = await connect("alice");
    await carol.subscribe("r.*", () => undefined);
    expect(Object.keys(broker.subscriptions())).toEqual([carol.publicKey]);
    unlinkSync(join(fx.dir, "carol.key"));
    broker.reloadAllowlist();
    expect(broker.subscriptions()).toEqual({});
    expect((await carol.closed)?.code).toBe("revoked");
    await alice.publish("r.x", 1);
    await sleep(200);
    expect(broker.stats.fanout).toBe(0);
  });
});
