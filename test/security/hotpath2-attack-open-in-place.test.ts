/**
 * Second adversarial pass on issue 12: the inbound `open` step now decrypts a received body over
 * its own ciphertext (box.ts openInPlace). With sodium-native the plaintext it returns is
 * `body.subarray(SEAL_OVERHEAD)`, and a received frame is a Buffer: so the plaintext is a
 * Buffer, and every msgpack `bin` value decoded from it (@msgpack/msgpack returns subarrays of
 * its input) is a Buffer too. Before, native `open` returned a plain Uint8Array on purpose
 * (box.ts allocUnsafe: "so that no caller gets Buffer's view-returning `slice`"), and tweetnacl
 * still does (`m.slice`). So the bytes a tool receives in its arguments, and the bytes a caller
 * receives in a result, changed type with this commit, and now differ between the two backends:
 * `x.slice()` no longer copies (a tool that copies then scribbles over the copy now writes into
 * the received message), `JSON.stringify` gives `{"type":"Buffer","data":[...]}` instead of an
 * index map (what the MCP bridge shows a client for a binary result), and `x instanceof Buffer`
 * flips with ZMCP_CRYPTO.
 *
 * Regression tests for the claims that held: a body that does not open is left as it was; one
 * that opens yields exactly the plaintext and writes nothing outside the body (both backends;
 * tweetnacl still opens into a copy, so its body stays ciphertext).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { jsBox, nativeBox, NONCE_BYTES, SEAL_OVERHEAD } from "../../src/wire/box.js";
import { SEAL_BACKEND } from "../../src/wire/seal.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

let fx: CertFixture;
let broker: Broker;
let alice: Agent;
let bob: Agent;
let seenArg: { plain: boolean; sliceCopies: boolean } | undefined;

beforeAll(async () => {
  fx = tempCerts("alice", "bob");
  broker = await startBroker(fx);
  bob = await connectAgent(fx, "bob", broker.endpoint);
  alice = await connectAgent(fx, "alice", broker.endpoint);
  bob.tool("echo-bytes", { input: z.object({ blob: z.instanceof(Uint8Array) }) }, ({ blob }) => {
    const copy = blob.slice(0, 4);
    copy[0] = 0xee; // scribbling over what Uint8Array#slice promises is a copy
    seenArg = { plain: Object.getPrototypeOf(blob) === Uint8Array.prototype, sliceCopies: blob[0] === 1 };
    return { blob: new Uint8Array(blob) };
  });
  bob.tool("fixed-bytes", { input: z.object({}) }, () => ({ blob: new Uint8Array([1, 2, 3]) }));
});

afterAll(async () => {
  await alice?.close();
  await bob?.close();
  await broker?.close();
  fx?.cleanup();
});

const key = new Uint8Array(32).fill(7);
const nonce = new Uint8Array(NONCE_BYTES).fill(9);

describe("hotpath2-attack: openInPlace gives the same kind of value as open", () => {
  it.skipIf(!nativeBox)("sodium-native openInPlace of a received Buffer returns a plain Uint8Array, as open and tweetnacl do", () => {
    const plaintext = Buffer.from("a received message, some bytes of it");
    const sealed = nativeBox!.seal(key, nonce, plaintext);
    const protoOf = (v: Uint8Array | undefined) => (v ? Object.getPrototypeOf(v) : undefined);
    expect(protoOf(nativeBox!.open(key, Buffer.from(sealed)))).toBe(Uint8Array.prototype);
    expect(protoOf(jsBox.openInPlace(key, Buffer.from(sealed)))).toBe(Uint8Array.prototype);
    expect(protoOf(nativeBox!.openInPlace(key, Buffer.from(sealed)))).toBe(Uint8Array.prototype);
  });

  it.skipIf(SEAL_BACKEND !== "sodium-native")("a tool's binary argument is a plain Uint8Array whose slice copies", async () => {
    const blob = new Uint8Array(300).map((_, i) => (i % 250) + 1);
    await alice.call(fx.key("bob"), "echo-bytes", { blob });
    expect(seenArg).toEqual({ plain: true, sliceCopies: true });
    // What it does to a tool: the "copy" it scribbled on was its own argument, which it echoes.
    const echoed = (await alice.call(fx.key("bob"), "echo-bytes", { blob: new Uint8Array([1, 2, 3]) })) as { blob: Uint8Array };
    expect([...echoed.blob]).toEqual([1, 2, 3]);
  });

  it.skipIf(SEAL_BACKEND !== "sodium-native")("a caller's binary result is a plain Uint8Array, JSON as before", async () => {
    const result = (await alice.call(fx.key("bob"), "fixed-bytes", {})) as { blob: Uint8Array };
    expect(Buffer.from(result.blob)).toEqual(Buffer.from([1, 2, 3]));
    expect(Object.getPrototypeOf(result.blob)).toBe(Uint8Array.prototype);
    expect(JSON.stringify(result)).toBe('{"blob":{"0":1,"1":2,"2":3}}');
  });
});

describe("hotpath2-attack (regression): what held about opening in place", () => {
  for (const backend of [nativeBox, jsBox]) {
    if (!backend) continue;
    it(`${backend.name}: a Buffer view into a larger frame opens to exactly the plaintext and touches nothing outside it`, () => {
      const plaintext = Buffer.alloc(70_000, 0x5a); // over tweetnacl's scratch size too
      const sealed = backend.seal(key, nonce, plaintext);
      const frame = Buffer.alloc(sealed.length + 64, 0xaa);
      frame.set(sealed, 32);
      const body = frame.subarray(32, 32 + sealed.length);
      const opened = backend.openInPlace(key, body)!;
      expect(Buffer.from(opened).equals(plaintext)).toBe(true);
      expect(frame.subarray(0, 32).every((b) => b === 0xaa)).toBe(true);
      expect(frame.subarray(32 + sealed.length).every((b) => b === 0xaa)).toBe(true);
      if (backend.name === "sodium-native") {
        // Decrypted in place: opening the (now plaintext) body again fails and changes nothing.
        const after = Buffer.from(body);
        expect(backend.openInPlace(key, body)).toBeUndefined();
        expect(Buffer.from(body).equals(after)).toBe(true);
      } else {
        expect(Buffer.from(body).equals(Buffer.from(sealed))).toBe(true); // tweetnacl opens into a copy
      }
    });

    it(`${backend.name}: a truncated or wrong-key body is refused and left as it was`, () => {
      const sealed = Buffer.from(backend.seal(key, nonce, Buffer.from("x".repeat(200))));
      const wrong = new Uint8Array(32).fill(8);
      const before = Buffer.from(sealed);
      expect(backend.openInPlace(wrong, sealed)).toBeUndefined();
      expect(sealed.equals(before)).toBe(true);
      const short = sealed.subarray(0, SEAL_OVERHEAD);
      expect(backend.openInPlace(key, short)).toBeUndefined();
      expect(sealed.equals(before)).toBe(true);
    });
  }
});
