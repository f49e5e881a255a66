/**
 * A map bounded in entries that forgets the least recently used first: the one copy of the
 * "order is recency order" idiom (replay, token cache, shared keys, clock
 * offsets, rate limits, liveness, log throttle, response credits), so that each bounded
 * table a peer can grow is bounded the same way.
 */
import { LinkedMap } from "./linked-map.js";

export class RecencyMap<K, V> {
  // A linked map, not a Map: eviction takes the front, which a Map reaches only by walking the
  // holes its earlier deletes left (linked-map.ts).
  readonly #map = new LinkedMap<K, V>();

  constructor(readonly maxEntries: number) {}

  get size(): number {
    return this.#map.size;
  }

  /** The value of `key`, made the most recent. */
  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) this.#map.moveToEnd(key);
    return value;
  }

  /** The value of `key`, its recency unchanged. */
  peek(key: K): V | undefined {
    return this.#map.get(key);
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  /** Sets `key` as the most recent; past `maxEntries`, the least recent entry is forgotten. */
  set(key: K, value: V): this {
    if (this.#map.has(key)) this.#map.set(key, value).moveToEnd(key);
    else {
      this.#map.set(key, value);
      if (this.#map.size > this.maxEntries) this.#map.shift();
    }
    return this;
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  /** Keys, least recent first. */
  keys(): IterableIterator<K> {
    return this.#map.keys();
  }

  values(): IterableIterator<V> {
    return this.#map.values();
  }

  /** Entries, least recent first (reading them does not make them recent). */
  entries(): IterableIterator<[K, V]> {
    return this.#map.entries();
  }
}
