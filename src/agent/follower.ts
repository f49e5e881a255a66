/**
 * Following the jobs this agent started: the Job handle of each, the events pushed by its
 * runner (accepted only from the runner its id names, sealed as the job was accepted) and
 * the polls that stand in for a lost push, until the job ends or its runner is lost.
 */
import { MAX_JOB_ID_CHARS } from "../wire/limits.js";
import { z } from "zod";
import { describeThrown, ForgedAnswerError, TimeoutError, ZmcpError } from "../errors.js";
import type { Event, Header } from "../wire/envelope.js";
import { jobAnswerer, KeyCounts, mismatch, type Answerer } from "./answerer.js";
import type { Answered, Caller } from "./caller.js";
import type { AgentCore } from "./core.js";
import { Job } from "./jobs.js";
import { pick } from "./responder.js";
import { bump, Dropped } from "./stats.js";
import { BUILTIN_TOOLS } from "./tools.js";
import { answererOf } from "./answerer.js";
import { OrphanEvents } from "../store/orphans.js";
import { ConfigError } from "../errors.js";
import { jobRunner } from "./jobs.js";

const AcceptedSchema = z.object({ job_id: z.string().min(1).max(MAX_JOB_ID_CHARS) });

/**
 * Events kept at most, in all, while their job's `accepted` is not adopted yet (a runner pushes
 * the first progress right behind it; without this it was dropped and seen only at the next poll).
 */
const EARLY_MAX = 256;
/** How long an event handed back for another job of its runner waits for that job to be re-attached, ms (as store/orphans.ts keeps the frames). */
const REATTACH_KEEP_MS = 120_000;

/** A job this agent started, and who may speak for it. */
interface StartedJob {
  job: Job;
  answerer: Answerer;
}

export class JobFollower {
  readonly #started = new Map<string, StartedJob>();
  /** The keys that may seal a job event now: the runners (or service keys) of #started. */
  readonly #eventSealers = new KeyCounts();
  /** Durable events of jobs not (yet) re-attached (docs/DURABLE.md). */
  readonly #orphans = new OrphanEvents();
  /** Sealers with a start in flight (Caller.start): their events may come before the `accepted` is adopted. */
  readonly #expected = new KeyCounts();
  /** Events that came before their job was adopted, per sealer, opened; bounded (EARLY_MAX in all). */
  readonly #early = new KeptEvents(EARLY_MAX);
  /**
   * Stored events handed back by {@link job} for the runner's other jobs, not re-attached yet:
   * opened (so their frames cannot be kept again), per sealer, bounded, each for
   * `REATTACH_KEEP_MS`; {@link adopt} takes its job's (the adversarial review: re-attaching one
   * job dropped the stored end events of the runner's other jobs as unsolicited).
   */
  readonly #reattachable = new KeptEvents(EARLY_MAX);
  /** True while {@link job} hands a runner's kept events back to the inbound checks. */
  #redelivering = false;
  /** Set by parts.ts: hands kept frames back to the inbound checks. */
  redeliver: (frames: Buffer[]) => void = () => undefined;

  constructor(
    private readonly core: AgentCore,
    private readonly caller: Caller,
  ) {}

