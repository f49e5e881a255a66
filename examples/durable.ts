/**
 * Durable delivery, end to end (docs/DURABLE.md): alice sends bob a durable message while bob is
 * down; the broker stores it (sealed) in Redis and tells alice; bob starts, receives it, and
 * alice gets bob's answer. Needs a Redis: `--store redis://127.0.0.1:6379` (the default).
 *
 *   node dist/examples/durable.js --store redis://127.0.0.1:6379
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { Agent, Broker, generateCertificate, loadSecretCertificate, saveCertificate } from "../src/index.js";

const { values } = parseArgs({ options: { store: { type: "string", default: "redis://127.0.0.1:6379" }, "down-ms": { type: "string", default: "2000" } } });
const certs = mkdtempSync(join(tmpdir(), "zmcp-durable-"));
for (const name of ["broker", "alice", "bob"]) saveCertificate(generateCertificate({ name }), certs, name);
const brokerCert = loadSecretCertificate(join(certs, "broker.key_secret"));
const broker = await Broker.start({ bind: "tcp://127.0.0.1:*", publicKey: brokerCert.publicKey, secretKey: brokerCert.secretKey, allow: certs, store: values.store });
const connect = (name: string) => Agent.connect({ broker: broker.endpoint, cert: join(certs, `${name}.key_secret`), certs });

const alice = await connect("alice");
// bob is not running: a plain call would fail `no_route`; a durable one waits in the store.
const answer = alice.call("bob", "greet", { text: "sent while you were down" }, {
  durable: true,
  timeout: 30_000,
  onStored: ({ to }) => console.log(`stored for ${to} (offline)`),
});

await new Promise((r) => setTimeout(r, Number(values["down-ms"])));
const bob = await connect("bob");
bob.tool("greet", { input: z.strictObject({ text: z.string() }) }, ({ text }, ctx) => {
  console.log(`bob received: ${text} (from ${ctx.fromName})`);
  return { reply: `hello ${ctx.fromName}` };
});
console.log("alice got:", JSON.stringify(await answer));

await Promise.all([alice.close(), bob.close()]);
await broker.close();
rmSync(certs, { recursive: true, force: true });
