/**
 * Figures for services (issue 3's note): how calls spread over 3 replica processes, how long
 * the broker's directory takes to be whole after a broker restart, and how long a dead or
 * frozen replica stays in it.
 *
 *   npm run build && node dist/bench/service-figures.js [--calls 600]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Agent, Broker, generateCertificate, saveCertificate } from "../src/index.js";
import { built, spawnChild, type Child } from "../test/support/process.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "600" } } });
const calls = Number(values.calls);
const dir = mkdtempSync(join(tmpdir(), "zmcp-svc-"));
const children: Child[] = [];
const say = (line: string) => process.stdout.write(line + "\n");

async function startReplica(endpoint: string, name: string): Promise<Child> {
  const child = await spawnChild(built("examples/replica.js"), ["--broker", endpoint, "--cert", join(dir, `${name}.key_secret`), "--certs", dir], "replica ready");
  children.push(child);
  return child;
}

async function until(check: () => boolean | Promise<boolean>, limitMs = 20_000): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > limitMs) throw new Error("gave up waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

try {
  const broker0 = generateCertificate({ name: "broker" });
  saveCertificate(broker0, dir, "broker");
  saveCertificate(generateCertificate({ name: "svc-summarize", service: "summarize" }), dir, "svc-summarize");
  for (const name of ["alice", "r1", "r2", "r3"]) saveCertificate(generateCertificate({ name }), dir, name);
  const brokerOptions = { publicKey: broker0.publicKey, secretKey: broker0.secretKey, allow: dir };
  let broker = await Broker.start({ bind: "tcp://127.0.0.1:*", ...brokerOptions });
  const endpoint = broker.endpoint;
  const replicas = await Promise.all(["r1", "r2", "r3"].map((n) => startReplica(endpoint, n)));
  const alice = await Agent.connect({ broker: endpoint, cert: join(dir, "alice.key_secret"), certs: dir });

  // 1. Spread.
  const counts: Record<string, number> = {};
  for (let i = 0; i < calls; i++) {
    const out = (await alice.call("svc:summarize", "summarize", { text: "a b c" })) as { replica: string };
    counts[out.replica] = (counts[out.replica] ?? 0) + 1;
  }
  say(`spread of ${calls} sequential calls over 3 replicas: ${Object.values(counts).sort((a, b) => b - a).join(" / ")}`);

  // 2. Broker restart: time until the directory lists all 3 replicas again.
  await broker.close();
  broker = await Broker.start({ bind: endpoint, ...brokerOptions });
  const whole = await until(() => (broker.services()["summarize"] ?? []).length === 3);
  say(`directory whole again after a broker restart: ${whole} ms (heartbeat interval 1,000 ms)`);

  // 3. A frozen replica (SIGSTOP: connection open, no heartbeats): time until it leaves.

  replicas[0]!.kill("SIGSTOP");
  const t0 = Date.now();
  await until(() => (broker.services()["summarize"] ?? []).length === 2);
  say(`frozen replica (SIGSTOP) evicted after: ${Date.now() - t0} ms (replica TTL 3,000 ms)`);
  replicas[0]!.kill("SIGCONT");
  await until(() => (broker.services()["summarize"] ?? []).length === 3);

  // 4. A killed replica (SIGKILL): evicted by the next dispatch that finds it gone, else by TTL.
  replicas[1]!.kill("SIGKILL");
  const t1 = Date.now();
  let lost = 0;
  for (let i = 0; i < 30; i++) await alice.call("svc:summarize", "summarize", { text: "y" }).catch(() => lost++);
  await until(() => (broker.services()["summarize"] ?? []).length === 2);
  say(`killed replica (SIGKILL) evicted after: ${Date.now() - t1} ms, with 30 calls meanwhile, ${lost} lost`);
  await alice.close();
  await broker.close();
} finally {
  await Promise.all(children.map((child) => child.stop("SIGKILL")));
  rmSync(dir, { recursive: true, force: true });
}
