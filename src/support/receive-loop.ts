/**
 * The receive loop every socket here runs: receive, hand the frames over, repeat until closed.
 * A failed receive or a throwing handler is reported and the loop goes on: no bad input ends
 * a socket loop.
 */
export async function receiveLoop(
  socket: { receive(): Promise<Buffer[]> },
  isClosed: () => boolean,
  handle: (frames: Buffer[]) => void | Promise<void>,
  onError: (what: "receive" | "handler", err: unknown) => void,
): Promise<void> {
  while (!isClosed()) {
    let frames: Buffer[];
    try {
      frames = await socket.receive();
    } catch (err) {
      if (isClosed()) return;
      onError("receive", err);
      continue;
    }
    try {
      const done = handle(frames);
      if (done) await done; // a synchronous handler costs no extra await per message
    } catch (err) {
      onError("handler", err);
    }
  }
}
