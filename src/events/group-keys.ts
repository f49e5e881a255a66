/**
 * The member's side of group keys: an {@link EventSealer} that seals each publication once
 * with its topic's epoch key, signs it with this process's own Ed25519 key, and opens what
 * others published after checking the distributor's credential for the sender
 * (docs/EVENTS.md). Keys come from the distributor (distributor.ts) through
 * `context.call`, lazily, and are cached per topic and epoch, bounded.
 *
 * What a subscriber checks, cheapest first, so that a peer without keys costs it little:
 * the body's layout; the credential's topic, epoch, member (the key the broker says sent it)
 * and expiry; the credential's signature by a distributor key learnt from the distributor's
 * own sealed answers (cached per credential: one verify per publisher and epoch); the box
 * under the epoch's key (fetched when missing, only once the credential proved the epoch
 * real); the header digest inside it; the publisher's signature.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import { z } from "zod";
import { ConfigError, describeThrown, EventSealError, ProtocolError, ZmcpError, type EventSealFailure } from "../errors.js";
import { isTopic } from "../auth/tokens.js";
import { pause } from "../support/deadline.js";
import { LinkedMap } from "../support/linked-map.js";
import { RecencyMap } from "../support/recency-map.js";
import { box, NONCE_BYTES, SEAL_OVERHEAD } from "../wire/box.js";
import { MAX_DEPTH } from "../wire/limits.js";
import { checkMsgpack } from "../wire/msgpack-guard.js";
import { randomBytesPooled } from "../wire/random.js";
import { checkSendable } from "../wire/sendable.js";
import { z85Encode } from "../wire/z85.js";
import { concat, contextDigest, DIGEST_BYTES, encodeBody, parseBody, parseCredential, sameBytes, signedMessage, type Credential } from "./format.js";
import { EVENT_KEY_TOOL, KeyAnswerSchema, type KeyAnswer, type KeyRequest } from "./key-protocol.js";
import type { EventKeyContext, EventSealer, EventSealerFactory, OpenedEvent } from "./sealer.js";
import { signing, type SigningKey } from "./signing.js";

export interface GroupKeysOptions {
  /** The key distributor: its Z85 key or certificate name (serveEventKeys). Required. */
  distributor: string;
  /** The distributor's tool. Default `events/key`. */
  tool?: string;
  /** Deadline of one key fetch, ms. Default 5,000. */
  fetchTimeout?: number;
  /** Fetches of one key before giving up with `unavailable` (on `unavailable`, `no_route`, `busy`, `timeout`). Default 3. */
  attempts?: number;
  /** A key that could not be had is not asked for again for this long, ms (a flood naming it costs one fetch). Default 1,000. */
  retryAfter?: number;
  /** A publisher's credential is accepted this long past its expiry (clock difference with the distributor), ms. Default 10,000. */
  clockSkew?: number;
  /** Topic keys kept (one per topic and epoch), least recently used dropped first. Default 10,000. */
  maxKeys?: number;
  /** Bytes of verified credentials kept. Default 1 MiB. */
  credentialCacheBytes?: number;
}

/** Every default of {@link GroupKeysOptions} (ms, counts, bytes). */
export const GROUP_KEYS_DEFAULTS = Object.freeze({
  tool: EVENT_KEY_TOOL,
  fetchTimeout: 5_000,
  attempts: 3,
  retryAfter: 1_000,
  clockSkew: 10_000,
  maxKeys: 10_000,
  credentialCacheBytes: 1024 * 1024,
});

type ResolvedOptions = Required<GroupKeysOptions>;

/**
 * The sealer factory of group keys, for an agent's `events` option:
 * `Agent.connect({ ..., events: groupKeys({ distributor: "keys" }) })`. Throws ConfigError.
 */
