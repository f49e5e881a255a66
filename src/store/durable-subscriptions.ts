/**
 * Durable subscriptions in the broker (docs/EVENTS.md "Durable subscriptions"): which keys
 * declared which topic patterns durable (their heartbeat's `dsub`), so that a publication
 * matching one is stored for that key while it cannot take it (store/durable.ts fanOut).
 *
 * The declarations live IN THE STORE, not only here: a key offline is heard by no broker, so a
 * broker that restarted, or another broker of the store, must know from the store alone that
 * publications are to be kept for it. Each broker holds a copy (a topic trie, bounded), made of
 *   - what its own connections' heartbeats declare: kept `retention` after the last heartbeat
 *     that carried it (a subscriber down for less than that finds its publications waiting),
 *     written to the store at once when new and then at most once a minute;
 *   - what the store holds, re-read every few seconds: kept until two re-reads miss it.
 * A heartbeat from the key that no longer carries a pattern ends that declaration at once, here
 * and in the store (the key's current heartbeat is the authority on its subscriptions); the
 * other brokers' copies lapse at their next re-reads.
 */
import { TopicTrie } from "../events/topics.js";
import type { DurableStore } from "./store.js";

/** Durable (key, pattern) declarations held at most (by a broker, and read from the store). */
export const MAX_DURABLE_SUBSCRIPTIONS = 100_000;
/** The store's declarations are re-read this often, ms. */
export const DURABLE_SUBS_RELOAD_MS = 5000;
/** A declaration still current is written to the store again at most this often, ms. */
const REWRITE_EVERY_MS = 60_000;
/**
 * How long a key that (re)connected with durable subscriptions declared may take to declare them
 * again before what is stored for it is delivered all the same, ms: its backlog waits for its
 * subscriptions (delivered before, publications would match none and be dropped `unsolicited`).
 */
export const REDECLARE_GRACE_MS = 10_000;

export class DurableSubscriptions {
  /** key → pattern → until (ms since the epoch). */
  readonly #byKey = new Map<string, Map<string, number>>();
  /** Values are `KEY PATTERN` (neither holds a space), so a match says which declaration matched. */
  readonly #trie = new TopicTrie<string>();
  /** `key pattern` → when this broker last wrote it to the store. */
  readonly #written = new Map<string, number>();
  #size = 0;
  /** Keys that connected (performance.now()) and have not declared their durable set since. */
  readonly #connected = new Map<string, number>();

  constructor(
    private readonly store: DurableStore,
    /** How long a declaration outlives the last heartbeat that made it, ms (the broker's storeRetention). */
    private readonly retention: number,
  ) {}

  /** (key, pattern) pairs held. */
  get size(): number {
    return this.#size;
  }

  /** A new connection of `key` was admitted: its stored messages wait (REDECLARE_GRACE_MS at most) for it to declare again. */
  connecting(key: string, now = performance.now()): void {
    if (!this.#byKey.has(key)) return;
    if (this.#connected.size >= MAX_DURABLE_SUBSCRIPTIONS) this.#connected.clear(); // bounded: forgetting only delivers sooner
    this.#connected.set(key, now);
  }

  /** True while what is stored for `key` should wait for it to declare its durable subscriptions again. */
  awaitingDeclaration(key: string, now = performance.now()): boolean {
    const since = this.#connected.get(key);
    if (since === undefined) return false;
    if (now - since < REDECLARE_GRACE_MS && this.#byKey.has(key)) return true;
    this.#connected.delete(key);
    return false;
  }

  /**
   * A verified heartbeat from `key` declares exactly `patterns` durable (maybe none). Returns
   * why it was refused (the bound), or undefined once recorded. Store writes are not awaited:
   * a store down now is written on a later heartbeat (the declaration holds here meanwhile).
   */
  declare(key: string, patterns: readonly string[], now = Date.now()): string | undefined {
    this.#connected.delete(key);
    const held = this.#byKey.get(key);
    if (held) {
      for (const p of [...held.keys()]) {
        if (patterns.includes(p)) continue;
        this.#delete(key, p);
        this.#written.delete(`${key} ${p}`);
        this.store.unsubscribeDurable(key, p).catch(() => undefined); // lapses by itself in the store if this fails
      }
    }
    let added = 0;
    for (const p of patterns) if (!this.#byKey.get(key)?.has(p)) added++;
    if (this.#size + added > MAX_DURABLE_SUBSCRIPTIONS) return `the broker's durable subscription directory is full (${MAX_DURABLE_SUBSCRIPTIONS} patterns)`;
    const until = now + this.retention;
    for (const p of patterns) {
      this.#set(key, p, until);
      const member = `${key} ${p}`;
      if ((this.#written.get(member) ?? -Infinity) + REWRITE_EVERY_MS > now || !this.store.available) continue;
      this.#written.set(member, now);
      if (this.#written.size > MAX_DURABLE_SUBSCRIPTIONS) this.#written.clear(); // bounded: forgetting only means one more write
      this.store.subscribeDurable(key, p, until).catch(() => this.#written.delete(member)); // tried again on the next heartbeat
    }
    return undefined;
  }

  /** The keys with a durable pattern matching `topic` (declarations past their time dropped on the way). */
  match(topic: string, now = Date.now()): Set<string> {
    const out = new Set<string>();
    for (const member of this.#trie.match(topic)) {
      const space = member.indexOf(" ");
      const key = member.slice(0, space);
      const pattern = member.slice(space + 1);
      if ((this.#byKey.get(key)?.get(pattern) ?? -Infinity) < now) this.#delete(key, pattern);
      else out.add(key);
    }
    return out;
  }

  /** Re-reads the store's declarations (made through other brokers, or before a restart). */
  async reload(now = Date.now()): Promise<void> {
    const pairs = await this.store.durableSubscriptions(MAX_DURABLE_SUBSCRIPTIONS);
    const until = now + 2 * DURABLE_SUBS_RELOAD_MS;
    for (const [key, pattern] of pairs) {
      const had = this.#byKey.get(key)?.get(pattern);
      if (had === undefined && this.#size >= MAX_DURABLE_SUBSCRIPTIONS) continue;
      if (had === undefined || had < until) this.#set(key, pattern, until);
    }
  }

  /** Key → its durable patterns (for tests and operators). */
  snapshot(now = Date.now()): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [key, patterns] of this.#byKey) {
      const live = [...patterns].filter(([, until]) => until >= now).map(([p]) => p);
      if (live.length > 0) out[key] = live;
    }
    return out;
  }

  #set(key: string, pattern: string, until: number): void {
    let patterns = this.#byKey.get(key);
    if (!patterns) this.#byKey.set(key, (patterns = new Map()));
    if (!patterns.has(pattern)) {
      this.#trie.add(pattern, `${key} ${pattern}`);
      this.#size++;
    }
    patterns.set(pattern, until);
  }

  #delete(key: string, pattern: string): void {
    const patterns = this.#byKey.get(key);
    if (!patterns?.delete(pattern)) return;
    this.#trie.delete(pattern, `${key} ${pattern}`);
    this.#size--;
    if (patterns.size === 0) this.#byKey.delete(key);
  }
}
