/**
 * Finding 4 of the adversarial review of issue 10: a string that is not well-formed Unicode (a
 * lone UTF-16 surrogate) was encoded as bytes no UTF-8 decoder accepts (`ed a0 80`); the Node
 * SDK read it back leniently while a Python caller dropped it and waited out its deadline. Now
 * the sender refuses it with its path (tool_failed at once), error messages are made well-formed,
 * and receivers refuse invalid UTF-8 in any string or map key as `bad_frame`.
 */
import { encode } from "@msgpack/msgpack";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Agent } from "../../src/agent/agent.js";
import type { Broker } from "../../src/broker/broker.js";
import { ProtocolError, RemoteError } from "../../src/errors.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { checkSendable, UnsendableError } from "../../src/wire/sendable.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

const LONE = "caf\u00e9 \ud800";

describe("strings that are not well-formed Unicode", () => {
  it("the sender refuses them, in values and in map keys, naming the path", () => {
    expect(() => checkSendable({ display: LONE }, "result", 1)).toThrow(UnsendableError);
    expect(() => checkSendable({ display: LONE }, "result", 1)).toThrow(/result\.display is a string that is not well-formed Unicode/);
    expect(() => checkSendable({ list: [{ ["k\udc00"]: 1 }] }, "result", 1)).toThrow(/result\.list\[0\]\.k\uFFFD is a key that is not well-formed Unicode/);
    expect(() => checkSendable({ ok: "caf\u00e9 \u{1F600}" }, "result", 1)).not.toThrow();
  });

  it("the receiver's check refuses invalid UTF-8 in a string or a key as bad_frame, and keeps bin as it is", () => {
    const str = Buffer.from([0x81, 0xa1, 0x61, 0xa3, 0xed, 0xa0, 0x80]); // {a: <ed a0 80>}
    const key = Buffer.from([0x81, 0xa2, 0xc3, 0x28, 0x01]); // {<c3 28>: 1}
    for (const bytes of [str, key]) {
      let err: unknown;
      try {
        checkMsgpack(bytes, 8);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).code).toBe("bad_frame");
      expect((err as Error).message).toMatch(/not valid UTF-8/);
    }
    expect(() => checkMsgpack(encode({ a: new Uint8Array([0xed, 0xa0, 0x80]), b: "caf\u00e9" }), 8)).not.toThrow();
  });

  describe("between agents", () => {
    let fx: CertFixture | undefined;
    let broker: Broker | undefined;
    const agents: Agent[] = [];
    afterEach(async () => {
      for (const a of agents.splice(0)) await a.close();
      await broker?.close();
      broker = undefined;
      fx?.cleanup();
    });

    it("a result holding a lone surrogate fails tool_failed at once; a thrown message holding one arrives well-formed", async () => {
      fx = tempCerts("alice", "bob");
      broker = await startBroker(fx);
      const bob = await connectAgent(fx, "bob", broker.endpoint);
      const alice = await connectAgent(fx, "alice", broker.endpoint, { timeout: 20_000 });
      agents.push(alice, bob);
      bob.tool("name", { input: z.object({}) }, () => ({ display: LONE }));
      bob.tool("throws", { input: z.object({}) }, () => {
        throw new Error(`bad ${LONE}`);
      });
      const err = await alice.call("bob", "name", {}, { retry: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect((err as RemoteError).code).toBe("tool_failed");
      expect((err as RemoteError).message).toMatch(/result\.display is a string that is not well-formed Unicode/);
      const thrown = await alice.call("bob", "throws", {}, { retry: false }).catch((e: unknown) => e);
      expect(thrown).toBeInstanceOf(RemoteError);
      expect((thrown as RemoteError).code).toBe("tool_failed");
      expect((thrown as RemoteError).message).toContain("caf\u00e9 \uFFFD");
      expect(bob.stats.requestFailures["tool_failed"]).toBe(2);
    });
  });
});
