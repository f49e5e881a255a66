/**
 * zeromq.js allows one pending send() per socket (EBUSY otherwise), so every socket gets
 * one writer: each caller is told of its own outcome, and messages leave in order.
 *
 * The common case costs one socket.send() and nothing else: the writer puts the socket in
 * non-blocking mode (`sendTimeout: 0`), where send() never waits and so never leaves the
 * socket busy, and hands each message straight to it while nothing is queued and the socket
 * is writable. Only when libzmq cannot take a message (not writable, or EAGAIN: high-water
 * mark, or no live connection with `immediate`) does the writer fall back to what it did for every message before: queue it
 * and everything after it, and write them one by one with the socket's original, blocking
 * timeout. So a sender still waits where it used to wait, without an extra promise, queue
 * entry and await per message when it does not have to.
 */

type Frames = Array<Uint8Array | string>;
interface Pending {
  frames: Frames;
  resolve: () => void;
  reject: (err: unknown) => void;
}
interface WritableSocket {
  send(frames: Frames): Promise<void>;
  sendTimeout?: number;
  /** zeromq.js: libzmq would take a message now (ZMQ_EVENTS has POLLOUT). */
  readonly writable?: boolean;
}

const isEagain = (err: unknown) => (err as { code?: unknown } | null)?.code === "EAGAIN";

export class SocketWriter {
  readonly #queue: Pending[] = [];
  #draining = false;
  /** Direct sends whose outcome is not known yet: a fallback waits for them to keep the order. */
  #direct = 0;
  /** The socket's own send timeout, used while the queue drains; undefined: no fast path. */
  readonly #blockingTimeout: number | undefined;

  constructor(private readonly socket: WritableSocket) {
    // A socket whose options cannot be set (a test double) keeps the queued path for all.
    if (typeof socket.sendTimeout === "number" && socket.sendTimeout !== 0) {
      this.#blockingTimeout = socket.sendTimeout;
      socket.sendTimeout = 0;
    } else if (socket.sendTimeout === 0) this.#blockingTimeout = 0; // non-blocking by choice: EAGAIN is the answer
  }

  /** Sends `frames`; resolves when written, rejects with the socket's error (EAGAIN for a non-blocking socket, EHOSTUNREACH...). */
  send(frames: Frames): Promise<void> {
    // `writable` first: a message that libzmq would refuse goes to the queue at once, so no
    // later message can overtake it (an EAGAIN is only known when its promise settles).
    if (this.#blockingTimeout === undefined || this.#draining || this.#queue.length > 0 || this.socket.writable === false) return this.#enqueue(frames);
    this.#direct++;
    return this.socket.send(frames).then(
      () => {
        this.#direct--;
        if (this.#direct === 0 && this.#queue.length > 0 && !this.#draining) void this.#drain();
      },
      (err: unknown) => {
        this.#direct--;
        if (!isEagain(err) || this.#blockingTimeout === 0) {
          if (this.#direct === 0 && this.#queue.length > 0 && !this.#draining) void this.#drain();
          throw err;
        }
        // libzmq could not take it now: wait for it as a blocking send would, in order.
        return this.#enqueue(frames);
      },
    );
  }

  #setTimeout(ms: number): void {
    try {
      this.socket.sendTimeout = ms;
    } catch {
      // the socket is closed: its sends fail anyway
    }
  }

  /** Messages waiting in the queue (the blocking fallback). */
  get queued(): number {
    return this.#queue.length;
  }

  #enqueue(frames: Frames): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ frames, resolve, reject });
      // Direct sends still in flight settle first (each one that fails EAGAIN queues itself
      // in the order it was sent); the last of them starts the drain.
      if (!this.#draining && this.#direct === 0) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    const restore = this.#blockingTimeout !== undefined && this.#blockingTimeout !== 0;
    if (restore) this.#setTimeout(this.#blockingTimeout!);
    try {
      let item: Pending | undefined;
      while ((item = this.#queue.shift())) {
        try {
          await this.socket.send(item.frames);
          item.resolve();
        } catch (err) {
          item.reject(err);
        }
      }
    } finally {
      if (restore) this.#setTimeout(0);
      this.#draining = false;
    }
  }
}
