/**
 * The inbound checks: frames from the connection → a verified message handed to its part
 * (request → handler, response → caller, event → job follower), or a typed refusal. The
 * checks are an ordered list of named steps (INBOUND_STEPS); the order is fixed and
 * deliberate: nothing is opened before the cheap checks, nothing is decoded before it is
 * opened, and an answer is bound to the party asked before it is opened.
 */
import { describeThrown, ProtocolError, ZmcpError } from "../errors.js";
import { ClockOffsets, refusalExp, wireMs } from "../wire/clock.js";
import { decodeHeader, decodeInner, idKey, type Header, type Inner } from "../wire/envelope.js";
import type { Sealer } from "../wire/seal.js";
import { parseServiceAddress, serviceAddress } from "../wire/services.js";
import { isZ85Key } from "../wire/z85.js";
import type { Caller } from "./caller.js";
import type { AgentCore } from "./core.js";
import { failure } from "./failure.js";
import type { JobFollower } from "./follower.js";
import type { Handler } from "./handler.js";
import type { ReplyVia } from "./listener.js";
import { markPath, replayNotBefore, durableNotBefore } from "./alive-mark.js";
import { DEFAULT_MAX_SEEN, ReplayGuard } from "./replay.js";
import type { Replica } from "./replica.js";
import type { ReplyPath, Responder } from "./responder.js";
import { bump, Dropped, type DropReason } from "./stats.js";
import { PUBLICATION_LIFETIME_MS } from "./publisher.js";

/** One message on its way through the steps; each step fills in what the next ones read. */
export interface Arrival {
  frames: Buffer[];
  headerBytes: Buffer;
  body: Buffer;
  /** The sender's key, as the broker stamped it. */
  peer: string;
  header: Header;
  /** Where answers go and how they are sealed (a served service's key, or this agent's). */
  reply: ReplyPath;
  /** The key the body is sealed with: the sender's, or the service it speaks as. */
  sealedBy: string;
  /** True once the body opened with the sender's key: what follows is its own word. */
  opened: boolean;
  /** Set by a step that keeps the message for later (a durable job event, follower.ts): no further step runs. */
  kept?: boolean;
  /** A response's `re` as the caller's key of what it answers (made once, by the binding step). */
  answers: string | undefined;
  inner: Inner;
  now: number;
  mono: number;
  /** Not from a broker but on a direct link (docs/PROTOCOL.md §18); undefined for the broker's path. */
  path: InboundPath | undefined;
}

/**
 * Where a message came in other than from a broker: on this agent's listener (a request; its
 * answers go back through `via`), or on a link this agent dialled (an answer or job event only).
 */
export type InboundPath = { kind: "listener"; via: ReplyVia } | { kind: "link" };

/**
 * A step: throws to refuse (a ProtocolError's code is the refusal's), Dropped to drop
 * quietly. Steps before `route` drop what is not a well-formed message from a broker
 * (there is nobody to answer); from `route` on, a request is answered with the refusal.
 */
export interface InboundStep {
  readonly name: StepName;
  run(m: Arrival): void;
}

/** The parts the inbound checks hand messages to. */
export interface InboundParts {
  core: AgentCore;
  replica: Pick<Replica, "sealerOf" | "isDurable">;
  caller: Pick<Caller, "bind" | "answered" | "refused">;
  follower: Pick<JobFollower, "checkSealer" | "onEvent" | "keepForJob">;
  handler: Pick<Handler, "onRequest">;
  responder: Pick<Responder, "respond">;
}

export class Inbound {
  /** Publications past the checks go here (subscriber.ts); undefined: the agent has no events sealer. */
  publications: ((peer: string, header: Header, headerBytes: Buffer, body: Buffer, stale: boolean) => void) | undefined;
  /** True when a durable subscription matches the topic (subscriber.ts): then a publication too old for the replay guard is judged by its marks. */
  durableTopic: ((topic: string) => boolean) | undefined;
  readonly #replay: ReplayGuard;
  readonly #clocks = new ClockOffsets();
  readonly steps: readonly InboundStep[];

  constructor(private readonly parts: InboundParts) {
    const { replayWindow, startGrace, stateDir } = parts.core.options;
    // Refuse what a previous process with this key may have run (alive-mark.ts).
    const mark = stateDir === undefined ? undefined : markPath(stateDir, parts.core.publicKey);
    this.#replay = new ReplayGuard(replayWindow, DEFAULT_MAX_SEEN, replayNotBefore(mark, startGrace), durableNotBefore(mark, startGrace));
    this.steps = this.#steps();
  }

