/**
 * README: an answer not sealed by the party asked is dropped bad_seal "without cutting the real
 * answer off; if no real answer comes, the call fails with ForgedAnswerError (code bad_seal)".
 * A forgery answering a call's timed-out attempt was dropped and forgotten: the call failed a
 * plain `timeout`, hiding that someone answered in bob's place.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { tempCerts } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { rawPeer } from "../support/raw-peer.js";
import { RelayBed } from "../support/relay-bed.js";
import { startRelay, type Captured } from "../support/stand-in-broker.js";
import { waitFor } from "../support/wait.js";

const bed = new RelayBed();

describe("retry8: a forged answer to a timed-out attempt", () => {
  it("with no real answer, the call fails bad_seal (ForgedAnswerError), not timeout", async () => {
    const fx = (bed.fx = tempCerts("caller", "bob", "mallory"));
    const relay = (bed.relay = await startRelay(fx));
    const r = relay;
    const bob = await connectAgent(fx, "bob", relay.endpoint);
    const caller = await connectAgent(fx, "caller", relay.endpoint);
    bed.agents.push(caller, bob);
    bob.tool("echo", { input: z.object({}) }, () => ({ by: "bob" }));
    const mallory = await rawPeer(fx, "mallory", relay.endpoint, { routingId: fx.key("mallory") });
    bed.raws.push(mallory);
    const callerKey = fx.key("caller");
    const requests: Captured[] = [];
    r.onMessage = (m) => {
      if (m.header.k === "req" && m.from === callerKey) requests.push(m);
      return !(m.header.k === "res" && m.header.to === callerKey && m.from !== fx.key("mallory")); // bob's answers lost
    };
    const call = caller.call("bob", "echo", {}, { timeout: 1500, retry: { attempts: 2, attemptTimeout: 200, minDelay: 5, maxDelay: 10 } }).catch((e: unknown) => e);
    await waitFor(() => requests.length >= 2, 3000, "the second attempt"); // the first has timed out
    await mallory.socket.send(mallory.frames(callerKey, { t: "res", ts: Date.now(), st: "ok", result: { by: "mallory" } }, { k: "res", re: requests[0]!.header.id }));
    await waitFor(() => (caller.stats.dropped.bad_seal ?? 0) >= 1, 2000, "the forgery dropped");
    expect(await call).toMatchObject({ code: "bad_seal" }); // before: timeout
  }, 15_000);
});
