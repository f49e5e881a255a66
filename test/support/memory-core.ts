/**
 * An agent's core (AgentCore) without sockets, for tests that drive its parts directly: a fresh
 * certificate, the options resolved as `Agent.connect` would (`broker: "memory"`, no heartbeats
 * or job polls), silent logs, and a `close()` that marks it closed and aborts its signal.
 */
import { generateCertificate, type Certificate } from "../../src/auth/certs.js";
import type { AgentOptions } from "../../src/agent/agent.js";
import type { AgentCore } from "../../src/agent/core.js";
import { Directory } from "../../src/agent/directory.js";
import { resolveAgentOptions } from "../../src/agent/options.js";
import { newAgentStats } from "../../src/agent/stats.js";
import type { Transport } from "../../src/agent/transport.js";
import { silentLogger } from "../../src/support/log.js";
import { LogThrottle } from "../../src/support/log-throttle.js";
import { Sealer } from "../../src/wire/seal.js";

export function memoryCore(transport: Transport, options: Partial<AgentOptions> = {}): { cert: Required<Certificate>; core: AgentCore; close(): void } {
  const cert = generateCertificate();
  const closing = new AbortController();
  let closed = false;
  const core: AgentCore = {
    publicKey: cert.publicKey,
    sealer: new Sealer(cert.secretKey),
    options: resolveAgentOptions({ broker: "memory", cert, heartbeatInterval: 0, jobPollInterval: 0, ...options }),
    transport,
    directory: new Directory(undefined, silentLogger),
    stats: newAgentStats(),
    log: silentLogger,
    throttle: new LogThrottle(silentLogger),
    tokenSource: undefined,
    closing: closing.signal,
    closedWith: () => undefined,
    isClosed: () => closed,
  };
  return {
    cert,
    core,
    close() {
      closed = true;
      closing.abort();
    },
  };
}
