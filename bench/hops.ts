/**
 * Where a brokered round trip's time goes, hop by hop: from the send and receive times that
 * hop-trace.ts records in the caller, the broker and the callee (one clock for all), the
 * segments of each call at one in flight, medians over the calls. A hop (a send called in one
 * process until the receive resolves in the next) is zeromq.js and libzmq: the sender's I/O
 * thread, CURVE, TCP over loopback, the receiver's I/O thread and its JavaScript thread woken;
 * a process's own segment (receive → send) is its JavaScript.
 */
export interface Trace {
  times: ArrayLike<number>;
  ops: ArrayLike<number>; // 1 send, 2 receive
}

export const SEGMENTS = [
  "caller send → broker receives",
  "broker: receive → send",
  "broker send → callee receives",
  "callee: receive → send",
  "callee send → broker receives",
  "broker: receive → send (answer)",
  "broker send → caller receives",
] as const;

/**
 * Medians of each segment (µs) over every call found: the eight events of a call in order
 * (caller send, broker receive, broker send, callee receive, callee send, broker receive,
 * broker send, caller receive) with nothing else between them, so a heartbeat or a call of
 * another system in between makes that call not count.
 */
export function hopMedians(caller: Trace, broker: Trace, callee: Trace): { calls: number; segments: number[]; total: number } {
  const events: Array<[time: number, who: number, op: number]> = [];
  [caller, broker, callee].forEach((trace, who) => {
    for (let i = 0; i < trace.times.length; i++) events.push([trace.times[i]!, who, trace.ops[i]!]);
  });
  events.sort((a, b) => a[0] - b[0]);
  const pattern = [[0, 1], [1, 2], [1, 1], [2, 2], [2, 1], [1, 2], [1, 1], [0, 2]];
  const segments: number[][] = SEGMENTS.map(() => []);
  const totals: number[] = [];
  for (let i = 0; i + pattern.length <= events.length; ) {
    if (pattern.every(([who, op], j) => events[i + j]![1] === who && events[i + j]![2] === op)) {
      for (let j = 0; j < SEGMENTS.length; j++) segments[j]!.push(events[i + j + 1]![0] - events[i + j]![0]);
      totals.push(events[i + 7]![0] - events[i]![0]);
      i += pattern.length;
    } else i++;
  }
  const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[xs.length >> 1]! : NaN);
  return { calls: totals.length, segments: segments.map(median), total: median(totals) };
}
