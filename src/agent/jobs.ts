/**
 * Asynchronous jobs, both sides.
 *
 * Callee: a tool registered with `job: true` answers `accepted` with a job id at once and runs
 * in the background; its progress and its end are pushed to the caller as events, and kept
 * for polling (`jobs/poll`) until `ttlMs` after it ends. Only the caller that started a job
 * may poll or cancel it (`jobs/cancel`).
 *
 * Caller: a {@link Job} gathers pushed events, and polls now and then in case a push was lost
 * (a broker restart), so `await job.result` never hangs on a lost message.
 *
 * Statuses follow the reference protocol and MCP tasks: running → done | error | cancelled.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { decodeKept, encodeKept, type ErrorBody, type JobStatus, type Progress } from "../wire/envelope.js";
import { ByteBudget, type BudgetLimits } from "../support/budget.js";
import { remoteError, ZmcpError } from "../errors.js";
import { z85Decode, z85Encode } from "../wire/z85.js";

/** What `jobs/poll` answers (and `Agent.poll` resolves with). */
export interface JobState {
  job_id: string;
  status: JobStatus;
  progress?: Progress | undefined;
  result?: unknown;
  error?: ErrorBody | undefined;
}

/**
 * A job id: 96 lowercase hex characters, the 16 random bytes of the job then the 32 bytes of
 * the runner's public key, so a caller (even one that restarted) can route a poll back to the
 * very replica of a service. Hex, not the key's Z85 text: Z85 holds `#{]>&;` and the like, and
 * an id is pasted into shells (`zmq-call --poll ID`), URLs and log queries.
 */
export const JOB_ID_LENGTH = 96;
const JOB_ID = /^[0-9a-f]{96}$/;

export function newJobId(agentKey: string): string {
  return randomBytes(16).toString("hex") + Buffer.from(z85Decode(agentKey)).toString("hex");
}

/** The Z85 key of the agent that runs `jobId`, or undefined for a malformed id. */
export function jobRunner(jobId: string): string | undefined {
  return JOB_ID.test(jobId) ? z85Encode(Buffer.from(jobId.slice(32), "hex")) : undefined;
}

interface Record_ {
  state: JobState;
  owner: string;
  controller: AbortController;
  forgetAt: number;
  /** Bytes of the held result or error, counted in the budget. */
  bytes: number;
}

export const DEFAULT_JOB_LIMITS: BudgetLimits = {
  maxEntries: 1_000,
  maxBytes: 128 * 1024 * 1024,
  maxEntriesPerOwner: 200,
  maxBytesPerOwner: 32 * 1024 * 1024,
};

/**
 * The callee's table of jobs: running ones, and finished ones until their TTL. Bounded by a
 * {@link ByteBudget} in jobs and result bytes, per caller and in total: past it {@link create}
 * refuses (the agent answers `busy`).
 */
export class JobTable {
  readonly #jobs = new Map<string, Record_>();
  #running = 0;
  readonly budget: ByteBudget;

  /**
   * @param ttlMs how long a finished job stays pollable, ms; default 600,000 (10 min)
   * @param limits jobs and result bytes held at most, per caller and in total
   */
  constructor(
    readonly ttlMs = 600_000,
    limits: BudgetLimits = DEFAULT_JOB_LIMITS,
  ) {
    this.budget = new ByteBudget(limits, "job table");
  }

  get running(): number {
    return this.#running;
  }

  get size(): number {
    return this.#jobs.size;
  }

  /** Why a new job of `owner` does not fit now, or undefined. */
  refusal(owner: string): string | undefined {
    this.sweep();
    const reason = this.budget.refusal(owner);
    return reason === undefined ? undefined : `job table full: ${reason}`;
  }

  /** Adds a running job; check {@link refusal} first. */
  create(jobId: string, owner: string): { state: JobState; signal: AbortSignal } {
    this.sweep();
    const record: Record_ = { state: { job_id: jobId, status: "running" }, owner, controller: new AbortController(), forgetAt: Infinity, bytes: 0 };
    this.#jobs.set(jobId, record);
    this.budget.add(owner, 1, 0);
    this.#running++;
    return { state: record.state, signal: record.controller.signal };
  }

  /** The job, if `caller` may see it. Throws ZmcpError(unknown_job | forbidden). */
  get(jobId: string, caller: string, now = Date.now()): JobState {
    const record = this.#jobs.get(jobId);
    if (!record || record.forgetAt <= now) throw new ZmcpError("unknown_job", `no job ${jobId} (unknown, or forgotten after its TTL)`);
    if (record.owner !== caller) throw new ZmcpError("forbidden", "only the caller that started a job may poll or cancel it");
    return record.state;
  }

  progress(jobId: string, progress: Progress): JobState | undefined {
    const record = this.#jobs.get(jobId);
    if (!record || record.state.status !== "running") return undefined;
    record.state.progress = progress;
    return record.state;
  }

