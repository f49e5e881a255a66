/**
 * A map bounded in entries that forgets the least recently used first: the one copy of the
 * "Map insertion order is recency order" idiom (replay, token cache, shared keys, clock
 * offsets, rate limits, liveness, log throttle, response credits), so that each bounded
 * table a peer can grow is bounded the same way.
 */
export class RecencyMap<K, V> {
  readonly #map = new Map<K, V>();

  constructor(readonly maxEntries: number) {}

  get size(): number {
    return this.#map.size;
  }

  /** The value of `key`, made the most recent. */
  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
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
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.maxEntries) this.#map.delete(this.#map.keys().next().value!);
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
