/**
 * Circuit breakers, next to retries: a destination (an agent's key, or `svc:NAME`) whose calls
 * keep failing `no_route`, `timeout` or `busy` is opened after a run of `failures` such calls;
 * calls to it then fail at once with {@link CircuitOpenError} (`circuit_open`, local) instead of
 * spending their deadline on retries against a peer that is not there. After `openFor` one call
 * is let through as a probe (half-open): its success closes the circuit, its failure opens it
 * again. Any other answer (`invalid_args`, `tool_failed`, ...) proves the peer is there and
 * counts as a success; the caller's own `aborted`/`closed` count as nothing.
 *
 * A service (`svc:NAME`) is judged by the broker's verdicts only: `no_route` (no live replica)
 * and `busy` (every replica busy). A `timeout` there means the one replica that took the
 * request died with it; the broker evicts that replica and routes the next calls to the live
 * ones, so it counts as nothing there, neither failure nor success (a replica killed with 8
 * calls in flight must not cut callers off the surviving replicas for `openFor`).
 *
 * Per agent, in memory, one entry per destination that failed (a success forgets it), bounded.
 */
import { ConfigError, ZmcpError } from "../errors.js";
import { readCounter, readGauge, readGaugeSeries, type Registry } from "../support/metrics.js";
import { RecencyMap } from "../support/recency-map.js";
import { SERVICE_PREFIX } from "../wire/services.js";

export interface CircuitOptions {
  /** Consecutive failed calls (`no_route`, `timeout`, `busy`, retries included) that open the circuit. Default 5. */
  failures?: number;
  /** How long an open circuit refuses calls before letting a probe through, ms. Default 5,000. */
  openFor?: number;
}

/** The defaults (AGENT_DEFAULTS.circuit): conservative, so that only a peer clearly gone is cut off. */
export const DEFAULT_CIRCUIT: Readonly<Required<CircuitOptions>> = Object.freeze({ failures: 5, openFor: 5_000 });

/** Codes that say the destination is not answering (as opposed to answering "no"). */
const FAILING: ReadonlySet<string> = new Set(["no_route", "timeout", "busy"]);
/** Codes that are the caller's own doing: they say nothing about the destination. */
const NEUTRAL: ReadonlySet<string> = new Set(["aborted", "closed", "circuit_open"]);
const MAX_ENTRIES = 10_000;

export type CircuitState = "closed" | "open" | "half_open";

/** A call refused at once because its destination's circuit is open (local code `circuit_open`). */
export class CircuitOpenError extends ZmcpError {
  override name = "CircuitOpenError";
  constructor(
    readonly destination: string,
    readonly retryInMs: number,
  ) {
    super("circuit_open", `circuit open for ${destination}: its last calls failed (no_route, timeout or busy); next probe in ${Math.max(0, Math.round(retryInMs))} ms (circuit: false to call anyway)`);
  }
}

interface Entry {
  /** Consecutive failures while closed. */
  failures: number;
  /** Open until then (ms, monotonic); 0 while closed. */
  openUntil: number;
  /** A probe is out until then (ms, monotonic): its call's deadline, so a lost settle cannot wedge it. */
  probeUntil: number;
}

/** One call's pass through a breaker: report how it ended, once. */
export interface CircuitTicket {
  settle(err?: unknown): void;
}

const NOOP: CircuitTicket = { settle: () => undefined };

/** `circuit` with the defaults applied, or false when off. Throws ConfigError (resolveAgentOptions calls it). */
export function resolveCircuitOptions(options: CircuitOptions | false | undefined): Required<CircuitOptions> | false {
  if (options === false) return false;
  const resolved = { ...DEFAULT_CIRCUIT, ...options };
  if (!(Number.isInteger(resolved.failures) && resolved.failures >= 1)) throw new ConfigError(`circuit.failures must be an integer >= 1 (got ${String(resolved.failures)})`);
  if (!(resolved.openFor >= 0) || !Number.isFinite(resolved.openFor)) throw new ConfigError(`circuit.openFor must be a non-negative number of ms (got ${String(resolved.openFor)})`);
  return resolved;
}

