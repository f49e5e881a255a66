/**
 * The protocol v1 conformance vectors (test/vectors/*.json) against the TypeScript
 * implementation: the files are what test/vectors/generate.ts builds (deterministic), every
 * recorded byte string is what src/ produces or opens, and every malformed input is refused
 * with the recorded code. python/tests/test_vectors.py checks the Python package against the
 * same files.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decode, encode } from "@msgpack/msgpack";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { publicKeyOf } from "../../src/auth/certs.js";
import { decodeHeader, decodeInner, encodeHeader, encodeInner, type Header, type InnerDraft } from "../../src/wire/envelope.js";
import { ZmcpError } from "../../src/errors.js";
import { jobRunner } from "../../src/agent/jobs.js";
import { openWith, Sealer, sealWith, NONCE_BYTES, TAG_BYTES } from "../../src/wire/seal.js";
import { HeartbeatSchema, makeServiceProof, parseServiceAddress, verifyServiceProof } from "../../src/wire/services.js";
import { TokenVerifier, type AuthorityInput } from "../../src/auth/token-verifier.js";
import { z85Decode, z85Encode } from "../../src/wire/z85.js";
import { buildVectors, fromJson } from "./generate.js";

const dir = import.meta.dirname;
const load = (name: string) => JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const bytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const codeOf = (fn: () => unknown): string => {
  try {
    fn();
    return "ok";
  } catch (err) {
    if (err instanceof ZmcpError) return err.code;
    throw err;
  }
};

describe("conformance vectors (protocol v1) against src/", () => {
  it("the files are exactly what generate.ts builds now (deterministic, and not edited by hand)", () => {
    for (const [name, value] of Object.entries(buildVectors())) expect(load(name), name).toEqual(JSON.parse(JSON.stringify(value)));
  });

  it("key pairs, Z85 and the shared key", () => {
    const { pairs, shared_alice_bob, z85 } = load("keys");
    for (const pair of Object.values(pairs) as Array<Record<string, string>>) {
      expect(publicKeyOf(pair["secret"]!)).toBe(pair["public"]);
      expect(z85Encode(bytes(pair["secretHex"]!))).toBe(pair["secret"]);
    }
    for (const v of z85 as Array<{ bytes: string; text: string }>) {
      expect(z85Encode(bytes(v.bytes))).toBe(v.text);
      expect(hex(z85Decode(v.text))).toBe(v.bytes);
    }
    expect(hex(new Sealer(pairs.alice.secret).sharedKey(pairs.bob.public))).toBe(shared_alice_bob);
    expect(hex(new Sealer(pairs.bob.secret).sharedKey(pairs.alice.public))).toBe(shared_alice_bob);
  });

  it("every message: header bytes, inner bytes bound to them, and the sealed body open as recorded", () => {
    const { pairs } = load("keys");
    for (const m of load("messages")["messages"] as Array<Record<string, any>>) { // eslint-disable-line @typescript-eslint/no-explicit-any
      const header = fromJson(m["header"]) as Header;
      expect(hex(encodeHeader(header)), m["name"]).toBe(m["header_bytes"]);
      expect(decodeHeader(bytes(m["header_bytes"]))).toEqual(header);
      if (!m["body"]) continue;
      const headerBytes = bytes(m["header_bytes"]);
      expect(hex(encodeInner(fromJson(m["inner"]) as InnerDraft, headerBytes)), m["name"]).toBe(m["plaintext"]);
      // Sealed by the service key for a service's answer, by bob or alice otherwise.
      const recipient = header.to === pairs.alice.public ? pairs.alice : pairs.bob;
      const sender = header.as ? pairs.service_calc : header.to === pairs.alice.public ? pairs.bob : pairs.alice;
      const opened = new Sealer(recipient.secret).open(sender.public, bytes(m["body"]));
      expect(hex(opened)).toBe(m["plaintext"]);
      expect(decodeInner(opened, headerBytes, 1 << 20)).toMatchObject({ t: header.k });
      // The layout is tag || nonce || ciphertext: the recorded nonce sits at bytes 16..40.
      expect(m["body"].slice(2 * TAG_BYTES, 2 * (TAG_BYTES + NONCE_BYTES))).toBe(m["nonce"]);
    }
  });

  it("src's own seal lays out tag, nonce, ciphertext as the vectors do", () => {
    const { shared_alice_bob } = load("keys");
    const key = bytes(shared_alice_bob);
    const sealed = sealWith(key, new TextEncoder().encode("layout"));
    const nonce = sealed.subarray(TAG_BYTES, TAG_BYTES + NONCE_BYTES);
    const boxed = nacl.secretbox(new TextEncoder().encode("layout"), nonce, key);
    expect(hex(sealed)).toBe(hex(boxed.subarray(0, TAG_BYTES)) + hex(nonce) + hex(boxed.subarray(TAG_BYTES)));
  });

  it("the replica proof, the heartbeat, and service addresses", () => {
    const { pairs } = load("keys");
    const { proof, heartbeat, heartbeat_durable, heartbeat_subscriber, addresses } = load("services");
    const brokerShared = new Sealer(pairs.broker.secret).sharedKey(pairs.service_calc.public);
    expect(hex(brokerShared)).toBe(proof.shared_key);
    expect(hex(openWith(brokerShared, bytes(proof.proof)))).toBe(Buffer.from(proof.plaintext).toString("hex"));
    expect(verifyServiceProof(brokerShared, bytes(proof.proof), proof.replica, proof.ts, proof.ts)).toBe(true);
    expect(verifyServiceProof(brokerShared, bytes(proof.proof), pairs.alice.public, proof.ts, proof.ts)).toBe(false);
    const fresh = makeServiceProof(bytes(proof.shared_key), proof.replica, proof.ts);
    expect(verifyServiceProof(brokerShared, fresh, proof.replica, proof.ts, proof.ts + 1000)).toBe(true);
    expect(hex(encodeHeader(fromJson(heartbeat.header) as Header))).toBe(heartbeat.header_bytes);
    const body = decode(bytes(heartbeat.body)) as { svc: Array<{ proof: Uint8Array }> };
    expect(hex(body.svc[0]!.proof)).toBe(proof.proof);
    expect(HeartbeatSchema.parse(body).svc[0]!.dur).toBeUndefined();
    const durable = HeartbeatSchema.parse(decode(bytes(heartbeat_durable.body))).svc[0]!;
    expect(durable.dur).toBe(true);
    expect(hex(encode({ svc: [{ ...body.svc[0]!, dur: true }] }))).toBe(heartbeat_durable.body);
    expect(HeartbeatSchema.parse(decode(bytes(heartbeat_subscriber.body))).sub).toEqual(heartbeat_subscriber.sub);
    expect(hex(encode({ svc: [], sub: heartbeat_subscriber.sub }))).toBe(heartbeat_subscriber.body);
    for (const a of addresses as Array<{ to: string; name: string | null; replica: string | null }>) {
      const parsed = parseServiceAddress(a.to);
      expect(parsed ? { name: parsed.name, replica: parsed.replica ?? null } : { name: null, replica: null }, a.to).toEqual({ name: a.name, replica: a.replica });
    }
  });

  it("job ids name their runner", () => {
    for (const c of load("jobs")["cases"] as Array<{ job_id: string; runner: string | null }>) expect(jobRunner(c.job_id) ?? null, c.job_id).toBe(c.runner);
  });

  it("tokens: accepted and refused with the recorded codes", () => {
    const t = load("tokens");
    const verifier = new TokenVerifier({ authority: t["authority"] as AuthorityInput, audience: t["audience"], clockSkew: t["clock_skew_ms"], watch: false });
    for (const c of t["cases"] as Array<{ name: string; token: string | null; from: string; scope: string | null; now: number; expect: string }>) {
      const fresh = new TokenVerifier({ authority: t["authority"] as AuthorityInput, audience: t["audience"], clockSkew: t["clock_skew_ms"], watch: false });
      for (const v of [verifier, fresh]) expect(codeOf(() => v.authorize(c.token ?? undefined, c.from, c.scope ?? undefined, c.now)), c.name).toBe(c.expect);
    }
  });

  it("malformed inputs are refused with the recorded codes", () => {
    const r = load("refusals");
    const headerBytes = bytes(r["header_bytes"]);
    for (const c of r["header"] as Array<{ name: string; bytes: string; expect: string }>) expect(codeOf(() => decodeHeader(bytes(c.bytes))), c.name).toBe(c.expect);
    for (const c of r["inner"] as Array<{ name: string; plaintext: string; expect: string }>) {
      expect(codeOf(() => decodeInner(bytes(c.plaintext), headerBytes, 1 << 20)), c.name).toBe(c.expect);
    }
    for (const c of r["sealed"] as Array<{ name: string; body: string; expect: string }>) expect(codeOf(() => openWith(bytes(r["shared_key"]), bytes(c.body))), c.name).toBe(c.expect);
  });
});
