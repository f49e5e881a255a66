/**
 * Idempotency on the callee's side: a request retried with the same request id (after a
 * timeout, a lost answer, a broker restart) gets the first answer; the tool runs once.
 * A retry that arrives while the first run is still going waits for that run.
 *
 * An answer is kept as long as a copy of its request can still be accepted: until the `exp` its
 * caller wrote plus the late window (the replay window: inbound.ts refuses any copy past
 * `exp + window`, whatever its clock offset). Memory is bounded by a {@link ByteBudget} in
 * entries and bytes, per caller and in total. When a new request does not fit, answers whose
 * request deadline has passed on this agent's reading are dropped first (honest callers have
 * stopped retrying) and the caller's highest dropped `exp` is remembered: a later copy of
 * such a request (possible only if that caller's clock stepped back or its queueing delay grew,
 * so that its deadline reads later now) is refused `expired`, never run a second time (the
 * adversarial review of issue 12). Then, if bytes are what is full, the oldest answers' bodies
 * are dropped, down to three quarters of the bound: the entry stays, so a retry of such a
 * request still never runs the tool again, and gets {@link DROPPED_ANSWER} instead of the
 * answer (a retry is rare: it means the first answer was lost). Only when entries are what is
 * full is a request refused (`busy`). Without the first step a caller at a few hundred calls a
 * second filled its budget in two minutes; without the second, 16 MiB per caller held 256
 * answers of 64 KiB, so a caller with 10 s deadlines could make about 25 such calls a second
 * (measured by the direct-links benchmark).
 */
import { ByteBudget, type BudgetLimits } from "../support/budget.js";
import { LinkedMap } from "../support/linked-map.js";
import { decodeKept, encodeKept, type Response } from "../wire/envelope.js";

/** What is sent back: a response without its header digest and timestamp. */
export type Answer = Pick<Response, "st" | "result" | "error">;

interface Entry {
  key: string;
  owner: string;
  /**
   * The answer once finished, msgpack-encoded into a buffer of its own size: what is counted is
   * what is held. Kept as the object, it held whatever its binary values were views of: a tool
   * returning `data.subarray(0, 8)` of a 1 MiB argument kept the whole received frame under a
   * count of 8 bytes, so the byte budget bounded nothing (and every kept answer was an object
   * graph for the garbage collector to walk). Decoded again only for a retry.
   */
  answer: Uint8Array | undefined;
  bytes: number;
  /** Retries waiting for the first run (made only when one comes). */
  waiters: Array<(answer: Answer) => void> | undefined;
  forgetAt: number;
  /** The request's deadline (ms, this agent's clock): past it no honest retry comes. */
  deadline: number;
  /** The request's `exp` as its caller wrote it: no copy is accepted after `sentExp + lateMs`. */
  sentExp: number;
  /** Its neighbours in each {@link Chain} (previous at 2 × the chain's index, next after it). */
  links: Array<Entry | undefined>;
  /** The chains it is in, one bit per index. */
  chains: number;
  /** Its place in the far heap ({@link FarHeap}), or -1 when not in it. */
  heapAt: number;
}

/**
 * Finished entries kept for longer than the cache's own `ttlMs + lateMs`, ordered by when they
 * may be forgotten (a binary min-heap, each entry knowing its place). Such an entry in the finish
 * order's front held back the forgetting of every answer behind it for its own time: one request
 * with `exp` = 2^53 - 1, from any admitted caller, stopped everyone's answers from being
 * forgotten by time for the life of the process, and the cache sat at its bounds (the adversarial
 * review, test/security/perf7-attack-answer-cache.test.ts). So those go here instead; the finish
 * order holds only answers forgotten within the usual span, which it holds back by that at most.
 */
class FarHeap {
  readonly #items: Entry[] = [];

  get size(): number {
    return this.#items.length;
  }

  /** The entry forgotten first, if any. */
  peek(): Entry | undefined {
    return this.#items[0];
  }

  push(e: Entry): void {
    e.heapAt = this.#items.length;
    this.#items.push(e);
    this.#up(e.heapAt);
  }

