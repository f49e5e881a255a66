/**
 * Wires the agent's parts to each other over an AgentCore; the facade (agent.ts) adds the
 * connection and metrics, and unit tests use the parts over an in-memory transport
 * (transport.ts) without a socket.
 */
import { Caller } from "./caller.js";
import type { AgentCore } from "./core.js";
import { JobFollower } from "./follower.js";
import { Handler } from "./handler.js";
import { Inbound } from "./inbound.js";
import { Replica } from "./replica.js";
import { Responder } from "./responder.js";
import type { ToolRegistry } from "./tools.js";

export interface AgentParts {
  tools: ToolRegistry;
  responder: Responder;
  handler: Handler;
  caller: Caller;
  follower: JobFollower;
  replica: Replica;
  inbound: Inbound;
  /** Call latency, seconds, by outcome; a no-op until the facade points it at its metrics. */
  observeLatency: (ok: boolean, seconds: number) => void;
}

/** Builds the parts. The handler first: an unreadable authority key throws before anything else exists. */
export function createParts(core: AgentCore, serverKey: string, tools: ToolRegistry): AgentParts {
  const responder = new Responder(core);
  const handler = new Handler(core, tools, responder);
  const parts = { tools, responder, handler, observeLatency: () => undefined } as Partial<AgentParts> & Pick<AgentParts, "observeLatency">;
  const caller = new Caller(core, (ok, seconds) => parts.observeLatency(ok, seconds));
  const follower = new JobFollower(core, caller);
  caller.follower = follower;
  const replica = new Replica(core, serverKey, () => core.options.maxConcurrency - handler.active);
  const inbound = new Inbound({ core, replica, caller, follower, handler, responder });
  follower.redeliver = (frames) => inbound.accept(frames);
  return Object.assign(parts, { caller, follower, replica, inbound }) as AgentParts;
}
