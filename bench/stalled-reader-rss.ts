/**
 * Broker memory under one stalled reader, one repeatable command:
 *
 *   npm run build && node dist/bench/stalled-reader-rss.js [--size 524288] [--count 2000] [-- broker args...]
 *
 * Starts the built `zmq-broker` with fresh keys, connects a peer that never reads
 * (test/support/stalled-peer.ts), sends it `count` messages of `size` bytes (the broker's default
 * cap is 1 MiB) until the broker answers `busy`, and prints the broker's resident memory
 * before, at the peak, and after the stalled peer leaves (JSON on stdout).
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { decodeHeader, newId } from "../src/wire/envelope.js";
import { tempCerts as makeKeys } from "../test/support/certs.js";
import { DIST, MiB, RssSampler, rssOf, spawnChild, startBrokerProcess as startBroker } from "../test/support/process.js";
import { sleep } from "../test/support/wait.js";
import * as zmq from "zeromq";
import { encodeHeader, PROTOCOL_VERSION, type Header } from "../src/wire/envelope.js";

const { values, positionals } = parseArgs({
  options: { size: { type: "string", default: String(512 * 1024) }, count: { type: "string", default: "2000" } },
  allowPositionals: true,
});
const size = Number(values.size);
const count = Number(values.count);
const keys = makeKeys("sender", "sink");
const broker = await startBroker(keys, { args: positionals });
try {
  await sleep(500);
  const before = await rssOf(broker);
  const sink = await spawnChild(join(DIST, "test", "support", "stalled-peer.js"), ["--cert", keys.secretPath("sink"), `--server-key=${keys.key("broker")}`, "--broker", broker.endpoint], "stalled peer ready");
  const sender = new zmq.Dealer({ curveServerKey: keys.key("broker"), curvePublicKey: keys.key("sender"), curveSecretKey: keys.certs["sender"]!.secretKey, linger: 0 });
  const connected = (async () => {
    for await (const e of sender.events) if (e.type === "handshake") return;
  })();
  sender.connect(broker.endpoint);
  await connected;
  const sampler = new RssSampler(broker, 100);
  const body = new Uint8Array(size - 200);
  let busy = 0;
  let sent = 0;
  // Read the answers as they come, so the broker's queue toward the sender stays empty.
  void (async () => {
    for (;;) {
      const got = await sender.receive();
      if (decodeHeader(got[1]!).code === "busy") busy++;
    }
  })().catch(() => undefined);
  for (let i = 0; i < count; i++) {
    // Not sealed: the broker never opens bodies, and this measures its queue, not the sink.
    const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: keys.key("sink"), exp: Date.now() + 60_000 };
    await sender.send([encodeHeader(header), body]);
    sent++;
    if (i % 16 === 0) await sleep(1);
    if (busy >= 20) break;
  }
  await sleep(1000);
  await sampler.sample();
  const peak = sampler.peak;
  sampler.stop();
  await sink.stop("SIGKILL");
  await sleep(2000);
  const after = await rssOf(broker);
  sender.close();
  const mib = (n: number) => Math.round((n / MiB) * 10) / 10;
  console.log(JSON.stringify({ messageBytes: size, sent, busy, rssBeforeMiB: mib(before), rssPeakMiB: mib(peak), rssAfterPeerLeftMiB: mib(after), brokerArgs: positionals }));
} finally {
  await broker.stop("SIGTERM");
  keys.cleanup();
}
