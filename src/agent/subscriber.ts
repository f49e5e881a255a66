/**
 * Subscribing (docs/EVENTS.md): the agent's subscriptions, announced to the broker in every
 * heartbeat (the broker's directory is soft state: replica.ts sends the whole set), and the
 * delivery of publications the broker fans out to this agent.
 *
 * A publication that passed the inbound checks (inbound.ts: header, deadline, size, replay) is
 * opened by the events sealer, checked to come from the key the broker says sent it, and offered
 * to every local subscription whose pattern matches its topic. Each subscription has its own
 * bounded queue (count and bytes) drained by its handler with bounded concurrency: a slow or
 * stuck handler fills its own queue only, and what it cannot take is dropped and counted in its
 * gaps. A handler that throws, rejects (with anything) or never settles harms nothing else.
 *
 * Gaps are counted end to end from the publishers' sequence numbers (`sq`, per publisher and
 * topic): a jump counts what the broker dropped (or what never arrived); a number going back is
 * a publisher that restarted, not a gap; the first number seen from a publisher starts the count.
 *
 * A durable subscription (docs/EVENTS.md "Durable subscriptions") is declared in heartbeats
 * (`dsub`); a broker with a store keeps its publications while this agent is away. What the
 * store kept may be older than the replay window: durable-marks.ts says when it is accepted.
 */
import { ConfigError, describeThrown, ZmcpError } from "../errors.js";
import type { EventSealer, OpenedEvent } from "../events/sealer.js";
import { checkPattern, MAX_PATTERNS_PER_AGENT, TopicTrie } from "../events/topics.js";
import type { Header } from "../wire/envelope.js";
import type { AgentCore } from "./core.js";
import { bump } from "./stats.js";
import { DurableMarks } from "./durable-marks.js";
import { PUBLICATION_LIFETIME_MS } from "./publisher.js";

/** A publication as a subscription's handler receives it. */
export interface Publication {
  topic: string;
  data: unknown;
  /** The publisher's key (Z85), as the broker stamped it and the sealer vouched for it. */
  from: string;
  /** The publisher's certificate name, when this agent's `certs` know it. */
  name: string | undefined;
  /** The group-key epoch it was sealed in (the sealer's). */
  epoch: number;
  /** The publisher's sequence number on this topic. */
  sequence: number;
}

export type PublicationHandler = (event: Publication) => unknown;

export interface SubscribeOptions {
  /** Publications waiting for the handler at most; past it they are dropped and counted in `gaps`. Default 1,000. */
  maxQueue?: number;
  /** Bytes (sealed size) of publications waiting at most. Default 16 MiB. */
  maxQueueBytes?: number;
  /** Handler runs at once; 1 keeps each topic's order. Default 1. */
  concurrency?: number;
  /**
   * Durable (docs/EVENTS.md "Durable subscriptions"): a broker with a durable store keeps the
   * publications matching the pattern while this agent cannot take them (offline, silent, its
   * queue full), for the broker's `storeRetention` after its last heartbeat, and delivers them
   * oldest first when it is back. A broker without a store refuses it (`unavailable`). Default false.
   */
  durable?: boolean;
}

export const SUBSCRIBE_DEFAULTS = Object.freeze({ maxQueue: 1000, maxQueueBytes: 16 * 1024 * 1024, concurrency: 1 });

/** Per-topic gap counts kept at most per subscription; past it only the total counts. */
const MAX_GAP_TOPICS = 10_000;
/**
 * Most publications one jump in a publisher's sequence counts as missed. Far above any real
 * outage between two publications of one publisher; it exists because a member allowed to
 * publish picks its own numbers: jumps of 2^53 (with "restarts" between) pushed the counts
 * where a double no longer changes by 1, hiding every other publisher's losses.
 */
const MAX_COUNTED_JUMP = 100_000_000;
/** (publisher, topic) sequence positions remembered per subscription. */
const MAX_STREAMS = 10_000;
/** Publications being opened at once (a slow sealer); past it they are dropped (counted by the next jump). */
const MAX_OPENING = 10_000;
/**
 * Bytes (sealed sizes) of those publications: each keeps its body until delivered, and junk
 * from any key can wait on one slow key fetch, so the count alone allowed 10,000 × 1 MiB.
 */
