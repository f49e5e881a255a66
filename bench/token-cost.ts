/**
 * What checking tokens costs: sequential calls per second through an in-process broker,
 * without tokens and with `requireToken` (a token attached to every request and checked by
 * the callee), in alternating blocks of the same run; medians reported. Also the cost of one
 * uncached verification (a new token: one Ed25519 signature check) and of a cached one.
 *
 *   node dist/bench/token-cost.js [--calls 3000] [--rounds 5]
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { Agent, Broker, generateAuthority, generateCertificate, TokenIssuer, TokenVerifier, type Certificate } from "../src/index.js";

const { values } = parseArgs({
  options: {
    calls: { type: "string", default: "3000" },
    rounds: { type: "string", default: "5" },
  },
});
const CALLS = Number(values.calls);
const ROUNDS = Number(values.rounds);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const certs: Record<string, Required<Certificate>> = {};
  for (const name of ["broker", "caller", "callerTok", "plain", "guarded"]) certs[name] = generateCertificate({ name });
  const key = (name: string) => certs[name]!.publicKey;
  const broker = await Broker.start({
    bind: "tcp://127.0.0.1:*",
    publicKey: key("broker"),
    secretKey: certs["broker"]!.secretKey,
    allow: Object.values(certs).map((c) => c.publicKey),
  });
  const authority = generateAuthority();
  const issuer = new TokenIssuer(authority.privateJwk);
  const connect = (name: string, extra: Partial<Parameters<typeof Agent.connect>[0]> = {}) =>
    Agent.connect({ broker: broker.endpoint, cert: certs[name]!, serverKey: key("broker"), ...extra });

  const input = z.strictObject({ n: z.number() });
  const plain = (await connect("plain")).tool("echo", { input }, ({ n }) => n);
  const guarded = (await connect("guarded", { authority: authority.publicJwk, requireToken: true })).tool("echo", { input }, ({ n }) => n);
  const caller = await connect("caller");
  const callerTok = await connect("callerTok", {
    token: () => issuer.issue({ sub: "bench", key: key("callerTok"), scope: "call:echo" }),
  });

  const block = async (from: Agent, to: string): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) await from.call(to, "echo", { n: i });
    return CALLS / ((performance.now() - t0) / 1000);
  };
  // Warm up both paths (JIT, shared keys, first token verification).
  await block(caller, key("plain"));
  await block(callerTok, key("guarded"));

  const without: number[] = [];
  const withTokens: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    without.push(await block(caller, key("plain")));
    withTokens.push(await block(callerTok, key("guarded")));
  }
  for (const a of [plain, guarded, caller, callerTok]) await a.close();
  await broker.close();

  // The check itself, apart from the messaging.
  const verifier = new TokenVerifier({ authority: authority.publicJwk, watch: false });
  const tokens = Array.from({ length: 2000 }, (_, i) => issuer.issue({ sub: `s${i}`, key: key("caller"), scope: "call:echo" }));
  let t0 = performance.now();
  for (const t of tokens) verifier.authorize(t, key("caller"), "call:echo");
  const coldUs = ((performance.now() - t0) * 1000) / tokens.length;
  const hot = tokens[0]!;
  const HOT = 200_000;
  t0 = performance.now();
  for (let i = 0; i < HOT; i++) verifier.authorize(hot, key("caller"), "call:echo");
  const hotUs = ((performance.now() - t0) * 1000) / HOT;
  verifier.close();

  const fmt = (xs: number[]) => xs.map((x) => Math.round(x)).join(", ");
  const m0 = median(without);
  const m1 = median(withTokens);
  process.stdout.write(
    [
      `sequential calls through an in-process broker, ${CALLS} calls per block, ${ROUNDS} alternating rounds`,
      `  without tokens:      median ${Math.round(m0)} calls/s  [${fmt(without)}]`,
      `  with requireToken:   median ${Math.round(m1)} calls/s  [${fmt(withTokens)}]`,
      `  difference:          ${(((m1 - m0) / m0) * 100).toFixed(1)} %`,
      `token check alone (TokenVerifier.authorize):`,
      `  uncached (new token, Ed25519 verify): ${coldUs.toFixed(1)} µs`,
      `  cached:                               ${hotUs.toFixed(2)} µs`,
      "",
    ].join("\n"),
  );
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
