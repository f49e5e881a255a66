/**
 * A map in insertion order that is cheap to take from the front: the one structure behind every
 * table here that forgets its oldest entries (seen ids, least recently used; the answer cache,
 * whose entries are in four orders at once, links them through themselves: idempotency.ts).
 *
 * Why not a Map: V8's Map leaves a hole for each deleted entry until the table is rebuilt, and
 * iteration walks the holes. A table pruned from the front and read from the front (`for (const
 * [k, v] of map) { if (young) break; map.delete(k) }`, or `map.keys().next()` to evict) walks
 * every hole left by earlier prunes, again on each call: with 100,000 entries that is 30 µs per
 * message instead of 0.7 (issue 12's steady-state profile: the replay guard's check was the
 * hottest function of an agent once its window was full). Here each entry is a node of a
 * doubly linked list beside the Map: the front is one pointer away, a delete unlinks in O(1),
 * and the Map is only ever looked up by key, never iterated.
 *
 * Iteration is in insertion order (re-setting a key keeps its place, as a Map does; use
 * {@link moveToEnd} to move it) and tolerates deletes of any entry during it (the loops here
 * delete the entry they stand on); unlike a Map's, it may miss entries added or moved to the end
 * after the entry it stands on was deleted, which no loop here does.
 */
interface Node<K, V> {
  key: K;
  value: V;
  prev: Node<K, V> | undefined;
  next: Node<K, V> | undefined;
  /** Unlinked: an iterator standing on it goes on from `next` (kept as it was) past other removed nodes. */
  removed: boolean;
}

export class LinkedMap<K, V> implements Iterable<[K, V]> {
  readonly #nodes = new Map<K, Node<K, V>>();
  #head: Node<K, V> | undefined;
  #tail: Node<K, V> | undefined;

  get size(): number {
    return this.#nodes.size;
  }

  get(key: K): V | undefined {
    return this.#nodes.get(key)?.value;
  }

  has(key: K): boolean {
    return this.#nodes.has(key);
  }

  /** Sets `key`: a new key goes to the end, an existing one keeps its place. */
  set(key: K, value: V): this {
    const node = this.#nodes.get(key);
    if (node) node.value = value;
    else {
      const added: Node<K, V> = { key, value, prev: this.#tail, next: undefined, removed: false };
      if (this.#tail) this.#tail.next = added;
      else this.#head = added;
      this.#tail = added;
      this.#nodes.set(key, added);
    }
    return this;
  }

  /** Moves `key` to the end (most recent); false if absent. */
  moveToEnd(key: K): boolean {
    const node = this.#nodes.get(key);
    if (!node) return false;
    if (node === this.#tail) return true;
    this.#unlink(node);
    node.removed = false;
    node.prev = this.#tail;
    node.next = undefined;
    this.#tail!.next = node;
    this.#tail = node;
    return true;
  }

  delete(key: K): boolean {
    const node = this.#nodes.get(key);
    if (!node) return false;
    this.#nodes.delete(key);
    this.#unlink(node);
    return true;
  }

  clear(): void {
    for (let node = this.#head; node; node = node.next) node.removed = true;
    this.#nodes.clear();
    this.#head = this.#tail = undefined;
  }

  /** The oldest key (first in order), or undefined when empty. */
  firstKey(): K | undefined {
    return this.#head?.key;
  }

  /** The oldest value, or undefined when empty. */
  firstValue(): V | undefined {
    return this.#head?.value;
  }

  /** Removes and returns the oldest entry's value (undefined when empty). */
  shift(): V | undefined {
    const node = this.#head;
    if (!node) return undefined;
    this.#nodes.delete(node.key);
    this.#unlink(node);
    return node.value;
  }

  *entries(): IterableIterator<[K, V]> {
    for (let node = this.#head; node; node = LinkedMap.#after(node)) if (!node.removed) yield [node.key, node.value];
  }

  *keys(): IterableIterator<K> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): IterableIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /** The live node after `node`, which may have been removed since it was reached. */
  static #after<K, V>(node: Node<K, V>): Node<K, V> | undefined {
    let next = node.next;
    while (next?.removed) next = next.next;
    return next;
  }

  /** Takes `node` out of the list; its `next` stays, so an iterator on it can go on. */
  #unlink(node: Node<K, V>): void {
    if (node.prev) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.#tail = node.prev;
    node.removed = true;
  }
}
