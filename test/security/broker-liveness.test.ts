/**
 * No process dies of what a peer does: the sequences that make libzmq 4.3.5 abort with
 * `Assertion failed: !_io_error (stream_engine_base.cpp)` (upstream #4364/#4767: a ZMTP
 * heartbeat timer firing on a connection that failed while its input was stopped), driven
 * against real broker and agent processes, which must be found alive afterwards. Liveness is
 * now kept with `hb` messages (src/support/liveness.ts); frozen peers are still cut off (faults.test.ts).
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { newId } from "../../src/wire/envelope.js";
import { tempCerts as makeKeys, type CertFixture as Keys } from "../support/certs.js";
import { DIST, spawnChild, startBrokerProcess as startBroker, startWorker, type Child } from "../support/process.js";
import { sleep, waitFor as until } from "../support/wait.js";
import { type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { rawPeer, type RawPeer } from "../support/raw-peer.js";

const stalledPeerScript = join(DIST, "test", "support", "stalled-peer.js");
/** Past the old default ZMTP heartbeat timeout (3 × 2 s) with margin: the timer had time to fire. */
const PAST_HEARTBEAT_MS = 8000;

const children: Child[] = [];
const agents: Agent[] = [];
const raws: RawPeer[] = [];
let keys: Keys | undefined;
afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  await Promise.all(agents.splice(0).map((a) => a.close()));
  await Promise.all(children.splice(0).map((c) => c.stop("SIGKILL", 3000)));
  keys?.cleanup();
  keys = undefined;
});

const fixture = (k: Keys) => k as unknown as CertFixture;

/** Sends `n` requests of 64 KiB to `to` without reading anything back. */
async function flood(from: RawPeer, to: string, n = 1500): Promise<void> {
  const pad = new Uint8Array(64 * 1024);
  for (let i = 0; i < n; i++) {
    const [header] = from.frames(to, { t: "req", ts: Date.now(), rid: newId(), tool: "work", args: {} });
    await from.socket.send([header, pad]);
  }
}

async function stalledPeer(k: Keys, name: string, endpoint: string, extra: string[] = []): Promise<Child> {
  // `--server-key=KEY`, one argument: a Z85 key may start with "-", which parseArgs would take
  // for an option if the key came as the next argument (1 run in about 85 failed so in CI).
  const child = await spawnChild(stalledPeerScript, ["--cert", k.secretPath(name), `--server-key=${k.key("broker")}`, "--broker", endpoint, ...extra], "stalled peer ready");
  children.push(child);
  return child;
}

describe("processes outlive the libzmq heartbeat abort sequences", () => {
  it("(a) two processes with one key, the old one stopped with a full queue, then killed: the broker lives and the new one serves", { timeout: 40_000 }, async () => {
    keys = makeKeys("alice", "bob", "mallory");
    const broker = await startBroker(keys);
    children.push(broker);
    const bob1 = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob1);
    const alice = await connectAgent(fixture(keys), "alice", broker.endpoint);
    agents.push(alice);
    expect(await alice.call("bob", "work", { n: 1 })).toEqual({ n: 1 });
    bob1.kill("SIGSTOP");
    const flooder = await rawPeer(fixture(keys), "mallory", broker.endpoint);
    raws.push(flooder);
    await flood(flooder, keys.key("bob"));
    const bob2 = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob2);
    await sleep(2000);
    bob1.kill("SIGKILL"); // a reset on the handed-over connection, unread data in its buffers
    await sleep(PAST_HEARTBEAT_MS);
    expect(broker.logs.some((l) => String(l["msg"]).includes("Assertion failed"))).toBe(false);
    expect(broker.alive()).toBe(true);
    expect(bob2.alive()).toBe(true);
    await until(() => alice.call("bob", "work", { n: 2 }, { timeout: 1000 }).then(() => true, () => false), 10_000, "bob2 to serve");
    expect(await broker.scrape()).toBeDefined();
  });

  it("(a') the same, the old one stopped gracefully after the new one took over: the broker lives", { timeout: 40_000 }, async () => {
    keys = makeKeys("alice", "bob", "mallory");
    const broker = await startBroker(keys);
    children.push(broker);
    const bob1 = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob1);
    const flooder = await rawPeer(fixture(keys), "mallory", broker.endpoint);
    raws.push(flooder);
    bob1.kill("SIGSTOP");
    await flood(flooder, keys.key("bob"));
    const bob2 = await startWorker(keys, "bob", [broker.endpoint]);
    children.push(bob2);
    await sleep(2000);
    await bob1.stop("SIGTERM", 5000); // SIGCONT, then a graceful close
    await sleep(PAST_HEARTBEAT_MS);
    expect(broker.logs.some((l) => String(l["msg"]).includes("Assertion failed"))).toBe(false);
    expect(broker.alive()).toBe(true);
    expect(bob2.alive()).toBe(true);
  });

  it("(b) an admitted attacker: a connection that stops reading, a second one with the same key, then a reset: the broker lives", { timeout: 40_000 }, async () => {
    keys = makeKeys("alice", "mallory");
    const broker = await startBroker(keys);
    children.push(broker);
    // The attacker's first connection keeps ZMTP heartbeats of its own and then freezes, so its
    // side drops the connection (unread data: a reset) once it runs again.
    const first = await stalledPeer(keys, "mallory", broker.endpoint, ["--heartbeat", "300"]);
    const flooder = await rawPeer(fixture(keys), "alice", broker.endpoint);
    raws.push(flooder);
    first.kill("SIGSTOP");
    await flood(flooder, keys.key("mallory"));
    await stalledPeer(keys, "mallory", broker.endpoint);
    await sleep(2000);
    first.kill("SIGCONT");
    await sleep(1000);
    first.kill("SIGKILL");
    await sleep(PAST_HEARTBEAT_MS);
    expect(broker.logs.some((l) => String(l["msg"]).includes("Assertion failed"))).toBe(false);
    expect(broker.alive()).toBe(true);
    const probe = await rawPeer(fixture(keys), "alice", broker.endpoint);
    raws.push(probe);
  });

  it("(c) an agent with a deep backlog whose broker is SIGKILLed: the agent lives", { timeout: 40_000 }, async () => {
    keys = makeKeys("alice", "bob");
    const broker = await startBroker(keys);
    children.push(broker);
    // A short heartbeat interval: with ZMTP heartbeats (the old code) its timer is due the
    // moment the agent runs again, on a connection that failed while its input was stopped.
    const bob = await startWorker(keys, "bob", [broker.endpoint], { heartbeat: 300 });
    children.push(bob);
    const flooder = await rawPeer(fixture(keys), "alice", broker.endpoint);
    raws.push(flooder);
    // Bob's JavaScript is busy (a CPU-bound tool), its I/O thread is not: its input backs up.
    await flooder.socket.send(flooder.frames(keys.key("bob"), { t: "req", ts: Date.now(), rid: newId(), tool: "spin", args: { ms: 5000 } }));
    await sleep(300);
    await flood(flooder, keys.key("bob"));
    await sleep(500);
    broker.kill("SIGKILL");
    await sleep(PAST_HEARTBEAT_MS);
    expect(bob.logs.some((l) => String(l["msg"]).includes("Assertion failed"))).toBe(false);
    expect(bob.alive()).toBe(true);
  });
});
