/**
 * The caller's side: calls, starts, polls and `tools/list`, each one request with retries
 * (retry.ts) inside its deadline and a circuit breaker per destination (circuit.ts), in a
 * CLIENT span whose context is sealed into the request (tracing.ts); the pending calls; and
 * answer binding, which accepts a response only from the party the request was addressed to
 * (answerer.ts).
 */
import { z } from "zod";
import { ConfigError, describeThrown, ForgedAnswerError, remoteError, TimeoutError, ZmcpError } from "../errors.js";
import { withDeadline } from "../support/deadline.js";
import { PendingCalls } from "../support/pending.js";
import { idKey, JobStateSchema, newId, PROTOCOL_VERSION, type Header, type Request, type Response } from "../wire/envelope.js";
import { parseServiceAddress, serviceAddress } from "../wire/services.js";
import { answererOf, mismatch, type Answerer } from "./answerer.js";
import { CircuitBreakers } from "./circuit.js";
import { seal, type AgentCore } from "./core.js";
import type { JobFollower } from "./follower.js";
import { DROPPED_ANSWER } from "./idempotency.js";
import { Job, jobRunner, type JobState } from "./jobs.js";
import type { CallOptions } from "./options.js";
import { attemptTimeout, backoff, isRetryable, RetryBudget, retryPolicy, type RetryPolicy, type RetryTicket } from "./retry.js";
import { bump, Dropped } from "./stats.js";
import { BUILTIN_TOOLS, ToolInfoSchema, type ToolInfo } from "./tools.js";
import { StoredCalls, type DurableCallOptions } from "../store/caller.js";
import { endSpan, startCallSpan, traceFields } from "./tracing.js";
import { LinkSendError, LinkSilentError, type DirectLinks, type Link } from "./direct-links.js";

/** A response, who sent it, and who was asked (and so who may speak for a job it accepted). */
export interface Answered {
  response: Response;
  /** The key of the agent (or service replica) that answered. */
  from: string;
  answerer: Answerer;
}

/** Where a request goes: the header's `to`, and the public key it is sealed to. */
export interface Destination {
  to: string;
  sealKey: string;
}

/** One call's attempts, as its answers may come late (see {@link Caller.request}). */
interface CallState {
  /** Keys of its attempts that timed out: still answered through #late until the call ends. */
  late: string[];
  /** The key of its attempt pending now, if any. */
  current?: string;
  /** A late answer that came while no attempt was pending: the call's answer. */
  arrived: Answered | undefined;
  /** Wakes the call waiting for a late answer instead of resending. */
  wake: (() => void) | undefined;
  /** A timed-out attempt was refused by the broker since (nothing ran): the call may send again. */
  lost: boolean;
  /** A timed-out attempt was refused by the broker since with a final code (`rate_limited`: back off): the call's outcome once no answer is pending. */
  refused: Error | undefined;
  /** An answer to a timed-out attempt refused as forged: the call's error if it ends without an answer (instead of a timeout). */
  forged?: ForgedAnswerError;
}

/** Waits until a late answer arrives, `ms` pass, or `signal` fires (then throws its abort). */
function waitForLate(call: CallState, ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (call.arrived !== undefined || ms <= 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      call.wake = undefined;
      if (err) reject(err);
      else resolve();
    };
    const onAbort = () => done(new ZmcpError("aborted", "call aborted", { cause: signal?.reason }));
    const timer = setTimeout(done, ms);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    call.wake = () => done();
  });
}

export class Caller {
  readonly #pending = new PendingCalls<Omit<Answered, "answerer">, Answerer>();
  /** Attempts that timed out while their call still waits: attempt key → who may answer it, and the call. */
  readonly #late = new Map<string, { answerer: Answerer; call: CallState }>();
  /** Resends after a timeout, bounded per destination (retry.ts). */
  readonly #budget = new RetryBudget();
  /** Calls between attempts (backing off, or held by the budget): woken when the agent closes. */
  readonly #holding = new Set<CallState>();
  /** Durable attempts awaiting the broker's `stored` ack (docs/DURABLE.md). */
  readonly #storedCalls = new StoredCalls();
  /** One breaker per destination (a key, or `svc:NAME`); the facade reads them for its metrics. */
  readonly circuits: CircuitBreakers;
  /** Set by the facade: the follower that adopts accepted jobs. */
  follower!: JobFollower;
  /** Set by the facade when `direct` is on: links straight to callees' listeners (direct-links.ts). */
  links: DirectLinks | undefined;