export function groupKeys(options: GroupKeysOptions): EventSealerFactory {
  const o = { ...GROUP_KEYS_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as ResolvedOptions;
  if (typeof o.distributor !== "string" || o.distributor.length === 0) throw new ConfigError("groupKeys: distributor (a key, name or svc:NAME) is required");
  for (const name of ["fetchTimeout", "attempts", "maxKeys", "credentialCacheBytes"] as const) {
    if (!Number.isSafeInteger(o[name]) || o[name] < 1) throw new ConfigError(`groupKeys: ${name} must be a positive integer`);
  }
  for (const name of ["retryAfter", "clockSkew"] as const) {
    if (!Number.isSafeInteger(o[name]) || o[name] < 0) throw new ConfigError(`groupKeys: ${name} must be an integer >= 0`);
  }
  return (context) => new GroupKeySealer(context, o);
}

interface TopicKey {
  key: Uint8Array;
  /** The distributor's signing key for this epoch. */
  signer: Uint8Array;
}

interface Publishing extends TopicKey {
  epoch: number;
  credential: Uint8Array;
  /** The credential's end (this process's monotonic clock, from the lease's length), ms. */
  until: number;
  /** Renew from then on (monotonic clock). */
  renewAt: number;
  /** Sealed in `epoch` since last said to the distributor. */
  unreported: number;
  /** Sealed in `epoch` in all. */
  sealed: number;
  maxMessages: number;
}

interface VerifiedCredential {
  credential: Credential;
  /** The distributor key that signed it. */
  distributor: Uint8Array;
  member: string;
}

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();
const TRANSIENT = new Set(["unavailable", "no_route", "busy", "timeout"]);
/** Distributor signing keys kept (one per distributor process seen): each costs a junk credential one verify. */
const MAX_SIGNERS = 4;
/**
 * Durations (leases, retry delays) are counted on the monotonic clock: a wall clock stepped
 * back an hour would otherwise keep an expired credential in use, or a failed fetch unretried,
 * for that hour. Only a credential's expiry, written on the distributor's wall clock, is read
 * on this one (within `clockSkew`).
 */
const monotonic = (): number => performance.now();

/** Tests compare this with what they see; not part of the public API. */
export class GroupKeySealer implements EventSealer {
  readonly #ctx: EventKeyContext;
  readonly #o: ResolvedOptions;
  readonly #signingKey: SigningKey = signing.generate();
  readonly #keys: RecencyMap<string, TopicKey>;
  readonly #pub: RecencyMap<string, Publishing>;
  /** Distributor signing keys learnt from its answers (hex → bytes). */
  readonly #signers = new RecencyMap<string, Uint8Array>(MAX_SIGNERS);
  readonly #credentials: ByteBoundedCache<VerifiedCredential>;
  #lastSignerRefresh = -Infinity;
  #signerRefresh: { topic: string; done: Promise<void> } | undefined;
  readonly #inflight = new Map<string, Promise<KeyAnswer>>();
  readonly #renewing = new Map<string, Promise<Publishing>>();
  readonly #failed: RecencyMap<string, { until: number; error: unknown }>;
  #closed = false;

  constructor(context: EventKeyContext, options: ResolvedOptions) {
    this.#ctx = context;
    this.#o = options;
    this.#keys = new RecencyMap(options.maxKeys);
    this.#pub = new RecencyMap(options.maxKeys);
    this.#failed = new RecencyMap(options.maxKeys);
    this.#credentials = new ByteBoundedCache(options.credentialCacheBytes);
  }

  /** This process's Ed25519 public key (its credentials name it). */
  get signingPublicKey(): Uint8Array {
    return this.#signingKey.publicKey;
  }

  async join(pattern: string): Promise<void> {
    if (!isTopic(pattern, true)) throw new ZmcpError("invalid_args", `${JSON.stringify(pattern)} is not a topic or topic pattern`);
    await this.#ask({ topic: pattern, access: "sub" });
  }

  leave(_pattern: string): void {
    // Keys stay cached (publications in flight still open) until evicted; nothing to stop.
  }

  close(): void {
    this.#closed = true;
    this.#inflight.clear();
  }

  async seal(topic: string, header: Uint8Array, data: unknown): Promise<Uint8Array> {
    if (!isTopic(topic)) throw new ZmcpError("invalid_args", `${JSON.stringify(topic)} is not a topic (dotted tokens, no wildcards)`);
    let payload: Uint8Array;
    try {
      checkSendable(data, "data", 0, MAX_DEPTH);
      payload = encoder.encode(data);
    } catch (err) {
      throw new ZmcpError("invalid_args", `cannot publish this value: ${describeThrown(err)}`, { cause: err });
    }
    const p = await this.#publishing(topic);
    const context = contextDigest(topic, header, p.epoch, p.credential);
    const sealed = box.seal(p.key, randomBytesPooled(NONCE_BYTES), concat(context, payload));
    const signature = this.#signingKey.sign(signedMessage(context, sealed));
    p.sealed++;
    p.unreported++;
    if (p.sealed >= p.maxMessages) p.renewAt = 0; // say so at the next publication: the distributor may start a new epoch
    return encodeBody({ epoch: p.epoch, credential: p.credential, signature, box: sealed });
  }

  async open(topic: string, header: Uint8Array, body: Uint8Array, from: string, options: { at?: number } = {}): Promise<OpenedEvent> {
    const parts = parseBody(body, SEAL_OVERHEAD + DIGEST_BYTES);
    const credential = await this.#credential(parts.credential, topic, parts.epoch, from, options.at);
    const key = await this.#topicKey(topic, parts.epoch);
    if (!sameBytes(key.signer, credential.distributor)) {
      throw new EventSealError("credential", `credential signed by a distributor key other than epoch ${parts.epoch}'s`);
    }
    const plaintext = box.open(key.key, parts.box);
    if (plaintext === undefined) throw new EventSealError("seal", `publication on ${JSON.stringify(topic)} does not open with epoch ${parts.epoch}'s key`);
    const context = contextDigest(topic, header, parts.epoch, parts.credential);
    if (!sameBytes(plaintext.subarray(0, DIGEST_BYTES), context)) {
      throw new EventSealError("header", "publication sealed for other header bytes, topic or credential (tampered in transit)");
    }
    if (!signing.verify(credential.credential.signer, signedMessage(context, parts.box), parts.signature)) {
      throw new EventSealError("signature", "the publisher's signature does not verify");
    }
    const payload = plaintext.subarray(DIGEST_BYTES);
    let data: unknown;
    try {
      checkMsgpack(payload, MAX_DEPTH);
      data = decoder.decode(payload);
    } catch (err) {
      throw new EventSealError("data", `publication payload is not readable: ${describeThrown(err)}`, { cause: err });
    }
    return { data, publisher: from, epoch: parts.epoch };
  }

  // --- publishing -----------------------------------------------------------------------

  async #publishing(topic: string): Promise<Publishing> {
    const held = this.#pub.get(topic);
    const now = monotonic();
    if (held !== undefined && now < held.renewAt) return held;
    // One renewal per topic at a time: concurrent publications wait for it (and the count of
    // what was sealed is reported once).
    let renewing = this.#renewing.get(topic);
    if (renewing === undefined) {
      renewing = this.#renew(topic, held).finally(() => this.#renewing.delete(topic));
      this.#renewing.set(topic, renewing);
    }
    try {
      return await renewing;
    } catch (err) {
      // The distributor out of reach: the credential held stays good until it expires.
      if (held !== undefined && now < held.until && err instanceof ZmcpError && err.code === "unavailable") return held;
      throw err;
    }
  }

  async #renew(topic: string, held: Publishing | undefined): Promise<Publishing> {
    const request: KeyRequest = { topic, access: "pub", signer: this.#signingKey.publicKey };
    if (held !== undefined) {
      request.epoch = held.epoch;
      request.sealed = held.unreported;
    }
    const reported = held?.unreported ?? 0;
    const answer = await this.#ask(request);
    if (answer.key === undefined || answer.epoch === undefined || answer.credential === undefined) {
      throw new ProtocolError("bad_frame", "the distributor's pub answer has no key or credential");
    }
    if (held !== undefined) held.unreported -= reported;
    if (held !== undefined && held.epoch === answer.epoch && sameBytes(held.credential, answer.credential)) return held;
    const now = monotonic();
    const next: Publishing = {
      key: answer.key,
      signer: answer.signer,
      epoch: answer.epoch,
      credential: answer.credential,
      // Counted on this process's monotonic clock from the lease's length, so that neither a
      // clock difference with the distributor nor a step of this wall clock makes it renew on
      // every publication or seal with an expired credential.
      until: now + answer.ttl,
      renewAt: now + Math.floor(answer.ttl * 0.75),
      unreported: held !== undefined && held.epoch === answer.epoch ? held.unreported : 0,
      sealed: held !== undefined && held.epoch === answer.epoch ? held.sealed : 0,
      maxMessages: answer.maxMessages ?? Number.MAX_SAFE_INTEGER,
    };
    if (next.sealed >= next.maxMessages) next.renewAt = Math.min(next.renewAt, now + 1000); // the distributor kept the epoch (minEpochMs): ask again soon
    this.#pub.set(topic, next);
    return next;
  }

  // --- opening --------------------------------------------------------------------------

  /** `at`: when the credential must have been valid; now, except for a publication a durable store kept (its own time, sealed in its header). */
  async #credential(bytes: Uint8Array, topic: string, epoch: number, from: string, at = Date.now()): Promise<VerifiedCredential> {
    const id = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
    let verified = this.#credentials.get(id);
    const fail = (reason: EventSealFailure, message: string) => new EventSealError(reason, message);
    const credential = verified?.credential ?? parseCredential(bytes);
    // The checks every publication needs, before anything costs a signature or a fetch.
    if (credential.topic !== topic) throw fail("credential_topic", `credential is for ${JSON.stringify(credential.topic)}, not ${JSON.stringify(topic)}`);
    if (credential.epoch !== epoch) throw fail("credential_epoch", `credential is for epoch ${credential.epoch}, the publication names ${epoch}`);
    const member = verified?.member ?? z85Encode(credential.member);
    if (member !== from) throw fail("credential_member", "credential names another key than the publication's sender");
    if (at > credential.expires + this.#o.clockSkew) throw fail("credential_expired", `credential expired at ${new Date(credential.expires).toISOString()}`);
    if (verified !== undefined) return verified;
    let distributor = this.#signerOf(credential);
    if (distributor === undefined) {
      // Not signed by a distributor key known here: the first publication of this topic seen,
      // or a distributor restarted with a new key. Ask it once (the negative cache bounds it).
      await this.#refreshSigners(topic);
      distributor = this.#signerOf(credential);
      if (distributor === undefined) throw fail("credential", "credential not signed by the distributor");
    }
    verified = { credential, distributor, member };
    this.#credentials.set(id, verified, bytes.length * 2 + 200);
    return verified;
  }

  /**
   * Asks the distributor about `topic`, to learn its signing key. One refresh per `retryAfter`
   * whatever the topic (a flood of forged credentials costs one fetch); publications arriving
   * meanwhile wait for the one in flight. A member refused the topic learns it here
   * (`token_scope`, `revoked`...); an unreachable distributor leaves the credential unproven.
   */
  async #refreshSigners(topic: string): Promise<void> {
    const inflight = this.#signerRefresh;
    if (inflight !== undefined) {
      if (inflight.topic === topic) return inflight.done;
      return inflight.done.catch(() => undefined);
    }
    if (monotonic() - this.#lastSignerRefresh < this.#o.retryAfter) return;
    this.#lastSignerRefresh = monotonic();
    const done = this.#ask({ topic, access: "sub" }).then(
      () => undefined,
      (err: unknown) => {
        if (!(err instanceof ZmcpError && err.code === "unavailable")) throw err;
      },
    );
    const refresh = { topic, done: done.finally(() => (this.#signerRefresh = undefined)) };
    this.#signerRefresh = refresh;
    return refresh.done;
  }

  /** The distributor key that signed `credential`, trying the most recently learnt first. */
  #signerOf(credential: Credential): Uint8Array | undefined {
    for (const signer of [...this.#signers.values()].reverse()) {
      if (signing.verify(signer, credential.signed, credential.signature)) return signer;
    }
    return undefined;
  }

  async #topicKey(topic: string, epoch: number): Promise<TopicKey> {
    const id = `${topic}\0${epoch}`;
    const held = this.#keys.get(id);
    if (held !== undefined) return held;
    await this.#once(id, () => this.#ask({ topic, access: "sub", epoch }));
    const got = this.#keys.get(id);
    if (got === undefined) throw new ZmcpError("unavailable", `no key for ${JSON.stringify(topic)} in epoch ${epoch} (evicted: maxKeys too small?)`);
    return got;
  }

  /** Runs `fetch` unless the same fetch failed less than `retryAfter` ago (then rethrows that failure). */
  async #once(id: string, fetch: () => Promise<KeyAnswer>): Promise<KeyAnswer> {
    const failed = this.#failed.peek(id);
    if (failed !== undefined && monotonic() < failed.until) throw failed.error;
    try {
      return await fetch();
    } catch (err) {
      this.#failed.set(id, { until: monotonic() + this.#o.retryAfter, error: err });
      throw err;
    }
  }

  // --- the distributor ------------------------------------------------------------------

  /** One fetch per distinct request at a time; retried on transient failures. */
  #ask(request: KeyRequest): Promise<KeyAnswer> {
    const id = `${request.access}\0${request.topic}\0${request.epoch ?? ""}\0${request.sealed ?? ""}`;
    let pending = this.#inflight.get(id);
    if (pending === undefined) {
      pending = this.#askWithRetries(request).finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, pending);
    }
    return pending;
  }

  async #askWithRetries(request: KeyRequest): Promise<KeyAnswer> {
    const { attempts, fetchTimeout } = this.#o;
    for (let attempt = 1; ; attempt++) {
      if (this.#closed || this.#ctx.signal.aborted) throw new ZmcpError("closed", "the agent is closed");
      let raw: unknown;
      try {
        raw = await this.#ctx.call(this.#o.distributor, this.#o.tool, request, { timeoutMs: fetchTimeout, signal: this.#ctx.signal });
      } catch (err) {
        if (err instanceof ZmcpError && err.code === "circuit_open") {
          throw new ZmcpError("unavailable", `no event key for ${JSON.stringify(request.topic)}: ${describeThrown(err)}`, { cause: err });
        }
        const transient = err instanceof ZmcpError && TRANSIENT.has(err.code);
        if (!transient) throw err; // a refusal (token_scope, revoked, expired, ...): typed, as the distributor said it
        if (attempt >= attempts) {
          throw new ZmcpError("unavailable", `no event key for ${JSON.stringify(request.topic)} from ${this.#o.distributor} after ${attempts} attempts: ${describeThrown(err)}`, { cause: err });
        }
        await pause(Math.min(1000, 100 * 2 ** (attempt - 1)), this.#ctx.signal);
        continue;
      }
      return this.#learn(request, raw);
    }
  }

  #learn(request: KeyRequest, raw: unknown): KeyAnswer {
    const parsed = KeyAnswerSchema.safeParse(raw);
    if (!parsed.success) throw new ProtocolError("bad_frame", `the distributor's answer is not an event key answer: ${z.prettifyError(parsed.error)}`);
    const answer = parsed.data;
    if (answer.topic !== request.topic) throw new ProtocolError("bad_frame", `asked for ${JSON.stringify(request.topic)}, the distributor answered for ${JSON.stringify(answer.topic)}`);
    if (request.epoch !== undefined && request.access === "sub" && answer.epoch !== undefined && answer.epoch !== request.epoch) {
      throw new ProtocolError("bad_frame", `asked for epoch ${request.epoch}, the distributor answered ${answer.epoch}`);
    }
    this.#signers.set(Buffer.from(answer.signer).toString("hex"), answer.signer);
    if (answer.key !== undefined && answer.epoch !== undefined) this.#keys.set(`${answer.topic}\0${answer.epoch}`, { key: answer.key, signer: answer.signer });
    return answer;
  }
}

/** A cache bounded in bytes (each entry states its cost), least recently used dropped first. */
class ByteBoundedCache<V> {
  // Linked, not a Map: evicting from the front of a Map walks the holes of earlier evictions (linked-map.ts).
  readonly #map = new LinkedMap<string, { value: V; bytes: number }>();
  #bytes = 0;
  constructor(readonly maxBytes: number) {}
  get(key: string): V | undefined {
    const entry = this.#map.get(key);
    if (entry === undefined) return undefined;
    this.#map.moveToEnd(key);
    return entry.value;
  }
  set(key: string, value: V, bytes: number): void {
    const old = this.#map.get(key);
    if (old !== undefined) {
      this.#bytes -= old.bytes;
      this.#map.delete(key);
    }
    if (bytes > this.maxBytes) return;
    this.#map.set(key, { value, bytes });
    this.#bytes += bytes;
    while (this.#bytes > this.maxBytes && this.#map.size > 0) this.#bytes -= this.#map.shift()!.bytes;
  }
}
