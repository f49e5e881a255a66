/**
 * Publish-subscribe fan-out (docs/EVENTS.md) through real broker processes, with the PSK test
 * sealer (test/support/events-psk.ts) standing in for the group keys: wildcard matching to 50
 * subscribers, subscriptions restored from heartbeats after a broker SIGKILL, a slow (stuck,
 * then SIGSTOPped) subscriber counting what it missed while others get everything, and a raw
 * subscriber showing that what the broker forwards does not hold the plaintext.
 */
import { decode } from "@msgpack/msgpack";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import type { Publication, Subscription } from "../../src/agent/subscriber.js";
import { ConfigError, ZmcpError } from "../../src/errors.js";
import { decodeHeader, encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { metricSum } from "../../src/support/metrics.js";
import { rejectsWith } from "../support/assert.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { pskEvents } from "../support/events-psk.js";
import { connectAgent } from "../support/mesh.js";
import { built, spawnChild, startBrokerProcess, type BrokerProcess, type Child } from "../support/process.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";
import { freePort } from "../support/redis.js";
import { sleep, waitFor } from "../support/wait.js";

describe("events: fan-out through a broker process", () => {
  let fx: CertFixture;
  let broker: BrokerProcess | undefined;
  const agents: Agent[] = [];
  const children: Child[] = [];
  const raws: RawPeer[] = [];

  beforeEach(() => {
    fx = tempCerts("alice", "bob", "carol", "mallory");
  });
  afterEach(async () => {
    raws.splice(0).forEach((r) => r.close());
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await Promise.all(children.splice(0).map((c) => c.stop("SIGKILL")));
    await broker?.stop("SIGKILL");
    broker = undefined;
    fx.cleanup();
  });

  const connect = async (name: string, options: Parameters<typeof connectAgent>[3] = {}) => {
    const agent = await connectAgent(fx, name, broker!.endpoint, { events: pskEvents(), ...options });
    agents.push(agent);
    return agent;
  };

  it("fans out to 50 subscribers with * and > patterns: each gets exactly the matching publications, once", async () => {
    for (let i = 0; i < 50; i++) fx.add(`sub${i}`);
    broker = await startBrokerProcess(fx);
    // Each pattern with the topics it must receive, written out by hand (not by the matcher under test).
    const expected: Record<string, string[]> = {
      "docs.*": ["docs.indexed", "docs.deleted"],
      "docs.>": ["docs.indexed", "docs.deleted", "docs.a.v2", "docs.a.b.c"],
      "docs.indexed": ["docs.indexed"],
      "*.indexed": ["docs.indexed", "news.indexed"],
      "docs.*.v2": ["docs.a.v2"],
      docs: ["docs"],
      ">": ["docs.indexed", "docs.deleted", "docs.a.v2", "docs.a.b.c", "news.indexed", "docs", "other"],
      "news.>": ["news.indexed"],
    };
    const patterns = Object.keys(expected);
    const topics = ["docs.indexed", "docs.deleted", "docs.a.v2", "docs.a.b.c", "news.indexed", "docs", "other"];
    interface Sub {
      agent: number;
      pattern: string;
      got: string[];
    }
    const subs: Sub[] = [];
    const subscribers: Agent[] = [];
    for (let i = 0; i < 50; i++) {
      subscribers.push(await connect(`sub${i}`));
    }
    const alice = await connect("alice");
    await Promise.all(
      subscribers.map(async (agent, i) => {
        // Every seventh subscriber holds a second subscription whose pattern overlaps the first.
        const mine = i % 7 === 0 ? [patterns[i % patterns.length]!, "*.indexed"] : [patterns[i % patterns.length]!];
        for (const pattern of mine) {
          const sub: Sub = { agent: i, pattern, got: [] };
          subs.push(sub);
          await agent.subscribe(pattern, (event) => void sub.got.push(`${event.topic}|${String((event.data as { n: number }).n)}|${event.from === alice.publicKey}`));
        }
      }),
    );
    for (const [n, topic] of topics.entries()) await alice.publish(topic, { n });
    const wanted = subs.reduce((sum, s) => sum + expected[s.pattern]!.length, 0);
    await waitFor(() => subs.reduce((sum, s) => sum + s.got.length, 0) >= wanted, 15_000, `${wanted} deliveries`);
    await sleep(300); // anything extra (a duplicate, a wrong match) would land now
    for (const sub of subs) {
      const want = expected[sub.pattern]!.map((t) => `${t}|${topics.indexOf(t)}|true`);
      expect(sub.got.sort(), `subscriber ${sub.agent} on ${sub.pattern}`).toEqual(want.sort());
    }
    // The broker sent each key one copy per matching topic, however many of its patterns matched.
    const copies = subscribers.reduce((sum, _, i) => {
      const mine = i % 7 === 0 ? [patterns[i % patterns.length]!, "*.indexed"] : [patterns[i % patterns.length]!];
      return sum + new Set(mine.flatMap((p) => expected[p]!)).size;
    }, 0);
    const metrics = await broker.scrape();
    expect(metricSum(metrics, "zmcp_broker_publication_copies_total")).toBe(copies);
    expect(metricSum(metrics, "zmcp_broker_publications_total")).toBe(topics.length);
    expect(metricSum(metrics, "zmcp_broker_subscribers")).toBe(50);
    // The publisher subscribed to nothing and received nothing back.
    expect(alice.stats.publications).toBe(0);
    expect(subscribers.reduce((n, a) => n + a.stats.publicationGaps, 0)).toBe(0);
  }, 60_000);

  it("a broker SIGKILLed and restarted on the same port has the subscriptions back from heartbeats; publications flow again", async () => {
    const bind = `tcp://127.0.0.1:${await freePort()}`;
    broker = await startBrokerProcess(fx, { bind, args: ["--heartbeat-interval", "300"] });
    const fast = { heartbeatInterval: 300 };
    const bob = await connect("bob", fast);
    const alice = await connect("alice", fast);
    const got: Publication[] = [];
    const sub = await bob.subscribe("orders.>", (event) => void got.push(event));
    await alice.publish("orders.new", { before: true });
    await waitFor(() => got.length === 1, 5000, "the first publication");

    broker.kill("SIGKILL");
    await broker.exited;
    broker = await startBrokerProcess(fx, { bind, args: ["--heartbeat-interval", "300"] });
    // No operator action: the agents redial, and bob's heartbeat carries his patterns.
    await waitFor(async () => metricSum(await broker!.scrape(), "zmcp_broker_subscription_patterns") === 1, 15_000, "bob's subscription in the new broker");
    let sent = 0;
    await waitFor(
      async () => {
        await alice.publish("orders.paid", { after: ++sent });
        return got.length > 1;
      },
      15_000,
      "a publication through the restarted broker",
    );
    const after = got.slice(1);
    expect(after[0]!.topic).toBe("orders.paid");
    expect(after[0]!.from).toBe(alice.publicKey);
    expect(after[0]!.name).toBe("alice");
    // The publisher's sequence went on across the broker restart: every publication is either received or counted missed.
    await sleep(200);
    expect(got.length + sub.gaps.total).toBe(1 + sent);
  }, 60_000);

  it("a subscriber whose handler never returns misses what its queue cannot hold, counted per topic; the publisher and a fast subscriber are unaffected", async () => {
    broker = await startBrokerProcess(fx);
    const bob = await connect("bob");
    const carol = await connect("carol");
    const alice = await connect("alice");
    let started = 0;
    const stuck = await bob.subscribe("sensor.*", () => {
      started++;
      return new Promise(() => undefined); // never settles
    }, { maxQueue: 5 });
    let fast = 0;
    await carol.subscribe("sensor.*", () => void fast++);
    for (let i = 0; i < 100; i++) await alice.publish(i % 2 === 0 ? "sensor.a" : "sensor.b", { i });
    await waitFor(() => fast === 100, 10_000, "the fast subscriber to get all 100");
    await waitFor(() => stuck.gaps.total === 94, 5000, "94 counted missed");
    expect(started).toBe(1);
    expect(stuck.delivered).toBe(1);
    expect(stuck.queued).toBe(5);
    expect(stuck.gaps.topics).toEqual({ "sensor.a": 47, "sensor.b": 47 });
    expect(bob.stats.publicationGaps).toBe(94);
    expect(carol.stats.publicationGaps).toBe(0);
  }, 30_000);

  it("a SIGSTOPped subscriber process counts everything it missed once it runs again; the publisher and a fast subscriber get everything", async () => {
    broker = await startBrokerProcess(fx, { args: ["--heartbeat-interval", "300", "--heartbeat-timeout", "1000"] });
    const frozen = await spawnChild(built("test/support/events-subscriber.js"), ["--cert", fx.secretPath("bob"), "--certs", fx.dir, "--broker", broker.endpoint, "--pattern", "ticks.>", "--heartbeat", "300"], "subscriber ready");
    children.push(frozen);
    const carol = await connect("carol", { heartbeatInterval: 300 });
    let fast = 0;
    await carol.subscribe("ticks.>", () => void fast++);
    const alice = await connect("alice", { heartbeatInterval: 300 });
    let published = 0;
    const publish = async (n: number) => {
      for (let i = 0; i < n; i++) await alice.publish("ticks.one", { n: ++published, pad: "x".repeat(200) });
    };
    const counts = () => [...frozen.logs].reverse().find((l) => l["msg"] === "counts") as { delivered: number; gaps: number; last: number } | undefined;
    await publish(10);
    await waitFor(() => counts()?.delivered === 10, 10_000, "the subscriber process to get the first 10");

    frozen.kill("SIGSTOP");
    await sleep(1500); // past the broker's heartbeat timeout: copies to it are dropped, not queued
    await publish(50);
    // Silent past the timeout, the frozen key left the broker's directory: only carol is left.
    expect(metricSum(await broker.scrape(), "zmcp_broker_subscribers")).toBe(1);
    frozen.kill("SIGCONT");
    // Publish until the process receives again: it then knows, from the sequence, what it missed.
    await waitFor(
      async () => {
        await publish(1);
        await sleep(50);
        const c = counts();
        return c !== undefined && c.last === published && c.delivered + c.gaps === published;
      },
      20_000,
      "the resumed subscriber to account for every publication",
    );
    const c = counts()!;
    expect(c.gaps).toBeGreaterThanOrEqual(50);
    expect(c.delivered + c.gaps).toBe(published);
    await waitFor(() => fast === published, 5000, "the fast subscriber to get everything");
    expect(carol.stats.publicationGaps).toBe(0);
    // Back: its heartbeats announced it again, without anyone's help.
    expect(metricSum(await broker.scrape(), "zmcp_broker_subscribers")).toBe(2);
  }, 60_000);

  it("a SIGSTOPped subscriber whose queue fills at the broker: copies dropped busy (counted by reason), the publisher never waits, the subscriber counts them from the sequence", async () => {
    // Queues of 16 messages toward each peer; a long heartbeat timeout so the frozen key stays routable.
    broker = await startBrokerProcess(fx, { args: ["--queue-bytes", String(1024 * 1024), "--heartbeat-timeout", "60000"] });
    const frozen = await spawnChild(built("test/support/events-subscriber.js"), ["--cert", fx.secretPath("bob"), "--certs", fx.dir, "--broker", broker.endpoint, "--pattern", "bulk.*"], "subscriber ready");
    children.push(frozen);
    const carol = await connect("carol");
    let fast = 0;
    await carol.subscribe("bulk.*", () => void fast++, { maxQueue: 10_000, maxQueueBytes: 1 << 30 });
    const alice = await connect("alice");
    const counts = () => [...frozen.logs].reverse().find((l) => l["msg"] === "counts") as { delivered: number; gaps: number; last: number } | undefined;
    const pad = "y".repeat(200_000);
    let published = 0;
    await alice.publish("bulk.x", { n: ++published, pad });
    await waitFor(() => counts()?.delivered === 1, 10_000, "the first publication in the subscriber process");
    frozen.kill("SIGSTOP");
    // 40 MB toward a process that reads nothing: more than its socket buffers and the 16-message
    // queue hold. In batches of 10 that carol (who reads) takes in before the next: the queues
    // toward her are as small as bob's, and she must lose nothing while he is frozen.
    for (let batch = 0; batch < 20; batch++) {
      for (let i = 0; i < 10; i++) await alice.publish("bulk.x", { n: ++published, pad });
      await waitFor(() => fast === published, 20_000, "the fast subscriber to keep up");
    }
    const busyDrops = async () => (await broker!.scrape()).get(`zmcp_broker_publication_copies_dropped_total{reason="busy"}`) ?? 0;
    await waitFor(async () => (await busyDrops()) > 0, 10_000, "copies dropped busy");
    frozen.kill("SIGCONT");
    await waitFor(
      async () => {
        await alice.publish("bulk.x", { n: ++published });
        await sleep(100);
        const c = counts();
        return c !== undefined && c.last === published && c.delivered + c.gaps === published;
      },
      30_000,
      "the resumed subscriber to account for every publication",
    );
    const dropped = await busyDrops();
    expect(dropped).toBeGreaterThan(0);
    expect(counts()!.gaps).toBeGreaterThanOrEqual(dropped);
    expect(carol.stats.publicationGaps).toBe(0);
  }, 90_000);

  it("the broker forwards publications byte for byte and cannot read them: a raw subscriber sees no plaintext", async () => {
    broker = await startBrokerProcess(fx);
    const alice = await connect("alice");
    const raw = await rawPeer(fx, "mallory", broker.endpoint);
    raws.push(raw);
    // Subscribe as a raw peer: a heartbeat whose body carries the pattern.
    const hb = { v: PROTOCOL_VERSION, k: "hb" as const, id: newId(), to: "", exp: Date.now() + 5000 };
    await raw.socket.send([encodeHeader(hb), Buffer.from([0x82, 0xa3, 0x73, 0x76, 0x63, 0x90, 0xa3, 0x73, 0x75, 0x62, 0x91, 0xa8, ...Buffer.from("secret.>")])]);
    const ack = await raw.receive(5000);
    expect(decodeHeader(ack[1]!).k).toBe("ack");
    const marker = "PLAINTEXT-MARKER-0123456789";
    await alice.publish("secret.plans", { text: marker, bytes: new Uint8Array(Buffer.from(marker)) });
    const frames = await raw.receive(5000);
    expect(frames).toHaveLength(3);
    expect(frames[0]!.toString("latin1")).toBe(alice.publicKey);
    const header = decodeHeader(frames[1]!);
    expect(header).toMatchObject({ k: "pub", to: "secret.plans", sq: 1 });
    const all = Buffer.concat(frames);
    expect(all.includes(Buffer.from(marker))).toBe(false);
    expect(all.includes(Buffer.from(marker, "utf16le"))).toBe(false);
    // What the broker forwards is not msgpack of the data either: the body is a sealed box.
    expect(() => decode(frames[2]!)).toThrow();
  }, 30_000);

  it("publish and subscribe without the events option reject with ConfigError saying so", async () => {
    broker = await startBrokerProcess(fx);
    const plain = await connectAgent(fx, "bob", broker.endpoint);
    agents.push(plain);
    const err = await rejectsWith(plain.publish("a.b", {}), ConfigError, "config");
    expect(err.message).toMatch(/events/);
    await rejectsWith(plain.subscribe("a.*", () => undefined), ConfigError, "config");
  });

  it("a subscription closed is withdrawn from the broker; a second one on the same pattern keeps it announced", async () => {
    broker = await startBrokerProcess(fx);
    const bob = await connect("bob");
    const alice = await connect("alice");
    const seen: string[] = [];
    const one = await bob.subscribe("x.*", () => void seen.push("one"));
    const two: Subscription = await bob.subscribe("x.*", () => void seen.push("two"));
    await alice.publish("x.y", 1);
    await waitFor(() => seen.length === 2, 5000, "both subscriptions");
    await one.close();
    expect(metricSum(await broker.scrape(), "zmcp_broker_subscription_patterns")).toBe(1);
    await alice.publish("x.y", 2);
    await waitFor(() => seen.length === 3, 5000, "the remaining subscription");
    expect(seen.sort()).toEqual(["one", "two", "two"]);
    await two.close();
    await waitFor(async () => metricSum(await broker!.scrape(), "zmcp_broker_subscription_patterns") === 0, 5000, "the pattern withdrawn");
    await alice.publish("x.y", 3);
    await sleep(300);
    expect(seen).toHaveLength(3);
    expect(metricSum(await broker.scrape(), "zmcp_broker_publication_copies_total")).toBe(2);
    // Closing twice is harmless; the agent still rejects invalid patterns with ConfigError.
    await one.close();
    await rejectsWith(bob.subscribe("x..y", () => undefined), ConfigError, "config");
    await rejectsWith(bob.subscribe("x.>.y", () => undefined), ConfigError, "config");
    await rejectsWith(alice.publish("x.*", 1), ConfigError, "config");
    await rejectsWith(alice.publish("x".repeat(129), 1), ConfigError, "config");
    const closed = await connect("carol");
    await closed.close();
    await rejectsWith(closed.publish("x.y", 1), ZmcpError, "closed");
  }, 30_000);
});
