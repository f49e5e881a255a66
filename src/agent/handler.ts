/**
 * The callee's side of a request, in this order: authorize (before the tool is even looked
 * up, so an unauthorized caller learns nothing of the tools offered) → decode the arguments →
 * built-in or lookup → validate → idempotency (a retry gets the first answer) → concurrency →
 * run (plain, or as a job) → respond or push. Everything past the inbound checks is guarded:
 * whatever throws becomes a `tool_failed` answer, at most one per request.
 */
import { MAX_JOB_ID_CHARS } from "../wire/limits.js";
import { z } from "zod";
import { defaultToolScope } from "../auth/tokens.js";
import { TokenVerifier, type VerifiedToken } from "../auth/token-verifier.js";
import { describeThrown, isWireCode, ProtocolError, TimeoutError, ZmcpError } from "../errors.js";
import { decodeArgs, encodedSize, idKey, MAX_DEPTH, ProgressSchema, type Progress, type Request } from "../wire/envelope.js";
import { checkSendable } from "../wire/sendable.js";
import type { AgentCore } from "./core.js";
import { failure, logToolFailure } from "./failure.js";
import { AnswerCache, type Answer } from "./idempotency.js";
import { JobTable, newJobId } from "./jobs.js";
import type { ReplyPath, Responder } from "./responder.js";
import { BUILTIN_TOOLS, isBuiltinTool, type RegisteredTool, type ToolContext, type ToolRegistry } from "./tools.js";
import { inJobSpan, inRequestSpan } from "./tracing.js";
import { Deadlines, type DeadlineEntry } from "../support/deadlines.js";
import { LazySignal } from "../support/lazy-signal.js";

const JobIdArgs = z.strictObject({ job_id: z.string().max(MAX_JOB_ID_CHARS) });

/** The steps of {@link Handler.serve}, in the order they run (checked by test/unit/handler-order.test.ts). */
export const HANDLER_STEPS = ["authorize", "decode", "builtin", "lookup", "validate", "idempotency", "concurrency", "run", "respond"] as const;

export class Handler {
  readonly jobs: JobTable;
  readonly #answers: AnswerCache;
  /** False while Agent.connect runs ({@link connecting}); parts used without it (tests) are ready at once. */
  #ready = true;
  readonly #verifier: TokenVerifier | undefined;
  #active = 0;
  readonly #deadlines = new Deadlines();

  constructor(
    private readonly core: AgentCore,
    private readonly tools: ToolRegistry,
    private readonly responder: Responder,
  ) {
    const o = core.options;
    this.jobs = new JobTable(o.jobTtl, o.jobLimits);
    // An answer is kept while a copy of its request can still be accepted: until its exp plus the replay window (inbound.ts expiry).
    this.#answers = new AnswerCache(undefined, o.answerLimits, o.replayWindow);
    this.#verifier =
      o.authority === undefined
        ? undefined
        : new TokenVerifier({ authority: o.authority, log: core.log, audience: o.audience, clockSkew: o.tokenClockSkew, ...(o.denyList === undefined ? {} : { denyList: o.denyList }) });
  }

  /** Tool runs (calls and jobs) in progress. */
  /** The answer cache's entries and bytes held, and the bodies it dropped to stay within its bytes. */
  get answers(): { entries: number; bytes: number; bodiesDropped: number } {
    const a = this.#answers;
    return { entries: a.budget.entries, bytes: a.budget.bytes, bodiesDropped: a.bodiesDropped };
  }

  /** Agent.connect has begun: until {@link ready}, a request for an unknown tool is answered `busy`. */
  connecting(): void {
    this.#ready = false;
  }

  /** Agent.connect has resolved (and the code right after it has run): unknown tools are `unknown_tool`. */
  ready(): void {
    this.#ready = true;
  }

  get active(): number {
    return this.#active;
  }

  close(): void {
    this.jobs.abortAll();
    this.#verifier?.close();
  }

  /**
   * The guard: nothing reaches the receive loop or the process as an unhandled rejection. The
   * request is served inside a SERVER span whose parent is the caller's (`request.tc`), so the
   * calls its handler makes join the caller's trace (tracing.ts).
   */
  onRequest(reply: ReplyPath, request: Request): void {
    const { throttle, directory } = this.core;
    inRequestSpan(request.tool, reply.peer, (key) => directory.nameOf(key), request.tc, () => this.serve(reply, request)).catch((err: unknown) => {
      const message = describeThrown(err);
      throttle.write("warn", "request failed inside the agent", reply.peer, { from: reply.peer, name: directory.nameOf(reply.peer), tool: request.tool, error: message });
      try {
        if (!reply.answered) this.responder.respond(reply, failure("tool_failed", `${request.tool}: ${message}`));
      } catch (again) {
        throttle.write("error", "could not answer a failed request", reply.peer, { from: reply.peer, error: describeThrown(again) });
      }
    });
  }