  /** Runs the steps over `frames` (`path`: a direct link's, listener.ts / direct-links.ts); never throws. */
  accept(frames: Buffer[], path?: InboundPath): void {
    const { core } = this.parts;
    // Every field up front, in one literal: each message's object has one shape, so the steps'
    // reads stay monomorphic (added one by one, they made a chain of shapes per message).
    const m: Arrival = {
      frames,
      headerBytes: undefined!,
      body: undefined!,
      peer: "",
      header: undefined!,
      reply: undefined!,
      sealedBy: "",
      opened: false,
      kept: false,
      answers: undefined,
      inner: undefined!,
      now: 0,
      mono: 0,
      path,
    };
    let i = 0;
    try {
      for (; i < this.steps.length && !m.kept; i++) this.steps[i]!.run(m);
    } catch (err) {
      if (i < ROUTED_FROM) return this.#dropUnrouted(m, this.steps[i]!.name, err);
      if (m.header.k !== "req") return this.#dropAnswer(m, err);
      const code = err instanceof ProtocolError ? err.code : "bad_frame";
      const message = describeThrown(err);
      core.throttle.write("debug", "refused message", `${m.peer} ${code}`, { from: m.peer, code, message });
      // Sealed as what was asked (the service, when it is served here), so that callers, who
      // accept answers only from whom they addressed, can read the refusal.
      this.parts.responder.respond(m.reply, failure(code, message), refusalExp(m.header.exp));
    }
  }