  constructor(
    private readonly core: AgentCore,
    /** Call latency, seconds, by outcome (the agent's metrics). */
    private readonly observe: (ok: boolean, seconds: number) => void,
  ) {
    this.circuits = new CircuitBreakers(core.options.circuit);
  }

  /** Requests waiting for an answer (each attempt of a call). */
  get pending(): number {
    return this.#pending.size;
  }

  /** See Agent.call. */
  async call(to: string, tool: string, args: unknown, options: CallOptions): Promise<unknown> {
    this.core.stats.calls++;
    const started = performance.now();
    try {
      const result = await this.#call(to, tool, args, options);
      this.observe(true, (performance.now() - started) / 1000);
      return result;
    } catch (err) {
      this.observe(false, (performance.now() - started) / 1000);
      bump(this.core.stats.callFailures, err instanceof ZmcpError ? err.code : "error");
      throw err;
    }
  }

  async #call(to: string, tool: string, args: unknown, options: CallOptions): Promise<unknown> {
    const deadline = Date.now() + (options.timeout ?? this.core.options.timeout);
    const answered = await this.request(to, tool, args, options);
    if (answered.response.st !== "accepted") return answered.response.result;
    const job = this.follower.adopt(to, answered);
    const remaining = deadline - Date.now();
    return withDeadline(job.result, Math.max(1, remaining), `job ${job.id} did not end within the call's deadline`, options.signal);
  }

  /** See Agent.start. */
  async start(to: string, tool: string, args: unknown, options: CallOptions): Promise<Job> {
    // A runner may push the job's first event right behind its `accepted` answer; until the job
    // is adopted below, the follower keeps such events from this destination's sealer.
    const sealKey = this.destination(to).sealKey;
    this.follower.expect(sealKey);
    let answered: Answered;
    try {
      answered = await this.request(to, tool, args, options);
    } finally {
      queueMicrotask(() => this.follower.unexpect(sealKey)); // after adopt() below took its events
    }
    const { response, from } = answered;
    if (response.st === "accepted") return this.follower.adopt(to, answered);
    // Not a job tool: a handle that is already done, so callers need not care.
    const job = new Job("", to, from, () => Promise.reject(new ZmcpError("unknown_job", "not a job")));
    job.update({ status: "done", result: response.result });
    return job;
  }

  /** `jobs/poll` (or `jobs/cancel`) of a job started on `to`. */
  async jobRequest(tool: typeof BUILTIN_TOOLS.poll | typeof BUILTIN_TOOLS.cancel, to: string, jobId: string, options: CallOptions): Promise<JobState> {
    const { response } = await this.request(jobAddress(to, jobId), tool, { job_id: jobId }, options);
    return this.#jobStateOf(response, jobId, tool);
  }

  /**
   * A `jobs/poll` or `jobs/cancel` answer → the job's state. Throws ZmcpError(bad_frame) when it
   * cannot be read, or is about another job: the caller cannot tell what became of its job, and
   * waiting for another poll would only repeat the same answer.
   */
  #jobStateOf(response: Response, jobId: string, tool: string): JobState {
    const parsed = JobStateSchema.safeParse(response.result);
    const why = !parsed.success ? z.prettifyError(parsed.error) : parsed.data.job_id !== jobId ? `it is about job ${parsed.data.job_id}` : undefined;
    if (why !== undefined) {
      bump(this.core.stats.dropped, "invalid_answer");
      throw new ZmcpError("bad_frame", `invalid ${tool} answer for job ${jobId}: ${why}`);
    }
    return parsed.data as JobState;
  }

  /** See Agent.listTools. */
  async listTools(to: string, options: CallOptions): Promise<ToolInfo[]> {
    const { response } = await this.request(to, BUILTIN_TOOLS.list, {}, options);
    const parsed = z.object({ tools: z.array(ToolInfoSchema) }).safeParse(response.result);
    if (!parsed.success) throw new ZmcpError("bad_frame", `invalid tools/list answer: ${z.prettifyError(parsed.error)}`);
    return parsed.data.tools as ToolInfo[];
  }

  /** Where a message to `to` goes and which key seals it. */
  destination(to: string): Destination {
    const service = parseServiceAddress(to);
    if (service) return { to, sealKey: this.core.directory.serviceKey(service.name) };
    const key = this.core.directory.resolve(to);
    return { to: key, sealKey: key };
  }

  /**
   * One request with retries: the same request id every attempt, a fresh message id each.
   * Retried after a timed-out attempt only where the retry reaches the agent that may still be
   * running the first one (see retry.ts, {@link attemptTimeout}): never across service replicas.
   * An attempt that timed out is still listened to until the call ends: its answer, when it
   * comes late, answers the call (#late). Resends after a timeout are bounded per destination by
   * the retry budget (retry.ts): a call over it sends nothing more and waits for those answers.
   * `viaBroker`: never on a direct link (the broker's own word is wanted: direct-links.ts).
   */
  async request(to: string, tool: string, args: unknown, options: CallOptions, viaBroker = false): Promise<Answered> {
    const core = this.core;
    if (core.isClosed()) throw core.closedWith() ?? new ZmcpError("closed", "agent is closed");
    const dest = this.destination(to);
    const timeout = options.timeout ?? core.options.timeout;
    if (!(timeout > 0)) throw new ConfigError("timeout must be a positive number of ms");
    const deadline = Date.now() + timeout;
    const policy = retryPolicy(options.retry ?? core.options.retry, timeout);
    const tokens = core.tokenSource;
    const tok = tokens ? await tokens.get() : undefined;
    const rid = newId();
    const what = `call ${tool} on ${to}`;
    // Before any attempt: an open circuit fails the call at once (CircuitOpenError), nothing sent.
    // A durable call is for a recipient that may be away (docs/DURABLE.md): like `circuit: false`,
    // it neither waits on nor counts against the breaker that plain calls to it opened.
    const circuit = this.circuits.admit(dest.to, timeout, options.circuit !== false && options.durable !== true);
    const span = startCallSpan(tool, to, dest.to);
    const tc = traceFields(span); // {} unless an OpenTelemetry SDK gave the span a context
    // A timed-out attempt to a service may still run on its replica: never resent (rule 5), even
    // when the wall clock, stepped back, says there is time left (retry8-attack-service-clock).
    const service = parseServiceAddress(dest.to);
    const oncePerService = service !== undefined && service.replica === undefined;
    const call: CallState = { late: [], arrived: undefined, wake: undefined, lost: false, refused: undefined };
    const budget = this.#budget.enter(dest.to);
    try {
      for (let attempt = 1; ; attempt++) {
        const remaining = deadline - Date.now();
        const last = attempt >= policy.attempts;
        try {
          let answered = call.arrived;
          if (answered === undefined) {
            const draft: Omit<Request, "h"> = { t: "req", ts: Date.now(), rid, tool, args, ...(tok === undefined ? {} : { tok }), ...tc };
            const durable = options.durable ? { to, tool, onStored: options.onStored } : undefined;
            answered = await this.#attempt(dest, draft, deadline, attemptTimeout(policy, dest.to, remaining, last), options.signal, what, durable, viaBroker, call);
          }
          call.arrived = undefined;
          // "Already ran once; its answer was dropped" (PROTOCOL §8.3) answers a resend: the first
          // answer went out before, and may still come on a timed-out attempt. Waited for until the
          // deadline; only if it never comes is this the call's outcome (before: the call failed
          // tool_failed with its answer on the way, 13 of them at 1 MiB and 256 in flight, run (d)).
          if (isDroppedAnswer(answered.response) && this.#mayStillAnswer(call) && Date.now() < deadline) {
            // It sends nothing more: its resend place frees now for a held call (before: kept
            // until the deadline, so held calls whose answers were lost waited out theirs,
            // retry9-attack-dropped.test.ts). And the destination answered: its circuit's verdict
            // now (before: a half-open circuit's probe kept every other call failing circuit_open).
            budget.release();
            circuit.settle();
            answered = (await this.#waitForFirstAnswer(call, deadline, options.signal)) ?? answered;
          }
          if (answered.response.st === "error") throw remoteError(answered.response.error, "peer");
          circuit.settle();
          endSpan(span);
          return answered;
        } catch (err) {
          const delay = backoff(policy, attempt);
          if (last || !isRetryable(err) || (oncePerService && err instanceof TimeoutError) || Date.now() + delay >= deadline) {
            circuit.settle(err); // the call's outcome: only no_route, timeout and busy count against it
            endSpan(span, err);
            throw err instanceof TimeoutError ? (call.forged ?? new TimeoutError(`${what} got no answer within ${timeout} ms (${attempt} attempt${attempt > 1 ? "s" : ""})`)) : err;
          }
          if (core.log.enabled("debug")) core.log.debug("retrying", { tool, to, attempt, error: describeThrown(err) });
          try {
            // Timed out: the attempt is most likely late, not lost. Resend only within the budget;
            // else wait for its answer (or that of an earlier attempt) as long as another attempt would.
            const held = err instanceof TimeoutError && (await this.#hold(call, budget, policy, deadline, err, options.signal));
            // Held until its deadline, then freed by the budget: nothing more to send (before: one
            // attempt already past its deadline went out, retry8-attack-deadline.test.ts).
            if (held && call.arrived === undefined && Date.now() >= deadline) throw err;
            if (call.arrived !== undefined) attempt--; // nothing more is sent: the next turn takes the answer that came
            // The broker refused an earlier attempt with a final code (rate_limited: back off): the
            // call fails with it, as it would had that attempt been the one pending (before: a held
            // call resent at once, retry8-attack-late-nack.test.ts).
            else if (err instanceof TimeoutError && call.refused !== undefined) throw call.refused;
            else if (!held) await this.#backOff(call, delay, err, options.signal);
            call.lost = false;
          } catch (aborted) {
            circuit.settle(aborted); // aborted: neutral, but a probe must not stay out
            endSpan(span, aborted);
            throw aborted instanceof TimeoutError ? (call.forged ?? new TimeoutError(`${what} got no answer within ${timeout} ms (${attempt} attempt${attempt > 1 ? "s" : ""})`)) : aborted;
          }
        }
      }
    } finally {
      budget.end();
      for (const key of call.late) this.#late.delete(key);
    }
  }

  /**
   * A timed-out attempt, most likely late, not lost: resend only within the retry budget, else
   * wait for its answer (or an earlier attempt's) in turns of the attempt timeout, asking again
   * when a place frees, until an answer comes, the broker refuses an attempt, or the deadline
   * (then throws `timedOut`). Returns whether it waited (held).
   */
  async #hold(call: CallState, budget: RetryTicket, policy: RetryPolicy, deadline: number, timedOut: Error, signal: AbortSignal | undefined): Promise<boolean> {
    let held = false;
    while (call.arrived === undefined && !call.lost && call.refused === undefined && !budget.mayResend(policy.budget)) {
      if (Date.now() >= deadline) throw timedOut;
      this.#throwIfClosed(); // close() wakes only calls already waiting
      if (!held) this.core.stats.retriesHeld++;
      held = true;
      budget.hold(() => call.wake?.()); // a place freed: ask again at once
      try {
        // At least 1 ms: an attemptTimeout of 0 (or less) resolved at once, and the loop spun on
        // microtasks until the deadline, the whole process frozen (retry8-attack-held.test.ts).
        await this.#wait(call, Math.max(1, Math.min(policy.attemptTimeout, deadline - Date.now())), signal);
      } finally {
        budget.hold(undefined);
      }
    }
    return held;
  }

  /**
   * The backoff before a resend, woken early by a late answer (taken at once) or by close
   * (before: a closed agent's call slept out its backoff, up to maxDelay). The broker's late
   * refusal of an earlier attempt does not cut it short: `busy`/`no_route` change nothing (a
   * resend is coming), and a final code ends the call, as for a held call (before: resent at
   * once, into a broker that said rate_limited, retry9-attack-dropped).
   */
  async #backOff(call: CallState, delay: number, err: unknown, signal: AbortSignal | undefined): Promise<void> {
    const until = Date.now() + delay;
    const refused = () => err instanceof TimeoutError && call.refused !== undefined;
    while (call.arrived === undefined && !refused() && !this.core.isClosed() && Date.now() < until) await this.#wait(call, until - Date.now(), signal);
    this.#throwIfClosed();
    if (call.arrived === undefined && refused()) throw call.refused;
  }

  /**
   * After "already ran once; its answer was dropped" (PROTOCOL §8.3): the first answer went out
   * before and may still come on a timed-out attempt. Waits for it until the deadline, or until
   * no attempt may still be answered; a refusal of another attempt (a late `busy`, the broker's
   * `nack`) is not it and does not end the wait (before: the call failed at once, its answer on
   * the way). Undefined when it never came.
   */
  async #waitForFirstAnswer(call: CallState, deadline: number, signal: AbortSignal | undefined): Promise<Answered | undefined> {
    while (!this.core.isClosed()) {
      await this.#wait(call, deadline - Date.now(), signal);
      const late = call.arrived as Answered | undefined; // set by answered() while waiting
      call.arrived = undefined;
      if (late !== undefined && !isRefusal(late.response) && !isDroppedAnswer(late.response)) return late;
      if (Date.now() >= deadline || !this.#mayStillAnswer(call)) break;
    }
    this.#throwIfClosed();
    return undefined;
  }

  /** One wait of a call between attempts: woken by a late answer, close, or `signal` (throws its abort). */
  async #wait(call: CallState, ms: number, signal: AbortSignal | undefined): Promise<void> {
    this.#holding.add(call);
    try {
      await waitForLate(call, ms, signal);
    } finally {
      this.#holding.delete(call);
    }
    this.#throwIfClosed();
  }

  #throwIfClosed(): void {
    if (this.core.isClosed()) throw this.core.closedWith() ?? new ZmcpError("closed", "agent is closed");
  }

  /**
   * One attempt: on a direct link when one is up to this key (never for a service, whose
   * replicas the broker balances, nor a durable call, which the broker stores), else, or when
   * the link fails, through the broker: the same request (same `rid`), so the callee runs it once.
   */
  async #attempt(dest: Destination, draft: Omit<Request, "h">, deadline: number, timeout: number, signal: AbortSignal | undefined, what: string, durable: { to: string; tool: string; onStored: DurableCallOptions["onStored"] } | undefined, viaBroker: boolean, call: CallState): Promise<Answered> {
    const links = this.links;
    // `viaBroker`: the broker's word is asked (link/endpoint re-confirming a link), not the link's.
    const link = links && !durable && !viaBroker && dest.to === dest.sealKey ? links.ready(dest.to) : undefined;
    if (link && links) {
      const started = Date.now();
      const heard = link.heard;
      try {
        return await this.#send(dest, draft, deadline, timeout, signal, what, undefined, link, call);
      } catch (err) {
        // The attempt's own timeout on a link that carried nothing meanwhile is the link's
        // failure too: its watch fires only after linkTimeout, which an attempt (2 s by default,
        // a quarter of a shorter call) may not outlast. Not taken for one, every retry went down
        // the same dead link and the call failed `timeout` (the adversarial review's finding).
        const silent = err instanceof TimeoutError && link.heard === heard;
        if (!links.failed(link, silent ? new LinkSilentError(`no answer and nothing else on the direct link to ${link.key} within the attempt's ${timeout} ms`) : err)) throw err;
        timeout -= Date.now() - started;
        // No time left for this attempt through the broker: a TimeoutError, which is retried
        // (same rid, through the broker now that the link is marked bad), not the link's error.
        if (timeout <= 0) throw new TimeoutError(`${what}: the direct link failed (${describeThrown(err)}) and this attempt's time is spent`);
      }
    }
    return this.#send(dest, draft, deadline, timeout, signal, what, durable, undefined, call);
  }

  async #send(dest: Destination, draft: Omit<Request, "h">, deadline: number, timeout: number, signal: AbortSignal | undefined, what: string, durable: { to: string; tool: string; onStored: DurableCallOptions["onStored"] } | undefined, link: Link | undefined, call: CallState): Promise<Answered> {
    const core = this.core;
    if (core.isClosed()) throw core.closedWith() ?? new ZmcpError("closed", "agent is closed");
    const header: Header = { v: PROTOCOL_VERSION, k: "req", id: newId(), to: dest.to, exp: deadline };
    if (durable) header.dur = true;
    const frames = seal(core, core.sealer, dest.sealKey, header, draft);
    const key = idKey(header.id);
    const answerer = answererOf(dest.to, dest.sealKey);
    const answer = this.#pending.add(key, Math.max(1, timeout), signal, what, answerer);
    call.current = key;
    if (durable) this.#storedCalls.track(key, { to: durable.to, tool: durable.tool, deadline }, durable.onStored, answer);
    if (link) {
      this.links!.sent();
      link.send(frames).catch((err) => this.#pending.reject(key, new LinkSendError(`direct link to ${dest.to} cannot take the request: ${(err as Error).message}`, { cause: err })));
      // Pending: true, or the refusal noted (a forged answer on the link: fall back at once).
      this.links!.watch(link, () => this.#pending.meta(key) !== undefined && (this.#pending.refusal(key) ?? true), (err) => this.#pending.reject(key, err), answer);
    } else
      core.transport.send(frames).catch((err) => {
        this.#pending.reject(key, new ZmcpError("closed", `send failed: ${(err as Error).message}`, { cause: err }));
      });
    try {
      return { ...(await answer), answerer };
    } catch (err) {
      // Timed out, so most likely late: its answer still answers the call until the call ends.
      if (err instanceof TimeoutError) {
        this.#late.set(key, { answerer, call });
        call.late.push(key);
      }
      throw err;
    }
  }

  // ---- answers, as the inbound checks hand them over ----------------------------------------

  /**
   * Throws Dropped unless this response answers a pending request and comes from the party
   * that request was addressed to: the broker's `from`, the header's `as` and the sealing key.
   * A forged response is noted on the request, so that if the real answer never comes the call
   * fails with `bad_seal` (ForgedAnswerError) rather than a plain timeout. Returns the key of
   * what it answers, for {@link answered} (one hex key per response, not two).
   */
  bind(header: Header, peer: string, sealedBy: string): string {
    if (!header.re) throw new Dropped("unsolicited", "response to nothing pending");
    const key = idKey(header.re);
    const late = this.#late.get(key);
    const expected = this.#pending.meta(key) ?? late?.answerer;
    if (!expected) throw new Dropped("unsolicited", "response to nothing pending");
    const why = mismatch(expected, peer, header.as, sealedBy);
    if (why !== undefined) {
      // Noted on the attempt it claims to answer while that one is pending. For a timed-out attempt,
      // noted on its call, not on the attempt pending now (which would then fail bad_seal at its
      // timeout, not retried, before the real late answer came): if the call ends timed out, it
      // fails bad_seal instead (before: a plain timeout, retry8-attack-forged-late.test.ts).
      const forged = new ForgedAnswerError(`refused an answer not sealed by the party asked: ${why}`);
      if (!this.#pending.refuse(key, forged) && late !== undefined) late.call.forged ??= forged;
      throw new Dropped("bad_seal", why);
    }
    return key;
  }

  /** A response that passed every check; `key` as {@link bind} returned it. Throws Dropped when it answers nothing pending. */
  answered(key: string, peer: string, response: Response): void {
    if (this.#pending.resolve(key, { response, from: peer })) return;
    // A late answer to an earlier attempt of a call still waiting: it answers the call, through
    // the attempt now pending or, between attempts, kept for the next turn of its loop.
    const late = this.#late.get(key);
    if (late === undefined) throw new Dropped("unsolicited", "response to nothing pending");
    const call = late.call;
    // A late refusal that proves nothing ran (busy, no_route) is about that attempt only: the one
    // pending now may be running the tool, and ending its wait with `busy` failed the call as if
    // nothing ran (its last attempt, or near its deadline) while the tool ran (retry8-attack-late-refusal.test.ts).
    const refusal = isRefusal(response);
    if (call.current !== undefined && this.#pending.meta(call.current) !== undefined) {
      if (refusal) throw new Dropped("unsolicited", "a late refusal of an earlier attempt while another is pending");
      this.core.stats.lateAnswers++;
      this.#pending.resolve(call.current, { response, from: peer });
      return;
    }
    // Between attempts, a refusal says only that its own attempt ran nothing, as the broker's nack
    // would: that attempt is gone, and the call may send again. It is not the call's outcome: kept
    // as its answer, it failed the call `busy` while a later attempt ran the tool (its last
    // attempt; 2290a0f took it at once, retry9-attack-late-busy.test.ts).
    if (refusal) {
      if (!this.#late.delete(key)) throw new Dropped("unsolicited", "response to nothing pending");
      call.lost = true;
      call.wake?.();
      return;
    }
    // The first late answer is kept.
    if (call.arrived !== undefined) throw new Dropped("unsolicited", "a second late answer to a call");
    this.core.stats.lateAnswers++;
    call.arrived = { response, from: peer, answerer: late.answerer };
    call.wake?.();
  }

  /**
   * A response refused by the inbound checks. One that opened with the key of the party asked
   * but failed a later check (its clock outside the window, a malformed message) fails its call
   * with that code, as it is that party's answer; anything not proven to come from it (forged,
   * not opening, refused before opening) only notes the refusal, and the real answer may still come.
   */
  refused(re: Uint8Array, code: string, message: string, opened: boolean): void {
    const key = idKey(re);
    // A copy replayed later finds nothing pending, so rejecting on an opened answer is safe.
    if (opened) this.#pending.reject(key, remoteError({ code, message }, "peer"));
    else if (code === "bad_seal") this.#pending.refuse(key, new ForgedAnswerError(`refused an answer that did not open with the key of the party asked: ${message}`));
    else this.#pending.refuse(key, remoteError({ code, message }, "peer"));
  }

  /**
   * The broker stored a durable request (`ack {code: "stored"}`): its answer comes when the
   * recipient is back, so the attempt waits until the call's deadline. False for an ack that
   * answers no durable attempt of ours.
   */
  stored(key: string): boolean {
    const wait = this.#storedCalls.onStoredAck(key, (err) => this.core.log.error("an onStored listener threw", { error: describeThrown(err) }));
    return wait !== undefined && this.#pending.extend(key, wait);
  }

  /** A broker's refusal of a request; false when it refuses nothing pending. */
  nacked(key: string, err: Error): boolean {
    if (this.#pending.reject(key, err)) return true;
    // A timed-out attempt refused after all: it never reached the callee, so its call, if it
    // waits for that answer, sends again (nothing ran: no duplicate work, outside the budget).
    const late = this.#late.get(key);
    if (late === undefined) return false;
    this.#late.delete(key);
    // busy, no_route: nothing ran, send again. Any other code is final, as for the attempt pending.
    if (isRetryable(err)) late.call.lost = true;
    else late.call.refused ??= err;
    late.call.wake?.();
    return true;
  }

  /**
   * A callee's listener refused a request sent on its link (`nack rate_limited`, listener.ts):
   * rejected as the broker's refusal would be, but only a request addressed to `from`, the key
   * CURVE authenticated on that link: a callee cannot refuse calls made to anyone else.
   */
  nackedOnLink(key: string, from: string, err: Error): boolean {
    const expected = this.#pending.meta(key);
    if (!expected || expected.as !== undefined || expected.sealKey !== from) return false;
    return this.#pending.reject(key, err);
  }

  /** Whether an attempt of `call` that timed out may still be answered (none was refused by the broker since). */
  #mayStillAnswer(call: CallState): boolean {
    return call.late.some((key) => this.#late.has(key));
  }

  close(err: Error): void {
    this.#pending.rejectAll(err);
    for (const call of this.#holding) call.wake?.(); // they see the agent closed and throw
  }
}

/** A callee's "already ran once; its answer was dropped" (its answer cache was full): the answer itself went out before. */
function isDroppedAnswer(response: Response): boolean {
  // The callee's exact words: a tool's own error that merely mentions them (one relaying another
  // call's failure, or quoting its input) is its answer, not a reason to wait until the deadline.
  return response.st === "error" && response.error?.code === "tool_failed" && response.error.message === DROPPED_ANSWER.error!.message;
}

/** An error answer that proves its request ran nothing (a callee's `busy` or `no_route`): retried. */
function isRefusal(response: Response): boolean {
  return response.st === "error" && (response.error?.code === "busy" || response.error?.code === "no_route");
}

/** A job's polls and cancels go to the agent that runs it: for a service, that very replica. */
export function jobAddress(to: string, jobId: string): string {
  const service = parseServiceAddress(to);
  const runner = jobRunner(jobId);
  return service && runner ? serviceAddress(service.name, runner) : to;
}