  /** The steps of HANDLER_STEPS. */
  async serve(reply: ReplyPath, request: Request): Promise<void> {
    const respond = (answer: Answer): void => void this.responder.respond(reply, answer);
    const builtin = isBuiltinTool(request.tool);
    let tool = builtin ? undefined : this.tools.get(request.tool);
    // authorize: built-ins need a valid token but no scope (tools/list is filtered by it, jobs by owner).
    const grant = this.#authorize(reply, request, builtin ? undefined : tool ? tool.scope : defaultToolScope(request.tool));
    if (grant === false) return;
    // decode: the arguments stayed undecoded until the token was checked.
    try {
      request.args = decodeArgs(request.args);
    } catch (err) {
      return respond(failure("bad_frame", describeThrown(err)));
    }
    if (builtin) {
      // resources/* and prompts/* (resources.ts): a listing answers here; a read or get goes on as a tool run.
      const catalog = this.tools.catalog.resolve(request.tool, request.args, grant);
      if (catalog === undefined) return respond(this.#builtin(reply, request, grant));
      if ("st" in catalog) return respond(catalog);
      tool = catalog;
    }
    if (!tool) {
      // Still connecting: its tools are registered once Agent.connect resolves, and a broker
      // delivers an agent's stored durable messages as soon as it is heard, so they can come
      // first. `busy` is not remembered: the caller's retry finds the tool registered.
      if (!this.#ready) return respond(failure("busy", `no tool named ${JSON.stringify(request.tool)} yet: this agent is still connecting (its tools are registered after that)`));
      return respond(failure("unknown_tool", `no tool named ${JSON.stringify(request.tool)}`));
    }
    // validate
    let parsed: ReturnType<z.ZodType["safeParse"]>;
    try {
      parsed = tool.input.safeParse(request.args);
    } catch (err) {
      // A transform or refinement that throws (JSON.parse, new URL) rejects these arguments.
      return respond(failure("invalid_args", `${tool.info.name}: arguments refused by the schema: ${describeThrown(err)}`));
    }
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      return respond(failure("invalid_args", `${tool.info.name}: ${issues}`));
    }
    // idempotency: a retried request (same id from the same caller) gets the first answer; the tool runs once.
    const requestId = idKey(request.rid);
    const key = `${reply.peer}:${requestId}`;
    const begun = this.#answers.begin(key, reply.peer, Date.now(), reply.inReplyTo.exp, reply.sentExp);
    if (begun.kind === "earlier") return void begun.answer.then(respond);
    if (begun.kind === "full") return respond(failure("busy", begun.reason));
    if (begun.kind === "dropped") return respond(failure("expired", begun.reason));
    // concurrency
    const max = this.core.options.maxConcurrency;
    const full = this.#active >= max ? `${this.#active} tool runs in progress (maxConcurrency ${max})` : tool.info.job ? this.jobs.refusal(reply.peer) : undefined;
    if (full !== undefined) {
      const busy = failure("busy", full);
      this.#answers.finish(key, busy, 0, false); // not remembered: a retry may find room
      return respond(busy);
    }
    // run
    const late = tool.info.job ? undefined : new LazySignal(this.core.closing);
    const ctx = new RunContext(reply.peer, this.core.directory.nameOf(reply.peer), requestId, reply.inReplyTo.exp, this.core.closing, late, grant);
    if (tool.info.job) return this.#startJob(tool, parsed.data, ctx, reply, key);
    const ran = await this.#runTool(tool, parsed.data, ctx, reply.inReplyTo.exp, late);
    // respond, and remember what was sent (a result a caller could not read, or too large, is
    // the error saying so: checked, encoded and sealed once, by the responder). Past the deadline
    // the caller has given up (its own timer says `timeout`): nothing is sent, but a retry of
    // this request id still finds the answer.
    const sent = ran.late ? undefined : this.responder.respond(reply, ran.answer);
    if (ran.late) reply.answered = true;
    const [answer, bytes] = sent ? [sent.answer, sent.bytes] : this.#fitting(sendable(ran.answer, 1));
    this.#answers.finish(key, answer, bytes, true, Date.now(), sent?.kept);
  }

  /**
   * The answer as it will be kept and sent, with its size: a result larger than a message may be
   * becomes the `too_large` error here, before the answer cache or the job table holds it (held
   * whole, one 70 MiB result kept every caller `busy` for two minutes).
   */
  #fitting(answer: Answer): [Answer, number] {
    const bytes = encodedSize(answer);
    const max = this.core.options.maxMessageBytes;
    if (bytes <= max) return [answer, bytes];
    const tooLarge = failure("too_large", `result of ${bytes} bytes exceeds the ${max}-byte message cap`);
    return [tooLarge, encodedSize(tooLarge)];
  }