const MAX_OPENING_BYTES = 64 * 1024 * 1024;

/** What a subscription has missed: per topic, and in all. */
export interface Gaps {
  total: number;
  topics: Record<string, number>;
}

/** One subscription's handle: its gaps, and close(). */
export class Subscription {
  readonly #queue: Array<[Publication, number]> = [];
  #queueBytes = 0;
  #running = 0;
  /** Index of the oldest queued publication in #queue. */
  #head = 0;
  #pumping = false;
  #closed = false;
  #delivered = 0;
  #gapTotal = 0;
  readonly #gapTopics = new Map<string, number>();
  readonly #positions = new SequencePositions(MAX_STREAMS);
  readonly #limits: { maxQueue: number; maxQueueBytes: number; concurrency: number };
  /** Declared durable (SubscribeOptions.durable). */
  readonly durable: boolean;

  /** @internal built by Subscriber.subscribe */
  constructor(
    readonly pattern: string,
    private readonly handler: PublicationHandler,
    options: SubscribeOptions,
    private readonly owner: { remove(sub: Subscription): Promise<void>; handlerFailed(sub: Subscription, err: unknown): void; gap(n: number): void },
  ) {
    const maxQueue = options.maxQueue ?? SUBSCRIBE_DEFAULTS.maxQueue;
    const maxQueueBytes = options.maxQueueBytes ?? SUBSCRIBE_DEFAULTS.maxQueueBytes;
    const concurrency = options.concurrency ?? SUBSCRIBE_DEFAULTS.concurrency;
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new ConfigError("maxQueue must be an integer >= 0");
    if (!(maxQueueBytes >= 0)) throw new ConfigError("maxQueueBytes must be >= 0");
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigError("concurrency must be an integer >= 1");
    this.#limits = { maxQueue, maxQueueBytes, concurrency };
    this.durable = options.durable === true;
  }

  /** Publications missed: jumps in publishers' sequence numbers, and drops from this subscription's full queue. */
  get gaps(): Gaps {
    return { total: this.#gapTotal, topics: Object.fromEntries(this.#gapTopics) };
  }

  /** Publications handed to the handler so far. */
  get delivered(): number {
    return this.#delivered;
  }

  /** Publications waiting for the handler now. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Stops: nothing more is handed to the handler (runs under way finish); the broker is told. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#queue.length = 0;
    this.#head = 0;
    this.#queueBytes = 0;
    return this.owner.remove(this);
  }

  /** @internal a publication for this subscription (opened, from `from`). */
  offer(event: Publication, size: number): void {
    if (this.#closed) return;
    const last = this.#positions.swap(event.from, event.topic, event.sequence);
    // Going back (or equal: the replay guard drops true duplicates) is a restarted publisher.
    if (last !== undefined && event.sequence > last + 1) this.#addGap(event.topic, Math.min(event.sequence - last - 1, MAX_COUNTED_JUMP));
    // With a handler slot free the queue is empty and the publication goes straight to it; the
    // bounds hold what waits behind busy handlers.
    const { maxQueue, maxQueueBytes, concurrency } = this.#limits;
    if (this.#running >= concurrency && (this.queued >= maxQueue || this.#queueBytes + size > maxQueueBytes)) {
      this.#addGap(event.topic, 1);
      return;
    }
    this.#queue.push([event, size]);
    this.#queueBytes += size;
    this.#pump();
  }

  /** @internal the agent is closing. */
  stop(): void {
    this.#closed = true;
    this.#queue.length = 0;
    this.#head = 0;
    this.#queueBytes = 0;
  }

  #addGap(topic: string, n: number): void {
    this.#gapTotal += n;
    this.owner.gap(n);
    const had = this.#gapTopics.get(topic);
    if (had !== undefined || this.#gapTopics.size < MAX_GAP_TOPICS) this.#gapTopics.set(topic, (had ?? 0) + n);
  }

  /**
   * Hands queued publications to free handler slots. One loop at a time (a nested call, from a
   * handler's promise settling inside the loop, returns at once): a long queue drained by a
   * synchronous handler never deepens the stack.
   */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (!this.#closed && this.#running < this.#limits.concurrency && this.#queue.length > this.#head) {
        const [event] = this.#take();
        this.#running++;
        this.#delivered++;
        let result: unknown;
        try {
          result = this.handler(event);
        } catch (err) {
          this.owner.handlerFailed(this, err);
          this.#running--;
          continue;
        }
        if (result !== null && (typeof result === "object" || typeof result === "function") && typeof (result as { then?: unknown }).then === "function") {
          // Promise.resolve adopts any thenable, including one whose `then` throws (a rejection).
          Promise.resolve(result as PromiseLike<unknown>).then(this.#settled, this.#failed);
        } else this.#running--;
      }
    } finally {
      this.#pumping = false;
    }
  }

  readonly #settled = (): void => {
    this.#running--;
    this.#pump();
  };