  /** Takes `e` out if it is in; true if it was. */
  remove(e: Entry): boolean {
    const at = e.heapAt;
    if (at < 0) return false;
    e.heapAt = -1;
    const last = this.#items.pop()!;
    if (at < this.#items.length) {
      this.#items[at] = last;
      last.heapAt = at;
      this.#down(at);
      this.#up(last.heapAt);
    }
    return true;
  }

  #up(i: number): void {
    const items = this.#items;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]!.forgetAt <= items[i]!.forgetAt) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    const items = this.#items;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < items.length && items[l]!.forgetAt < items[least]!.forgetAt) least = l;
      if (r < items.length && items[r]!.forgetAt < items[least]!.forgetAt) least = r;
      if (least === i) return;
      this.#swap(i, least);
      i = least;
    }
  }

  #swap(a: number, b: number): void {
    const items = this.#items;
    const x = items[a]!;
    const y = items[b]!;
    items[a] = y;
    items[b] = x;
    x.heapAt = b;
    y.heapAt = a;
  }
}

/**
 * Entries in finish order, linked through the entries themselves: what the cache takes from the
 * front (forgotten, dropped, past its deadline) is one link away, and keeping an answer in its
 * four orders costs four pairs of links, not four ordered maps (whose nodes and map entries were
 * 380 of the 1,020 bytes each kept answer held: bench/callee-memory.js entries).
 */
class Chain {
  head: Entry | undefined;
  #tail: Entry | undefined;
  size = 0;
  readonly #prev: number;
  readonly #bit: number;

  constructor(index: number) {
    this.#prev = 2 * index;
    this.#bit = 1 << index;
  }

