/**
 * zeromq.js allows one pending send() per socket (EBUSY otherwise), so every socket gets
 * one writer: sends are queued and written in order, each caller told of its own outcome.
 */

type Frames = Array<Uint8Array | string>;
interface Pending {
  frames: Frames;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class SocketWriter {
  readonly #queue: Pending[] = [];
  #draining = false;

  constructor(private readonly socket: { send(frames: Frames): Promise<void> }) {}

  /** Queues `frames`; resolves when written, rejects with the socket's error (EAGAIN, EHOSTUNREACH...). */
  send(frames: Frames): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ frames, resolve, reject });
      if (!this.#draining) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#draining = true;
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
      this.#draining = false;
    }
  }
}
