/**
 * Durable delivery under faults, with counts (docs/DURABLE.md "Fault counts"): prints the table
 * of bench/durable-fault-scenarios.ts. `npm run figures` puts the same rows in RELIABILITY.md.
 *
 *   npm run build && node dist/bench/durable-faults.js [--calls 1000]
 */
import { parseArgs } from "node:util";
import { durableFaults, durableFaultsTable } from "./durable-fault-scenarios.js";

const { values } = parseArgs({ options: { calls: { type: "string", default: "1000" } } });
const rows = await durableFaults(Number(values.calls));
console.log(`durable delivery under faults, one run (${new Date().toISOString()}, node ${process.version}, redis AOF everysec)`);
console.log("");
for (const line of durableFaultsTable(rows)) console.log(line);