  readonly #failed = (err: unknown): void => {
    this.owner.handlerFailed(this, err);
    this.#settled();
  };

  /** The oldest queued publication (a moving head: no O(n) shift per publication). */
  #take(): [Publication, number] {
    const item = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined as unknown as [Publication, number];
    this.#queueBytes -= item[1];
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    return item;
  }

}

/**
 * The last sequence number seen per (publisher, topic), at most `max` in all. A publisher
 * picks its topics (any under its `pub:` pattern), so eviction must not let one push out the
 * others' positions (their next losses would go uncounted): one publisher holds at most half,
 * past which its own least recent goes; past `max` in all, the least recent of the publisher
 * holding the most goes.
 */
class SequencePositions {
  /** Publisher → topic → last number; each inner map in recency order (oldest first). */
  readonly #byPublisher = new Map<string, Map<string, number>>();
  #size = 0;
  constructor(readonly max: number) {}

  /** Records `sequence` for (publisher, topic); returns the number it replaces, if remembered. */
  swap(publisher: string, topic: string, sequence: number): number | undefined {
    let topics = this.#byPublisher.get(publisher);
    const last = topics?.get(topic);
    if (topics !== undefined && last !== undefined) {
      topics.delete(topic);
      topics.set(topic, sequence);
      return last;
    }
    if (topics !== undefined && topics.size >= Math.max(1, Math.floor(this.max / 2))) this.#evictFrom(publisher, topics);
    else if (this.#size >= this.max) this.#evictLargest();
    if (topics === undefined || !this.#byPublisher.has(publisher)) this.#byPublisher.set(publisher, (topics = new Map()));
    topics.set(topic, sequence);
    this.#size++;
    return undefined;
  }

  #evictLargest(): void {
    let largest: [string, Map<string, number>] | undefined;
    for (const entry of this.#byPublisher) if (largest === undefined || entry[1].size > largest[1].size) largest = entry;
    if (largest !== undefined) this.#evictFrom(...largest);
  }

  #evictFrom(publisher: string, topics: Map<string, number>): void {
    const oldest = topics.keys().next();
    if (oldest.done) return;
    topics.delete(oldest.value);
    this.#size--;
    if (topics.size === 0) this.#byPublisher.delete(publisher);
  }
}

/** The agent's subscriptions and the delivery of publications to them. */
export class Subscriber {
  readonly #subscriptions = new Set<Subscription>();
  readonly #trie = new TopicTrie<Subscription>();
  /** Subscriptions per pattern (announced once however many use it). */
  readonly #patterns = new Map<string, number>();
  /** Durable subscriptions per pattern (declared in `dsub` once however many use it). */
  readonly #durable = new Map<string, number>();
  /** Newest publication accepted per (publisher, topic), for what the replay guard cannot judge. */
  readonly #marks = new DurableMarks();
  /** Once durable, heartbeats carry `dsub` (empty when the last durable subscription closed: the broker stops keeping). */
  #everDurable = false;
  /** Publications being opened, in arrival order, from #openHead (see accept). */
  readonly #opening: Opening[] = [];
  #openHead = 0;
  /** Sealed bytes of the publications in #opening from #openHead. */
  #openingBytes = 0;
  #openTimer: NodeJS.Timeout | undefined;
  #refresh: NodeJS.Timeout | undefined;

