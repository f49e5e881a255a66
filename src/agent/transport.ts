/**
 * The seam between the agent's parts and the wire: they send frames through a Transport and
 * are handed the frames that arrive. The zeromq DEALER (connection.ts) is one implementation;
 * `linkedPair()` is another, in memory, so the inbound checks, the handler and the caller can
 * be tested without sockets (as the MCP SDK's InMemoryTransport).
 */
export type Frames = Array<Uint8Array | string>;

export interface Transport {
  /** Queues `frames` for sending; rejects if the transport cannot take them. */
  send(frames: Frames): Promise<void>;
}

/** One end of an in-memory pair: what it sends is delivered to the other end's receiver. */
export interface MemoryEnd extends Transport {
  /** Where frames sent by the other end arrive (as a DEALER/ROUTER would hand them: Buffers). */
  onReceive: (frames: Buffer[]) => void;
  /** Frames sent by this end, in order (for assertions). */
  readonly sent: Frames[];
}

/**
 * Two linked ends. Delivery is asynchronous (a microtask later), as a socket's is, so a
 * sender never re-enters its own receiver. `through` may rewrite or drop (return undefined)
 * what crosses, e.g. to stand in for a broker that stamps the sender's key.
 */
export function linkedPair(through: (frames: Buffer[], from: "a" | "b") => Buffer[] | undefined = (f) => f): [MemoryEnd, MemoryEnd] {
  const make = (name: "a" | "b"): MemoryEnd => {
    const end: MemoryEnd = {
      sent: [],
      onReceive: () => undefined,
      send(frames) {
        end.sent.push(frames);
        const copy = frames.map((f) => Buffer.from(f as Uint8Array | string));
        queueMicrotask(() => {
          const out = through(copy, name);
          if (out) (name === "a" ? b : a).onReceive(out);
        });
        return Promise.resolve();
      },
    };
    return end;
  };
  const a = make("a");
  const b = make("b");
  return [a, b];
}
