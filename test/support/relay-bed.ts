/**
 * A caller and a callee (`bob`) through the stand-in broker (stand-in-broker.ts), which a test
 * tells to hold, swallow, forge or resend messages: the bed of the late-answer and retry-budget
 * tests. One per test file; it registers its own cleanup after each test (agents, raw peers,
 * the relay and the certificates).
 */
import { afterEach } from "vitest";
import type { Agent, AgentOptions } from "../../src/agent/agent.js";
import { encodeHeader, newId, PROTOCOL_VERSION } from "../../src/wire/envelope.js";
import { type CertFixture, tempCerts } from "./certs.js";
import { connectAgent } from "./mesh.js";
import type { RawPeer } from "./raw-peer.js";
import { startRelay, type Captured, type Relay } from "./stand-in-broker.js";

export interface RelayMesh {
  caller: Agent;
  bob: Agent;
  relay: Relay;
  fx: CertFixture;
  /** Agents for the names in `extra` that were connected (see {@link RelayBed.mesh}). */
  others: Agent[];
}

export class RelayBed {
  fx: CertFixture | undefined;
  relay: Relay | undefined;
  readonly agents: Agent[] = [];
  readonly raws: RawPeer[] = [];

  constructor() {
    afterEach(() => this.cleanup());
  }

  /**
   * Certificates for `caller`, `bob` and `extra`, the relay, and `bob` then `caller` connected
   * to it (`bob` with `bobOptions`). `connect: false` leaves the extra names unconnected (raw
   * peers, say).
   */
  async mesh(bobOptions: Partial<AgentOptions> = {}, extra: string[] = [], connect = true): Promise<RelayMesh> {
    const fx = (this.fx = tempCerts("caller", "bob", ...extra));
    const relay = (this.relay = await startRelay(fx));
    const bob = await connectAgent(fx, "bob", relay.endpoint, bobOptions);
    const caller = await connectAgent(fx, "caller", relay.endpoint);
    this.agents.push(caller, bob);
    const others: Agent[] = [];
    if (connect) for (const name of extra) others.push(await connectAgent(fx, name, relay.endpoint));
    this.agents.push(...others);
    return { caller, bob, relay, fx, others };
  }

  async cleanup(): Promise<void> {
    for (const a of this.agents.splice(0)) await a.close();
    for (const r of this.raws.splice(0)) r.close();
    this.relay?.close();
    this.relay = undefined;
    this.fx?.cleanup();
    this.fx = undefined;
  }
}

/** A request sent by the key `from`. */
export const isRequest = (m: Captured, from: string): boolean => m.header.k === "req" && m.from === from;
/** A response addressed to the key `to`. */
export const isResponse = (m: Captured, to: string): boolean => m.header.k === "res" && m.header.to === to;

/** The broker's refusal (`nack`, `code`) of the message whose id is `re`, sent by the relay to `to`. */
export function sendNack(relay: Relay, to: string, re: Uint8Array, code: string, msg = code): Promise<void> {
  return relay.send(to, "", encodeHeader({ v: PROTOCOL_VERSION, k: "nack", id: newId(), to: "", exp: Date.now() + 5000, re, code, msg }), new Uint8Array(0));
}
