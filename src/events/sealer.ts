/**
 * The seam between publish-subscribe's two halves (issue 15, docs/EVENTS.md):
 *
 * - fan-out (src/agent + src/broker): topics, the `pub` kind, the broker's subscription
 *   directory, delivery, gap counters — it never touches key material;
 * - group keys (src/events): how one publication is sealed once for every member of its topic,
 *   who may hold a topic's key, epochs — it never touches sockets (it calls other agents,
 *   such as a key distributor, through the {@link EventKeyContext} it is given).
 *
 * An agent is given a sealer factory in its options (`events: ...`); without one, `publish`
 * and `subscribe` fail with a ConfigError saying so.
 */

/** What an event sealer may use of its agent: its identity and calls to other agents. */
export interface EventKeyContext {
  /** This agent's public key (Z85, 40 characters). */
  readonly publicKey: string;
  /** Call a tool on another agent or service (sealed, with this agent's token), as Agent.call does. */
  call(to: string, tool: string, args: unknown, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<unknown>;
  /** Closed when the agent closes; a sealer stops its timers and fetches then. */
  readonly signal: AbortSignal;
}

/** A publication as the sealer opened it. */
export interface OpenedEvent {
  data: unknown;
  /** The publisher's key (Z85), as the group-key scheme vouches for it (not only the broker). */
  publisher: string;
  /** The key epoch the publication was sealed in. */
  epoch: number;
}

/**
 * Seals and opens publications. Both methods throw a ZmcpError with a stable code when they
 * cannot (for example `token_scope` when this member may not publish or read the topic,
 * `unavailable` when no key can be had now, `bad_seal` for a body that does not open, is not
 * bound to its header, or whose publisher is not vouched for).
 */
export interface EventSealer {
  /**
   * Seal one publication of `data` on `topic`; `header` is the exact header frame that will
   * be sent with it (the seal binds it). Returns the body frame. May fetch keys first.
   */
  seal(topic: string, header: Uint8Array, data: unknown): Promise<Uint8Array>;
  /**
   * Open a publication received from `from` (the key the broker says sent it). `options.at`:
   * judge time-limited proofs (a credential's expiry) at this time, the publication's own, not
   * now: set only for a publication a durable store kept (docs/EVENTS.md "Durable subscriptions").
   */
  open(topic: string, header: Uint8Array, body: Uint8Array, from: string, options?: { at?: number }): Promise<OpenedEvent>;
  /**
   * Called by `subscribe(pattern)` before the subscription is announced, so that a member
   * refused the topic's key learns it at once (the promise rejects) rather than by silence.
   */
  join(pattern: string): Promise<void>;
  /** Called by `subscription.close()` when no subscription uses `pattern` any more. */
  leave(pattern: string): void;
  /** Stop timers and pending fetches (the agent is closing). */
  close(): void;
}

/** What an agent's `events` option takes: makes the agent's sealer once it is connected. */
export type EventSealerFactory = (context: EventKeyContext) => EventSealer;
