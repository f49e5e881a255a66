/**
 * Adversarial review of direct links: a caller's memory of callees' endpoints. It held one entry
 * per key ever called, without bound, and a caller can be made to call any Z85 key (an MCP
 * bridge's client names the target): a client calling ever new keys grew it without end.
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_KNOWN } from "../../src/agent/direct-links.js";
import { RemoteError } from "../../src/errors.js";
import { z85Encode } from "../../src/wire/z85.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";

let fx: CertFixture | undefined;
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await Promise.resolve(stop()).catch(() => undefined);
  fx?.cleanup();
  fx = undefined;
});

describe("direct links: what a caller remembers of callees (adversarial)", () => {
  it(`calls to ${MAX_KNOWN + 200} distinct keys nobody holds: each refused no_route, and at most ${MAX_KNOWN} endpoints remembered`, async () => {
    fx = tempCerts("alice");
    const broker = await startBroker(fx);
    stops.push(() => broker.close());
    const alice = await connectAgent(fx, "alice", broker.endpoint, { direct: true });
    stops.push(() => alice.close());
    const keys = Array.from({ length: MAX_KNOWN + 200 }, () => z85Encode(randomBytes(32)));
    for (let i = 0; i < keys.length; i += 200) {
      const outcomes = await Promise.all(keys.slice(i, i + 200).map((k) => alice.call(k, "echo", {}, { retry: false, circuit: false, timeout: 30_000 }).then(() => undefined, (err: unknown) => err)));
      for (const err of outcomes) {
        expect(err).toBeInstanceOf(RemoteError);
        expect((err as RemoteError).code).toBe("no_route");
      }
    }
    expect(alice.direct.links!.known).toBeGreaterThan(0);
    expect(alice.direct.links!.known).toBeLessThanOrEqual(MAX_KNOWN);
  });
});