export class CircuitBreakers {
  readonly #entries = new RecencyMap<string, Entry>(MAX_ENTRIES);
  readonly #options: Required<CircuitOptions> | false;
  /** Times a circuit opened (or reopened after a failed probe), and calls refused while open. */
  opened = 0;
  refused = 0;

  /** `options` as resolveCircuitOptions returns them. */
  constructor(options: Required<CircuitOptions> | false) {
    this.#options = options;
  }

  /**
   * Admits a call to `destination` lasting at most `timeoutMs`, or throws CircuitOpenError.
   * `enabled: false` (a call's `circuit: false`) passes without counting.
   */
  admit(destination: string, timeoutMs: number, enabled = true, now = performance.now()): CircuitTicket {
    const options = this.#options;
    if (!options || !enabled) return NOOP;
    const entry = this.#entries.peek(destination);
    let probe = false;
    if (entry && entry.openUntil > 0) {
      if (now < entry.openUntil || now < entry.probeUntil) {
        this.refused++;
        throw new CircuitOpenError(destination, Math.max(entry.openUntil, entry.probeUntil) - now);
      }
      entry.probeUntil = now + timeoutMs; // half-open: this call is the probe
      probe = true;
    }
    let done = false;
    return {
      settle: (err?: unknown) => {
        if (done) return;
        done = true;
        this.#settle(destination, err, probe, options);
      },
    };
  }

  #settle(destination: string, err: unknown, probe: boolean, options: Required<CircuitOptions>): void {
    const code = err === undefined ? undefined : err instanceof ZmcpError ? err.code : "error";
    const entry = this.#entries.peek(destination);
    const neutral = code !== undefined && (NEUTRAL.has(code) || (code === "timeout" && destination.startsWith(SERVICE_PREFIX)));
    if (neutral) {
      if (probe && entry) entry.probeUntil = 0; // no verdict: the next call probes
      return;
    }
    if (code === undefined || !FAILING.has(code)) {
      this.#entries.delete(destination); // it answered: closed
      return;
    }
    const e = entry ?? this.#add(destination);
    e.failures++;
    if (probe || e.failures >= options.failures) {
      if (e.openUntil === 0 || probe) this.opened++;
      e.openUntil = performance.now() + options.openFor;
      e.probeUntil = 0;
    }
  }

  #add(destination: string): Entry {
    const entry: Entry = { failures: 0, openUntil: 0, probeUntil: 0 };
    this.#entries.set(destination, entry);
    return entry;
  }

  /** The state of `destination` now. */
  state(destination: string, now = performance.now()): CircuitState {
    const entry = this.#entries.peek(destination);
    if (!entry || entry.openUntil === 0) return "closed";
    return now < entry.openUntil ? "open" : "half_open";
  }

  /** Destinations whose circuit is not closed, with their state. */
  *notClosed(now = performance.now()): IterableIterator<[string, CircuitState]> {
    for (const destination of this.#entries.keys()) {
      const state = this.state(destination, now);
      if (state !== "closed") yield [destination, state];
    }
  }
}

/**
 * `zmcp_agent_circuits_open` (not closed now), `zmcp_agent_circuit_state{destination, name,
 * state}` (1 per destination not closed), `zmcp_agent_circuit_opened_total`,
 * `zmcp_agent_calls_short_circuited_total`.
 */
export function registerCircuitMetrics(registry: Registry, breakers: CircuitBreakers, nameOf: (destination: string) => string | undefined): void {
  readGauge(registry, "zmcp_agent_circuits_open", "Destinations whose circuit breaker is open or half-open now", () => [...breakers.notClosed()].length);
  readGaugeSeries(registry, "zmcp_agent_circuit_state", "Circuit breakers not closed now: 1 per destination, labelled open or half_open", ["destination", "name", "state"], () =>
    [...breakers.notClosed()].map(([destination, state]): [string[], number] => [[destination, nameOf(destination) ?? "", state], 1]),
  );
  readCounter(registry, "zmcp_agent_circuit_opened_total", "Times a circuit breaker opened (a run of failures, or a failed probe)", () => breakers.opened);
  readCounter(registry, "zmcp_agent_calls_short_circuited_total", "Calls refused at once with circuit_open", () => breakers.refused);
}
