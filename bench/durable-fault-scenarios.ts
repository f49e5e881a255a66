/**
 * Durable delivery under faults, with counts (docs/DURABLE.md "Fault counts"): the scenarios of
 * test/integration/durable*.test.ts at larger counts, each on a redis-server of its own (AOF on).
 * One row per scenario: sent, stored, delivered, expired, answered, lost, ran twice. Run by
 * bench/durable-faults.ts (the table alone) and bench/figures.ts (RELIABILITY.md).
 */
import { z } from "zod";
import type { Agent } from "../src/agent/agent.js";
import type { Broker } from "../src/broker/broker.js";
import { tempCerts, type CertFixture } from "../test/support/certs.js";
import { connectAgent, startBroker } from "../test/support/mesh.js";
import { built, spawnChild, startBrokerProcess, type Child } from "../test/support/process.js";
import { freePort, startRedis, type RedisFixture } from "../test/support/redis.js";
import { sleep, waitFor } from "../test/support/wait.js";

export interface DurableRow {
  scenario: string;
  sent: number;
  stored: number;
  delivered: number;
  expired: number;
  answered: number;
  lost: number;
  twice: number;
  /** The scenario itself failed (a wait timed out, a process would not start): why. */
  failed?: string;
}

/** bob counting runs per marker. */
async function bob(fx: CertFixture, endpoint: string, runs: Map<string, number>): Promise<Agent> {
  const a = await connectAgent(fx, "bob", endpoint, { timeout: 120_000 });
  a.tool("echo", { input: z.strictObject({ marker: z.string() }) }, ({ marker }) => {
    runs.set(marker, (runs.get(marker) ?? 0) + 1);
    return { marker };
  });
  return a;
}

/** `n` durable calls from alice to bob; resolves when all are stored, with their outcomes to await. */
async function storeCalls(alice: Agent, n: number, prefix: string, timeout: number) {
  let stored = 0;
  const outcomes = Array.from({ length: n }, (_, i) =>
    alice.call("bob", "echo", { marker: `${prefix}${i}` }, { durable: true, timeout, onStored: () => void stored++ }).then(
      () => true,
      () => false,
    ),
  );
  await waitFor(() => stored === n, 60_000, `${n} stored`);
  return { outcomes, stored: () => stored };
}

function row(scenario: string, sent: number, stored: number, delivered: number, expired: number, answered: boolean[], runs: Map<string, number>): DurableRow {
  const ok = answered.filter(Boolean).length;
  return { scenario, sent, stored, delivered, expired, answered: ok, lost: sent - ok - expired, twice: [...runs.values()].filter((n) => n > 1).length };
}

async function withSetup<T>(names: string[], run: (fx: CertFixture, redis: RedisFixture, cleanup: Array<() => Promise<unknown>>) => Promise<T>): Promise<T> {
  const fx = tempCerts(...names);
  const redis = await startRedis();
  const cleanup: Array<() => Promise<unknown>> = [];
  try {
    return await run(fx, redis, cleanup);
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await redis.dispose();
    fx.cleanup();
  }
}

