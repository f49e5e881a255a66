/**
 * The per-message functions of issue 12 side by side in one process, each next to what it
 * replaced: the header by hand against the generic msgpack codec (+ structure guard), the
 * header digest by libsodium against node:crypto, the inner message sealed from the encoder's
 * buffer against a copy first, a table of 100,000 ids pruned from the front (one new, the oldest
 * forgotten: the replay guard's steady state) in a Map against a LinkedMap. Medians of 7
 * alternating rounds, ns per operation.
 *
 *   npm run build && node dist/bench/hotpath.js
 */
import * as nodeCrypto from "node:crypto";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { decodeHeaderFast, encodeHeaderFast } from "../src/wire/header-codec.js";
import { digest, encodeInner, encodeInnerShared, newId, type Header, type InnerDraft } from "../src/wire/envelope.js";
import { checkMsgpack } from "../src/wire/msgpack-guard.js";
import { Sealer } from "../src/wire/seal.js";
import { LinkedMap } from "../src/support/linked-map.js";
import { generateCertificate } from "../src/auth/certs.js";

const header: Header = { v: 1, k: "req", id: newId(), to: "A".repeat(40), exp: Date.now() + 10_000 };
const generic = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();
const frame = generic.encode(header);
const alice = generateCertificate({ name: "alice" });
const bob = generateCertificate({ name: "bob" });
const sealer = new Sealer(alice.secretKey);
const draft: InnerDraft = { t: "req", ts: Date.now(), rid: newId(), tool: "echo", args: { data: new Uint8Array(256) } };

/** One id in, the oldest out, as a table of seen ids does once its window is full (`table` starts with 100,000). */
function pruneFromFront(table: { set(k: string, v: number): unknown; delete(k: string): boolean }, oldest: () => string | undefined): () => void {
  let n = 0;
  for (; n < 100_000; n++) table.set(`id${n}`, n);
  return () => {
    table.set(`id${n++}`, n);
    table.delete(oldest()!);
  };
}
const map = new Map<string, number>();
const linked = new LinkedMap<string, number>();

type Case = [name: string, run: () => unknown];
const pairs: Array<[string, Case, Case]> = [
  ["header encode", ["generic msgpack", () => generic.encode(header)], ["by hand (header-codec)", () => encodeHeaderFast(header)]],
  ["header decode", ["guard + generic msgpack", () => (checkMsgpack(frame, 32), decoder.decode(frame))], ["by hand (header-codec)", () => decodeHeaderFast(frame)]],
  ["header digest", ["node:crypto", () => nodeCrypto.createHash("sha256").update(frame).digest()], ["libsodium into the pool", () => digest(frame)]],
  ["seal a 256 B request", ["encode (copy), seal", () => sealer.seal(bob.publicKey, encodeInner(draft, frame))], ["seal from the encoder's buffer", () => sealer.seal(bob.publicKey, encodeInnerShared(draft, frame))]],
  ["prune 100,000 ids from the front", ["Map (walks the holes of earlier deletes)", pruneFromFront(map, () => map.keys().next().value)], ["LinkedMap", pruneFromFront(linked, () => linked.firstKey())]],
];

function nsPerOp(run: () => unknown, n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) run();
  return Number(process.hrtime.bigint() - t0) / n;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

console.log("case\tbefore\tns/op\tafter\tns/op\tafter÷before");
for (const [what, before, after] of pairs) {
  for (const [, run] of [before, after]) nsPerOp(run, 50_000); // warm up
  const b: number[] = [];
  const a: number[] = [];
  for (let round = 0; round < 7; round++) {
    b.push(nsPerOp(before[1], 100_000));
    a.push(nsPerOp(after[1], 100_000));
  }
  console.log(`${what}\t${before[0]}\t${median(b).toFixed(0)}\t${after[0]}\t${median(a).toFixed(0)}\t${(median(a) / median(b)).toFixed(2)}×`);
}
