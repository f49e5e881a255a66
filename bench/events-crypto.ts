/**
 * What group keys cost per publication (src/events, docs/EVENTS.md): one seal (msgpack,
 * XSalsa20-Poly1305 under the epoch key, a SHA-256 of the box, an Ed25519 signature) and one
 * open (credential checks from the cache, the box, the header digest, an Ed25519 verify,
 * msgpack), at 256 B and 64 KiB of payload. Keys and credentials are fetched once from a real
 * distributor through an in-process broker before timing, as a running member has them.
 * Medians of `rounds` blocks of `count` operations each; `ZMCP_CRYPTO=js` measures the fallback
 * (tweetnacl box, node:crypto Ed25519).
 *
 *   node dist/bench/events-crypto.js [--count 2000] [--rounds 7]
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { encode } from "@msgpack/msgpack";
import { Agent, Broker, createToken, generateAuthority, generateCertificate, groupKeys, serveEventKeys, type Certificate, type EventKeyContext } from "../src/index.js";
import { box } from "../src/wire/box.js";
import { signing } from "../src/events/signing.js";

const { values } = parseArgs({ options: { count: { type: "string", default: "2000" }, rounds: { type: "string", default: "7" } } });
const COUNT = Number(values.count);
const ROUNDS = Number(values.rounds);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function contextOf(agent: Agent): EventKeyContext {
  const closing = new AbortController();
  void agent.closed.then(() => closing.abort());
  return { publicKey: agent.publicKey, signal: closing.signal, call: (to, tool, args, o = {}) => agent.call(to, tool, args, o.timeoutMs === undefined ? {} : { timeout: o.timeoutMs }) };
}

async function main(): Promise<void> {
  const certs: Record<string, Required<Certificate>> = {};
  for (const name of ["broker", "keys", "pub", "sub"]) certs[name] = generateCertificate({ name });
  const key = (name: string) => certs[name]!.publicKey;
  const broker = await Broker.start({ bind: "tcp://127.0.0.1:*", publicKey: key("broker"), secretKey: certs["broker"]!.secretKey, allow: Object.values(certs).map((c) => c.publicKey) });
  const authority = generateAuthority();
  const connect = (name: string, extra: Partial<Parameters<typeof Agent.connect>[0]> = {}) =>
    Agent.connect({ broker: broker.endpoint, cert: certs[name]!, serverKey: key("broker"), ...extra });
  const keys = await connect("keys", { authority: authority.publicJwk, requireToken: true });
  serveEventKeys(keys, { topics: ["bench.>"] });
  const token = (name: string, scope: string) => () => createToken({ authority: authority.privateJwk, sub: name, key: key(name), scope });
  const pubAgent = await connect("pub", { token: token("pub", "pub:bench.>") });
  const subAgent = await connect("sub", { token: token("sub", "sub:bench.>") });
  const factory = groupKeys({ distributor: key("keys") });
  const pub = factory(contextOf(pubAgent));
  const sub = factory(contextOf(subAgent));
  const header = encode({ v: 1, k: "pub", t: "bench.topic", id: randomBytes(16), exp: Date.now() + 60_000 });
  console.log(`backends: box ${box.name}, Ed25519 ${signing.name}; ${ROUNDS} rounds of ${COUNT}; µs per operation, medians`);
  console.log("| payload | seal | open | seal + open | body overhead |");
  console.log("|---|---|---|---|---|");
  try {
    for (const size of [256, 64 * 1024]) {
      const data = randomBytes(size);
      const warm = await pub.seal("bench.topic", header, data);
      await sub.open("bench.topic", header, warm, pubAgent.publicKey); // key and credential fetched, then cached
      const seals: number[] = [];
      const opens: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const bodies: Uint8Array[] = [];
        let t = process.hrtime.bigint();
        for (let i = 0; i < COUNT; i++) bodies.push(await pub.seal("bench.topic", header, data));
        seals.push(Number(process.hrtime.bigint() - t) / 1000 / COUNT);
        t = process.hrtime.bigint();
        for (const body of bodies) await sub.open("bench.topic", header, body, pubAgent.publicKey);
        opens.push(Number(process.hrtime.bigint() - t) / 1000 / COUNT);
      }
      const s = median(seals);
      const o = median(opens);
      const overhead = warm.length - encode(data).length;
      console.log(`| ${size === 256 ? "256 B" : "64 KiB"} | ${s.toFixed(1)} | ${o.toFixed(1)} | ${(s + o).toFixed(1)} | ${overhead} B |`);
    }
  } finally {
    pub.close();
    sub.close();
    await Promise.all([pubAgent.close(), subAgent.close(), keys.close()]);
    await broker.close();
  }
}

await main();
// Everything is closed, yet the process sometimes stays up with no active handle (zeromq's own
// threads; bench/token-cost.js does the same here, 2 runs in 6): exit, as bench/rate.ts does.
process.exit(0);