/** Runs every scenario with `N` durable calls (fewer where a scenario says so); progress on stderr. */
export async function durableFaults(N: number): Promise<DurableRow[]> {
  const rows: DurableRow[] = [];
  const scenario = async (name: string, fn: () => Promise<DurableRow>) => {
    process.stderr.write(`${name}...\n`);
    try {
      rows.push(await fn());
    } catch (err) {
      process.stderr.write(`${name} FAILED: ${String(err)}\n`);
      rows.push({ scenario: name, sent: 0, stored: 0, delivered: 0, expired: 0, answered: 0, lost: 0, twice: 0, failed: String(err) });
    }
  };

  await scenario("recipient offline, starts 5 s later", () =>
    withSetup(["alice", "bob"], async (fx, redis, cleanup) => {
      const b: Broker = await startBroker(fx, { store: redis.url });
      cleanup.push(() => b.close());
      const alice = await connectAgent(fx, "alice", b.endpoint);
      cleanup.push(() => alice.close());
      const { outcomes } = await storeCalls(alice, N, "o", 120_000);
      await sleep(5000);
      const runs = new Map<string, number>();
      cleanup.push(async () => (await bobAgent).close());
      const bobAgent = bob(fx, b.endpoint, runs);
      const answered = await Promise.all(outcomes);
      await waitFor(() => b.durable!.stats.delivered >= answered.filter(Boolean).length, 10_000, "counted");
      return row("recipient offline, starts 5 s later", N, b.durable!.stats.stored, b.durable!.stats.delivered, b.durable!.stats.expired, answered, runs);
    }),
  );

  await scenario("broker SIGKILLed with messages stored, restarted", () =>
    withSetup(["alice", "bob"], async (fx, redis, cleanup) => {
      const bind = `tcp://127.0.0.1:${await freePort()}`;
      const first = await startBrokerProcess(fx, { bind, args: ["--store", redis.url] });
      cleanup.push(() => first.stop());
      const alice = await connectAgent(fx, "alice", first.endpoint);
      cleanup.push(() => alice.close());
      const { outcomes, stored } = await storeCalls(alice, N, "k", 120_000);
      first.kill("SIGKILL");
      await first.exited;
      const second = await startBrokerProcess(fx, { bind, args: ["--store", redis.url] });
      cleanup.push(() => second.stop());
      const runs = new Map<string, number>();
      const b = await bob(fx, second.endpoint, runs);
      cleanup.push(() => b.close());
      const answered = await Promise.all(outcomes);
      const m = await second.scrape();
      return row("broker SIGKILLed with messages stored, restarted", N, stored(), m.get("zmcp_broker_durable_delivered_total") ?? 0, m.get("zmcp_broker_durable_expired_total") ?? 0, answered, runs);
    }),
  );

  await scenario("two brokers on one Redis", () =>
    withSetup(["alice", "bob"], async (fx, redis, cleanup) => {
      const a = await startBroker(fx, { store: redis.url });
      const b = await startBroker(fx, { store: redis.url });
      cleanup.push(() => a.close(), () => b.close());
      const alice = await connectAgent(fx, "alice", a.endpoint);
      cleanup.push(() => alice.close());
      const { outcomes } = await storeCalls(alice, N, "t", 120_000);
      const runs = new Map<string, number>();
      const bb = await bob(fx, b.endpoint, runs);
      cleanup.push(() => bb.close());
      const answered = await Promise.all(outcomes);
      await sleep(500);
      return row("two brokers on one Redis (requests stored via a, delivered via b; answers the other way)", N, a.durable!.stats.stored, b.durable!.stats.delivered, a.durable!.stats.expired + b.durable!.stats.expired, answered, runs);
    }),
  );

  await scenario("Redis SIGKILLed and restarted from its AOF", () =>
    withSetup(["alice", "bob"], async (fx, redis, cleanup) => {
      const b = await startBroker(fx, { store: redis.url });
      cleanup.push(() => b.close());
      const alice = await connectAgent(fx, "alice", b.endpoint);
      cleanup.push(() => alice.close());
      const { outcomes } = await storeCalls(alice, N, "r", 120_000);
      await sleep(1500);
      await redis.kill();
      await redis.restart();
      await waitFor(() => b.durable!.store.available, 20_000, "store back");
      const runs = new Map<string, number>();
      const bb = await bob(fx, b.endpoint, runs);
      cleanup.push(() => bb.close());
      const answered = await Promise.all(outcomes);
      await sleep(500);
      return row("Redis SIGKILLed and restarted from its AOF", N, b.durable!.stats.stored, b.durable!.stats.delivered, b.durable!.stats.expired, answered, runs);
    }),
  );

  await scenario("expired before the recipient starts", () =>
    withSetup(["alice", "bob"], async (fx, redis, cleanup) => {
      const b = await startBroker(fx, { store: redis.url });
      cleanup.push(() => b.close());
      const alice = await connectAgent(fx, "alice", b.endpoint);
      cleanup.push(() => alice.close());
      const n = Math.max(1, Math.round(N / 5));
      const { outcomes } = await storeCalls(alice, n, "x", 2000);
      const answered = await Promise.all(outcomes);
      await sleep(500);
      const runs = new Map<string, number>();
      const bb = await bob(fx, b.endpoint, runs);
      cleanup.push(() => bb.close());
      await waitFor(() => b.durable!.stats.expired >= n, 20_000, "expired");
      return row("expired before the recipient starts (deadline 2 s)", n, b.durable!.stats.stored, b.durable!.stats.delivered, b.durable!.stats.expired, answered, runs);
    }),
  );

  await scenario("durable service, 3 replicas, one SIGKILLed mid-request", () =>
    withSetup(["alice", "r1", "r2", "r3"], async (fx, redis, cleanup) => {
      fx.addService("summarize");
      const b = await startBroker(fx, { store: redis.url, storeVisibility: 3000 });
      cleanup.push(() => b.close());
      const start = (name: string) =>
        spawnChild(built("examples/replica.js"), ["--broker", b.endpoint, "--cert", fx.secretPath(name), "--certs", fx.dir, "--service", "summarize", "--work-ms", "1000", "--log-runs"], "replica ready");
      const replicas: Child[] = await Promise.all(["r1", "r2", "r3"].map(start));
      cleanup.push(() => Promise.all(replicas.map((r) => r.stop())));
      await waitFor(() => b.services()["summarize"]?.length === 3, 10_000, "replicas");
      const alice = await connectAgent(fx, "alice", b.endpoint);
      cleanup.push(() => alice.close());
      const n = Math.max(3, Math.round(N / 10));
      const calls = Array.from({ length: n }, (_, k) =>
        alice.call("svc:summarize", "summarize", { text: `request ${k}` }, { durable: true, timeout: 60_000 }).then(
          () => true,
          () => false,
        ),
      );
      const r1 = replicas[0]!;
      await r1.waitLog((l) => l["msg"] === "ran", "r1 runs a request", 20_000);
      await sleep(300);
      r1.kill("SIGKILL");
      const answered = await Promise.all(calls);
      await sleep(500);
      const perRequest = new Map<string, number>();
      for (const r of replicas) for (const l of r.logs) if (l["msg"] === "ran") perRequest.set(String(l["requestId"]), (perRequest.get(String(l["requestId"])) ?? 0) + 1);
      return row(`durable service, 3 replicas, one SIGKILLed mid-request (visibility 3 s; ${b.durable!.stats.dispatched} dispatches)`, n, b.durable!.stats.stored, b.durable!.stats.served, b.durable!.stats.expired, answered, perRequest);
    }),
  );

  await scenario("declared-durable service, only replica down, plain calls", () =>
    withSetup(["alice", "r1"], async (fx, redis, cleanup) => {
      fx.addService("summarize");
      const b = await startBroker(fx, { store: redis.url, storeVisibility: 3000 });
      cleanup.push(() => b.close());
      const replicas: Child[] = [];
      cleanup.push(() => Promise.all(replicas.map((r) => r.stop())));
      const start = async () => {
        const c = await spawnChild(built("examples/replica.js"), ["--broker", b.endpoint, "--cert", fx.secretPath("r1"), "--certs", fx.dir, "--service", "summarize", "--durable", "--log-runs"], "replica ready");
        replicas.push(c);
        return c;
      };
      const first = await start(); // declares the service durable
      await waitFor(() => b.services()["summarize"]?.length === 1, 10_000, "replica");
      first.kill("SIGKILL");
      await waitFor(() => b.services()["summarize"] === undefined, 10_000, "replica gone");
      const alice = await connectAgent(fx, "alice", b.endpoint);
      cleanup.push(() => alice.close());
      const n = Math.max(3, Math.round(N / 10));
      const calls = Array.from({ length: n }, (_, k) =>
        alice.call("svc:summarize", "summarize", { text: `request ${k}` }, { timeout: 60_000 }).then(
          () => true,
          () => false,
        ),
      ); // no `durable`: the service's declaration queues them
      await waitFor(() => b.durable!.stats.stored === n, 30_000, `${n} queued`);
      await start();
      const answered = await Promise.all(calls);
      await sleep(500);
      const perRequest = new Map<string, number>();
      for (const r of replicas) for (const l of r.logs) if (l["msg"] === "ran") perRequest.set(String(l["requestId"]), (perRequest.get(String(l["requestId"])) ?? 0) + 1);
      return row("declared-durable service (`serve(name, { durable: true })`), its only replica down, plain calls; the replica restarts", n, b.durable!.stats.stored, b.durable!.stats.served, b.durable!.stats.expired, answered, perRequest);
    }),
  );
  return rows;
}

/** The markdown table of `rows`. */
export function durableFaultsTable(rows: readonly DurableRow[]): string[] {
  return [
    "| scenario | sent | stored | delivered | expired | answered | lost | ran twice |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.scenario}${r.failed ? ` — **scenario failed**: ${r.failed}` : ""} | ${r.sent} | ${r.stored} | ${r.delivered} | ${r.expired} | ${r.answered} | ${r.lost} | ${r.twice} |`),
  ];
}