  /** Ends a running job; returns its final state, or undefined if it had already ended. */
  /** `bytes`: the encoded size of the result (or error) now held, counted in the budget. */
  finish(jobId: string, end: { status: "done"; result: unknown } | { status: "error" | "cancelled"; error: ErrorBody }, bytes = 0): JobState | undefined {
    const record = this.#jobs.get(jobId);
    if (!record || record.state.status !== "running") return undefined;
    record.state.status = end.status;
    // A copy made through msgpack (the result is sendable, checked by the handler): kept for
    // polls until the TTL, it must hold only the bytes it is counted for, not whatever buffers
    // its binary values were views of (as the answer cache, idempotency.ts).
    // Read once more to be copied (user getters run again): counted at no less than the copy's
    // size; a result that does not encode again is kept as the error saying so, never as the
    // live object (its getters, the buffers its views are of).
    if (end.status === "done") {
      const kept = keptCopy(end.result);
      if (kept) {
        record.state.result = kept.copy;
        bytes = Math.max(bytes, kept.size);
      } else {
        record.state.status = "error";
        record.state.error = { code: "tool_failed", message: "the job's result could not be kept for polls (it did not encode a second time)" };
      }
    } else record.state.error = end.error;
    record.bytes = bytes;
    this.budget.add(record.owner, 0, bytes);
    record.forgetAt = Date.now() + this.ttlMs;
    this.#running--;
    if (end.status === "cancelled") record.controller.abort(new ZmcpError("cancelled", "job cancelled"));
    return record.state;
  }

  /** Aborts every running job (the agent is closing). */
  abortAll(): void {
    for (const [id, record] of this.#jobs) {
      if (record.state.status === "running") this.finish(id, { status: "cancelled", error: { code: "cancelled", message: "agent closed" } });
    }
  }

  /** Forgets finished jobs past their TTL. */
  sweep(now = Date.now()): void {
    for (const [id, record] of this.#jobs) {
      if (record.forgetAt > now) continue;
      this.#jobs.delete(id);
      this.budget.add(record.owner, -1, -record.bytes);
    }
  }
}

export interface JobEvents {
  progress: [Progress];
}

/**
 * The caller's handle on a job: `await job.result`, `job.on("progress", ...)`, `job.cancel()`.
 */
export class Job extends EventEmitter<JobEvents> {
  /** Resolves with the job's result; rejects with RemoteError(code) if it failed or was cancelled. */
  readonly result: Promise<unknown>;
  #settle!: { resolve: (value: unknown) => void; reject: (err: Error) => void };
  #done = false;
  #lastProgress: Progress | undefined;

  constructor(
    /** The job id (also routes polls back to the agent running it). */
    readonly id: string,
    /** Where it runs: the agent (or `svc:NAME`) it was started on. */
    readonly to: string,
    /** The key of the agent (replica) that accepted it. */
    readonly runner: string,
    private readonly cancelFn: () => Promise<JobState>,
    /** Told of a progress listener that threw (or whose promise rejected); the job goes on. */
    private readonly onListenerError: (err: unknown) => void = () => undefined,
  ) {
    super();
    this.result = new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    this.result.catch(() => undefined); // a job nobody awaits must not crash the process
  }

  get settled(): boolean {
    return this.#done;
  }

  get lastProgress(): Progress | undefined {
    return this.#lastProgress;
  }

  /** Asks the agent running it to cancel; resolves with the job's state after the request. */
  cancel(): Promise<JobState> {
    return this.cancelFn().then((state) => {
      this.update(state);
      return state;
    });
  }

  /** Applies a pushed event or a poll answer. */
  update(state: Omit<JobState, "job_id">): void {
    if (this.#done) return;
    // The same progress may come twice (pushed, then polled): report each step once. A poll
    // answer can also be older than a push that overtook it: progress only increases (MCP's
    // rule), so a lower value is such a stale answer and is not reported (listeners saw 1,2,3,2,4).
    const stale = state.progress !== undefined && this.#lastProgress !== undefined && state.progress.progress < this.#lastProgress.progress;
    if (state.progress && !stale && !sameProgress(state.progress, this.#lastProgress)) {
      this.#lastProgress = state.progress;
      if (state.status === "running") this.#emitProgress(state.progress);
    }
    if (state.status === "running") return;
    this.#done = true;
    if (state.status === "done") this.#settle.resolve(state.result ?? null);
    else {
      const code = state.status === "cancelled" ? "cancelled" : (state.error?.code ?? "tool_failed");
      this.#settle.reject(remoteError({ code, message: state.error?.message ?? `job ${state.status}` }, "peer"));
    }
  }

  /**
   * Calls each progress listener inside a guard: a listener that throws, or returns a promise
   * that rejects, is reported and skipped. Updates arrive from the agent's receive loop and
   * from poll callbacks, where an escaping error would end the process (an unhandled
   * rejection) or leave the job half-updated.
   */
  #emitProgress(progress: Progress): void {
    // rawListeners: a `once` listener's wrapper removes itself when called.
    for (const listener of this.rawListeners("progress") as Array<(p: Progress) => unknown>) {
      try {
        const out: unknown = listener.call(this, progress);
        if (out instanceof Promise) out.catch((err: unknown) => this.#listenerFailed(err));
      } catch (err) {
        this.#listenerFailed(err);
      }
    }
  }

  #listenerFailed(err: unknown): void {
    try {
      this.onListenerError(err);
    } catch {
      // the reporter itself must not throw into the receive loop either
    }
  }

  /** Ends the job locally (the caller gave up: its deadline, or the agent closed). */
  fail(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#settle.reject(err);
  }
}

function sameProgress(a: Progress, b: Progress | undefined): boolean {
  return b !== undefined && a.progress === b.progress && a.total === b.total && a.message === b.message;
}

/** `value` copied through msgpack with its encoded size, or undefined if it does not encode (or decode) again. */
function keptCopy(value: unknown): { copy: unknown; size: number } | undefined {
  try {
    const bytes = encodeKept(value);
    return { copy: decodeKept(bytes), size: bytes.byteLength };
  } catch {
    return undefined;
  }
}
