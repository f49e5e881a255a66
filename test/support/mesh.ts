/** A broker and agents in the test's own process, on free loopback ports. */
import { Agent, type AgentOptions } from "../../src/agent/agent.js";
import { Broker, type BrokerOptions } from "../../src/broker/broker.js";
import type { CertFixture } from "./certs.js";

/** A broker in this process on a free loopback port. */
export async function startBroker(fx: CertFixture, options: Partial<BrokerOptions> = {}): Promise<Broker> {
  return Broker.start({
    bind: "tcp://127.0.0.1:*",
    publicKey: fx.key("broker"),
    secretKey: fx.certs["broker"]!.secretKey,
    allow: fx.dir,
    ...options,
  });
}

export async function connectAgent(fx: CertFixture, name: string, endpoint: string | string[], options: Partial<AgentOptions> = {}): Promise<Agent> {
  return Agent.connect({ broker: endpoint, cert: fx.secretPath(name), certs: fx.dir, connectTimeout: 5000, timeout: 5000, ...options });
}
