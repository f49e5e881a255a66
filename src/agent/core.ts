/**
 * What every part of the agent shares: its identity and sealer, its resolved options, the
 * transport it sends through, its directory, counters and log, and whether it is closed.
 */
import type { TokenSource } from "../auth/token-source.js";
import type { ZmcpError } from "../errors.js";
import type { Logger } from "../support/log.js";
import type { LogThrottle } from "../support/log-throttle.js";
import type { Header, InnerDraft } from "../wire/envelope.js";
import { sealMessage, sealResponse } from "../wire/message.js";
import type { Sealer } from "../wire/seal.js";
import type { Directory } from "./directory.js";
import type { ResolvedAgentOptions } from "./options.js";
import type { AgentStats } from "./stats.js";
import type { Transport } from "./transport.js";

export interface AgentCore {
  readonly publicKey: string;
  readonly sealer: Sealer;
  readonly options: ResolvedAgentOptions;
  readonly transport: Transport;
  readonly directory: Directory;
  readonly stats: AgentStats;
  readonly log: Logger;
  /** Every line a peer can cause goes through it: one per event and peer per interval, with a count. */
  readonly throttle: LogThrottle;
  /** This agent's own token source, when it sends tokens. */
  readonly tokenSource: TokenSource | undefined;
  /** Fires when the agent closes: handlers and jobs see it. */
  readonly closing: AbortSignal;
  /** Undefined while open; once closed, the error later calls throw. */
  /** The endpoint of this agent's listener if it admits `peer` (agent/listener.ts); undefined without one. */
  directEndpoint?(peer: string): string | undefined;
  closedWith(): ZmcpError | undefined;
  isClosed(): boolean;
}

/** Seals one message with the agent's size cap (wire/message.ts). */
export function seal(core: AgentCore, sealer: Sealer, to: string, header: Header, draft: InnerDraft): [Uint8Array, Uint8Array] {
  return sealMessage(sealer, to, header, draft, core.options.maxMessageBytes);
}

/** Seals a response whose answer is already encoded (wire/message.ts sealResponse). */
export function sealAnswer(core: AgentCore, sealer: Sealer, to: string, header: Header, answer: Uint8Array): [Uint8Array, Uint8Array] {
  return sealResponse(sealer, to, header, Date.now(), answer, core.options.maxMessageBytes);
}