  /**
   * Wraps an `accepted` answer into a Job that gathers pushes and polls as a fallback. Throws
   * ZmcpError(bad_frame) for an answer without a job id, ForgedAnswerError when the id names
   * another runner than the one that accepted it.
   */
  adopt(to: string, { response, from, answerer: asked }: Answered): Job {
    const core = this.core;
    const parsed = AcceptedSchema.safeParse(response.result);
    if (!parsed.success) {
      bump(core.stats.dropped, "invalid_answer");
      throw new ZmcpError("bad_frame", `accepted answer without a job id: ${z.prettifyError(parsed.error)}`);
    }
    const jobId = parsed.data.job_id;
    const answerer = jobAnswerer(asked, jobId, from);
    if (typeof answerer === "string") {
      bump(core.stats.dropped, "bad_seal");
      throw new ForgedAnswerError(answerer);
    }
    if (this.#started.has(jobId)) throw new ZmcpError("bad_frame", `job ${jobId} was already accepted once`);
    const early = [...this.#early.take(answerer.sealKey, jobId), ...this.#reattachable.take(answerer.sealKey, jobId)];
    const onListenerError = (err: unknown) => {
      core.stats.listenerErrors++;
      core.throttle.write("error", "a job progress listener threw", jobId, { job: jobId, error: describeThrown(err) });
    };
    const job = new Job(jobId, to, from, () => this.caller.jobRequest(BUILTIN_TOOLS.cancel, to, jobId, {}), onListenerError);
    this.#started.set(jobId, { job, answerer });
    this.#eventSealers.add(answerer.sealKey);
    const timer = this.#pollUntilEnd(job, to);
    void job.result
      .finally(() => {
        clearInterval(timer);
        this.#started.delete(jobId);
        this.#eventSealers.delete(answerer.sealKey);
      })
      .catch(() => undefined);
    // A macrotask later: the caller of start() attaches its listeners right after it resolves.
    if (early.length > 0) {
      setImmediate(() => {
        for (const e of early) {
          try {
            this.onEvent(e.peer, e.header, answerer.sealKey, e.event); // checked as if it came now
          } catch (err) {
            if (err instanceof Dropped) bump(core.stats.dropped, err.reason);
            else core.log.error("a kept job event failed", { job: jobId, error: describeThrown(err) });
          }
        }
      });
    }
    return job;
  }

  /** A start to a destination sealed by `sealKey` is in flight (Caller.start). */
  expect(sealKey: string): void {
    this.#expected.add(sealKey);
  }

  /** That start has ended: events it did not adopt are dropped (counted unsolicited). */
  unexpect(sealKey: string): void {
    this.#expected.delete(sealKey);
    if (this.#expected.has(sealKey)) return;
    const dropped = this.#early.drop(sealKey);
    for (let i = 0; i < dropped; i++) bump(this.core.stats.dropped, "unsolicited");
  }

  /**
   * Re-attaches to a job this agent's key started on `to` (an id kept across a restart, say): a
   * handle fed by the runner's events (stored ones included, docs/DURABLE.md) and by polls, the
   * first at once. Throws ZmcpError(config) for an id that names no runner; the job fails
   * `unknown_job` when the runner no longer knows it (past its jobTtl).
   */
  job(to: string, jobId: string): Job {
    const runner = jobRunner(jobId);
    if (runner === undefined) throw new ConfigError(`job id ${JSON.stringify(jobId)} names no runner`);
    const dest = this.caller.destination(to);
    const response = { t: "res" as const, h: new Uint8Array(32), ts: Date.now(), st: "accepted" as const, result: { job_id: jobId } };
    const job = this.adopt(to, { response, from: runner, answerer: answererOf(dest.to, dest.sealKey) });
    // Events stored for it that came before this call; those of the runner's other jobs are kept
    // for their own re-attachment (onEvent, while #redelivering).
    this.#redelivering = true;
    try {
      for (const frames of this.#orphans.take(runner)) this.redeliver(frames);
    } finally {
      this.#redelivering = false;
    }
    this.caller.jobRequest(BUILTIN_TOOLS.poll, to, jobId, {}).then(
      (state) => job.update(state),
      (err: unknown) => {
        if (err instanceof ZmcpError && (err.code === "unknown_job" || err.code === "forbidden")) job.fail(err);
      },
    );
    return job;
  }

  /**
   * A durable event sealed by no runner of ours (yet): kept unopened, bounded, for a job
   * re-attached later with {@link job}. False when it is not kept (a runner of ours sealed it,
   * or the buffer is full): the usual checks go on.
   */
  keepForJob(peer: string, sealedBy: string, frames: Buffer[]): boolean {
    return !this.#eventSealers.has(sealedBy) && this.#orphans.keep(peer, frames);
  }

  /** Polls every `jobPollInterval` in case a push was lost; fails the job once its runner is lost. */
  #pollUntilEnd(job: Job, to: string): NodeJS.Timeout | undefined {
    const { jobPollInterval: every, jobLostAfter: lostAfter } = this.core.options;
    if (!(every > 0)) return undefined;
    let heard = Date.now();
    job.on("progress", () => (heard = Date.now()));
    return setInterval(() => {
      this.caller.jobRequest(BUILTIN_TOOLS.poll, to, job.id, { timeout: Math.max(1000, every) }).then(
        (state) => {
          heard = Date.now();
          job.update(state);
        },
        (err: unknown) => {
          // The job is gone for good (or its runner's answers cannot be read: asking again
          // would give the same); a transient failure waits for the next poll, unless the
          // runner has been unreachable for too long (killed and not back): without this,
          // `await job.result` would wait forever.
          if (err instanceof ZmcpError && (err.code === "unknown_job" || err.code === "forbidden" || err.code === "bad_frame" || err.code === "bad_seal")) job.fail(err);
          else if (Date.now() - heard > lostAfter) {
            const code = err instanceof ZmcpError ? err.code : "timeout";
            job.fail(new TimeoutError(`job ${job.id}: its runner has not answered a poll for ${lostAfter} ms (last: ${code})`));
          }
        },
      );
    }, every).unref();
  }

  /** Throws Dropped unless `sealedBy` runs a job of ours (checked before the event is opened). */
  checkSealer(sealedBy: string): void {
    if (!this.#eventSealers.has(sealedBy) && !this.#expected.has(sealedBy)) throw new Dropped(this.#started.size ? "bad_seal" : "unsolicited", `event sealed by ${sealedBy}, which runs no job of ours`);
  }

  /** A job's event: accepted only from the runner its id names, sealed as the job was accepted. */
  onEvent(peer: string, header: Header, sealedBy: string, event: Event): void {
    const started = this.#started.get(event.job);
    // Pushed right behind its `accepted`, which is not adopted yet: kept (opened, bounded) for adopt().
    if (!started && this.#expected.has(sealedBy) && this.#early.keep(sealedBy, { peer, header, event, until: Infinity })) return;
    if (!started && this.#redelivering && this.#reattachable.keep(sealedBy, { peer, header, event, until: Date.now() + REATTACH_KEEP_MS })) return;
    if (!started) throw new Dropped("unsolicited", `event for job ${event.job}, which is not ours (or has ended)`);
    const why = mismatch(started.answerer, peer, header.as, sealedBy);
    if (why !== undefined) throw new Dropped("bad_seal", `event for job ${event.job}: ${why}`);
    started.job.update({ status: event.st, ...pick(event, "progress", "result", "error") });
  }

  close(err: Error): void {
    for (const { job } of this.#started.values()) job.fail(err);
  }
}

interface KeptEvent {
  peer: string;
  header: Header;
  event: Event;
  /** Date.now() past which it is forgotten. */
  until: number;
}

/** Opened job events kept per sealer for a job not adopted yet, bounded in count. */
class KeptEvents {
  readonly #bySealer = new Map<string, KeptEvent[]>();
  #count = 0;

  constructor(readonly max: number) {}

  /** False (not kept) when full of events still within their time. */
  keep(sealKey: string, e: KeptEvent): boolean {
    if (this.#count >= this.max) this.#forgetExpired(Date.now());
    if (this.#count >= this.max) return false;
    const list = this.#bySealer.get(sealKey) ?? [];
    list.push(e);
    this.#bySealer.set(sealKey, list);
    this.#count++;
    return true;
  }

  /** The events of `sealKey` for `jobId`, forgotten here with those past their time. */
  take(sealKey: string, jobId: string, now = Date.now()): KeptEvent[] {
    const list = this.#bySealer.get(sealKey);
    if (!list) return [];
    const mine = list.filter((e) => e.event.job === jobId && e.until > now);
    const rest = list.filter((e) => e.event.job !== jobId && e.until > now);
    this.#count -= list.length - rest.length;
    if (rest.length > 0) this.#bySealer.set(sealKey, rest);
    else this.#bySealer.delete(sealKey);
    return mine;
  }

  #forgetExpired(now: number): void {
    for (const [sealKey, list] of this.#bySealer) {
      const live = list.filter((e) => e.until > now);
      this.#count -= list.length - live.length;
      if (live.length > 0) this.#bySealer.set(sealKey, live);
      else this.#bySealer.delete(sealKey);
    }
  }

  /** Forgets every event of `sealKey`; how many there were. */
  drop(sealKey: string): number {
    const list = this.#bySealer.get(sealKey);
    if (!list) return 0;
    this.#bySealer.delete(sealKey);
    this.#count -= list.length;
    return list.length;
  }
}
