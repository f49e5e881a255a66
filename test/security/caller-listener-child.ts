/**
 * Child process for test/security/caller-listener.test.ts: starts a job whose progress listeners
 * throw (synchronously, and by rejecting), on the push path and on the poll path, and prints
 * the job's result. Run: node dist/test/security/caller-listener-child.js BROKER CERTS_DIR ALICE_SECRET PATH
 * where PATH is "push" or "poll".
 */
import { Agent } from "../../src/agent/agent.js";

const [broker, certs, cert, path] = process.argv.slice(2) as [string, string, string, "push" | "poll"];
process.on("exit", (code) => process.stderr.write(JSON.stringify({ msg: "exit", code }) + "\n"));
const alice = await Agent.connect({ broker, cert, certs, timeout: 10_000, jobPollInterval: path === "poll" ? 100 : 0 });
const job = await alice.start("bob", "ticker", { ticks: 4 });
let calls = 0;
job.on("progress", () => {
  calls++;
  throw new Error("a listener bug");
});
job.on("progress", async () => {
  throw Object.assign(Object.create(null) as object, { weird: true }); // a rejection String() cannot print
});
const result = await job.result;
// Still alive a moment later (an unhandled rejection would have ended us by now).
await new Promise((r) => setTimeout(r, 200));
process.stdout.write(JSON.stringify({ result, calls, listenerErrors: alice.stats.listenerErrors }) + "\n");
await alice.close();
