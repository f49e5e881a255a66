/**
 * Replay protection: a message is accepted once, and only while its timestamp is inside a
 * window around the receiver's clock.
 *
 * A message stamped `ts` is accepted only while |now - ts| <= window, and its first arrival
 * was at or after ts - window, so a replay can succeed no later than first arrival + 2 windows.
 * Keeping each seen id that long is enough, and makes the cache bounded by the window.
 *
 * The seen ids live in memory, so a process that restarts forgets them: a message captured
 * before the restart (by the broker, the only party that sees whole frames) could run again
 * inside its window, and so could one handed to a replica started since. So a guard also
 * refuses every message stamped more than a grace before it was created: such a message may
 * have been seen by the previous process, and this one cannot tell. It is refused with `busy`
 * (nothing ran, nothing is remembered), which the caller's SDK retries with a fresh message
 * and timestamp, so honest calls go through.
 *
 * The grace is the clock difference tolerated with callers during an agent's first moments:
 * a caller whose clock lags by more than it is refused until the agent's uptime passes its lag.
 * Timestamps are the sender's clock and nothing in-band can prove a message fresh without a
 * round trip, so the grace is a trade: the default, 2 s, asks peers' clocks to agree within
 * that (a caller lagging more is refused `busy` until the agent's uptime passes its lag) and
 * leaves replayable only messages stamped within 2 s before a restart; with a `stateDir` the
 * agent keeps an "alive until" mark and refuses what the previous process may have seen,
 * however quick the restart (alive-mark.ts).
 */
import { ProtocolError } from "../../../src/errors.js";

export const DEFAULT_REPLAY_WINDOW_MS = 60_000;
export const DEFAULT_MAX_SEEN = 1_000_000;
/**
 * Clock difference allowed on messages stamped before the guard's start, ms. Small: every ms of
 * it is a gap in which a request seen by a previous process can be replayed to a new one that
 * keeps no alive mark (alive-mark.ts). It asks peers' clocks to agree within 2 s (NTP does).
 */
export const DEFAULT_START_GRACE_MS = 2000;

/** How many seen ids one sender holds now (shared by its entries, so a count costs no string per id). */
interface SenderShare {
  sender: string;
  held: number;
}

export class ReplayGuard {
  /** key → time after which it may be forgotten, and whose it is; insertion order is arrival order. */
  readonly #seen = new Map<string, { forgetAt: number; share: SenderShare | undefined }>();
  /** Sender → its share of #seen (senders with at least one id held). */
  readonly #shares = new Map<string, SenderShare>();
  /** The latest `forgetAt` of an id pruned: a message whose id would be forgotten by then cannot be checked. */
  #prunedUpTo = -Infinity;

  /**
   * @param windowMs accepted clock difference, ms; default 60,000
   * @param maxSeen ids remembered at most; past it new messages are refused with `busy`
   *   (failing closed rather than forgetting ids that could then be replayed); default 1,000,000
   * @param notBefore messages stamped before this (ms since the epoch, sender's clock) are
   *   refused with `busy`: the guard cannot know whether they were seen before it existed;
   *   default: its creation time less {@link DEFAULT_START_GRACE_MS}; see alive-mark.ts
   * @param maxPerSender ids of one sender remembered at most (half of maxSeen): past it that
   *   sender's new messages are refused `busy`, so that one key flooding ids (requests, or
   *   publications, which every subscriber records before opening) cannot fill the cache and
   *   make this agent refuse every other peer
   */
  constructor(
    readonly windowMs = DEFAULT_REPLAY_WINDOW_MS,
    readonly maxSeen = DEFAULT_MAX_SEEN,
    readonly notBefore = Date.now() - DEFAULT_START_GRACE_MS,
    /** The floor for durable messages (held by a store while this key was away): alive-mark.ts durableNotBefore. */
    readonly durableNotBefore = -Infinity,
    readonly maxPerSender = Math.max(1, Math.floor(maxSeen / 2)),
  ) {}

  /**
   * Throws ProtocolError(replay | busy) if the message must be refused; records it otherwise.
   * `durable`: the message may have waited in a broker's durable store, so a timestamp older
   * than the window is refused `busy` instead of `replay`: nothing runs (its id could have been
   * forgotten, so it cannot be checked), and the caller, still waiting, sends it again fresh.
   * `sender`: the authenticated key that sent it, whose share of the cache is bounded.
   */
  check(key: string, ts: number, now = Date.now(), durable = false, sender?: string): void {
    if (durable && Number.isFinite(ts) && now - ts > this.windowMs) {
      throw new ProtocolError("busy", `durable message stamped ${now - ts} ms ago, older than the ${this.windowMs} ms replay window; send it again`);
    }
    if (!Number.isFinite(ts) || Math.abs(now - ts) > this.windowMs) {
      throw new ProtocolError("replay", `timestamp ${ts} is outside the ${this.windowMs} ms replay window (clock ${now})`);
    }
    const floor = durable ? this.durableNotBefore : this.notBefore;
    if (ts < floor) {
      throw new ProtocolError("busy", `message stamped ${floor - ts} ms before this agent could have seen it (possibly a replay it cannot check); send it again`);
    }
    this.#prune(now);
    if (this.#seen.has(key)) throw new ProtocolError("replay", "message id seen before (replayed)");
    // Its id may have been pruned already: this clock stepped back since (NTP, a VM resumed), or
    // it was stamped ahead. It cannot be checked, so it is not run; a sender still waiting sends
    // it again, fresh (the adversarial review: a 2 ms step back let a captured copy run twice).
    if (ts + this.windowMs + 1 <= this.#prunedUpTo) throw new ProtocolError("busy", "message stamped before ids this agent has already forgotten (its clock stepped back); send it again");
    if (this.#seen.size >= this.maxSeen) throw new ProtocolError("busy", "replay cache full");
    let share: SenderShare | undefined;
    if (sender !== undefined) {
      share = this.#shares.get(sender);
      if (share === undefined) this.#shares.set(sender, (share = { sender, held: 0 }));
      if (share.held >= this.maxPerSender) throw new ProtocolError("busy", `replay cache: this sender holds ${share.held} recent ids, its most; send again later`);
      share.held++;
    }
    // A copy is accepted while |now - ts| <= window, so until ts + window and no longer: half
    // of the twice-the-window this kept every id for (ts is seldom far in the future; an id
    // stamped ahead in front holds back those behind it from pruning, for its own time only).
    this.#seen.set(key, { forgetAt: ts + this.windowMs + 1, share }); // + 1: the window is inclusive, pruning drops at forgetAt
  }

  /** Ids of `sender` held now. */
  heldBy(sender: string): number {
    return this.#shares.get(sender)?.held ?? 0;
  }

  /** True when `check` can judge a message stamped `ts` (inside the window, not before this guard's floor). */
  judges(ts: number, now = Date.now()): boolean {
    return Number.isFinite(ts) && Math.abs(now - ts) <= this.windowMs && ts >= this.notBefore;
  }

    get size(): number {
    return this.#seen.size;
  }

  #prune(now: number): void {
    for (const [key, { forgetAt, share }] of this.#seen) {
      if (forgetAt > now) break;
      if (forgetAt > this.#prunedUpTo) this.#prunedUpTo = forgetAt;
      this.#seen.delete(key);
      if (share !== undefined && --share.held === 0) this.#shares.delete(share.sender);
    }
  }
}
