/**
 * The broker's directory of live service replicas: who announced which service (with a
 * verified key proof, wire/services.ts), how much room each reported, and which to pick.
 */
import { DEFAULT_REPLICA_TTL_MS } from "../wire/services.js";

interface Replica {
  free: number;
  seen: number;
}

/**
 * The broker's directory of live replicas per service. Picks the least loaded replica (most
 * free capacity, as last reported and decremented per dispatch), round robin among equals.
 */
export class ServiceDirectory {
  readonly #services = new Map<string, Map<string, Replica>>();
  #turn = 0;

  /**
   * @param ttlMs a replica not announced for this long is dropped; default 3,000
   * @param maxReplicas replicas kept per service at most (bounds memory); default 10,000
   */
  constructor(
    readonly ttlMs = DEFAULT_REPLICA_TTL_MS,
    readonly maxReplicas = 10_000,
  ) {}

  /** Records a verified announcement. Returns false if the service is full. */
  announce(name: string, replica: string, free: number, now = Date.now()): boolean {
    let replicas = this.#services.get(name);
    if (!replicas) this.#services.set(name, (replicas = new Map()));
    if (!replicas.has(replica) && replicas.size >= this.maxReplicas) return false;
    replicas.set(replica, { free, seen: now });
    return true;
  }

  /** A live replica for `name`, or undefined. Counts the dispatch against its free capacity. */
  pick(name: string, now = Date.now()): string | undefined {
    const replicas = this.#services.get(name);
    if (!replicas) return undefined;
    let best: string[] = [];
    let bestFree = -Infinity;
    for (const [key, r] of replicas) {
      if (now - r.seen > this.ttlMs) {
        replicas.delete(key);
        continue;
      }
      if (r.free > bestFree) {
        bestFree = r.free;
        best = [key];
      } else if (r.free === bestFree) best.push(key);
    }
    if (replicas.size === 0) this.#services.delete(name);
    if (best.length === 0) return undefined;
    const key = best[this.#turn++ % best.length]!;
    const chosen = replicas.get(key)!;
    chosen.free = Math.max(0, chosen.free - 1);
    return key;
  }

  /** Drops a replica at once (its connection is gone). */
  evict(name: string, replica: string): void {
    const replicas = this.#services.get(name);
    replicas?.delete(replica);
    if (replicas?.size === 0) this.#services.delete(name);
  }

  /** Service name → live replica keys (for tests and metrics). */
  snapshot(now = Date.now()): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [name, replicas] of this.#services) {
      const live = [...replicas].filter(([, r]) => now - r.seen <= this.ttlMs).map(([k]) => k);
      if (live.length > 0) out[name] = live;
    }
    return out;
  }
}
