/**
 * One key, one live connection, and everyone knows: a second connection with an agent's key
 * makes the first one fail loudly (typed error, error log naming the key), the broker logs and
 * counts the takeover; a redial of the same process after a network blip is not a takeover of
 * itself; a revoked or removed key stops receiving and is told so.
 */
import { once } from "node:events";
import { writeFileSync, rmSync } from "node:fs";
import { createServer, Socket, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { RemoteError } from "../../src/errors.js";
import { createLogger } from "../../src/support/log.js";
import { tempCerts as makeKeys, type CertFixture as Keys } from "../support/certs.js";
import { startBrokerProcess, startWorker, type Child } from "../support/process.js";
import { waitFor as until } from "../support/wait.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

const children: Child[] = [];
const closers: Array<Agent | Broker> = [];
const servers: Server[] = [];
let keys: Keys | undefined;
let fx: CertFixture | undefined;
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c.close();
  await Promise.all(children.splice(0).map((c) => c.stop("SIGKILL", 3000)));
  for (const s of servers.splice(0)) s.close();
  keys?.cleanup();
  keys = undefined;
  fx?.cleanup();
  fx = undefined;
});

const settle = (p: Promise<unknown>) => p.then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e }));

describe("a second connection with an agent's key", () => {
  it("the first process is told displaced, logs an error naming the key and exits; the broker logs the takeover with the name and counts it", async () => {
    keys = makeKeys("alice", "bob");
    const broker = await startBrokerProcess(keys);
    children.push(broker);
    const bob1 = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob1);
    const alice = await connectAgent(keys as unknown as CertFixture, "alice", broker.endpoint);
    closers.push(alice);
    expect(await alice.call("bob", "work", { n: 1 })).toEqual({ n: 1 });
    // Let the broker hear bob1's first heartbeat: it is connected and live.
    await until(async () => ((await broker.scrape()).get("zmcp_broker_service_heartbeats_total") ?? 0) >= 1, 5000, "bob1 heard");

    const bob2 = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob2);
    const code = await Promise.race([bob1.exited, new Promise((r) => setTimeout(() => r("still running"), 5000))]);
    expect(code).toBe(3);
    const closedLine = bob1.logs.find((l) => l["msg"] === "agent closed");
    expect(closedLine).toMatchObject({ level: "error", code: "displaced" });
    expect(bob1.logs.find((l) => l["level"] === "error" && String(l["msg"]).startsWith("displaced"))).toMatchObject({ key: keys.key("bob") });
    await until(() => broker.logs.some((l) => String(l["msg"]).startsWith("key taken over")), 5000, "takeover logged");
    expect(broker.logs.find((l) => String(l["msg"]).startsWith("key taken over"))).toMatchObject({ level: "warn", key: keys.key("bob"), name: "bob" });
    expect((await broker.scrape()).get("zmcp_broker_takeovers_total")).toBe(1);
    // The new process serves.
    expect(await alice.call("bob", "work", { n: 2 })).toEqual({ n: 2 });
    expect(bob2.alive()).toBe(true);
  });

  it("an agent that redials after a network blip (its old connection half-open at the broker) is not displaced by itself", async () => {
    fx = tempCerts("alice", "bob");
    const lines: Array<Record<string, unknown>> = [];
    const broker = await startBroker(fx, { log: createLogger("info", (l) => lines.push(JSON.parse(l))) });
    closers.push(broker);
    const [host, port] = broker.endpoint.replace("tcp://", "").split(":") as [string, string];
    // A TCP relay that can cut the agent's side while the broker's side stays open (a blip
    // that the broker does not see: its old connection lingers, owning bob's routing id).
    const held: Socket[] = [];
    const agentSides: Socket[] = [];
    const relay = createServer((client) => {
      const upstream = new Socket();
      upstream.connect(Number(port), host);
      client.pipe(upstream, { end: false });
      upstream.pipe(client, { end: false });
      client.on("error", () => undefined);
      upstream.on("error", () => undefined);
      agentSides.push(client);
      held.push(upstream);
    });
    servers.push(relay);
    relay.listen(0, "127.0.0.1");
    await once(relay, "listening");
    const relayPort = (relay.address() as { port: number }).port;
    const bob = await connectAgent(fx, "bob", `tcp://127.0.0.1:${relayPort}`);
    closers.push(bob);
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }));
    const alice = await connectAgent(fx, "alice", broker.endpoint);
    closers.push(alice);
    expect(await alice.call("bob", "echo", { x: 1 })).toEqual({ x: 1 });
    await until(async () => broker.stats.heartbeats >= 1, 5000, "bob heard");

    agentSides[0]!.destroy(); // the agent sees its connection reset; the broker does not
    await until(async () => bob.stats.connects >= 2, 10_000, "bob to reconnect");
    await until(() => alice.call("bob", "echo", { x: 2 }, { timeout: 1000 }).then(() => true, () => false), 10_000, "bob reachable again");
    // The notice went to the old, dead connection; bob itself stays up.
    const closed = await Promise.race([bob.closed.then((r) => r ?? "closed without error"), new Promise((r) => setTimeout(() => r("open"), 1000))]);
    expect(closed).toBe("open");
    // The broker did see a takeover (the old connection was still open on its side).
    expect(broker.stats.takeovers).toBe(1);
    expect(lines.some((l) => String(l["msg"]).startsWith("key taken over"))).toBe(true);
    expect(await alice.call("bob", "echo", { x: 3 })).toEqual({ x: 3 });
    for (const s of held) s.destroy();
  });
});

