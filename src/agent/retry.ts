/**
 * Retries of idempotent calls: capped, jittered exponential backoff inside the caller's
 * deadline. Safe because a request keeps its id across attempts and the callee answers a
 * repeated id with its first answer (idempotency.ts).
 *
 * That holds only when the retry reaches the agent that saw the first attempt. A service
 * (`svc:NAME`) is many replicas, each with its own answer cache, and the broker picks one per
 * message: a retry after a timed-out attempt would run the tool again on another replica while
 * the first still runs it. So a request to a service is retried only after a refusal that
 * proves no replica took it (the broker's `busy` / `no_route` / `rate_limited`, a replica's
 * `busy`); a timed-out attempt to a service is not resent (see {@link attemptTimeout}), and
 * the call fails `timeout` at its deadline. A request runs at most once per service.
 *
 * A timed-out attempt is usually not lost but late: the destination is busy, and a resend adds
 * to what it is busy with (a request, and an answer, of the same size again). Under overload
 * every call timing out and resending turned into a retry storm: at 256 calls of 1 MiB in flight
 * the benchmark's brokered throughput fell to 0 and calls failed `tool_failed` (their retries
 * came after the callee's byte budget had dropped the first answer). So the answer to an earlier
 * attempt of a call still answers it (caller.ts), and resends after a timeout are bounded per
 * destination by a {@link RetryBudget}, as Envoy's retry budgets bound them: a call that may not
 * resend keeps waiting for the answers of the attempts it has sent.
 */
import { ConfigError, RemoteError, TimeoutError, ZmcpError } from "../errors.js";
import { parseServiceAddress } from "../wire/services.js";

export interface RetryOptions {
  /** Attempts at most, the first included. Default 8. */
  attempts?: number;
  /** How long one attempt waits for its answer before the next is sent, ms. Default: a quarter of the deadline, between 500 and 2,000. */
  attemptTimeout?: number;
  /** First backoff, ms (doubled per attempt, ±50% jitter). Default 50. */
  minDelay?: number;
  /** Largest backoff, ms. Default 1,000. */
  maxDelay?: number;
  /**
   * Calls to one destination that may resend after a timed-out attempt at the same time, as a
   * share of the calls waiting on it (at least {@link MIN_RETRYING} whatever the share). A call
   * over the budget sends nothing more and keeps waiting for the answers of its attempts until
   * its deadline. Refusals that prove nothing ran (`busy`, `no_route`) are resent regardless,
   * after their backoff. Default 0.2 (Envoy's default retry budget); 1 resends every time.
   */
  budget?: number;
}

export interface RetryPolicy {
  attempts: number;
  attemptTimeout: number;
  minDelay: number;
  maxDelay: number;
  budget: number;
}

/** Calls to one destination that may always resend after a timeout, whatever the budget's share (Envoy's `min_retry_concurrency`). */
export const MIN_RETRYING = 3;
export const DEFAULT_RETRY_BUDGET = 0.2;

export function retryPolicy(options: RetryOptions | false | undefined, timeout: number): RetryPolicy {
  if (options === false) return { attempts: 1, attemptTimeout: timeout, minDelay: 0, maxDelay: 0, budget: 0 };
  const budget = options?.budget ?? DEFAULT_RETRY_BUDGET;
  if (typeof budget !== "number" || !(budget >= 0 && budget <= 1)) throw new ConfigError(`retry.budget must be a share between 0 and 1, got ${String(budget)}`);
  // Not numbers (NaN from an unset variable, say): an attempt deadline of NaN never fired, and
  // the call waited forever past its own deadline (retry8-attack-options.test.ts).
  count("attempts", options?.attempts, 1);
  count("attemptTimeout", options?.attemptTimeout, 0);
  count("minDelay", options?.minDelay, 0);
  count("maxDelay", options?.maxDelay, 0);
  return {
    attempts: options?.attempts ?? 8,
    attemptTimeout: options?.attemptTimeout ?? Math.min(2000, Math.max(500, timeout / 4)),
    minDelay: options?.minDelay ?? 50,
    maxDelay: options?.maxDelay ?? 1000,
    budget,
  };
}

/** Throws ConfigError unless `value` is unset or a number of at least `least` (per call: no closure). */
function count(name: string, value: unknown, least: number): void {
  if (value !== undefined && (typeof value !== "number" || !(value >= least))) throw new ConfigError(`retry.${name} must be a number of at least ${least}, got ${String(value)}`);
}

