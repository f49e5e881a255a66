/**
 * The key distributor: an ordinary agent that holds its topics' authority and answers the
 * `events/key` tool (docs/EVENTS.md). A member calls it through the mesh, sealed, with its
 * capability token; the answer (the topic's epoch key, and for a publisher a credential) is
 * sealed to the member's own curve key, so the broker never sees a key.
 *
 * Keys: each epoch has one random 32-byte secret, held only here; a topic's key in an epoch is
 * HKDF-SHA256(secret, salt "zmcp-event-key/1", info topic), so the state is O(1) per epoch
 * whatever the number of topics, and a member of `docs.a` learns nothing of `docs.b`'s key.
 *
 * Epochs: one counter for all the topics served, numbered by the ms their epoch started (so
 * they keep growing across restarts of the distributor, whose secrets do not survive one). A
 * new epoch starts on schedule (`rotateEveryMs`), when publishers report `rotateEveryMessages`
 * sealed in it, when `remove(key)` is called, and when a key served in the current epoch
 * appears on the deny list. The previous epoch's keys are still handed out for `graceMs`
 * (publications in flight across a rotation); older ones never, so a late joiner cannot open
 * earlier epochs.
 *
 * One process, not a service (`svc:NAME`) of replicas: removal must start one new epoch that
 * every member agrees on, and replicas deriving epochs without shared state could not agree
 * on when a removal happened. Members keep working with the keys they hold while it is down.
 */
import { hkdfSync, randomBytes } from "node:crypto";
import type { Agent } from "../agent/agent.js";
import type { ToolContext } from "../agent/tools.js";
import { DenyList } from "../auth/denylist.js";
import { isTopic, scopeCovers, topicPatternCovers } from "../auth/tokens.js";
import { ConfigError, ProtocolError } from "../errors.js";
import type { Logger } from "../support/log.js";
import { isZ85Key, z85Decode } from "../wire/z85.js";
import { encodeCredential } from "./format.js";
import { EVENT_KEY_TOOL, KeyRequestSchema, type KeyAnswer, type KeyRequest } from "./key-protocol.js";
import { signing, type SigningKey } from "./signing.js";

export interface EventKeyDistributorOptions {
  /** Topic patterns this distributor holds the authority of (`docs.>`, `prices.*`). Required. */
  topics: readonly string[];
  /** A new epoch this often, ms. Default 3,600,000 (an hour). */
  rotateEveryMs?: number;
  /** A new epoch once publishers report this many publications sealed in the current one. Default 1,000,000. */
  rotateEveryMessages?: number;
  /**
   * A count-driven rotation waits until the epoch is this old, ms: a member with `pub:` reports
   * its own count, so it could otherwise force every member to fetch new keys at will. Default 60,000.
   */
  minEpochMs?: number;
  /** The previous epoch's keys are still handed out this long after it ended, ms. Default 30,000. */
  graceMs?: number;
  /**
   * Longest answer, ms: members ask again after it, and a publisher's credential expires with
   * it, so a removal reaches every honest publisher within it (and every subscriber rejects
   * the removed epoch's new credentials after it, plus their clock skew). Default 60,000.
   */
  leaseMs?: number;
  /** Revoked keys and tokens (the agent's deny list file, or a DenyList): refused, and a new epoch when one was served in this one. */
  denyList?: string | DenyList;
  /** How often the deny list is compared with the members served in the current epoch, ms. Default 1,000. */
  denyListCheckMs?: number;
  /** Members remembered per epoch for that comparison; past it, any new revoked key starts a new epoch. Default 100,000. */
  maxMembers?: number;
  /** The tool's name. Default `events/key`. */
  tool?: string;
}

/** Every default of {@link EventKeyDistributorOptions} (ms, counts). */
export const DISTRIBUTOR_DEFAULTS = Object.freeze({
  rotateEveryMs: 3_600_000,
  rotateEveryMessages: 1_000_000,
  minEpochMs: 60_000,
  graceMs: 30_000,
  leaseMs: 60_000,
  denyListCheckMs: 1_000,
  maxMembers: 100_000,
  tool: EVENT_KEY_TOOL,
});

/** Why an epoch started. */
export type RotationReason = "start" | "schedule" | "messages" | "removed" | "revoked" | "manual";

interface Epoch {
  id: number;
  secret: Uint8Array;
  /** When it started, on this process's monotonic clock (as endsAt and endedAt). */
  startedAt: number;
  /** When the schedule ends it. */
  endsAt: number;
  /** When it did end (the next one started); the grace counts from here. */
  endedAt: number | undefined;
  sealed: number;
  /** Keys served in this epoch (to compare with the deny list); undefined once past maxMembers. */
  members: Set<string> | undefined;
}

const KEY_SALT = new TextEncoder().encode("zmcp-event-key/1");
/** Epoch lengths, graces and leases are measured on this (see #newEpoch). */
const monotonic = (): number => performance.now();