  push(e: Entry): void {
    const p = this.#prev;
    e.links[p] = this.#tail;
    e.links[p + 1] = undefined;
    if (this.#tail) this.#tail.links[p + 1] = e;
    else this.head = e;
    this.#tail = e;
    e.chains |= this.#bit;
    this.size++;
  }

  /** Takes `e` out if it is in; true if it was. */
  remove(e: Entry): boolean {
    if (!(e.chains & this.#bit)) return false;
    const p = this.#prev;
    const before = e.links[p];
    const after = e.links[p + 1];
    if (before) before.links[p + 1] = after;
    else this.head = after;
    if (after) after.links[p] = before;
    else this.#tail = before;
    e.links[p] = e.links[p + 1] = undefined;
    e.chains &= ~this.#bit;
    this.size--;
    return true;
  }

  /** The entries from the front; the one handed out may be removed before asking for the next. */
  *entries(): IterableIterator<Entry> {
    for (let e = this.head; e; ) {
      const next = e.links[this.#prev + 1];
      yield e;
      e = next;
    }
  }
}

const FINISHED = 0;
const WITH_BODY = 1;
const OWN_FINISHED = 2;
const OWN_BODIES = 3;

/**
 * Defaults: an honest caller at a few hundred calls a second holds tens of thousands of small
 * answers for the 120 s they are kept, so the counts are generous and the bytes are the cap.
 */
export const DEFAULT_ANSWER_LIMITS: BudgetLimits = {
  maxEntries: 100_000,
  maxBytes: 64 * 1024 * 1024,
  maxEntriesPerOwner: 25_000,
  maxBytesPerOwner: 16 * 1024 * 1024,
};

/** Bytes counted per entry besides its answer: the key and the bookkeeping. */
export const ENTRY_OVERHEAD_BYTES = 256;

/** What a retry gets when its request's answer was dropped to make room: the tool ran once, and is not run again. */
export const DROPPED_ANSWER: Answer = Object.freeze({
  st: "error",
  error: Object.freeze({
    code: "tool_failed",
    message: "this request already ran once; its answer was dropped from the callee's answer cache (full) before this retry came, so it cannot be sent again",
  }),
}) as Answer;

const DROPPED_KEPT = encodeKept(DROPPED_ANSWER);

/** What a retry gets when the answer, sent once, could not be encoded again to be kept (a getter that throws the second time). */
export const UNKEPT_ANSWER: Answer = Object.freeze({
  st: "error",
  error: Object.freeze({
    code: "tool_failed",
    message: "this request already ran once; its answer could not be kept for a retry (it did not encode a second time), so it cannot be sent again",
  }),
}) as Answer;
const UNKEPT = encodeKept(UNKEPT_ANSWER);

/** The answer encoded to be kept; never throws (the answer holds user objects: getters run again). */
function keptBytes(answer: Answer): Uint8Array {
  try {
    return encodeKept(answer);
  } catch {
    return UNKEPT;
  }
}

/** A kept answer decoded for a retry; never throws (bytes the encoder wrote that its decoder refuses, a `__proto__` key: the error saying it could not be kept). */
function keptAnswer(bytes: Uint8Array): Answer {
  try {
    return decodeKept(bytes) as Answer;
  } catch {
    return decodeKept(UNKEPT) as Answer;
  }
}

/**
 * What {@link AnswerCache.begin} found: a new run, an earlier answer to wait for, no room, or a
 * request whose answer may have been dropped after its deadline (refused `expired`, not run).
 */
export type Begun = { kind: "new" } | { kind: "earlier"; answer: Promise<Answer> } | { kind: "full"; reason: string } | { kind: "dropped"; reason: string };

/** One owner's finished entries and those of them that still hold their answer's body. */
interface Own {
  finished: Chain;
  bodies: Chain;
}

export class AnswerCache {
  /** Every entry, running or finished (looked up, never walked). */
  readonly #entries = new Map<string, Entry>();
  /**
   * The orders below are taken from the front (what is forgotten, dropped, past its deadline),
   * so they are chains through the entries: a Map walks the holes of everything taken before
   * it, again on each request (tens of µs per request in a steady state).
   *
   * Finished entries in finish order: forgotten from the front once past their time.
   */
  readonly #finished = new Chain(FINISHED);
  /** Finished entries kept longer than the usual span, by when they are forgotten (see {@link FarHeap}). */
  readonly #far = new FarHeap();
  /**
   * Finished entries that still hold their answer's body, in finish order: in all, and per
   * owner. Dropping bodies takes from their fronts, so it never walks again over entries whose
   * bodies are gone (it did: at a few thousand calls a second every full request walked
   * tens of thousands of them, most of a busy callee's time in issue 12's profile).
   */
  readonly #withBody = new Chain(WITH_BODY);
  /** Each owner's finished entries (what is past its deadline is taken from the front under pressure) and those with bodies. */
  readonly #own = new Map<string, Own>();
  /**
   * Per owner, the highest `exp` of an answer dropped while a copy of its request could still
   * be accepted, and until when that matters: a new request at or below it is refused.
   */
  readonly #dropped = new Map<string, { exp: number; until: number }>();
  #lastOwnSweep = new LinkedMap<string, number>();
  readonly budget: ByteBudget;
  /** Answers whose body was dropped to make room (their entries stay), since start. */
  bodiesDropped = 0;
  #lastSweep = -Infinity;

  /**
   * @param ttlMs a request's deadline when {@link begin} is given none, ms; default 120,000
   * @param limits entries and bytes held at most, per caller and in total
   * @param lateMs how long after its `exp` a copy of a request can still be accepted (the
   *   receiver's replay window, inbound.ts's expiry step): an answer is kept until then and no
   *   longer, since every later copy is refused `expired` before it gets here. Default: ttlMs.
   */
  constructor(
    readonly ttlMs = 120_000,
    limits: BudgetLimits = DEFAULT_ANSWER_LIMITS,
    readonly lateMs = ttlMs,
  ) {
    this.budget = new ByteBudget(limits, "answer cache");
  }

  /**
   * For a new key: records it as running (the caller runs the tool and then calls
   * {@link finish}). For a known key: the first answer, when it comes.
   */
  begin(key: string, owner: string, now = Date.now(), deadline = now + this.ttlMs, sentExp = deadline): Begun {
    this.#prune(now);
    const entry = this.#entries.get(key);
    if (!entry) {
      const dropped = this.#dropped.get(owner);
      if (dropped !== undefined && now > dropped.until) this.#dropped.delete(owner);
      else if (dropped !== undefined && sentExp <= dropped.exp) {
        return { kind: "dropped", reason: "past its deadline: answers of this caller's requests up to this deadline were dropped to make room, so it is not run (again)" };
      }
      let reason = this.budget.refusal(owner);
      if (reason !== undefined && this.#dropPastDeadline(owner, now)) reason = this.budget.refusal(owner);
      if (reason !== undefined && this.#dropBodies(owner)) reason = this.budget.refusal(owner);
      if (reason !== undefined) return { kind: "full", reason: `idempotency cache full: ${reason}` };
      this.#entries.set(key, { key, owner, answer: undefined, bytes: 0, waiters: undefined, forgetAt: Infinity, deadline, sentExp, links: [undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined], chains: 0, heapAt: -1 });
      this.budget.add(owner, 1, 0);
      return { kind: "new" };
    }
    if (entry.answer) return { kind: "earlier", answer: Promise.resolve(keptAnswer(entry.answer)) };
    return { kind: "earlier", answer: new Promise((resolve) => (entry.waiters ??= []).push(resolve)) };
  }

  /**
   * Stores the answer, counted as `bytes` (or forgets the key when `keep` is false, e.g. for
   * `busy`), and wakes waiters. `kept`: the answer already encoded as it was sent (encodeKept);
   * without it the answer is encoded here (its getters run again).
   */
  finish(key: string, answer: Answer, bytes: number, keep = true, now = Date.now(), kept?: Uint8Array): void {
    const entry = this.#entries.get(key);
    if (!entry || entry.answer) return;
    if (keep) {
      entry.answer = kept ?? keptBytes(answer); // `kept`: the answer's bytes as sent (responder.ts), not read again
      // The kept bytes come from reading the answer again (user getters run again): counted at
      // no less than what is held, or a result that reads small once and large after is held
      // in megabytes counted as a few bytes.
      entry.bytes = Math.max(bytes, entry.answer.byteLength) + ENTRY_OVERHEAD_BYTES;
      this.budget.add(entry.owner, 0, entry.bytes);
      // Kept exactly while a copy can still be accepted (+ 1: expiry is inclusive).
      entry.forgetAt = Math.max(now, entry.sentExp + this.lateMs + 1);
      // In finish order (pruning takes from the front; an entry with a later deadline in front
      // holds back those behind it, for its own time at most, so at most the usual span: kept
      // longer, it goes to the far heap instead).
      if (entry.forgetAt > now + this.ttlMs + this.lateMs) this.#far.push(entry);
      else this.#finished.push(entry);
      this.#withBody.push(entry);
      let own = this.#own.get(entry.owner);
      if (!own) this.#own.set(entry.owner, (own = { finished: new Chain(OWN_FINISHED), bodies: new Chain(OWN_BODIES) }));
      own.finished.push(entry);
      own.bodies.push(entry);
    } else this.#forget(entry);
    const waiters = entry.waiters;
    entry.waiters = undefined;
    // Waiters get what a later retry gets (the kept answer), not the tool's live object, which
    // their responses would read once more.
    const held = entry.answer;
    for (const wake of waiters ?? []) wake(held ? keptAnswer(held) : answer);
  }

  get size(): number {
    return this.#entries.size;
  }

  #forget(entry: Entry): void {
    this.#entries.delete(entry.key);
    if (!this.#finished.remove(entry)) this.#far.remove(entry);
    this.budget.add(entry.owner, -1, -entry.bytes);
    this.#withBody.remove(entry);
    const own = this.#own.get(entry.owner);
    if (own) {
      own.bodies.remove(entry);
      own.finished.remove(entry);
      if (own.finished.size === 0) this.#own.delete(entry.owner); // bodies ⊆ finished: both empty
    }
  }

  #bodyGone(entry: Entry): void {
    if (this.#withBody.remove(entry)) this.#own.get(entry.owner)?.bodies.remove(entry);
  }

  /**
   * Drops finished answers whose request deadline has passed, only when full: the owner's own
   * when its share is what is full, else anyone's. Oldest first, stopping at the first still
   * inside its deadline (for one timeout, finish order is deadline order), so each request
   * pays only for what it drops; at most once a second a full sweep also finds those held
   * behind a longer deadline. (Before, only the full sweep ran, at most every 100 ms: between
   * two, a caller over about 2,500 calls/s was refused `busy`, which opened its circuit.)
   */
  #dropPastDeadline(owner: string, now: number): boolean {
    const l = this.budget.limits;
    const held = this.budget.held(owner);
    const ownFull = held.entries >= l.maxEntriesPerOwner || held.bytes >= l.maxBytesPerOwner;
    // Only the owner's own answers when its share is what is full: another caller's stay (the
    // adversarial review found one caller's full share emptying everyone's past-deadline answers).
    const from = ownFull ? this.#own.get(owner)?.finished : this.#finished;
    let dropped = false;
    for (const entry of from?.entries() ?? []) {
      if (entry.deadline >= now) break;
      this.#dropPast(entry, now);
      dropped = true;
    }
    const sweeps = ownFull ? this.#lastOwnSweep : undefined;
    const last = sweeps ? (sweeps.get(owner) ?? -Infinity) : this.#lastSweep;
    if (dropped || now - last < 1000) return dropped;
    if (sweeps) {
      sweeps.set(owner, now);
      if (sweeps.size > 10_000) sweeps.shift();
    } else this.#lastSweep = now;
    for (const entry of from?.entries() ?? []) {
      if (entry.deadline < now) {
        this.#dropPast(entry, now);
        dropped = true;
      }
    }
    return dropped;
  }

  /** Forgets an answer past its deadline, remembering its `exp` for as long as a copy of its request could come. */
  #dropPast(entry: Entry, now: number): void {
    const until = entry.sentExp + this.lateMs + 1;
    if (until > now) {
      const mark = this.#dropped.get(entry.owner);
      if (mark === undefined) {
        // Bounded like the owners: past 10,000 marks, the ones that no longer matter go.
        if (this.#dropped.size >= 10_000) for (const [owner, m] of this.#dropped) if (m.until <= now) this.#dropped.delete(owner);
        this.#dropped.set(entry.owner, { exp: entry.sentExp, until });
      } else {
        mark.exp = Math.max(mark.exp, entry.sentExp);
        mark.until = Math.max(mark.until, until);
      }
    }
    this.#forget(entry);
  }

  /**
   * When bytes are full (this owner's, or in total), replaces the oldest finished answers'
   * bodies (the owner's, or anyone's) with {@link DROPPED_ANSWER} until three quarters of the
   * bound is held, so the next few thousand requests do not each walk the table.
   */
  #dropBodies(owner: string): boolean {
    const l = this.budget.limits;
    const ownFull = this.budget.held(owner).bytes >= l.maxBytesPerOwner;
    if (!ownFull && this.budget.bytes < l.maxBytes) return false;
    const ownTarget = (l.maxBytesPerOwner * 3) / 4;
    const totalTarget = (l.maxBytes * 3) / 4;
    const held = ownFull ? this.budget.held(owner) : undefined;
    const from = ownFull ? this.#own.get(owner)?.bodies : this.#withBody;
    let dropped = false;
    for (const entry of from?.entries() ?? []) {
      if (held ? held.bytes <= ownTarget : this.budget.bytes <= totalTarget) break;
      this.budget.add(entry.owner, 0, ENTRY_OVERHEAD_BYTES - entry.bytes);
      entry.bytes = ENTRY_OVERHEAD_BYTES;
      entry.answer = DROPPED_KEPT;
      this.#bodyGone(entry);
      this.bodiesDropped++;
      dropped = true;
    }
    return dropped;
  }

  #prune(now: number): void {
    let oldest;
    while ((oldest = this.#finished.head) !== undefined && oldest.forgetAt <= now) this.#forget(oldest);
    while ((oldest = this.#far.peek()) !== undefined && oldest.forgetAt <= now) this.#forget(oldest);
  }
}
