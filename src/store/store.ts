/**
 * The durable store's interface: what the broker needs from an engine that keeps sealed
 * messages for recipients that cannot take them now (store-and-forward, docs/DURABLE.md).
 *
 * The broker stays blind and stateless: an engine holds the sealed bytes exactly as received
 * (header, body, the sender's authenticated key) and nothing else the broker knows, so any
 * broker sharing the engine can deliver what another stored. One engine is built (Redis
 * Streams, redis.ts); another (NATS JetStream, say) implements these few methods.
 */

/** One stored message, as the broker received it. */
export interface StoredMessage {
  /** The sender's Z85 key (the ROUTER's authenticated routing id), stamped as `from` on delivery. */
  from: string;
  /** The header frame, byte for byte (the seal binds it). */
  header: Buffer;
  /** The sealed body, byte for byte: the broker cannot open it, nor can the store. */
  body: Buffer;
  /** The header's `exp`, ms since the epoch: never delivered after it, deleted once past it. */
  exp: number;
}

/** A stored message handed out for delivery, with the engine's id for {@link DurableStore.delivered}. */
export interface ClaimedMessage extends StoredMessage {
  id: string;
}

/** Bounds: past any of them `put` answers `full` (the broker refuses `busy`). */
export interface StoreLimits {
  /** Messages stored for one recipient at most. Default 10,000. */
  perRecipientCount: number;
  /** Bytes (header + body) stored for one recipient at most. Default 64 MiB. */
  perRecipientBytes: number;
  /** Messages stored in all at most. Default 1,000,000. */
  totalCount: number;
  /** Bytes stored in all at most. Default 1 GiB. */
  totalBytes: number;
  /**
   * One sender's share, so that no admitted peer can fill a recipient's inbox (or the store) for
   * everyone else: messages and bytes one sender may have stored for one recipient (or one
   * service queue), and in all. Defaults: a quarter of the bound each one sits under
   * (2,500 / 16 MiB per recipient, 250,000 / 256 MiB in all).
   */
  perSenderRecipientCount: number;
  perSenderRecipientBytes: number;
  perSenderCount: number;
  perSenderBytes: number;
}

export const DEFAULT_STORE_LIMITS: Readonly<StoreLimits> = Object.freeze({
  perRecipientCount: 10_000,
  perRecipientBytes: 64 * 1024 * 1024,
  totalCount: 1_000_000,
  totalBytes: 1024 * 1024 * 1024,
  perSenderRecipientCount: 2_500,
  perSenderRecipientBytes: 16 * 1024 * 1024,
  perSenderCount: 250_000,
  perSenderBytes: 256 * 1024 * 1024,
});

/**
 * Bounds given in part, completed: a per-sender share not given is a quarter of the bound it
 * sits under as resolved (so raising `perRecipientCount` raises a sender's share with it).
 */
export function resolveStoreLimits(given: Partial<StoreLimits> = {}): StoreLimits {
  const l = { ...DEFAULT_STORE_LIMITS, ...given };
  const quarter = (n: number) => Math.max(1, Math.ceil(n / 4));
  return {
    ...l,
    perSenderRecipientCount: given.perSenderRecipientCount ?? quarter(l.perRecipientCount),
    perSenderRecipientBytes: given.perSenderRecipientBytes ?? quarter(l.perRecipientBytes),
    perSenderCount: given.perSenderCount ?? quarter(l.totalCount),
    perSenderBytes: given.perSenderBytes ?? quarter(l.totalBytes),
  };
}

/**
 * `stored`: kept; `full`: a bound is reached (nothing kept); `quota`: the sender's own share is
 * used up (nothing kept; others may still store); `live`: (with `onlyIfBacklog`) the recipient
 * has nothing stored, so the message may go straight to it without overtaking any.
 */
export type PutOutcome = "stored" | "full" | "quota" | "live";

export interface DurableStore {
  /**
   * Stores `message` for `recipient`, after whatever is stored for it already (per-recipient
   * order). With `onlyIfBacklog`, stores only when something is stored for it already and
   * answers `live` otherwise. Rejects with StoreUnavailableError when the engine cannot be reached.
   */
  put(recipient: string, message: StoredMessage, onlyIfBacklog: boolean): Promise<PutOutcome>;
  /**
   * Takes the delivery lease of `recipient` (one broker delivers to a recipient at a time, so
   * order holds across a fleet) and returns up to `max` of its oldest messages, after `after`
   * (an id from a previous batch) when given; undefined when another broker holds the lease or
   * nothing is stored. Messages past their `exp` are deleted, not returned (counted in `expired`).
   */
  claim(recipient: string, max: number, after?: string): Promise<ClaimedMessage[] | undefined>;
  /** Deletes messages that were delivered (or expired). */
  delivered(recipient: string, messages: readonly ClaimedMessage[]): Promise<void>;
  /** Gives the lease of `recipient` back. */
  release(recipient: string): Promise<void>;
  /**
   * Work queues of durable services (a consumer group per service): `enqueue` adds a request to
   * `svc:NAME`'s queue (bounds as for a recipient); `take` hands this broker up to `max`
   * requests to dispatch: first those handed out more than `visibilityMs` ago and not `done`
   * (their replica died or is too slow), then new ones; `done` retires the request whose header
   * id is `requestId` (hex) once a replica's answer to it passes through any broker.
   */
  enqueue(service: string, message: StoredMessage & { requestId: string }): Promise<PutOutcome>;
  take(service: string, max: number, visibilityMs: number): Promise<ClaimedMessage[]>;
  done(service: string, requestId: string): Promise<boolean>;
  /** Names of the services that have had a durable queue (so brokers look only at those). */
  queues(): Promise<string[]>;
  /**
   * Services declared durable by a replica's heartbeat (`dur: true`, wire/services.ts): every
   * request to them goes to their queue. `declare` records it until `until` (ms since the
   * epoch; a later call moves it); `declared` lists those whose declaration has not lapsed.
   */
  declare(service: string, until: number): Promise<void>;
  declared(): Promise<string[]>;
  /**
   * Durable subscriptions (docs/EVENTS.md "Durable subscriptions"): `key` declared topic
   * `pattern` durable in a heartbeat (`dsub`), so publications matching it are stored for `key`
   * while it cannot take them. `subscribeDurable` records it until `until` (ms since the epoch; a
   * later call moves it), `unsubscribeDurable` ends it at once (the key no longer declares it),
   * `durableSubscriptions` lists those not lapsed, as [key, pattern] pairs, at most `max`.
   */
  subscribeDurable(key: string, pattern: string, until: number): Promise<void>;
  unsubscribeDurable(key: string, pattern: string): Promise<void>;
  durableSubscriptions(max: number): Promise<Array<[string, string]>>;
  /** Deletes every expired message (any broker may run it; idempotent). Returns how many. */
  sweep(): Promise<number>;
  /** Resolves true once the engine is reachable, false if it is not within `timeoutMs` (never rejects). */
  whenAvailable(timeoutMs: number): Promise<boolean>;
  /** True while the engine is reachable. */
  readonly available: boolean;
  /** Messages found expired (and deleted) by this process. */
  readonly expired: number;
  close(): Promise<void>;
}