  async #startJob(tool: RegisteredTool, args: unknown, ctx: ToolContext, reply: ReplyPath, key: string): Promise<void> {
    const jobId = newJobId(this.core.publicKey);
    const { signal } = this.jobs.create(jobId, reply.peer);
    const accepted: Answer = { st: "accepted", result: { job_id: jobId } };
    this.#answers.finish(key, accepted, encodedSize(accepted));
    this.responder.respond(reply, accepted);
    ctx.jobId = jobId;
    ctx.signal = AbortSignal.any([this.core.closing, signal]);
    ctx.progress = (progress) => {
      checkProgress(progress);
      const state = this.jobs.progress(jobId, { ...progress });
      if (state) this.responder.push(reply, state);
    };
    let answer: Answer;
    try {
      // The job's own span, a child of the request's: it outlives the `accepted` answer.
      answer = (await inJobSpan(tool.info.name, jobId, () => this.#runTool(tool, args, ctx, undefined))).answer;
    } catch (err) {
      answer = failure("tool_failed", describeThrown(err));
    }
    // The result is served by polls too: inside a poll answer it sits one level deeper.
    const [fitted, bytes] = this.#fitting(sendable(answer, 2));
    answer = fitted;
    const state =
      answer.st === "ok"
        ? this.jobs.finish(jobId, { status: "done", result: answer.result }, bytes)
        : this.jobs.finish(jobId, { status: "error", error: answer.error! }, bytes);
    if (state) this.responder.push(reply, state); // undefined: cancelled meanwhile, already pushed
  }

  /**
   * Runs a handler: never throws; a failure becomes an error answer, and so does a result a
   * caller could not read (sendable.ts). With a `deadline` (plain calls), the handler's signal
   * fires then and its concurrency slot is given back even if it never returns (`late`).
   */
  #runTool(tool: RegisteredTool, args: unknown, ctx: ToolContext, deadline: number | undefined, late?: LazySignal): Promise<{ answer: Answer; late: boolean }> {
    // One promise, settled once by whichever comes first, the handler's outcome or the deadline:
    // the async wrappers, the race and its arrays this was written with before allocated 2 KB a
    // call, 1.2 KB more than this (issue 12, bench/sdkpath.ts under a sampling heap profile).
    return new Promise((resolve) => {
      this.#active++;
      let timer: DeadlineEntry | undefined;
      let settled = false;
      const settle = (answer: Answer, isLate: boolean): void => {
        if (settled) return;
        settled = true;
        this.#deadlines.cancel(timer);
        this.#active--;
        resolve({ answer, late: isLate });
      };
      // Neither `failed` nor `returned` may throw: an exception escaping them (from the executor,
      // or from `.then`'s callbacks) would leave the run unsettled and its slot taken for good.
      const failed = (err: unknown): void => {
        let code = "tool_failed";
        try {
          // `instanceof` runs a Proxy's getPrototypeOf trap, `code` may be a getter: read once.
          const own = err instanceof ZmcpError ? err.code : undefined;
          if (isWireCode(own)) code = own;
          logToolFailure(this.core.throttle, tool.info.name, err, code); // warn with the stack (unless a deliberate ZmcpError), throttled
        } catch {
          // a hostile thrown value: answered tool_failed all the same
        }
        settle(failure(code, describeThrown(err)), false);
      };
      const returned = (result: unknown): void => {
        if (tool.output) {
          try {
            const checked = tool.output.safeParse(result);
            if (!checked.success) return settle(failure("tool_failed", `${tool.info.name} returned a result that fails its output schema`), false);
            result = checked.data;
          } catch (err) {
            return failed(err);
          }
        }
        settle({ st: "ok", result: result ?? null }, false);
      };
      if (deadline !== undefined) {
        // One timer for every run's deadline (support/deadlines.ts), not a setTimeout per call.
        timer = this.#deadlines.add(performance.now() + Math.max(0, deadline - Date.now()), () => {
          settle(failure("expired", `${tool.info.name} was still running at the caller's deadline`), true);
          late?.abort(new TimeoutError("the caller's deadline passed"));
        });
      }
      let result: unknown;
      try {
        result = tool.handler(args, ctx);
      } catch (err) {
        return failed(err);
      }
      // A primitive is the answer now; anything else may be a promise or another thenable (whose
      // `then` may throw, or be a getter that throws): Promise.resolve adopts it safely.
      // Promise.resolve reads a promise's `constructor` and `.then` may be the promise's own: either
      // may throw synchronously (the `await` this replaced turned that into the tool's failure).
      if (result === null || (typeof result !== "object" && typeof result !== "function")) returned(result);
      else {
        try {
          Promise.resolve(result).then(returned, failed);
        } catch (err) {
          failed(err);
        }
      }
    });
  }

  /** tools/list, jobs/poll, jobs/cancel. */
  #builtin(reply: ReplyPath, request: Request, grant: VerifiedToken | undefined): Answer {
    if (request.tool === BUILTIN_TOOLS.list) return { st: "ok", result: { tools: this.tools.list(grant) } };
    // Direct links (PROTOCOL.md §18): where this agent listens, told only to keys its listener admits.
    if (request.tool === BUILTIN_TOOLS.endpoint) return { st: "ok", result: { endpoint: this.core.directEndpoint?.(reply.peer) ?? null } };
    const args = JobIdArgs.safeParse(request.args);
    if (!args.success) return failure("invalid_args", `${request.tool}: ${z.prettifyError(args.error)}`);
    try {
      const state = this.jobs.get(args.data.job_id, reply.peer);
      if (request.tool === BUILTIN_TOOLS.cancel && state.status === "running") {
        const ended = this.jobs.finish(state.job_id, { status: "cancelled", error: { code: "cancelled", message: "cancelled by its caller" } });
        if (ended) this.responder.push(reply, ended);
      }
      return { st: "ok", result: state };
    } catch (err) {
      const code = err instanceof ZmcpError && isWireCode(err.code) ? err.code : "tool_failed";
      return failure(code, describeThrown(err));
    }
  }

  /**
   * Checks the request's token. Returns the verified token (undefined when no check applies),
   * or false once the refusal is answered.
   */
  #authorize(reply: ReplyPath, request: Request, scope: string | undefined): VerifiedToken | undefined | false {
    if (!this.#verifier || (!this.core.options.requireToken && request.tok === undefined)) return undefined;
    try {
      return this.#verifier.authorize(request.tok, reply.peer, scope);
    } catch (err) {
      const code = err instanceof ProtocolError ? err.code : "token_invalid";
      const message = describeThrown(err);
      this.core.throttle.write("debug", "request refused", `${reply.peer} ${code}`, { from: reply.peer, tool: request.tool, code, message });
      this.responder.respond(reply, failure(code, message));
      return false;
    }
  }
}