describe("a revoked or removed key stops receiving", () => {
  it("revoked: calls to it are refused revoked by the broker, and the agent is told and closes with a typed error", async () => {
    fx = tempCerts("alice", "bob");
    const denyPath = join(fx.dir, "..", `deny-${process.pid}-${Date.now()}.json`);
    writeFileSync(denyPath, JSON.stringify({ keys: [] }));
    const broker = await startBroker(fx, { denyList: denyPath, denyListInterval: 100 });
    closers.push(broker);
    const bob = await connectAgent(fx, "bob", broker.endpoint);
    closers.push(bob);
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }));
    const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
    closers.push(alice);
    expect(await alice.call("bob", "echo", { x: 1 })).toEqual({ x: 1 });
    writeFileSync(denyPath, JSON.stringify({ keys: [fx.key("bob")] }));
    expect(broker.reloadDenyList()).toBe(true);
    const reason = await bob.closed;
    expect(reason).toBeInstanceOf(RemoteError);
    expect(reason?.code).toBe("revoked");
    const o = await settle(alice.call("bob", "echo", { x: 2 }));
    expect(o.ok).toBe(false);
    expect((o as { e: RemoteError }).e).toBeInstanceOf(RemoteError);
    expect((o as { e: RemoteError }).e.code).toBe("revoked");
    expect((o as { e: RemoteError }).e.origin).toBe("broker");
    expect(broker.stats.revocationNotices).toBe(1);
    rmSync(denyPath, { force: true });
  });

  it("removed from the allowlist: calls to it are refused no_route, and it is told revoked and closes", async () => {
    fx = tempCerts("alice", "bob");
    const broker = await startBroker(fx);
    closers.push(broker);
    const bob = await connectAgent(fx, "bob", broker.endpoint);
    closers.push(bob);
    bob.tool("echo", { input: z.object({ x: z.number() }) }, ({ x }) => ({ x }));
    const alice = await connectAgent(fx, "alice", broker.endpoint, { retry: false });
    closers.push(alice);
    expect(await alice.call("bob", "echo", { x: 1 })).toEqual({ x: 1 });
    rmSync(join(fx.dir, "bob.key"));
    broker.reloadAllowlist();
    const reason = await bob.closed;
    expect(reason).toBeInstanceOf(RemoteError);
    expect(reason?.code).toBe("revoked");
    const o = await settle(alice.call(fx.key("bob"), "echo", { x: 2 }));
    expect((o as { e: RemoteError }).e).toBeInstanceOf(RemoteError);
    expect((o as { e: RemoteError }).e.code).toBe("no_route");
  });
});
