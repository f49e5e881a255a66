/**
 * `npm run soak -- --minutes N`: mixed traffic (calls and jobs) through a broker process to a
 * worker process for N minutes, with a fault every `--fault-every` seconds, alternately the
 * broker SIGKILLed and restarted and the worker SIGKILLed and restarted (same key). Prints
 * counts and RSS every `--report-every` seconds, read from the metrics; exits 1 if a call was
 * lost or memory grew past `--max-growth-mib` after warm-up. Not part of CI.
 */
import { parseArgs } from "node:util";
import { Agent } from "../src/agent/agent.js";
import { ZmcpError } from "../src/errors.js";
import { metricSum } from "../src/support/metrics.js";
import { tempCerts } from "../test/support/certs.js";
import { MiB, rssOf, startBrokerProcess, startWorker, type BrokerProcess, type WorkerProcess } from "../test/support/process.js";
import { sleep } from "../test/support/wait.js";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "5" },
    "fault-every": { type: "string", default: "30" },
    "report-every": { type: "string", default: "10" },
    concurrency: { type: "string", default: "16" },
    "max-growth-mib": { type: "string", default: "64" },
  },
});
const minutes = Number(values.minutes);
const faultEvery = Number(values["fault-every"]) * 1000;
const reportEvery = Number(values["report-every"]) * 1000;
const concurrency = Number(values.concurrency);

const keys = tempCerts("alice", "bob");
let broker: BrokerProcess = await startBrokerProcess(keys);
const endpoint = broker.endpoint;
let bob: WorkerProcess = await startWorker(keys, "bob", [endpoint]);
const alice = await Agent.connect({ broker: endpoint, cert: keys.secretPath("alice"), certs: keys.dir, timeout: 30_000, jobPollInterval: 1000, jobLostAfter: 10_000 });

const counts = { calls: 0, callsOk: 0, jobs: 0, jobsOk: 0, jobsLostToKill: 0, faults: 0 };
const callFailures: Record<string, number> = {};
const jobFailures: Record<string, number> = {};
const end = Date.now() + minutes * 60_000;
let stop = false;
// A job may fail only if its worker was killed while it ran (the job dies with the process).
let workerKills = 0;

const caller = async (id: number) => {
  for (let i = 0; !stop; i++) {
    if (i % 10 === 9) {
      counts.jobs++;
      const killsBefore = workerKills;
      try {
        const job = await alice.start("bob", "long", { ms: 300, steps: 3 }, { timeout: 30_000 });
        await job.result;
        counts.jobsOk++;
      } catch (err) {
        const code = err instanceof ZmcpError ? err.code : "error";
        if (workerKills !== killsBefore) counts.jobsLostToKill++;
        else jobFailures[code] = (jobFailures[code] ?? 0) + 1;
      }
    } else {
      counts.calls++;
      try {
        await alice.call("bob", "work", { n: id * 1e6 + i, ms: 2 });
        counts.callsOk++;
      } catch (err) {
        const code = err instanceof ZmcpError ? err.code : "error";
        callFailures[code] = (callFailures[code] ?? 0) + 1;
      }
    }
  }
};

const faults = (async () => {
  for (let k = 0; ; k++) {
    await sleep(faultEvery);
    if (stop) return;
    if (k % 2 === 0) {
      broker.kill("SIGKILL");
      await broker.exited;
      await sleep(300);
      broker = await startBrokerProcess(keys, { bind: endpoint });
    } else {
      workerKills++;
      bob.kill("SIGKILL");
      await bob.exited;
      bob = await startWorker(keys, "bob", [endpoint]);
    }
    counts.faults++;
  }
})();

const started = Date.now();
const rssSeries: number[] = [];
const reporter = (async () => {
  process.stdout.write("time_s  calls_ok  call_failures  jobs_ok  jobs_failed  faults  broker_rss_mib  worker_rss_mib  soak_rss_mib  broker_routed\n");
  while (!stop) {
    await sleep(reportEvery);
    const m = await broker.scrape().catch(() => new Map<string, number>());
    const brokerRss = metricSum(m, "process_resident_memory_bytes");
    const workerRss = await rssOf(bob).catch(() => 0);
    if (brokerRss > 0) rssSeries.push(brokerRss);
    const failed = Object.values(callFailures).reduce((a, b) => a + b, 0);
    const jobsFailed = Object.values(jobFailures).reduce((a, b) => a + b, 0);
    process.stdout.write(
      `${((Date.now() - started) / 1000).toFixed(0).padStart(6)}  ${String(counts.callsOk).padStart(8)}  ${String(failed).padStart(13)}  ${String(counts.jobsOk).padStart(7)}  ${String(jobsFailed).padStart(11)}  ${String(counts.faults).padStart(6)}  ${(brokerRss / MiB).toFixed(1).padStart(14)}  ${(workerRss / MiB).toFixed(1).padStart(14)}  ${(process.memoryUsage.rss() / MiB).toFixed(1).padStart(12)}  ${String(metricSum(m, "zmcp_broker_messages_routed_total")).padStart(13)}\n`,
    );
  }
})();

const callers = Array.from({ length: concurrency }, (_, i) => caller(i));
while (Date.now() < end) await sleep(500);
stop = true;
await Promise.all(callers);
await Promise.all([faults, reporter]);
const rep = (await alice.call("bob", "report", {})) as { duplicates: number };
await alice.close();
await Promise.all([bob.stop(), broker.stop()]);
keys.cleanup();

const lost = Object.values(callFailures).reduce((a, b) => a + b, 0) + Object.values(jobFailures).reduce((a, b) => a + b, 0);
// Brokers restart, so compare the broker's RSS within a life: the worst growth over a warm-up sample.
const warm = rssSeries.slice(1);
const growth = warm.length ? Math.max(...warm) - Math.min(...warm) : 0;
const summary = { minutes, ...counts, callFailures, jobFailures, duplicatesOnLastWorker: rep.duplicates, brokerRssSpreadMiB: +(growth / MiB).toFixed(1) };
process.stdout.write(JSON.stringify(summary) + "\n");
process.exit(lost === 0 && growth < Number(values["max-growth-mib"]) * MiB ? 0 : 1);
