/**
 * Responses draw on a budget too. A `res` is free only against a credit, and a credit is one
 * request the broker forwarded: keyed by (responder, requester, request id), it pays for exactly
 * one `res` from that responder whose `to` is that requester and whose `re` is that id, until
 * the request's deadline (`exp` + the broker's clock skew). Without a credit, a `res` draws on
 * the sender's ordinary rate-limit bucket like any other message. So labelling traffic
 * `k: "res"` skips nothing, and a credit can neither be banked and spent on someone else nor
 * earned by writing to oneself (a request to oneself earns none): an honest callee answers each
 * request for free, once, while its caller (already rate limited) can still read the answer.
 *
 * Soft state, bounded: at most `maxEntries` credits (least recently granted dropped first;
 * losing one only makes that answer draw on its sender's bucket).
 */
import { RecencyMap } from "../support/recency-map.js";

export class ResponseBudget {
  readonly #credits: RecencyMap<string, number>;

  constructor(readonly maxEntries = 100_000) {
    this.#credits = new RecencyMap(maxEntries);
  }

  /** A request `id` from `requester` was forwarded to `responder`: one answer to it is free until `until` (ms since the epoch). */
  credit(responder: string, requester: string, id: Uint8Array, until: number): void {
    if (responder === requester) return;
    this.#credits.set(creditKey(responder, requester, id), until);
  }

  /** Spends the credit for a `res` from `responder` to `requester` answering `re`; false when there is none (or it expired). */
  spend(responder: string, requester: string, re: Uint8Array | undefined, now = Date.now()): boolean {
    if (re === undefined) return false;
    const key = creditKey(responder, requester, re);
    const until = this.#credits.peek(key);
    if (until === undefined) return false;
    this.#credits.delete(key);
    return now <= until;
  }

  get size(): number {
    return this.#credits.size;
  }
}

function creditKey(responder: string, requester: string, id: Uint8Array): string {
  return `${responder}\u0000${requester}\u0000${Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex")}`;
}
