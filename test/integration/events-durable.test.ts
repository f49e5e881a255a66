/**
 * Durable subscriptions (docs/EVENTS.md "Durable subscriptions", PROTOCOL §19.4) through real
 * broker processes and a real redis-server, with the PSK test sealer (test/support/events-psk.ts):
 * a subscriber offline while 100 are published gets all 100 in order when back; across a broker
 * restart (the declaration is in the store); through a second broker of the same store; a
 * publisher flooding an offline subscriber hits its per-sender share (counted, and seen as a gap);
 * non-durable subscribers get nothing kept; a subscription closed stops the keeping; a broker
 * without a store refuses a durable subscription visibly.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import type { Publication, Subscription, SubscribeOptions } from "../../src/agent/subscriber.js";
import { RemoteError } from "../../src/errors.js";
import { metricSum } from "../../src/support/metrics.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { pskEvents } from "../support/events-psk.js";
import { connectAgent } from "../support/mesh.js";
import { startBrokerProcess, type BrokerProcess } from "../support/process.js";
import { freePort, redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { sleep, waitFor } from "../support/wait.js";

describe.skipIf(!redisAvailable)("events: durable subscriptions through broker processes and redis", () => {
  let fx: CertFixture;
  let redis: RedisFixture;
  const brokers: BrokerProcess[] = [];
  const agents: Agent[] = [];

  beforeEach(async () => {
    fx = tempCerts("alice", "bob", "carol", "dave");
    redis = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await Promise.all(brokers.splice(0).map((b) => b.stop("SIGKILL")));
    await redis.dispose();
    fx.cleanup();
  });

  const broker = async (args: string[] = [], bind?: string) => {
    const b = await startBrokerProcess(fx, { args: ["--store", redis.url, ...args], ...(bind ? { bind } : {}) });
    brokers.push(b);
    return b;
  };
  const connect = async (name: string, endpoint: string | string[]) => {
    const agent = await connectAgent(fx, name, endpoint, { events: pskEvents() });
    agents.push(agent);
    return agent;
  };
  const close = async (agent: Agent) => {
    agents.splice(agents.indexOf(agent), 1);
    await agent.close();
  };
  /** A subscriber collecting what it is handed. */
  const subscribe = async (agent: Agent, pattern: string, options: SubscribeOptions = {}) => {
    const got: Publication[] = [];
    const sub: Subscription = await agent.subscribe(pattern, (e) => void got.push(e), options);
    return { got, sub };
  };
  /**
   * After a close, the broker's socket sees the connection go (copies to it then fail no_route
   * and are stored, whichever happens first: the directory still lists it until its TTL).
   */
  const gone = () => sleep(500);

  it("a durable subscriber offline while 100 are published receives all 100, in order, when back; non-durable ones get nothing kept", async () => {
    const b = await broker();
    let bob = await connect("bob", b.endpoint);
    await subscribe(bob, "news.>", { durable: true });
    const carol = await connect("carol", b.endpoint);
    await subscribe(carol, "news.>"); // not durable
    const dave = await connect("dave", b.endpoint);
    const live = await subscribe(dave, "news.>"); // not durable, stays connected
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_durable_subscriptions") === 1, 10_000, "bob's durable declaration");
    await close(bob);
    await close(carol);
    await gone();
    const alice = await connect("alice", b.endpoint);
    for (let i = 1; i <= 100; i++) await alice.publish("news.world", { i });
    await waitFor(() => live.got.length === 100, 15_000, "dave's 100 live");
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_durable_publications_stored_total") === 100, 15_000, "100 stored for bob");

    bob = await connect("bob", b.endpoint);
    const back = await subscribe(bob, "news.>", { durable: true });
    const carolBack = await subscribe(await connect("carol", b.endpoint), "news.>");
    await waitFor(() => back.got.length >= 100, 20_000, "bob's 100 kept publications");
    await alice.publish("news.world", { i: 101 }); // live now, after the backlog
    await waitFor(() => back.got.length === 101 && carolBack.got.length === 1, 10_000, "the live one");
    expect(back.got.map((e) => (e.data as { i: number }).i)).toEqual(Array.from({ length: 101 }, (_, k) => k + 1));
    expect(back.got.map((e) => e.sequence)).toEqual(Array.from({ length: 101 }, (_, k) => k + 1));
    expect(back.sub.gaps.total).toBe(0);
    // Carol (not durable) got nothing of what was published while she was away, only the live one.
    expect(carolBack.got.map((e) => (e.data as { i: number }).i)).toEqual([101]);
    expect(live.got.map((e) => e.sequence)).toEqual(Array.from({ length: 101 }, (_, k) => k + 1));
    const metrics = await b.scrape();
    expect(metricSum(metrics, "zmcp_broker_durable_publications_stored_total")).toBe(100); // bob's copies only
    expect(metricSum(metrics, "zmcp_broker_durable_delivered_total")).toBe(100);
    expect(bob.stats.dropped).toEqual({});
  });

  it("survives a broker restart: the restarted broker knows the declaration from the store, before the subscriber is back", async () => {
    const bind = `tcp://127.0.0.1:${await freePort()}`;
    let b = await broker([], bind);
    let bob = await connect("bob", b.endpoint);
    await subscribe(bob, "orders.*", { durable: true });
    await close(bob);
    const alice = await connect("alice", b.endpoint);
    await gone();
    for (let i = 1; i <= 30; i++) await alice.publish("orders.new", { i });
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_durable_publications_stored_total") === 30, 15_000, "30 stored");
    await b.stop("SIGKILL");
    brokers.splice(brokers.indexOf(b), 1);
    b = await broker([], bind);
    // Bob has not been heard by this broker: only the store says to keep his publications.
    expect(metricSum(await b.scrape(), "zmcp_broker_durable_subscriptions")).toBe(1);
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_connected_peers") === 1, 15_000, "alice back on the restarted broker");
    for (let i = 31; i <= 60; i++) await alice.publish("orders.new", { i });
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_durable_publications_stored_total") === 30, 15_000, "30 more stored by the new broker");
    bob = await connect("bob", b.endpoint);
    const back = await subscribe(bob, "orders.*", { durable: true });
    await waitFor(() => back.got.length >= 60, 20_000, "60 kept publications");
    expect(back.got.map((e) => (e.data as { i: number }).i)).toEqual(Array.from({ length: 60 }, (_, k) => k + 1));
    expect(back.sub.gaps.total).toBe(0);
  });

  it("two brokers on one store: declared through one, kept by the other, delivered by the first", async () => {
    const a = await broker();
    const b = await broker();
    let bob = await connect("bob", b.endpoint); // bob never talks to broker a
    await subscribe(bob, "docs.>", { durable: true });
    await close(bob);
    // Broker a learns bob's declaration from the store (re-read every few seconds).
    await waitFor(async () => metricSum(await a.scrape(), "zmcp_broker_durable_subscriptions") === 1, 15_000, "a reads the declaration");
    const alice = await connect("alice", a.endpoint);
    for (let i = 1; i <= 40; i++) await alice.publish("docs.indexed", { i });
    await waitFor(async () => metricSum(await a.scrape(), "zmcp_broker_durable_publications_stored_total") === 40, 15_000, "40 stored by a");
    bob = await connect("bob", b.endpoint);
    const back = await subscribe(bob, "docs.>", { durable: true });
    await waitFor(() => back.got.length >= 40, 20_000, "40 through b");
    expect(back.got.map((e) => (e.data as { i: number }).i)).toEqual(Array.from({ length: 40 }, (_, k) => k + 1));
    expect(metricSum(await b.scrape(), "zmcp_broker_durable_delivered_total")).toBe(40);
  });

  it("a publisher flooding an offline durable subscriber hits its per-sender share: counted at the broker, a gap at the subscriber", async () => {
    // 40 per recipient, so one sender may hold 10 for bob.
    const b = await broker(["--store-max-per-recipient", "40"]);
    let bob = await connect("bob", b.endpoint);
    await subscribe(bob, "flood", { durable: true });
    await close(bob);
    await gone();
    const alice = await connect("alice", b.endpoint);
    for (let i = 1; i <= 25; i++) await alice.publish("flood", { i });
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_durable_quota_total") === 15, 15_000, "15 over the share");
    const metrics = await b.scrape();
    expect(metricSum(metrics, "zmcp_broker_durable_publications_stored_total")).toBe(10);
    expect(metricSum(metrics, 'zmcp_broker_publication_copies_dropped_total{reason="quota"}')).toBe(15);
    bob = await connect("bob", b.endpoint);
    const back = await subscribe(bob, "flood", { durable: true });
    await waitFor(() => back.got.length >= 10, 20_000, "the 10 kept");
    await alice.publish("flood", { i: 26 });
    await waitFor(() => back.got.length === 11, 10_000, "the live one");
    expect(back.got.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 26]);
    expect(back.sub.gaps).toEqual({ total: 15, topics: { flood: 15 } });
  });

  it("a subscriber that closes its durable subscription stops the keeping: nothing is stored for it afterwards", async () => {
    const b = await broker();
    let bob = await connect("bob", b.endpoint);
    const first = await subscribe(bob, "alerts.*", { durable: true });
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_durable_subscriptions") === 1, 10_000, "declared");
    await first.sub.close(); // its heartbeat now says dsub: []
    await waitFor(async () => metricSum(await b.scrape(), "zmcp_broker_durable_subscriptions") === 0, 10_000, "the declaration ended");
    await close(bob);
    await gone();
    const alice = await connect("alice", b.endpoint);
    for (let i = 1; i <= 20; i++) await alice.publish("alerts.fire", { i });
    bob = await connect("bob", b.endpoint);
    const back = await subscribe(bob, "alerts.*", { durable: true });
    await alice.publish("alerts.fire", { i: 21 });
    await waitFor(() => back.got.length >= 1, 10_000, "the live one");
    await sleep(1500); // a backlog, had there been one, is delivered before it: nothing else may come
    expect(back.got.map((e) => e.sequence)).toEqual([21]);
    expect(metricSum(await b.scrape(), "zmcp_broker_durable_publications_stored_total")).toBe(0);
  });

  it("a broker without a store refuses a durable subscription (unavailable), and keeps the plain one", async () => {
    const plain = await startBrokerProcess(fx);
    brokers.push(plain);
    const bob = await connect("bob", plain.endpoint);
    const err = await bob.subscribe("news.>", () => undefined, { durable: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe("unavailable");
    const ok = await subscribe(bob, "news.>");
    const alice = await connect("alice", plain.endpoint);
    await alice.publish("news.x", { i: 1 });
    await waitFor(() => ok.got.length === 1, 10_000, "the plain subscription works");
  });
});
