/**
 * Sending what a callee owes a caller: the response to a request (at most one) and the
 * events of a job it started, sealed as the party the caller asked (this agent, or the
 * service it addressed) so that the caller, who accepts answers only from whom it asked,
 * can read them.
 */
import { describeThrown, ZmcpError } from "../errors.js";
import { answerExp, eventExp } from "../wire/clock.js";
import { encodeKept, newId, PROTOCOL_VERSION, type Header } from "../wire/envelope.js";
import { SEAL_OVERHEAD, type Sealer } from "../wire/seal.js";
import { checkSendable } from "../wire/sendable.js";
import { seal, sealAnswer, type AgentCore } from "./core.js";
import { failure } from "./failure.js";
import type { Answer } from "./idempotency.js";
import type { JobState } from "./jobs.js";
import { bump } from "./stats.js";
import type { ReplyVia } from "./listener.js";
import { answerInSpan } from "./tracing.js";
import type { Frames } from "./transport.js";

/** Where the answers to one request go, and how they are sealed. */
export interface ReplyPath {
  /** The caller's key. */
  peer: string;
  /** The request's header (its `exp` read on this agent's clock). */
  inReplyTo: Header;
  /** The request's `exp` as its sender wrote it (the answer cache keeps answers by it). */
  sentExp: number;
  /** This agent's sealer, or the served service's. */
  sealer: Sealer;
  /** `svc:NAME` when sealed with a service's key. */
  as: string | undefined;
  /** Set once a response is sent, so that the guard answers at most once. */
  answered: boolean;
  /** The request came on this agent's listener (listener.ts): answers and events go back on that link. */
  via: ReplyVia | undefined;
}

export class Responder {
  constructor(private readonly core: AgentCore) {}

  /**
   * Sends a sealed response; a result that a caller could not read (sendable.ts) or that is
   * too large becomes a `tool_failed` / `too_large` error naming what was wrong. Returns the
   * answer sent, the size of its sealed message's plaintext (the bytes the answer cache
   * counts) and the answer's own encoding as sent (what the cache keeps for retries), or
   * undefined when the agent is closed and nothing was sealed.
   */
  respond(reply: ReplyPath, answer: Answer, exp = answerExp(reply.inReplyTo.exp)): { answer: Answer; bytes: number; kept: Uint8Array } | undefined {
    const core = this.core;
    if (core.isClosed()) return undefined;
    reply.answered = true;
    const header: Header = { v: PROTOCOL_VERSION, k: "res", id: newId(), to: reply.peer, exp, re: reply.inReplyTo.id };
    if (reply.as) header.as = reply.as;
    if (reply.inReplyTo.dur) header.dur = true; // the answer to a durable request waits for an offline caller too (docs/DURABLE.md)
    // The answer is encoded once (its getters read once): those bytes are spliced into the sealed
    // response and kept by the answer cache for retries, so a retry gets what was sent.
    let frames: [Uint8Array, Uint8Array];
    let kept: Uint8Array;
    try {
      if (answer.st !== "error") checkSendable(answer.result, "result", 1);
      kept = encodeKept(answer);
      frames = sealAnswer(core, reply.sealer, reply.peer, header, kept);
    } catch (err) {
      const code = err instanceof ZmcpError && err.code === "too_large" ? "too_large" : "tool_failed";
      answer = failure(code, `result not sendable: ${describeThrown(err)}`);
      kept = encodeKept(answer);
      frames = sealAnswer(core, reply.sealer, reply.peer, header, kept);
    }
    if (answer.st === "error") bump(core.stats.requestFailures, answer.error?.code ?? "error");
    answerInSpan(answer); // the request's first answer ends its SERVER span (if one is active)
    this.#send(reply, frames, "response not sent");
    return { answer, bytes: frames[1].length - SEAL_OVERHEAD, kept };
  }

  /** Pushes a job's state to the caller that started it (progress, or its end). */
  push(reply: ReplyPath, state: JobState): void {
    const core = this.core;
    if (core.isClosed()) return;
    const header: Header = { v: PROTOCOL_VERSION, k: "evt", id: newId(), to: reply.peer, exp: eventExp() };
    if (reply.as) header.as = reply.as;
    if (reply.inReplyTo.dur) header.dur = true; // a durable job's events wait for an offline caller too
    const draft = { t: "evt" as const, ts: Date.now(), job: state.job_id, st: state.status, ...pick(state, "progress", "result", "error") };
    let frames: [Uint8Array, Uint8Array];
    try {
      frames = seal(core, reply.sealer, reply.peer, header, draft);
    } catch (err) {
      const error = failure("tool_failed", `result not sendable: ${describeThrown(err)}`).error;
      frames = seal(core, reply.sealer, reply.peer, header, { t: "evt", ts: draft.ts, job: draft.job, st: "error", error });
    }
    this.#send(reply, frames, "event not sent");
  }

  /**
   * Through the broker, or back on the direct link the request came on; when that link cannot
   * take it (the caller is gone or not reading), through the broker after all: the same sealed
   * message is valid on either path, as the seal binds it to the caller's key, not to a socket.
   */
  #send(reply: ReplyPath, frames: Frames, what: string): void {
    const core = this.core;
    const viaBroker = () => void core.transport.send(frames).catch((err) => core.throttle.write("warn", what, reply.peer, { to: reply.peer, error: describeThrown(err) }));
    if (reply.via === undefined) return viaBroker();
    reply.via.sendTo(reply.peer, frames).catch(viaBroker);
  }
}

/** Copies the listed keys that are defined (exactOptionalPropertyTypes forbids explicit undefined). */
export function pick<T extends object, K extends keyof T>(source: T, ...keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  return out;
}
