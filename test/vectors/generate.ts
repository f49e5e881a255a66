/**
 * Builds the protocol v1 conformance vectors (test/vectors/*.json) from the reference
 * implementation's own functions, deterministically: keys come from fixed seeds, nonces and ids
 * are fixed, and Ed25519 signatures are deterministic. Run it after a deliberate wire change:
 *
 *   npm run build && node dist/test/vectors/generate.js
 *
 * test/vectors/vectors.test.ts checks that the files equal what this builds now, and that src/ accepts
 * and refuses each vector as recorded; python/tests/test_vectors.py checks the Python package.
 *
 * Conventions in the JSON: byte strings are lowercase hex; a msgpack `bin` value inside a
 * header or message is written `{"$bin": "<hex>"}` so that key order and types stay exact.
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import nacl from "tweetnacl";
import { digest, encodeHeader, encodeInner, type Header, type InnerDraft } from "../../src/wire/envelope.js";
import { jwkThumbprint } from "../../src/auth/jwk.js";
import { NONCE_BYTES, TAG_BYTES } from "../../src/wire/seal.js";
import { z85Decode, z85Encode } from "../../src/wire/z85.js";

/** Where the files go when this runs from dist/test/vectors/. */
const VECTORS_DIR = join(import.meta.dirname, "..", "..", "..", "test", "vectors");

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const seed = (label: string, n = 32) => createHash("sha256").update(`zmcp-vector|${label}`).digest().subarray(0, n);
/** A value whose Uint8Arrays are written as {"$bin": hex}. */
export function toJson(value: unknown): unknown {
  if (value instanceof Uint8Array) return { $bin: hex(value) };
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  return value;
}
/** The inverse of {@link toJson}. */
export function fromJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJson);
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    if (Object.keys(o).length === 1 && typeof o["$bin"] === "string") return new Uint8Array(Buffer.from(o["$bin"], "hex"));
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, fromJson(v)]));
  }
  return value;
}

/** secretbox with a given nonce, laid out as the protocol says: tag, nonce, ciphertext. */
function sealFixed(key: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array): Uint8Array {
  const boxed = nacl.secretbox(plaintext, nonce, key); // tag || ciphertext
  return Buffer.concat([boxed.subarray(0, TAG_BYTES), nonce, boxed.subarray(TAG_BYTES)]);
}

function keyPair(label: string) {
  const kp = nacl.box.keyPair.fromSecretKey(seed(`curve|${label}`));
  return { public: z85Encode(kp.publicKey), secret: z85Encode(kp.secretKey), publicHex: hex(kp.publicKey), secretHex: hex(kp.secretKey) };
}

/** The header with its uint64 `exp` re-encoded as a float64 of the same value. */
function expAsFloat64(headerHex: string, exp: number): string {
  const asInt = Buffer.alloc(9);
  asInt[0] = 0xcf;
  asInt.writeBigUInt64BE(BigInt(exp), 1);
  const asFloat = Buffer.alloc(9);
  asFloat[0] = 0xcb;
  asFloat.writeDoubleBE(exp, 1);
  if (!headerHex.includes(hex(asInt))) throw new Error("exp is not a uint64 in the header");
  return headerHex.replace(hex(asInt), hex(asFloat));
}

const b64u = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");

