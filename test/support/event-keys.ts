/**
 * A mesh for the group-key tests (src/events): a real broker process, a key distributor agent
 * that checks tokens, and members holding tokens with the scopes a test gives them. Sealers are
 * driven directly (seal/open with the header bytes and the `from` the broker would give), since
 * the fan-out of publications is built apart from the keys (src/events/sealer.ts).
 */
import { encode } from "@msgpack/msgpack";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Agent, AgentOptions } from "../../src/agent/agent.js";
import { generateAuthority, saveAuthority, type AuthorityJwk } from "../../src/auth/jwk.js";
import { createToken } from "../../src/auth/tokens.js";
import { createLogger } from "../../src/support/log.js";
import { serveEventKeys, type EventKeyDistributor, type EventKeyDistributorOptions } from "../../src/events/distributor.js";
import { groupKeys, type GroupKeySealer, type GroupKeysOptions } from "../../src/events/group-keys.js";
import type { EventKeyContext } from "../../src/events/sealer.js";
import { tempCerts, type CertFixture } from "./certs.js";
import { connectAgent } from "./mesh.js";
import { startBrokerProcess, type BrokerProcess } from "./process.js";
import { freePort } from "./redis.js";

export interface EventMesh {
  fx: CertFixture;
  broker: BrokerProcess;
  authority: AuthorityJwk;
  /** The distributor's agent ("keys"). */
  keysAgent: Agent;
  distributor: EventKeyDistributor;
  denyPath: string;
  /** Connects `name` with a token of `scope` (none: no token at all). */
  member(name: string, scope: string | undefined, options?: Partial<AgentOptions>): Promise<Agent>;
  /** The context an agent gives its sealer (what Agent.connect's `events` option will pass). */
  context(agent: Agent): EventKeyContext;
  /** A sealer of group keys for `agent`, with the distributor "keys". */
  sealer(agent: Agent, options?: Partial<GroupKeysOptions>): GroupKeySealer;
  /** Replaces the deny list file. */
  deny(keys: string[]): void;
  /** SIGKILLs the broker process and starts a new one on the same endpoint, with the same arguments. */
  restartBroker(): Promise<void>;
  close(): Promise<void>;
}

/** Header bytes as a fan-out would send them with a publication (any bytes bind the same way). */
export function header(topic: string): Uint8Array {
  return encode({ v: 1, k: "pub", t: topic, id: randomBytes(16), exp: Date.now() + 5000 });
}

/** How the mesh's broker process runs (e.g. `--heartbeat-interval`). */
export interface EventMeshBroker {
  args?: string[];
}

export async function eventMesh(names: string[], options: Partial<EventKeyDistributorOptions> = {}, brokerOptions: EventMeshBroker = {}): Promise<EventMesh> {
  const fx = tempCerts("keys", ...names);
  const { privateJwk } = generateAuthority();
  const publicPath = saveAuthority(privateJwk, fx.dir, "authority").publicPath;
  const denyPath = join(fx.dir, "deny.json");
  writeFileSync(denyPath, JSON.stringify({ keys: [] }));
  const agents: Agent[] = [];
  let broker: BrokerProcess | undefined;
  try {
    // A fixed endpoint, so that a restarted broker is where the agents redial.
    const bind = `tcp://127.0.0.1:${await freePort()}`;
    const start = () => startBrokerProcess(fx, { bind, args: brokerOptions.args ?? [] });
    broker = await start();
    const keysAgent = await connectAgent(fx, "keys", broker.endpoint, { authority: publicPath, requireToken: true, denyList: denyPath, log: silent });
    agents.push(keysAgent);
    const distributor = serveEventKeys(keysAgent, { topics: ["docs.>", "prices.*"], denyList: denyPath, denyListCheckMs: 100, ...options });
    const endpoint = broker.endpoint;
    const mesh: EventMesh = {
      fx,
      broker,
      authority: privateJwk,
      keysAgent,
      distributor,
      denyPath,
      async member(name, scope, extra = {}) {
        const token = scope === undefined ? {} : { token: () => createToken({ authority: privateJwk, sub: name, key: fx.key(name), scope }) };
        const agent = await connectAgent(fx, name, endpoint, { ...token, log: silent, ...extra });
        agents.push(agent);
        return agent;
      },
      context: contextOf,
      sealer: (agent, extra = {}) => groupKeys({ distributor: "keys", fetchTimeout: 3000, ...extra })(contextOf(agent)) as GroupKeySealer,
      deny(keys) {
        writeFileSync(denyPath, JSON.stringify({ keys }));
      },
      async restartBroker() {
        broker!.kill("SIGKILL");
        await broker!.exited;
        broker = await start();
        mesh.broker = broker;
      },
      async close() {
        await Promise.all(agents.splice(0).map((a) => a.close()));
        await broker?.stop();
        fx.cleanup();
      },
    };
    return mesh;
  } catch (err) {
    await Promise.all(agents.map((a) => a.close()));
    await broker?.stop();
    fx.cleanup();
    throw err;
  }
}

export function contextOf(agent: Agent): EventKeyContext {
  const closing = new AbortController();
  void agent.closed.then(() => closing.abort());
  return {
    publicKey: agent.publicKey,
    signal: closing.signal,
    call: (to, tool, args, options = {}) => {
      const callOptions: { timeout?: number; signal?: AbortSignal } = {};
      if (options.timeoutMs !== undefined) callOptions.timeout = options.timeoutMs;
      if (options.signal !== undefined) callOptions.signal = options.signal;
      return agent.call(to, tool, args, callOptions);
    },
  };
}

const silent = createLogger("silent");
