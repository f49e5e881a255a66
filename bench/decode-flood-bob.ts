/** The callee of bench/decode-flood.ts: an echo tool that requires tokens. Args: BROKER CERT CERTS AUTHORITY */
import { z } from "zod";
import { Agent } from "../src/agent/agent.js";

const [broker, cert, certs, authority] = process.argv.slice(2) as [string, string, string, string];
const agent = await Agent.connect({ broker, cert, certs, authority, requireToken: true });
agent.tool("echo", { input: z.unknown() }, (args) => args);
process.stderr.write(JSON.stringify({ msg: "agent ready" }) + "\n");
process.on("SIGTERM", () => void agent.close().then(() => process.exit(0)));