  constructor(
    private readonly core: AgentCore,
    private readonly sealer: EventSealer,
    /** Sends a heartbeat carrying the current patterns; with `waitMs`, resolves on the broker's ack. */
    private readonly announce: (waitMs?: number) => Promise<void>,
    /** How long subscribe() waits for the broker's ack, ms. */
    private readonly announceTimeout: number,
    /** How long the sealer may take to open one publication, ms (see #watchOpening). */
    private readonly openTimeout = OPEN_TIMEOUT_MS,
  ) {}

  /** The patterns to announce, each once. */
  patterns(): string[] {
    return [...this.#patterns.keys()];
  }

  /** The patterns declared durable, each once; undefined while this agent never subscribed durably (its heartbeats then carry no `dsub`). */
  durablePatterns(): string[] | undefined {
    return this.#everDurable ? [...this.#durable.keys()] : undefined;
  }

  /** True when a durable subscription matches `topic` (inbound.ts: a publication too old for the replay guard). */
  durableMatches(topic: string): boolean {
    if (this.#durable.size === 0) return false;
    for (const sub of this.#trie.match(topic)) if (sub.durable) return true;
    return false;
  }

  /** See Agent.subscribe. */
  async subscribe(pattern: string, handler: PublicationHandler, options: SubscribeOptions = {}): Promise<Subscription> {
    const core = this.core;
    if (core.isClosed()) throw core.closedWith() ?? new ZmcpError("closed", "agent closed");
    checkPattern(pattern);
    if (typeof handler !== "function") throw new ConfigError("subscribe() needs a handler function");
    const fresh = !this.#patterns.has(pattern) || (options.durable === true && !this.#durable.has(pattern));
    if (!this.#patterns.has(pattern) && this.#patterns.size >= MAX_PATTERNS_PER_AGENT) throw new ConfigError(`an agent subscribes to at most ${MAX_PATTERNS_PER_AGENT} patterns`);
    const sub = new Subscription(pattern, handler, options, {
      remove: (s) => this.#remove(s),
      handlerFailed: (s, err) => this.#handlerFailed(s, err),
      gap: (n) => (core.stats.publicationGaps += n),
    });
    // The sealer first: a member refused the topic's key learns it now, not by silence.
    await this.sealer.join(pattern);
    this.#add(sub);
    try {
      if (fresh) await this.announce(this.announceTimeout);
    } catch (err) {
      this.#drop(sub);
      throw err;
    }
    this.#keepAnnounced();
    return sub;
  }

  /**
   * A publication through the inbound checks: opened and offered to every matching
   * subscription. Never throws; what is dropped is counted (stats.dropped) and logged.
   */
  accept(peer: string, header: Header, headerBytes: Buffer, body: Buffer, stale = false): void {
    const core = this.core;
    const topic = header.to;
    if (this.#trie.match(topic).size === 0) return this.#drop1("unsolicited", peer, `no subscription matches ${topic}`);
    // `stale`: too old for the replay guard (inbound.ts), so only for durable subscriptions, and only if newer than their mark (below).
    if (stale && !this.durableMatches(topic)) return this.#drop1("refused", peer, "publication outside the replay window, and no durable subscription matches");
    if (header.sq === undefined) return this.#drop1("refused", peer, "publication without a sequence number");
    if (this.#opening.length - this.#openHead >= MAX_OPENING) return this.#drop1("backlog", peer, "too many publications being opened");
    const size = headerBytes.length + body.length;
    if (this.#openingBytes + size > MAX_OPENING_BYTES) return this.#drop1("backlog", peer, `over ${MAX_OPENING_BYTES} bytes of publications being opened`);
    let opened: Promise<OpenedEvent>;
    try {
      // A kept publication's credential is judged at its own time (sealed in the header), not now.
      opened = Promise.resolve(stale ? this.sealer.open(topic, headerBytes, body, peer, { at: header.exp - PUBLICATION_LIFETIME_MS }) : this.sealer.open(topic, headerBytes, body, peer));
    } catch (err) {
      opened = Promise.reject(err);
    }
    const sq = header.sq;
    // Opened side by side, delivered in arrival order: a sealer that takes longer for one
    // publication (a key to fetch) must not let later ones overtake it, or the sequence would
    // seem to go back (a restart) and then jump (a gap that was not).
    const entry: Opening = { next: undefined, at: performance.now(), peer, size };
    this.#opening.push(entry);
    this.#openingBytes += size;
    this.#watchOpening();
    const settle = (next: () => void) => {
      if (entry.next) return; // given up on already (see #watchOpening)
      entry.next = next;
      this.#deliverOpened();
    };
    opened.then(
      (event) =>
        settle(() => {
          // The sealer vouches for the publisher; the broker stamped who sent it. They must agree,
          // or a member is passing off another's publication as its own (or the reverse).
          if (event.publisher !== peer) return this.#drop1("bad_seal", peer, `sealed by ${event.publisher}, sent by ${peer}`);
          // Judged in arrival order (here), after the seal held: only a genuine publication moves a mark.
          const time = header.exp - PUBLICATION_LIFETIME_MS;
          if (stale) {
            if (!this.#marks.admit(peer, topic, time, sq)) return this.#drop1("refused", peer, `a kept publication (sq ${sq}) not newer than the last accepted from this publisher on ${topic}`);
          } else if (this.#durable.size > 0) this.#marks.note(peer, topic, time, sq);
          core.stats.publications++;
          const publication: Publication = { topic, data: event.data, from: peer, name: core.directory.nameOf(peer), epoch: event.epoch, sequence: sq };
          for (const sub of this.#trie.match(topic)) if (!stale || sub.durable) sub.offer(publication, size);
        }),
      (err: unknown) =>
        settle(() => {
          const code = err instanceof ZmcpError ? err.code : "bad_seal";
          this.#drop1(code === "bad_seal" || code === "bad_frame" ? "bad_seal" : code, peer, describeThrown(err));
        }),
    );
  }

  /**
   * A sealer that never answers for one publication would hold every later one: past
   * OPEN_TIMEOUT_MS the oldest is given up on (dropped `unavailable`; the sequence shows it as
   * missed), checked once a second while anything is being opened.
   */
  #watchOpening(): void {
    if (this.#openTimer) return;
    this.#openTimer = setInterval(() => {
      const now = performance.now();
      for (let i = this.#openHead; i < this.#opening.length; i++) {
        const entry = this.#opening[i]!;
        if (entry.next) continue;
        if (now - entry.at < this.openTimeout) break;
        entry.next = () => this.#drop1("unavailable", entry.peer, `the events sealer did not open the publication within ${this.openTimeout} ms`);
      }
      this.#deliverOpened();
      if (this.#openHead >= this.#opening.length) {
        clearInterval(this.#openTimer);
        this.#openTimer = undefined;
      }
    }, Math.min(1000, this.openTimeout)).unref();
  }

  /** Delivers (or drops) opened publications from the oldest, up to the first still being opened. */
  #deliverOpened(): void {
    while (this.#openHead < this.#opening.length) {
      const entry = this.#opening[this.#openHead]!;
      if (!entry.next) return;
      this.#opening[this.#openHead++] = DONE;
      this.#openingBytes -= entry.size;
      if (this.#openHead > 1024 && this.#openHead * 2 > this.#opening.length) {
        this.#opening.splice(0, this.#openHead);
        this.#openHead = 0;
      }
      try {
        entry.next();
      } catch (err) {
        // Nothing above throws by design; if it did, the next publications must still go out.
        this.core.log.error("publication delivery failed", { error: describeThrown(err) });
      }
    }
  }


  /** The agent is closing: handlers get nothing more, timers stop. */
  close(): void {
    clearInterval(this.#refresh);
    clearInterval(this.#openTimer);
    for (const sub of this.#subscriptions) sub.stop();
    this.#subscriptions.clear();
  }

  #add(sub: Subscription): void {
    this.#subscriptions.add(sub);
    this.#trie.add(sub.pattern, sub);
    this.#patterns.set(sub.pattern, (this.#patterns.get(sub.pattern) ?? 0) + 1);
    if (sub.durable) {
      this.#durable.set(sub.pattern, (this.#durable.get(sub.pattern) ?? 0) + 1);
      this.#everDurable = true;
    }
  }

  /** Takes `sub` out; true when what is announced changed (no subscription uses its pattern, or none durably, any more). */
  #drop(sub: Subscription): boolean {
    if (!this.#subscriptions.delete(sub)) return false;
    this.#trie.delete(sub.pattern, sub);
    let durableGone = false;
    if (sub.durable) {
      const durableLeft = (this.#durable.get(sub.pattern) ?? 1) - 1;
      if (durableLeft > 0) this.#durable.set(sub.pattern, durableLeft);
      else {
        this.#durable.delete(sub.pattern);
        durableGone = true; // the broker stops keeping its publications at the next heartbeat
      }
    }
    const left = (this.#patterns.get(sub.pattern) ?? 1) - 1;
    if (left > 0) {
      this.#patterns.set(sub.pattern, left);
      return durableGone;
    }
    this.#patterns.delete(sub.pattern);
    try {
      this.sealer.leave(sub.pattern);
    } catch (err) {
      this.core.log.warn("events sealer failed to leave a pattern", { pattern: sub.pattern, error: describeThrown(err) });
    }
    return true;
  }

  async #remove(sub: Subscription): Promise<void> {
    if (!this.#drop(sub) || this.core.isClosed()) return;
    // The broker stops sending at the next heartbeat; this one goes now, unawaited (close()
    // does not wait on a broker that may be gone). If it is lost, the next periodic one says
    // the same, and what arrives meanwhile matches no subscription (dropped `unsolicited`).
    await this.announce().catch(() => undefined);
  }

  /**
   * Heartbeats carry the patterns whenever liveness is on (every `heartbeatInterval`); with it
   * off, the subscriptions are re-announced on their own timer, or the broker would forget them.
   */
  #keepAnnounced(): void {
    if (this.#refresh || this.core.options.heartbeatInterval > 0) return;
    this.#refresh = setInterval(() => {
      if (this.#patterns.size > 0) void this.announce().catch(() => undefined);
    }, REFRESH_WITHOUT_LIVENESS_MS).unref();
  }

  #handlerFailed(sub: Subscription, err: unknown): void {
    this.core.stats.publicationHandlerErrors++;
    this.core.throttle.write("warn", "subscription handler failed", sub.pattern, { pattern: sub.pattern, error: describeThrown(err) });
  }

  #drop1(reason: string, peer: string, message: string): void {
    const core = this.core;
    bump(core.stats.dropped, reason);
    core.throttle.write("warn", "dropped publication", `${peer} ${reason}`, { from: peer, name: core.directory.nameOf(peer), kind: "pub", reason, message });
  }
}

/** A publication being opened: `next` delivers or drops it once the sealer has answered. */
interface Opening {
  next: (() => void) | undefined;
  /** When it arrived (performance.now()), and from whom. */
  at: number;
  peer: string;
  /** Its sealed size (header and body), counted in #openingBytes until it is delivered or dropped. */
  size: number;
}
const DONE: Opening = { next: () => undefined, at: 0, peer: "", size: 0 };
/** How long the events sealer may take to open one publication before it is given up on, ms. */
const OPEN_TIMEOUT_MS = 30_000;

/** With liveness off, subscriptions are re-announced this often, ms (the broker's default heartbeat timeout is 6,000). */
const REFRESH_WITHOUT_LIVENESS_MS = 2000;