export function buildVectors(): Record<string, unknown> {
  const keys = { broker: keyPair("broker"), alice: keyPair("alice"), bob: keyPair("bob"), service_calc: keyPair("svc-calc") };
  const sk = (name: keyof typeof keys) => Buffer.from(keys[name].secretHex, "hex");
  const pk = (name: keyof typeof keys) => Buffer.from(keys[name].publicHex, "hex");
  const shared = nacl.box.before(pk("bob"), sk("alice"));

  // ---- a request from alice to bob, a response, an event, a nack --------------------------
  const exp = 1767225600000; // 2026-01-01T00:00:00Z
  const ts = exp - 10_000;
  const messages: Array<Record<string, unknown>> = [];
  const add = (name: string, header: Header, draft: InnerDraft | undefined, sealKey: Uint8Array | undefined, nonceLabel: string, note: string) => {
    const headerBytes = encodeHeader(header);
    const entry: Record<string, unknown> = { name, note, header: toJson(header), header_bytes: hex(headerBytes), header_digest: hex(digest(headerBytes)) };
    if (draft && sealKey) {
      const plaintext = encodeInner(draft, headerBytes);
      const nonce = seed(`nonce|${nonceLabel}`, NONCE_BYTES);
      entry["inner"] = toJson(draft);
      entry["plaintext"] = hex(plaintext);
      entry["nonce"] = hex(nonce);
      entry["body"] = hex(sealFixed(sealKey, plaintext, nonce));
    }
    messages.push(entry);
  };
  const reqId = seed("id|req", 16);
  const rid = seed("rid|req", 16);
  add(
    "request",
    { v: 1, k: "req", id: reqId, to: keys.bob.public, exp },
    { t: "req", ts, rid, tool: "batch_sum", args: { numbers: [1, 2, 3.5] } },
    shared,
    "req",
    "alice → bob, sealed with shared(alice secret, bob public); the body's h is SHA-256(header_bytes)",
  );
  add(
    "request_with_token",
    { v: 1, k: "req", id: seed("id|req-tok", 16), to: keys.bob.public, exp },
    { t: "req", ts, rid: seed("rid|req-tok", 16), tool: "batch_sum", args: { numbers: [4] }, tok: "eyJhbGciOiJFZERTQSJ9.e30.AA" },
    shared,
    "req-tok",
    "tok travels inside the seal (the value here is only a placeholder string)",
  );
  add(
    "response",
    { v: 1, k: "res", id: seed("id|res", 16), to: keys.alice.public, exp, re: reqId },
    { t: "res", ts: ts + 5, st: "ok", result: { count: 3, total: 6.5 } },
    shared,
    "res",
    "bob → alice, re = the request's header id",
  );
  add(
    "error_response",
    { v: 1, k: "res", id: seed("id|res-err", 16), to: keys.alice.public, exp, re: reqId },
    { t: "res", ts: ts + 5, st: "error", error: { code: "invalid_args", message: "batch_sum: numbers: too small" } },
    shared,
    "res-err",
    "an error answer",
  );
  // §10.1: the job's random bytes then the runner's key, both in lowercase hex (shell-safe).
  const bobKeyHex = hex(z85Decode(keys.bob.public));
  const jobId = hex(seed("job", 16)) + bobKeyHex;
  add(
    "accepted",
    { v: 1, k: "res", id: seed("id|res-acc", 16), to: keys.alice.public, exp, re: reqId },
    { t: "res", ts: ts + 5, st: "accepted", result: { job_id: jobId } },
    shared,
    "res-acc",
    "a job tool's first answer",
  );
  add(
    "event_progress",
    { v: 1, k: "evt", id: seed("id|evt", 16), to: keys.alice.public, exp: ts + 60_000 },
    { t: "evt", ts: ts + 1000, job: jobId, st: "running", progress: { progress: 1, total: 2, message: "1/2 s" } },
    shared,
    "evt",
    "a job's progress pushed to the caller that started it",
  );
  const serviceShared = nacl.box.before(pk("alice"), sk("service_calc"));
  add(
    "service_response",
    { v: 1, k: "res", id: seed("id|res-svc", 16), to: keys.alice.public, exp, re: seed("id|req-svc", 16), as: "svc:calc" },
    { t: "res", ts: ts + 5, st: "ok", result: 42 },
    serviceShared,
    "res-svc",
    "a replica of svc:calc answers alice: sealed with shared(service secret, alice public), as = svc:calc; the caller opens it with the service's public key",
  );
  add(
    "nack",
    { v: 1, k: "nack", id: seed("id|nack", 16), to: keys.alice.public, exp: exp + 60_000, code: "no_route", msg: "xyz is not connected", re: reqId },
    undefined,
    undefined,
    "",
    "the broker's refusal: frames [empty, header, empty]; no body",
  );
  add(
    "publication",
    { v: 1, k: "pub", id: seed("id|pub", 16), to: "docs.indexed", exp: ts + 60_000, sq: 7 },
    undefined,
    undefined,
    "",
    "a publication (docs/PROTOCOL.md §19): to = the topic, sq = the publisher's 7th on it, exp = its time + 60,000 (T15); the body is the events sealer's (group keys), not a box, so none is recorded here",
  );

  // ---- services: the replica proof and a heartbeat -------------------------------------------
  const proofTs = 1767225600123;
  const proofKey = nacl.box.before(pk("broker"), sk("service_calc"));
  const proofText = `zmcp-service-proof|${keys.bob.public}|${proofTs}`;
  const proof = sealFixed(proofKey, Buffer.from(proofText, "utf8"), seed("nonce|proof", NONCE_BYTES));
  const hbBody = encode({ svc: [{ name: "calc", key: keys.service_calc.public, ts: proofTs, proof, free: 64 }] });
  const hbHeader: Header = { v: 1, k: "hb", id: seed("id|hb", 16), to: "", exp: proofTs + 2000 };
  // A replica that declares the service durable adds `dur: true` last (absent otherwise).
  const hbDurableBody = encode({ svc: [{ name: "calc", key: keys.service_calc.public, ts: proofTs, proof, free: 64, dur: true }] });
  // A subscriber that serves nothing: `sub` after `svc` (the liveness allowance reads that prefix).
  const hbSubscriberBody = encode({ svc: [], sub: ["docs.*", "news.>"] });
  const services = {
    proof: { replica: keys.bob.public, service: "calc", ts: proofTs, plaintext: proofText, nonce: hex(seed("nonce|proof", NONCE_BYTES)), shared_key: hex(proofKey), proof: hex(proof) },
    heartbeat: { header: toJson(hbHeader), header_bytes: hex(encodeHeader(hbHeader)), body: hex(hbBody), note: "body is plain msgpack (not sealed), read by the broker" },
    heartbeat_durable: { body: hex(hbDurableBody), note: "the same heartbeat from a replica that declared the service durable (docs/DURABLE.md)" },
    heartbeat_subscriber: { body: hex(hbSubscriberBody), sub: ["docs.*", "news.>"], note: "an agent serving nothing that subscribes to two topic patterns (docs/PROTOCOL.md §19.2): the whole set, each heartbeat" },
    addresses: [
      { to: "svc:calc", name: "calc", replica: null },
      { to: `svc:calc@${keys.bob.public}`, name: "calc", replica: keys.bob.public },
      { to: "svc:a.b-c_9", name: "a.b-c_9", replica: null },
      { to: "svc:", name: null, replica: null },
      { to: "svc:bad name", name: null, replica: null },
      { to: `svc:${"x".repeat(65)}`, name: null, replica: null },
      { to: keys.bob.public, name: null, replica: null },
    ],
  };

  // ---- job ids -------------------------------------------------------------------------------
  const jobs = [
    { job_id: jobId, runner: keys.bob.public },
    { job_id: hex(seed("job", 16)).toUpperCase() + bobKeyHex.toUpperCase(), runner: null },
    { job_id: hex(seed("job", 16)) + bobKeyHex.slice(1), runner: null },
    { job_id: jobId + "0", runner: null },
    { job_id: hex(seed("job", 16)), runner: null },
    // the pre-hex form (32 hex characters then the Z85 key) names no runner
    { job_id: hex(seed("job", 16)) + keys.bob.public, runner: null },
  ];

  // ---- tokens --------------------------------------------------------------------------------
  const authority = nacl.sign.keyPair.fromSeed(seed("authority"));
  const publicJwk = { kty: "OKP", crv: "Ed25519", x: b64u(authority.publicKey), kid: "", alg: "EdDSA", use: "sig" };
  publicJwk.kid = jwkThumbprint(publicJwk);
  const iat = 1767225600;
  const sign = (claims: Record<string, unknown>, kid: string | undefined = publicJwk.kid, key = authority.secretKey) => {
    const head = b64u(JSON.stringify(kid === undefined ? { alg: "EdDSA", typ: "JWT" } : { alg: "EdDSA", typ: "JWT", kid }));
    const input = `${head}.${b64u(JSON.stringify(claims))}`;
    return `${input}.${b64u(nacl.sign.detached(Buffer.from(input, "ascii"), key))}`;
  };
  const claims = (over: Record<string, unknown> = {}) => ({
    iss: "zmcp", sub: "alice", aud: "mesh", iat, nbf: iat - 3, exp: iat + 300, jti: "vector-jti-1", scope: "call:batch_sum call:jobs.*", cnf: { "zmcp:key": keys.alice.public }, ...over,
  });
  const good = sign(claims());
  const now = iat * 1000 + 1000;
  const other = nacl.sign.keyPair.fromSeed(seed("other-authority"));
  const tokens = {
    authority: publicJwk,
    audience: "mesh",
    clock_skew_ms: 30_000,
    cases: [
      { name: "valid", token: good, from: keys.alice.public, scope: "call:batch_sum", now, expect: "ok" },
      { name: "wildcard scope", token: good, from: keys.alice.public, scope: "call:jobs.submit", now, expect: "ok" },
      { name: "no scope asked (built-ins)", token: good, from: keys.alice.public, scope: null, now, expect: "ok" },
      { name: "scope not covered", token: good, from: keys.alice.public, scope: "call:other", now, expect: "token_scope" },
      { name: "another sender", token: good, from: keys.bob.public, scope: "call:batch_sum", now, expect: "token_key_mismatch" },
      { name: "expired beyond the skew", token: good, from: keys.alice.public, scope: "call:batch_sum", now: (iat + 300) * 1000 + 30_000, expect: "token_expired" },
      { name: "expired within the skew", token: good, from: keys.alice.public, scope: "call:batch_sum", now: (iat + 300) * 1000 + 29_999, expect: "ok" },
      { name: "not yet valid", token: good, from: keys.alice.public, scope: "call:batch_sum", now: (iat - 3) * 1000 - 30_001, expect: "token_not_yet_valid" },
      { name: "wrong audience", token: sign(claims({ aud: ["other"] })), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_audience" },
      { name: "audience list", token: sign(claims({ aud: ["other", "mesh"] })), from: keys.alice.public, scope: "call:batch_sum", now, expect: "ok" },
      { name: "no kid, one authority", token: sign(claims(), undefined), from: keys.alice.public, scope: "call:batch_sum", now, expect: "ok" },
      { name: "untrusted kid", token: sign(claims(), "someone-else"), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "signed by another key", token: sign(claims(), publicJwk.kid, other.secretKey), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "tampered claims", token: good.replace(/\.[^.]+\./, `.${b64u(JSON.stringify(claims({ scope: "call:*" })))}.`), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "no cnf", token: sign({ ...claims(), cnf: {} }), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "not a JWS", token: "abc.def", from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "missing", token: null, from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_missing" },
      // The verifier's maximum lifetime (300 s by default, as issuing): exp - iat, then exp - now.
      { name: "lifetime of 300 s: the maximum", token: sign(claims({ exp: iat + 300 })), from: keys.alice.public, scope: "call:batch_sum", now, expect: "ok" },
      { name: "lifetime of 301 s: within the one second of rounding slack", token: sign(claims({ exp: iat + 301 })), from: keys.alice.public, scope: "call:batch_sum", now, expect: "ok" },
      { name: "lifetime of 302 s: over the maximum", token: sign(claims({ exp: iat + 302 })), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "exp 1e308", token: sign(claims({ exp: 1e308 })), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "no iat, exp beyond now + maximum + skew", token: sign({ ...claims({ exp: iat + 1 + 300 + 31 }), iat: undefined }), from: keys.alice.public, scope: "call:batch_sum", now, expect: "token_invalid" },
      { name: "no iat, exp within now + maximum + skew", token: sign({ ...claims({ exp: iat + 1 + 300 + 30 }), iat: undefined }), from: keys.alice.public, scope: "call:batch_sum", now, expect: "ok" },
    ],
  };

  // ---- refusals ------------------------------------------------------------------------------
  const req = messages[0]!;
  const goodHeader = fromJson(req["header"]) as Record<string, unknown>;
  const headerBytes = Buffer.from(req["header_bytes"] as string, "hex");
  const plaintext = Buffer.from(req["plaintext"] as string, "hex");
  const h = (over: Record<string, unknown>, drop: string[] = []) => {
    const o: Record<string, unknown> = { ...goodHeader, ...over };
    for (const k of drop) delete o[k];
    return hex(encode(o));
  };
  const innerOf = (over: Record<string, unknown>, drop: string[] = []) => {
    const o: Record<string, unknown> = { t: "req", ts, rid, tool: "batch_sum", args: { numbers: [1] }, h: digest(headerBytes), ...over };
    for (const k of drop) delete o[k];
    return hex(encode(o));
  };
  let deep: unknown = 1;
  for (let i = 0; i < 33; i++) deep = [deep];
  let deepOk: unknown = 1;
  for (let i = 0; i < 30; i++) deepOk = [deepOk];
  const body = Buffer.from(req["body"] as string, "hex");
  const tampered = Buffer.from(body);
  tampered[body.length - 1]! ^= 1;
  const refusals = {
    note: "header cases go through the header decoder; inner cases are plaintexts bound to `header_bytes` (the request's); sealed cases are bodies opened with the request's shared key",
    header_bytes: req["header_bytes"],
    shared_key: hex(shared),
    header: [
      { name: "accepted as is", bytes: req["header_bytes"], expect: "ok" },
      { name: "exp as an integral float64 (the same JS number)", bytes: expAsFloat64(req["header_bytes"] as string, exp), expect: "ok" },
      { name: "longer than 512 bytes", bytes: h({ msg: "x".repeat(600) }), expect: "too_large" },
      { name: "not msgpack (0xc1)", bytes: "c1", expect: "bad_frame" },
      { name: "truncated", bytes: (req["header_bytes"] as string).slice(0, -2), expect: "bad_frame" },
      { name: "trailing byte", bytes: `${req["header_bytes"] as string}00`, expect: "bad_frame" },
      { name: "extension type", bytes: hex(Buffer.concat([Buffer.from([0x81, 0xa1, 0x76]), Buffer.from([0xd4, 0x01, 0x00])])), expect: "bad_frame" },
      { name: "not a map", bytes: hex(encode([1, 2])), expect: "bad_frame" },
      { name: "unknown key", bytes: h({ extra: 1 }), expect: "bad_frame" },
      { name: "id of 15 bytes", bytes: h({ id: new Uint8Array(15) }), expect: "bad_frame" },
      { name: "id as a string", bytes: h({ id: "0123456789abcdef" }), expect: "bad_frame" },
      { name: "kind unknown", bytes: h({ k: "push" }), expect: "bad_frame" },
      { name: "to longer than 128", bytes: h({ to: "a".repeat(129) }), expect: "bad_frame" },
      { name: "exp negative", bytes: h({ exp: -1 }), expect: "bad_frame" },
      { name: "exp fractional: read floored, accepted", bytes: h({ exp: exp + 0.5 }), expect: "ok" },
      { name: "exp missing", bytes: h({}, ["exp"]), expect: "bad_frame" },
      { name: "re of 8 bytes", bytes: h({ re: new Uint8Array(8) }), expect: "bad_frame" },
      { name: "code longer than 64", bytes: h({ code: "c".repeat(65) }), expect: "bad_frame" },
      { name: "pub with sq", bytes: h({ k: "pub", to: "docs.indexed", sq: 1 }), expect: "ok" },
      { name: "sq negative", bytes: h({ k: "pub", to: "docs.indexed", sq: -1 }), expect: "bad_frame" },
      { name: "sq fractional", bytes: h({ k: "pub", to: "docs.indexed", sq: 1.5 }), expect: "bad_frame" },
      { name: "sq a string", bytes: h({ k: "pub", to: "docs.indexed", sq: "1" }), expect: "bad_frame" },
      { name: "version 2", bytes: h({ v: 2 }), expect: "unsupported_version" },
      { name: "broker notice: nack without re, code displaced", bytes: h({ k: "nack", to: "", code: "displaced", msg: "another connection with this key took its route" }), expect: "ok" },
    ],
    inner: [
      { name: "accepted as is", plaintext: hex(plaintext), expect: "ok" },
      { name: "unknown key", plaintext: innerOf({ extra: true }), expect: "bad_frame" },
      { name: "args missing", plaintext: innerOf({}, ["args"]), expect: "bad_frame" },
      { name: "args null is present", plaintext: innerOf({ args: null }), expect: "ok" },
      { name: "ts missing", plaintext: innerOf({}, ["ts"]), expect: "bad_frame" },
      { name: "rid of 4 bytes", plaintext: innerOf({ rid: new Uint8Array(4) }), expect: "bad_frame" },
      { name: "tool empty", plaintext: innerOf({ tool: "" }), expect: "bad_frame" },
      { name: "tool longer than 256", plaintext: innerOf({ tool: "t".repeat(257) }), expect: "bad_frame" },
      { name: "t unknown", plaintext: innerOf({ t: "hb" }), expect: "bad_frame" },
      { name: "response status unknown", plaintext: hex(encode({ t: "res", ts, st: "maybe", h: digest(headerBytes) })), expect: "bad_frame" },
      { name: "error body with an extra key", plaintext: hex(encode({ t: "res", ts, st: "error", error: { code: "x", message: "y", z: 1 }, h: digest(headerBytes) })), expect: "bad_frame" },
      { name: "nested 31 deep in args", plaintext: innerOf({ args: deepOk }), expect: "ok" },
      { name: "nested 34 deep in args", plaintext: innerOf({ args: deep }), expect: "bad_frame" },
      { name: "array declaring 65535 items in 3 bytes", plaintext: "81a161dcffff", expect: "bad_frame" },
      { name: "digest of another header", plaintext: innerOf({ h: digest(Buffer.from("other")) }), expect: "bad_seal" },
      { name: "ts fractional: read floored, accepted", plaintext: innerOf({ ts: ts + 0.5 }), expect: "ok" },
      // Values per message, all containers together, a map entry counting two: the top map's 6
      // entries are 12, args {a, b} 4 more, so the two arrays may hold 99,984 between them.
      { name: "100,000 values across containers: the cap", plaintext: innerOf({ args: { a: new Array(50_000).fill(0), b: new Array(49_984).fill(0) } }), expect: "ok" },
      { name: "100,001 values across containers: over the cap", plaintext: innerOf({ args: { a: new Array(50_000).fill(0), b: new Array(49_985).fill(0) } }), expect: "bad_frame" },
    ],
    sealed: [
      { name: "opens", body: hex(body), expect: "ok" },
      { name: "one bit flipped", body: hex(tampered), expect: "bad_seal" },
      { name: "shorter than 40 bytes", body: hex(body.subarray(0, 39)), expect: "bad_seal" },
    ],
  };

  const z85 = [
    { bytes: "864fd26fb559f75b", text: "HelloWorld", note: "ZeroMQ RFC 32 test vector" },
    { bytes: keys.alice.publicHex, text: keys.alice.public },
  ];
  return {
    keys: { note: "secret keys are SHA-256('zmcp-vector|curve|<name>'); public = X25519 base point multiple; shared keys are crypto_box_beforenm", pairs: keys, shared_alice_bob: hex(shared), z85 },
    messages: { note: "every message's exact bytes; body = tag(16) || nonce(24) || XSalsa20 ciphertext", messages },
    services,
    jobs: { note: "a job id is 96 lowercase hex characters: 16 random bytes then the runner's 32-byte public key; runner = Z85 of the last 32 bytes", cases: jobs },
    tokens,
    refusals,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const [name, value] of Object.entries(buildVectors())) {
    writeFileSync(join(VECTORS_DIR, `${name}.json`), JSON.stringify(value, null, 2) + "\n");
    console.log(`wrote test/vectors/${name}.json`);
  }
}
