/**
 * SocketWriter's direct path (sendTimeout 0, one socket.send per message) and its blocking
 * fallback: messages leave in order, and a sender whose socket cannot take a message (no
 * live connection with `immediate`) waits for it as before instead of failing.
 */
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { SocketWriter } from "../../src/support/writer.js";
import { sleep } from "../support/wait.js";

const sockets: zmq.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

async function receiveN(router: zmq.Router, n: number): Promise<number[]> {
  const got: number[] = [];
  while (got.length < n) {
    const [, body] = await router.receive();
    got.push(Number(body!.toString()));
  }
  return got;
}

describe("SocketWriter", () => {
  it("writes without blocking the socket and keeps the order of a thousand sends", async () => {
    const router = new zmq.Router({ linger: 0 });
    sockets.push(router);
    await router.bind("tcp://127.0.0.1:*");
    const dealer = new zmq.Dealer({ linger: 0, immediate: true });
    sockets.push(dealer);
    const writer = new SocketWriter(dealer);
    // The writer owns the socket's blocking: non-blocking sends, blocking only in its fallback.
    expect(dealer.sendTimeout).toBe(0);
    dealer.connect(router.lastEndpoint!);
    const received = receiveN(router, 1000);
    const sent = Array.from({ length: 1000 }, (_, i) => writer.send([String(i)]));
    await Promise.all(sent);
    expect(await received).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(dealer.sendTimeout).toBe(0);
  });

  it("waits, in order, while no connection can take a message, as a blocking send did", async () => {
    const dealer = new zmq.Dealer({ linger: 0, immediate: true });
    sockets.push(dealer);
    const writer = new SocketWriter(dealer);
    const outcomes: string[] = [];
    const sent = Array.from({ length: 50 }, (_, i) =>
      writer.send([String(i)]).then(
        () => outcomes.push(`ok ${i}`),
        (err: unknown) => outcomes.push(`failed ${i}: ${(err as { code?: string }).code}`),
      ),
    );
    await sleep(200);
    // No peer: libzmq refuses at once (EAGAIN); the writer holds them instead of failing them.
    expect(outcomes).toEqual([]);
    expect(writer.queued).toBeGreaterThan(0);
    const router = new zmq.Router({ linger: 0 });
    sockets.push(router);
    await router.bind("tcp://127.0.0.1:*");
    dealer.connect(router.lastEndpoint!);
    const received = receiveN(router, 50);
    await Promise.all(sent);
    expect(outcomes).toEqual(Array.from({ length: 50 }, (_, i) => `ok ${i}`));
    expect(await received).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // Back on the direct path after the drain.
    expect(dealer.sendTimeout).toBe(0);
    expect(writer.queued).toBe(0);
  });

  it("leaves a socket that is non-blocking by choice failing with EAGAIN", async () => {
    const dealer = new zmq.Dealer({ linger: 0, immediate: true, sendTimeout: 0 });
    sockets.push(dealer);
    const writer = new SocketWriter(dealer);
    await expect(writer.send(["x"])).rejects.toMatchObject({ code: "EAGAIN" });
  });
});