  #steps(): InboundStep[] {
    const { core, replica, caller, follower, handler } = this.parts;
    const { maxMessageBytes } = core.options;
    const replay = this.#replay;
    const clocks = this.#clocks;
    const run: Record<StepName, (m: Arrival) => void> = {
      frames: (m) => {
        if (m.frames.length !== 3) throw new Dropped("frames", `wrong frame count (${m.frames.length})`);
        const [from, headerBytes, body] = m.frames as [Buffer, Buffer, Buffer];
        m.headerBytes = headerBytes;
        m.body = body;
        m.peer = from.toString("latin1");
      },
      sender: (m) => {
        // The broker stamps the sender's authenticated key; anything else is not from a broker.
        if (!isZ85Key(m.peer)) throw new Dropped("sender", `invalid sender ${m.frames[0]!.toString("hex").slice(0, 120)}`);
      },
      header: (m) => {
        // Only a faulty broker forwards a header it could not read itself.
        m.header = decodeHeader(m.headerBytes);
        // A link this agent dialled carries answers to its own requests and its jobs' events,
        // nothing else: not requests, and not publications, which reach subscribers through a
        // broker only (its subscription directory, rate limit and deny list; the adversarial
        // review found a callee's listener could push them down the link, past all three).
        if (m.path?.kind === "link" && m.header.k !== "res" && m.header.k !== "evt") throw new Dropped("header", `a ${m.header.k} on a link this agent dialled`);
      },
      route: (m) => {
        // Addressed to a service we serve: opened (and answered) with the service's key.
        const service = parseServiceAddress(m.header.to);
        const sealer: Sealer | undefined = service ? replica.sealerOf(service.name) : undefined;
        m.reply = { peer: m.peer, inReplyTo: m.header, sealer: sealer ?? core.sealer, as: sealer ? serviceAddress(service!.name) : undefined, answered: false, via: undefined, sentExp: m.header.exp };
        if (m.header.k === "req") core.stats.requests++;
        if (service && !sealer) throw new ProtocolError("no_route", `this agent does not serve ${service.name}`);
        const path = m.path;
        if (path?.kind === "listener") {
          // On the listener: requests to this agent's own key only (services go through the
          // broker, which balances them), answered on the same link, from keys still admitted.
          m.reply.via = path.via;
          if (m.header.k !== "req") throw new Dropped("refused", `a ${m.header.k} on this agent's listener`);
          if (m.header.to !== core.publicKey) throw new ProtocolError("no_route", "a direct link reaches this agent's own key only");
          // Only a broker stores (docs/DURABLE.md); `dur` would relax the restart rules for nothing.
          if (m.header.dur) throw new ProtocolError("bad_frame", "a durable request cannot come on a direct link");
          if (!path.via.admits(m.peer)) throw new ProtocolError("forbidden", "this key is revoked at this agent's listener");
        }
      },
      expiry: (m) => {
        m.now = Date.now();
        m.mono = performance.now();
        // Before opening: only what is past its deadline even allowing the largest accepted clock
        // difference; the precise check follows once the sealed timestamp is known (wire/clock.ts).
        // A publication's time is checked below (a durable subscription may accept an older one).
        if (m.header.k !== "pub" && m.header.exp + replay.windowMs < m.now) throw new ProtocolError("expired", "message is past its deadline");
      },
      size: (m) => {
        const size = m.headerBytes.length + m.body.length;
        if (size > maxMessageBytes) throw new ProtocolError("too_large", `message of ${size} bytes exceeds ${maxMessageBytes}`);
      },
      binding: (m) => {
        if (m.header.k === "pub") {
          // Sealed with a group key (src/events), opened asynchronously by the subscriber. Its
          // time is its `exp` less the publication lifetime (the seal binds the header): the
          // replay window and the seen-id cache apply to it as to any message.
          if (!this.publications) throw new Dropped("unsolicited", "a publication, and this agent has no events sealer");
          const time = m.header.exp - PUBLICATION_LIFETIME_MS;
          // Older than the window, or than this process: kept by a broker's store for a durable
          // subscription (docs/EVENTS.md), judged by the subscriber's marks (durable-marks.ts)
          // instead of the replay cache, which cannot. Anything else as before.
          const stale = time <= m.now && !replay.judges(time, m.now) && this.durableTopic?.(m.header.to) === true;
          if (!stale) replay.check(`${m.peer}:${idKey(m.header.id)}`, time, m.now, false, m.peer);
          this.publications(m.peer, m.header, m.headerBytes, m.body, stale);
          m.kept = true;
          return;
        }
        // Sealed as a service (a replica's answer): opened with that service's public key.
        m.sealedBy = m.header.as === undefined ? m.peer : core.directory.sealedAs(m.header.as);
        if (m.header.k === "res") m.answers = caller.bind(m.header, m.peer, m.sealedBy);
        else if (m.header.k === "evt" && m.header.dur && follower.keepForJob(m.peer, m.sealedBy, m.frames)) m.kept = true;
        else if (m.header.k === "evt") follower.checkSealer(m.sealedBy);
      },
      open: (m) => {
        // Decrypted over the received frame itself: nothing reads the body after this step.
        const plaintext = m.reply.sealer.openInPlace(m.sealedBy, m.body);
        m.opened = true;
        // A request's arguments stay undecoded until its token is checked (handler.ts).
        m.inner = decodeInner(plaintext, m.headerBytes, maxMessageBytes, { deferArgs: true });
      },
      kind: (m) => {
        if (m.inner.t !== m.header.k) throw new ProtocolError("bad_frame", `header kind ${m.header.k} does not match message kind ${m.inner.t}`);
      },
      replay: (m) => {
        // A durable message may have waited in a broker's store: one older than the window is
        // refused busy (resent fresh by a caller still waiting), not replay (agent/replay.ts).
        // A request to a service this replica declared durable may have waited in the service's
        // queue without `dur` from its caller (docs/DURABLE.md): judged the same way.
        const service = m.header.k === "req" ? parseServiceAddress(m.header.to) : undefined;
        const durable = m.header.dur === true || (service !== undefined && service.replica === undefined && replica.isDurable(service.name));
        replay.check(`${m.peer}:${idKey(m.header.id)}`, wireMs(m.inner.ts), m.now, durable, m.peer);
      },
      deadline: (m) => {
        // The sender's deadline on this agent's clock (integer ms: wire/clock.ts, rules 1 and 3).
        const deadline = m.header.exp + clocks.observe(m.peer, wireMs(m.inner.ts), m.now, m.mono);
        if (deadline < m.now) throw new ProtocolError("expired", `message is past its deadline (by ${m.now - deadline} ms on this clock)`);
        if (deadline !== m.header.exp) m.reply.inReplyTo = { ...m.header, exp: deadline };
      },
      deliver: (m) => {
        const inner = m.inner;
        if (inner.t === "req") handler.onRequest(m.reply, inner);
        else if (inner.t === "res") caller.answered(m.answers!, m.peer, inner);
        else follower.onEvent(m.peer, m.header, m.sealedBy, inner);
      },
    };
    return INBOUND_STEPS.map((name) => ({ name, run: run[name] }));
  }

  /** Not a well-formed message from a broker: counted under the step's name and logged. */
  #dropUnrouted(m: Arrival, reason: DropReason, err: unknown): void {
    const { core } = this.parts;
    bump(core.stats.dropped, reason);
    // Only a faulty broker forwards these; keyed by event alone (the sender is not a key yet).
    const { throttle } = core;
    if (reason === "frames") throttle.write("warn", "dropped message with wrong frame count", "", { frames: m.frames.length });
    else if (reason === "sender") throttle.write("warn", "dropped message with an invalid sender", "", { from: m.frames[0]!.toString("hex").slice(0, 120) });
    else throttle.write("warn", "dropped message with invalid header", m.peer, { from: m.peer, error: describeThrown(err) });
  }

  /** A response or event that is dropped: counted by reason and logged; the caller learns of a refused response. */
  #dropAnswer(m: Arrival, err: unknown): void {
    const { core, caller } = this.parts;
    const code = err instanceof ZmcpError ? err.code : "bad_frame";
    const message = err instanceof Error ? err.message : describeThrown(err);
    const reason: DropReason = err instanceof Dropped ? err.reason : code === "bad_seal" ? "bad_seal" : "refused";
    bump(core.stats.dropped, reason);
    // Any admitted peer can send answers to nothing: one line per peer and reason per interval.
    core.throttle.write("warn", "dropped message", `${m.peer} ${reason}`, { from: m.peer, name: core.directory.nameOf(m.peer), kind: m.header.k, reason, message });
    if (err instanceof Dropped || m.header.k !== "res" || !m.header.re) return;
    caller.refused(m.header.re, code, message, m.opened);
  }
}

/** The names of the inbound steps, in the order they run. */
export const INBOUND_STEPS = ["frames", "sender", "header", "route", "expiry", "size", "binding", "open", "kind", "replay", "deadline", "deliver"] as const;

/** The steps before `route` drop; from it on, requests are answered with the refusal. */
const ROUTED_FROM = INBOUND_STEPS.indexOf("route");

type StepName = (typeof INBOUND_STEPS)[number];
