/**
 * Adversarial review of issue 12 (regression, held): sealMessage seals straight from the msgpack
 * encoder's shared buffer (encodeInnerShared). Arguments and results are user objects: their
 * getters run while the encoder is writing, and may call into the SDK, which encodes and seals
 * other messages on the same encoder. Every message must still open to exactly its own content,
 * bound to its own header.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { decodeInner, encodedSize, newId, PROTOCOL_VERSION, type Header } from "../../src/wire/envelope.js";
import { sealMessage } from "../../src/wire/message.js";
import { Sealer } from "../../src/wire/seal.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

let fx: CertFixture;
beforeAll(() => {
  fx = tempCerts("alice", "bob");
});
afterAll(() => fx?.cleanup());

const header = (to: string): Header => ({ v: PROTOCOL_VERSION, k: "req", id: newId(), to, exp: Date.now() + 5000 });

describe("hotpath-attack: shared encoder buffer and reentrant getters (regression)", () => {
  it("a getter in args that seals another message and counts sizes leaves both messages intact", () => {
    const alice = new Sealer(fx.certs["alice"]!.secretKey);
    const bob = new Sealer(fx.certs["bob"]!.secretKey);
    const to = fx.key("bob");
    let inner: [Uint8Array, Uint8Array] | undefined;
    const args = {
      a: "A".repeat(3000),
      get evil() {
        // While the outer message is being written: another message on the same encoder, a size count, a big value.
        inner = sealMessage(alice, to, header(to), { t: "req", ts: 2, rid: newId(), tool: "inner", args: { z: "Z".repeat(70_000) } }, 1 << 20);
        encodedSize({ junk: "J".repeat(100_000) });
        return "E".repeat(10);
      },
      b: "B".repeat(3000),
    };
    const outer = sealMessage(alice, to, header(to), { t: "req", ts: 1, rid: newId(), tool: "outer", args }, 1 << 20);
    const o = decodeInner(bob.open(fx.key("alice"), outer[1]), outer[0], 1 << 20);
    expect(o).toMatchObject({ t: "req", tool: "outer", args: { a: "A".repeat(3000), evil: "E".repeat(10), b: "B".repeat(3000) } });
    const i = decodeInner(bob.open(fx.key("alice"), inner![1]), inner![0], 1 << 20);
    expect(i).toMatchObject({ t: "req", tool: "inner", args: { z: "Z".repeat(70_000) } });
  });

  it("through real agents: args whose getter starts another call; the callee sees both argument sets intact", async () => {
    const f2 = tempCerts("alice", "bob");
    const broker: Broker = await startBroker(f2);
    const bob: Agent = await connectAgent(f2, "bob", broker.endpoint);
    const alice: Agent = await connectAgent(f2, "alice", broker.endpoint);
    try {
      const seen: unknown[] = [];
      bob.tool("echo", { input: z.record(z.string(), z.string()) }, (a) => {
        seen.push(a);
        return a;
      });
      let nested: Promise<unknown> | undefined;
      const args = {
        x: "X".repeat(2000),
        get y() {
          nested ??= alice.call(f2.key("bob"), "echo", { n: "N".repeat(5000) });
          return "Y".repeat(100);
        },
      };
      const outer = await alice.call(f2.key("bob"), "echo", args);
      expect(outer).toEqual({ x: "X".repeat(2000), y: "Y".repeat(100) });
      expect(await nested).toEqual({ n: "N".repeat(5000) });
    } finally {
      await alice.close();
      await bob.close();
      await broker.close();
      f2.cleanup();
    }
  });
});
