/**
 * Decoding cost before authorization (issue 10): an honest caller's latency to a callee that
 * requires tokens, while a peer without a token sends it requests whose args are large maps.
 * Usage (after npm run build): node dist/bench/decode-flood.js [KEYS=120000] [PER_SECOND=4] [SECONDS=10]
 * Prints the honest caller's p50 and p99 with and without the flood.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { tempCerts } from "../test/support/certs.js";
import { connectAgent, startBroker } from "../test/support/mesh.js";
import { rawPeer } from "../test/support/raw-peer.js";
import { encodeHeader, encodeInner, newId, PROTOCOL_VERSION, type Header } from "../src/wire/envelope.js";
import { generateAuthority, saveAuthority } from "../src/auth/jwk.js";
import { createToken } from "../src/auth/tokens.js";

const [keys = 120_000, perSecond = 4, seconds = 10] = process.argv.slice(2).map(Number);
const fx = tempCerts("alice", "bob", "mallory");
const authority = generateAuthority();
const publicPath = saveAuthority(authority.privateJwk, fx.dir, "authority").publicPath;
const broker = await startBroker(fx);
const bob = spawn(process.execPath, [join(import.meta.dirname, "decode-flood-bob.js"), broker.endpoint, fx.secretPath("bob"), fx.dir, publicPath], { stdio: ["ignore", "ignore", "pipe"] });
await new Promise<void>((resolve) => createInterface({ input: bob.stderr! }).on("line", (l) => l.includes("agent ready") && resolve()));
const alice = await connectAgent(fx, "alice", broker.endpoint, { token: createToken({ authority: authority.privateJwk, sub: "alice", key: fx.key("alice"), scope: "call:echo" }) });
const m = await rawPeer(fx, "mallory", broker.endpoint);
m.socket.receiveTimeout = -1;
void (async () => {
  while (!m.socket.closed) await m.socket.receive().catch(() => undefined);
})();

// Encoded once; each message splices it in place of a marker (fresh id and ts, no re-encoding).
// A map of `keys` integer keys to nil (as compact as msgpack maps get: 120,000 keys in ~600 KB).
const parts: Buffer[] = [Buffer.from([0xdf, keys >>> 24, (keys >>> 16) & 255, (keys >>> 8) & 255, keys & 255])];
for (let i = 0; i < keys; i++) parts.push(i < 128 ? Buffer.from([i, 0xc0]) : i < 65536 ? Buffer.from([0xcd, i >> 8, i & 255, 0xc0]) : Buffer.from([0xce, i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255, 0xc0]));
const big = Buffer.concat(parts);
const marker = "ARGS-MARKER";
function floodMessage(): [Uint8Array, Uint8Array] {
  const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: fx.key("bob"), exp: Date.now() + 5000 };
  const headerBytes = encodeHeader(header);
  const plain = Buffer.from(encodeInner({ t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: marker }, headerBytes));
  const at = plain.indexOf(Buffer.from(marker));
  return [headerBytes, m.sealer.seal(fx.key("bob"), Buffer.concat([plain.subarray(0, at - 1), big, plain.subarray(at + marker.length)]))];
}

async function measure(flood: boolean): Promise<{ p50: number; p99: number; n: number }> {
  const timer = flood ? setInterval(() => void m.socket.send(floodMessage()).catch(() => undefined), 1000 / perSecond) : undefined;
  const samples: number[] = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const t = performance.now();
    await alice.call("bob", "echo", { hello: "world" });
    samples.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 20));
  }
  clearInterval(timer);
  samples.sort((a, b) => a - b);
  const at = (q: number) => Number(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!.toFixed(2));
  return { p50: at(0.5), p99: at(0.99), n: samples.length };
}

console.log(JSON.stringify({ keys, perSecond, message_bytes: big.length, idle: await measure(false), flood: await measure(true) }));
m.close();
await alice.close();
bob.kill("SIGTERM");
await new Promise((r) => bob.once("exit", r));
await broker.close();
fx.cleanup();
