/**
 * Who may answer. A caller accepts a response, or a job's event, only from the party it
 * addressed: sealed by the key it sealed its request to (an agent's own key, or the service
 * key for `svc:NAME`), carrying the matching `as`, and, when the address names one agent (a
 * key, or a replica `svc:NAME@KEY`, or the runner a job id names), stamped by the broker as
 * coming from it. Anything else is refused as `bad_seal` without being opened: otherwise the
 * broker, or any admitted peer that learnt a header id, could answer for anyone.
 */
import { jobRunner } from "./jobs.js";
import { parseServiceAddress, serviceAddress } from "../wire/services.js";

export interface Answerer {
  /** The key that must have sealed the answer. */
  sealKey: string;
  /** The header's `as`: `svc:NAME` for a service's answer, undefined for an agent's own. */
  as: string | undefined;
  /** The sender the broker must have stamped, when one agent is meant; undefined: any replica of the service. */
  from: string | undefined;
}

/** The answerer of a request sent to `to` (the header's `to`) sealed to `sealKey`. */
export function answererOf(to: string, sealKey: string): Answerer {
  const service = parseServiceAddress(to);
  if (!service) return { sealKey, as: undefined, from: sealKey };
  return { sealKey, as: serviceAddress(service.name), from: service.replica };
}

/**
 * Who speaks for a job accepted by `request`'s answerer and first heard from `from`: the
 * runner its id names. Returns a reason string when the id names another agent than the one
 * that accepted it (so its events and polls could not be bound to it).
 */
export function jobAnswerer(request: Answerer, jobId: string, from: string): Answerer | string {
  const runner = jobRunner(jobId);
  if (request.as === undefined) {
    if (runner !== undefined && runner !== request.sealKey) return `job id names runner ${runner}, not the agent asked (${request.sealKey})`;
    return request;
  }
  if (runner !== undefined && runner !== from) return `job id names runner ${runner}, but replica ${from} accepted it`;
  return { ...request, from: runner ?? from };
}

/** Why a message from `peer` with header `as`, sealed by `sealedBy`, is not from `expected`; undefined if it is. */
export function mismatch(expected: Answerer, peer: string, as: string | undefined, sealedBy: string): string | undefined {
  if (as !== expected.as) return `answer sealed as ${as ?? "the sender itself"}, expected ${expected.as ?? "the agent asked"}`;
  if (sealedBy !== expected.sealKey) return `answer sealed by ${sealedBy}, expected ${expected.sealKey}`;
  if (expected.from !== undefined && peer !== expected.from) return `answer from ${peer}, expected ${expected.from}`;
  return undefined;
}

/** A multiset of keys: which keys may seal job events now (one count per job started). */
export class KeyCounts {
  readonly #counts = new Map<string, number>();
  add(key: string): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }
  delete(key: string): void {
    const n = (this.#counts.get(key) ?? 0) - 1;
    if (n > 0) this.#counts.set(key, n);
    else this.#counts.delete(key);
  }
  has(key: string): boolean {
    return this.#counts.has(key);
  }
}