/**
 * Throws TypeError unless `progress` is what a caller accepts (envelope.ts ProgressSchema, the
 * receiver's own definition: finite numbers, a message of at most 4,096 characters).
 */
function checkProgress(progress: unknown): asserts progress is Progress {
  const parsed = ProgressSchema.safeParse(progress);
  if (!parsed.success) throw new TypeError(`ctx.progress: not a progress a caller can read: ${z.prettifyError(parsed.error)}`);
}

/**
 * `answer`, or for a result a peer could not read (checked `depth` levels below the top of
 * the message that carries it), the `tool_failed` answer saying what was wrong.
 */
function sendable(answer: Answer, depth: number): Answer {
  if (answer.st === "error") return answer;
  try {
    checkSendable(answer.result, "result", depth, MAX_DEPTH);
    return answer;
  } catch (err) {
    return failure("tool_failed", `result not sendable: ${describeThrown(err)}`);
  }
}

/**
 * A tool run's context. A plain call's `signal` is made only if the handler reads it (an
 * AbortSignal.any per call was a measurable share of a callee's CPU: support/lazy-signal.ts),
 * so it is an accessor: an own, enumerable one (a context spread into another keeps it), defined
 * with the same functions on every context so that all contexts share one shape (a getter in an
 * object literal, or one defined per call with fresh closures, gave each context a shape of its own).
 */
const SIGNAL_STATE = Symbol("zmcp.signal");
interface SignalState {
  assigned: AbortSignal | undefined;
  closing: AbortSignal;
  late: LazySignal | undefined;
}
class RunContext implements ToolContext {
  readonly [SIGNAL_STATE]: SignalState;
  declare signal: AbortSignal;
  jobId: string | undefined = undefined;
  progress: (progress: Progress) => void = checkProgressOnly;

  constructor(
    public from: string,
    public fromName: string | undefined,
    public requestId: string,
    public deadline: number,
    closing: AbortSignal,
    late: LazySignal | undefined,
    public token: VerifiedToken | undefined,
  ) {
    this[SIGNAL_STATE] = { assigned: undefined, closing, late };
    Object.defineProperty(this, "signal", RunContext.#SIGNAL);
  }

  static readonly #SIGNAL: PropertyDescriptor = {
    get(this: RunContext): AbortSignal {
      const s = this[SIGNAL_STATE];
      return s.assigned ?? s.late?.signal ?? s.closing;
    },
    set(this: RunContext, signal: AbortSignal) {
      this[SIGNAL_STATE].assigned = signal;
    },
    enumerable: true,
    configurable: true,
  };
}

/** A plain call's `progress`: checks what a job's would, sends nothing. */
function checkProgressOnly(progress: Progress): void {
  void checkProgress(progress);
}