/** A running distributor (see {@link serveEventKeys}). */
export class EventKeyDistributor {
  readonly #agent: Agent;
  readonly #log: Logger;
  readonly #topics: readonly string[];
  readonly #o: Required<Omit<EventKeyDistributorOptions, "denyList" | "topics">>;
  readonly #denyList: DenyList | undefined;
  readonly #ownsDenyList: boolean;
  readonly #signingKey: SigningKey = signing.generate();
  readonly #removed = new Set<string>();
  readonly #timer: NodeJS.Timeout | undefined;
  #deniedKeys: number;
  #current: Epoch;
  #previous: Epoch | undefined;
  #closed = false;
  /** Epochs started since this distributor started (the first included). */
  rotations = 0;
  /** Answers given, and refusals (by code), since it started. */
  readonly stats = { served: 0, refused: new Map<string, number>() };

  /** @internal use {@link serveEventKeys} */
  constructor(agent: Agent, options: EventKeyDistributorOptions) {
    this.#agent = agent;
    this.#log = agent.log;
    if (!Array.isArray(options.topics) || options.topics.length === 0) throw new ConfigError("serveEventKeys: topics must list at least one topic pattern");
    for (const t of options.topics) if (!isTopic(t, true)) throw new ConfigError(`serveEventKeys: ${JSON.stringify(t)} is not a topic pattern (dotted tokens, * and a last >)`);
    this.#topics = [...options.topics];
    const o = { ...DISTRIBUTOR_DEFAULTS, ...definedOnly(options) } as Required<Omit<EventKeyDistributorOptions, "denyList" | "topics">>;
    for (const name of ["rotateEveryMs", "rotateEveryMessages", "minEpochMs", "graceMs", "leaseMs", "denyListCheckMs", "maxMembers"] as const) {
      const v = o[name];
      if (!Number.isSafeInteger(v) || v < (name === "minEpochMs" || name === "graceMs" ? 0 : 1)) throw new ConfigError(`serveEventKeys: ${name} must be a positive integer`);
    }
    this.#o = o;
    if (typeof options.denyList === "string") {
      this.#denyList = DenyList.open(options.denyList, { log: this.#log });
      this.#ownsDenyList = true;
    } else {
      this.#denyList = options.denyList;
      this.#ownsDenyList = false;
    }
    this.#deniedKeys = this.#denyList?.size.keys ?? 0;
    this.#current = this.#newEpoch(0, "start");
    agent.tool(o.tool, { description: "event group keys (docs/EVENTS.md)", input: KeyRequestSchema, scope: null }, (args, ctx) => this.#count(args, ctx));
    if (this.#denyList) {
      this.#timer = setInterval(() => this.#checkDenyList(), o.denyListCheckMs);
      this.#timer.unref();
    }
    void agent.closed.then(() => this.close());
  }

  /** The current epoch. */
  get epoch(): number {
    return this.#rotateIfDue(monotonic()).id;
  }

  /** The Ed25519 public key that signs this distributor's credentials (a fresh one per process). */
  get signingPublicKey(): Uint8Array {
    return this.#signingKey.publicKey;
  }

  /**
   * Removes a member (its Z85 key or certificate name): it is refused every key from now on
   * (`revoked`), and a new epoch starts at once, whose keys it never gets. Returns the new epoch.
   */
  remove(member: string): number {
    const key = isZ85Key(member) ? member : this.#agent.resolve(member);
    this.#removed.add(key);
    return this.rotate("removed");
  }

  /** Starts a new epoch now; returns it. */
  rotate(reason: RotationReason = "manual"): number {
    this.#previous = this.#current;
    this.#previous.endedAt = monotonic();
    this.#current = this.#newEpoch(this.#previous.id, reason);
    return this.#current.id;
  }

  /** Stops answering (the tool is removed) and stops the deny list check. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#agent.removeTool(this.#o.tool);
    if (this.#ownsDenyList) this.#denyList?.close();
  }

  #newEpoch(after: number, reason: RotationReason): Epoch {
    this.rotations++;
    // Numbered on the wall clock (growing across restarts); timed on the monotonic one, so a
    // wall clock step neither stretches an epoch, its grace or minEpochMs, nor cuts them short.
    const id = Math.max(Date.now(), after + 1);
    if (reason !== "start") this.#log.info("event key epoch started", { epoch: id, reason });
    const at = monotonic();
    return { id, secret: randomBytes(32), startedAt: at, endsAt: at + this.#o.rotateEveryMs, endedAt: undefined, sealed: 0, members: new Set() };
  }

  #rotateIfDue(now: number): Epoch {
    if (now >= this.#current.endsAt) this.rotate("schedule");
    return this.#current;
  }

  #checkDenyList(): void {
    const list = this.#denyList;
    if (!list || this.#closed) return;
    const denied = list.size.keys;
    const members = this.#current.members;
    const grew = denied !== this.#deniedKeys;
    this.#deniedKeys = denied;
    if (members === undefined ? grew : [...members].some((m) => list.hasKey(m))) this.rotate("revoked");
  }

  #count(args: KeyRequest, ctx: ToolContext): KeyAnswer {
    try {
      const answer = this.#serve(args, ctx);
      this.stats.served++;
      return answer;
    } catch (err) {
      const code = err instanceof ProtocolError ? err.code : "tool_failed";
      this.stats.refused.set(code, (this.stats.refused.get(code) ?? 0) + 1);
      throw err;
    }
  }

  #serve(args: KeyRequest, ctx: ToolContext): KeyAnswer {
    if (this.#closed) throw new ProtocolError("unavailable", "the event key distributor is closed");
    const token = ctx.token;
    if (token === undefined) throw new ProtocolError("token_missing", "event keys need a capability token with sub:TOPIC or pub:TOPIC (the distributor's agent must check tokens: authority)");
    if (this.#removed.has(ctx.from)) throw new ProtocolError("revoked", "this key was removed from the distributor's topics");
    if (this.#denyList?.hasKey(ctx.from) || this.#denyList?.hasJti(token.jti)) throw new ProtocolError("revoked", "this key or token is revoked");
    const { topic, access } = args;
    if (!isTopic(topic, access === "sub")) throw new ProtocolError("invalid_args", `${JSON.stringify(topic)} is not a topic${access === "sub" ? " or pattern" : " (no wildcards to publish)"}`);
    if (!this.#topics.some((t) => topicPatternCovers(t, topic))) throw new ProtocolError("invalid_args", `topic ${JSON.stringify(topic)} is not served by this distributor`);
    if (!scopeCovers(token.scopes, `${access}:${topic}`)) throw new ProtocolError("token_scope", `token scope does not cover ${JSON.stringify(`${access}:${topic}`)}`);
    const now = Date.now();
    const mono = monotonic();
    let current = this.#rotateIfDue(mono);
    if (access === "pub" && args.sealed !== undefined && args.epoch === current.id) {
      current.sealed += args.sealed;
      if (current.sealed >= this.#o.rotateEveryMessages && mono - current.startedAt >= this.#o.minEpochMs) {
        this.rotate("messages");
        current = this.#current;
      }
    }
    // Lengths on the monotonic clock; `until` and a credential's expiry on the wall clock (members read them there).
    const ttl = Math.max(0, Math.floor(Math.min(this.#o.leaseMs, current.endsAt - mono)));
    const lease = now + ttl;
    const answer: KeyAnswer = { topic, current: current.id, until: lease, ttl, signer: this.#signingKey.publicKey };
    if (!isTopic(topic)) return answer; // a pattern: the caller may subscribe; keys come per topic
    let epoch = current;
    if (access === "sub" && args.epoch !== undefined && args.epoch !== current.id) {
      const previous = this.#previous;
      if (previous === undefined || args.epoch !== previous.id || mono >= previous.endedAt! + this.#o.graceMs) {
        throw new ProtocolError("expired", `epoch ${args.epoch} of ${JSON.stringify(topic)} is not handed out (current ${current.id}; only it and the previous one within ${this.#o.graceMs} ms of its end)`);
      }
      epoch = previous;
      answer.ttl = Math.max(0, Math.floor(previous.endedAt! + this.#o.graceMs - mono));
      answer.until = now + answer.ttl;
    }
    this.#remember(epoch, ctx.from);
    answer.epoch = epoch.id;
    answer.key = topicKey(epoch.secret, topic);
    if (access === "pub") {
      if (args.signer === undefined) throw new ProtocolError("invalid_args", "pub needs the caller's Ed25519 public key (signer)");
      answer.credential = encodeCredential({ epoch: epoch.id, expires: lease, member: z85Decode(ctx.from), signer: args.signer, topic }, (m) => this.#signingKey.sign(m));
      answer.maxMessages = this.#o.rotateEveryMessages;
    }
    return answer;
  }

  #remember(epoch: Epoch, member: string): void {
    if (epoch.members === undefined || epoch.members.has(member)) return;
    if (epoch.members.size >= this.#o.maxMembers) epoch.members = undefined;
    else epoch.members.add(member);
  }
}

/** A topic's key in an epoch: HKDF-SHA256(epoch secret, "zmcp-event-key/1", topic), 32 bytes. */
export function topicKey(secret: Uint8Array, topic: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", secret, KEY_SALT, new TextEncoder().encode(topic), 32));
}

/**
 * Makes `agent` the key distributor of `options.topics`: registers the `events/key` tool
 * (which checks each caller's token itself: `sub:TOPIC` for a key to read, `pub:TOPIC` for a
 * key and a publishing credential). The agent must check tokens (`authority` in its options),
 * or every caller is refused `token_missing`. Closing the agent closes the distributor.
 */
export function serveEventKeys(agent: Agent, options: EventKeyDistributorOptions): EventKeyDistributor {
  return new EventKeyDistributor(agent, options);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
