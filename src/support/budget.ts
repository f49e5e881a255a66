/**
 * A memory budget in entries and bytes, per owner (a caller's key) and in total. The callee's
 * job table and its idempotency answer cache each hold one: a caller that fills its share is
 * answered `busy`, and so is everyone once the total is full, so neither table grows with
 * what callers send. Bytes are those of the msgpack encoding a held answer is sent as.
 */
import { ConfigError } from "../errors.js";

export interface BudgetLimits {
  /** Entries at most, all owners together. */
  maxEntries: number;
  /** Bytes at most, all owners together. */
  maxBytes: number;
  /** Entries at most per owner. */
  maxEntriesPerOwner: number;
  /** Bytes at most per owner. */
  maxBytesPerOwner: number;
}

interface Use {
  entries: number;
  bytes: number;
}

export class ByteBudget {
  readonly #owners = new Map<string, Use>();
  readonly #total: Use = { entries: 0, bytes: 0 };

  constructor(readonly limits: BudgetLimits, what: string) {
    for (const [name, value] of Object.entries(limits)) {
      if (!(Number.isInteger(value) && value >= 1)) throw new ConfigError(`${what}: ${name} must be a positive integer`);
    }
  }

  /**
   * Why a new entry of `owner` does not fit, or undefined when it does. An entry's bytes are
   * not known before it finishes, so admission looks at what is held: the total can exceed
   * `maxBytes` by at most the entries running at once (each capped by the message size).
   */
  refusal(owner: string): string | undefined {
    const l = this.limits;
    const own = this.#owners.get(owner) ?? { entries: 0, bytes: 0 };
    if (own.entries >= l.maxEntriesPerOwner) return `this caller holds ${own.entries} entries (limit ${l.maxEntriesPerOwner})`;
    if (own.bytes >= l.maxBytesPerOwner) return `this caller holds ${own.bytes} bytes (limit ${l.maxBytesPerOwner})`;
    if (this.#total.entries >= l.maxEntries) return `${this.#total.entries} entries held (limit ${l.maxEntries})`;
    if (this.#total.bytes >= l.maxBytes) return `${this.#total.bytes} bytes held (limit ${l.maxBytes})`;
    return undefined;
  }

  /** Counts `entries` and `bytes` (negative to release) against `owner`. */
  add(owner: string, entries: number, bytes: number): void {
    let own = this.#owners.get(owner);
    if (!own) this.#owners.set(owner, (own = { entries: 0, bytes: 0 }));
    own.entries += entries;
    own.bytes += bytes;
    this.#total.entries += entries;
    this.#total.bytes += bytes;
    if (own.entries <= 0 && own.bytes <= 0) this.#owners.delete(owner);
  }

  /** What `owner` holds now. */
  held(owner: string): Readonly<Use> {
    return this.#owners.get(owner) ?? { entries: 0, bytes: 0 };
  }

  get entries(): number {
    return this.#total.entries;
  }

  get bytes(): number {
    return this.#total.bytes;
  }
}