/**
 * How many calls wait on each destination, and how many of them have resent after a timeout:
 * a call may start resending while those resending are fewer than `budget` × those waiting (and
 * always while fewer than {@link MIN_RETRYING}). Once it has resent it stays counted until it
 * ends, so its later resends need no new room. Entries live only while calls wait.
 */
export class RetryBudget {
  readonly #destinations = new Map<string, Counts>();

  /** A call to `destination` starts waiting; call the ticket's `end` once when it ends. */
  enter(destination: string): RetryTicket {
    let counts = this.#destinations.get(destination);
    if (!counts) this.#destinations.set(destination, (counts = { waiting: 0, resending: 0, held: undefined }));
    counts.waiting++;
    // A ticket of one shape, no closures: a call makes one on every request (the per-call path).
    return new Ticket(this.#destinations, destination, counts);
  }

  /** Calls waiting on `destination` and those of them resending (for tests and metrics). */
  counts(destination: string): { waiting: number; resending: number; held: number } {
    const entry = this.#destinations.get(destination);
    return { waiting: entry?.waiting ?? 0, resending: entry?.resending ?? 0, held: entry?.held?.size ?? 0 };
  }
}

interface Counts {
  waiting: number;
  resending: number;
  /** Wake-ups of the calls held for a place, oldest first (made when a call is first held). */
  held: Set<() => void> | undefined;
}

class Ticket implements RetryTicket {
  #resending = false;
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(
    /** The budget's table, which forgets a destination once no call waits on it. */
    private readonly destinations: Map<string, Counts>,
    private readonly destination: string,
    private readonly counts: Counts,
  ) {}

  mayResend(budget: number): boolean {
    if (this.#resending) return true;
    const counts = this.counts;
    if (counts.resending >= Math.max(MIN_RETRYING, budget * counts.waiting)) return false;
    this.#resending = true;
    counts.resending++;
    return true;
  }

  hold(onPlace: (() => void) | undefined): void {
    const counts = this.counts;
    if (this.#wake) counts.held?.delete(this.#wake);
    this.#wake = onPlace;
    if (onPlace) (counts.held ??= new Set()).add(onPlace);
  }

  release(): void {
    if (!this.#resending || this.#ended) return;
    this.#resending = false;
    this.#free();
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    const counts = this.counts;
    if (this.#wake) counts.held?.delete(this.#wake);
    counts.waiting--;
    if (this.#resending) this.#free();
    if (counts.waiting === 0) this.destinations.delete(this.destination);
  }

  /**
   * Gives up this call's place. The call held longest asks again now, not at the end of its
   * turn: turns of an attempt timeout drained a crowd of held calls a fifth at a time, 2 s apart,
   * and when a load dropped and only calls whose answers were lost were left, the last of them
   * waited out their deadline (the reference run of issue 12 caught it).
   */
  #free(): void {
    const counts = this.counts;
    counts.resending--;
    const first = counts.held?.values().next();
    if (first && !first.done) {
      counts.held!.delete(first.value);
      first.value();
    }
  }
}

export interface RetryTicket {
  /** Whether this call may resend after a timed-out attempt now (it then counts as resending until it ends). */
  mayResend(budget: number): boolean;
  /** While held: `onPlace` runs (once) when a resending call to the same destination ends; undefined: no longer held. */
  hold(onPlace: (() => void) | undefined): void;
  /**
   * The call sends nothing more (it waits only for answers already on their way): its place, if
   * it has one, frees now rather than when it ends (asking mayResend again takes one anew).
   */
  release(): void;
  end(): void;
}

/**
 * How long attempt number n waits for its answer, ms. The policy's `attemptTimeout` where a
 * retry comes back to the same agent (an agent's key, a replica `svc:NAME@KEY`); the whole
 * remaining deadline for a service, whose retry could land on another replica.
 */
export function attemptTimeout(policy: RetryPolicy, to: string, remaining: number, last: boolean): number {
  const service = parseServiceAddress(to);
  if (last || (service && service.replica === undefined)) return remaining;
  return Math.min(policy.attemptTimeout, remaining);
}

/** Errors worth another attempt: nothing ran, or the answer may have been lost. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof TimeoutError) return true;
  return err instanceof RemoteError && (err.code === "busy" || err.code === "no_route");
}

/** Backoff before attempt `n` (1-based count of attempts made so far). */
export function backoff(policy: RetryPolicy, n: number): number {
  const base = Math.min(policy.maxDelay, policy.minDelay * 2 ** (n - 1));
  return base * (0.5 + Math.random() / 2);
}
