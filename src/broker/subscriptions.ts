/**
 * The broker's subscription directory (docs/EVENTS.md): which connected key subscribes to
 * which topic patterns, as its heartbeats last said. Soft state, like the service directory
 * (replicas.ts): each heartbeat carries the agent's whole set, so a restarted broker has it
 * back one heartbeat after each agent reconnects, and a key unheard past the TTL leaves it.
 *
 * Bounded: at most 256 patterns per key (the heartbeat schema, wire/services.ts), each at
 * most 128 characters, and `maxPatterns` pattern–key pairs in all; a heartbeat that would go
 * past that is refused whole (`busy`) and changes nothing.
 */
import { TopicTrie } from "../events/topics.js";

interface Entry {
  patterns: Set<string>;
  /** Last heartbeat carrying the set, ms (performance.now(): a wall clock that steps neither keeps nor drops entries). */
  seen: number;
}

export class SubscriptionDirectory {
  readonly #byKey = new Map<string, Entry>();
  readonly #trie = new TopicTrie<string>();
  #sweptAt = 0;

  /**
   * @param ttlMs a key unheard this long leaves the directory (the broker's heartbeatTimeout)
   * @param maxPatterns pattern–key pairs held at most, in all
   */
  constructor(
    readonly ttlMs: number,
    readonly maxPatterns: number,
  ) {}

  /** Pattern–key pairs held. */
  get size(): number {
    return this.#trie.size;
  }

  /** Keys with at least one pattern. */
  get keys(): number {
    return this.#byKey.size;
  }

  /**
   * `key`'s subscriptions are now exactly `patterns` (valid, at most 256). Returns why the set
   * was refused (the directory would be over its bound), or undefined once recorded.
   */
  announce(key: string, patterns: readonly string[], now = performance.now()): string | undefined {
    this.#sweep(now);
    const entry = this.#byKey.get(key);
    const next = new Set(patterns);
    if (next.size === 0) {
      this.forget(key);
      return undefined;
    }
    if (entry) {
      let same = entry.patterns.size === next.size;
      if (same) for (const p of next) if (!entry.patterns.has(p)) same = false;
      if (same) {
        entry.seen = now;
        return undefined;
      }
    }
    let added = 0;
    for (const p of next) if (!entry?.patterns.has(p)) added++;
    const removed = entry ? entry.patterns.size - (next.size - added) : 0;
    if (this.#trie.size + added - removed > this.maxPatterns) {
      return `the broker's subscription directory is full (${this.maxPatterns} patterns)`;
    }
    if (entry) for (const p of entry.patterns) if (!next.has(p)) this.#trie.delete(p, key);
    for (const p of next) this.#trie.add(p, key);
    this.#byKey.set(key, { patterns: next, seen: now });
    return undefined;
  }

  /** Drops every subscription of `key` (revoked, displaced, gone). */
  forget(key: string): void {
    const entry = this.#byKey.get(key);
    if (!entry) return;
    for (const p of entry.patterns) this.#trie.delete(p, key);
    this.#byKey.delete(key);
  }

  /** The keys subscribed to `topic`, each once; keys unheard past the TTL are dropped on the way. */
  match(topic: string, now = performance.now()): string[] {
    const out: string[] = [];
    for (const key of this.#trie.match(topic)) {
      const entry = this.#byKey.get(key)!;
      if (now - entry.seen > this.ttlMs) this.forget(key);
      else out.push(key);
    }
    return out;
  }

  /** Key → its patterns (for tests and operators). */
  snapshot(now = performance.now()): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [key, entry] of this.#byKey) if (now - entry.seen <= this.ttlMs) out[key] = [...entry.patterns];
    return out;
  }

  /** Drops keys unheard past the TTL, at most once per half TTL (bounded work per heartbeat). */
  #sweep(now: number): void {
    if (now - this.#sweptAt < this.ttlMs / 2) return;
    this.#sweptAt = now;
    for (const [key, entry] of this.#byKey) if (now - entry.seen > this.ttlMs) this.forget(key);
  }
}
