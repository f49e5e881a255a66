/**
 * Adversarial review of direct links: a caller's memory of callees' endpoints. It held one entry
 * per key ever called, without bound, and a caller can be made to call any Z85 key (an MCP
 * bridge's client names the target): a client calling ever new keys grew it without end.
 *
 * The links part alone (src/agent/direct-links.ts), with an endpoint asker that answers "does not
 * listen" at once: an agent doing the same through a broker takes 20,000 round trips, too slow
 * for a test on a shared machine, and goes through exactly this code.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { AgentCore } from "../../src/agent/core.js";
import { DIRECT_DEFAULTS, DirectLinks, MAX_KNOWN } from "../../src/agent/direct-links.js";
import { z85Encode } from "../../src/wire/z85.js";
import { sleep } from "../support/wait.js";

describe("direct links: what a caller remembers of callees (adversarial)", () => {
  it(`${MAX_KNOWN + 500} distinct keys called: each asked once, at most ${MAX_KNOWN} answers remembered; a forgotten key is asked again`, async () => {
    const asked: string[] = [];
    const core = {} as AgentCore; // not reached: no endpoint is ever given, so nothing is dialled or logged
    const links = new DirectLinks(core, "", { ...DIRECT_DEFAULTS }, (key) => (asked.push(key), Promise.resolve(null)), () => undefined);
    try {
      const keys = Array.from({ length: MAX_KNOWN + 500 }, () => z85Encode(randomBytes(32)));
      for (const key of keys) expect(links.ready(key)).toBeUndefined();
      await sleep(0);
      expect(asked.length).toBe(keys.length);
      expect(links.known).toBeLessThanOrEqual(MAX_KNOWN);
      // The oldest was forgotten: asked again (one more link/endpoint through the broker, no more).
      links.ready(keys[0]!);
      expect(asked.length).toBe(keys.length + 1);
      // A recent one is remembered ("does not listen", for linkBackoff): not asked again.
      links.ready(keys.at(-1)!);
      expect(asked.length).toBe(keys.length + 1);
    } finally {
      await links.close();
    }
  });
});
