/**
 * The caller's side of durable delivery (docs/DURABLE.md): which pending attempts were sent
 * durable, so that the broker's `ack {code: "stored"}` for one of them turns its short attempt
 * wait into a wait until the call's deadline (the answer comes when the recipient is back), and
 * is surfaced to the caller's `onStored`.
 */

/** What `onStored` learns: the broker kept the request for a recipient that could not take it now. */
export interface StoredNotice {
  /** The address called (a certificate name, a key or `svc:NAME`, as given to `call`/`start`). */
  to: string;
  tool: string;
  /** The call's deadline, ms since the epoch: the answer is awaited until then. */
  deadline: number;
}

export interface DurableCallOptions {
  /**
   * Durable: a broker with a durable store keeps the request when the recipient is offline or
   * full (instead of `no_route`/`busy`) and delivers it when the recipient is back; the call
   * waits for the answer until its deadline. Without a store at the broker, no change.
   */
  durable?: boolean;
  /** Called when the broker says it stored the request (at most once per attempt). */
  onStored?: (notice: StoredNotice) => void;
}

interface Tracked {
  notice: StoredNotice;
  onStored: ((notice: StoredNotice) => void) | undefined;
}

export class StoredCalls {
  readonly #calls = new Map<string, Tracked>();
  /** Durable requests the broker reported stored. */
  stored = 0;

  /** Remembers a durable attempt (`key`: its message id) until `settled` settles. */
  track(key: string, notice: StoredNotice, onStored: DurableCallOptions["onStored"], settled: Promise<unknown>): void {
    this.#calls.set(key, { notice, onStored });
    void settled.then(
      () => this.#calls.delete(key),
      () => this.#calls.delete(key),
    );
  }

  /**
   * The broker stored attempt `key`: how long to keep waiting (ms), or undefined for an ack that
   * answers no durable attempt of ours (ignored). Calls `onStored`; a listener that throws is
   * reported through `onListenerError`, never into the receive loop.
   */
  onStoredAck(key: string, onListenerError: (err: unknown) => void): number | undefined {
    const tracked = this.#calls.get(key);
    if (!tracked) return undefined;
    this.#calls.delete(key);
    this.stored++;
    try {
      tracked.onStored?.(tracked.notice);
    } catch (err) {
      onListenerError(err);
    }
    return tracked.notice.deadline - Date.now();
  }
}
