/**
 * Publishing (docs/EVENTS.md): a `pub` message whose header holds the topic (in `to`) and this
 * agent's sequence number on that topic (`sq`), sealed by the events sealer (src/events/
 * sealer.ts) over those very header bytes, and sent once to the broker, which fans it out.
 *
 * Publications of one agent are sealed and sent one after another in call order: a sealer may
 * take time (fetching a key), and a later publication overtaking an earlier one on the same
 * topic would look to subscribers like a publisher restart (the sequence going back). A
 * sequence number is taken only once its publication is sealed, so a refused seal (no `pub:`
 * right, no key) leaves no hole that subscribers would count as missed.
 */
import { describeThrown, ZmcpError } from "../errors.js";
import type { EventSealer } from "../events/sealer.js";
import { checkTopic } from "../events/topics.js";
import { RecencyMap } from "../support/recency-map.js";
import { wireNow } from "../wire/clock.js";
import { encodeHeader, newId, PROTOCOL_VERSION, type Header } from "../wire/envelope.js";
import { checkSendable } from "../wire/sendable.js";
import type { AgentCore } from "./core.js";

/**
 * A publication's `exp` is its time plus this, ms (docs/PROTOCOL.md §19, T15): subscribers
 * read the publication's time back from it (`exp − 60,000`) for the replay window, and the
 * broker refuses it `expired` like any message once `exp` + its clock skew is past.
 */
export const PUBLICATION_LIFETIME_MS = 60_000;

/** Topics whose sequence numbers are remembered; past it the least recent starts again at 1 (seen as a restart, not a gap). */
const MAX_TOPICS = 100_000;

export class Publisher {
  readonly #sequences = new RecencyMap<string, number>(MAX_TOPICS);
  #tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly core: AgentCore,
    private readonly sealer: EventSealer,
  ) {}

  /**
   * Seals `data` for `topic` and sends it. Resolves once handed to the connection: delivery is
   * at most once and unacknowledged (a broker refusal is logged and counted). Rejects with
   * ConfigError (invalid topic), ZmcpError(invalid_args) (a value subscribers could not read),
   * ZmcpError(too_large), ZmcpError(closed), or what the sealer throws.
   */
  publish(topic: string, data: unknown): Promise<void> {
    const core = this.core;
    const closed = core.closedWith();
    if (closed || core.isClosed()) return Promise.reject(closed ?? new ZmcpError("closed", "agent closed"));
    try {
      checkTopic(topic);
      // The event map is {data, ...} inside the sealer's plaintext: data sits at depth 1.
      checkSendable(data, "data", 1);
    } catch (err) {
      if (err instanceof ZmcpError) return Promise.reject(err);
      return Promise.reject(new ZmcpError("invalid_args", `publication not readable by subscribers: ${describeThrown(err)}`, { cause: err }));
    }
    const done = this.#tail.then(() => this.#sealAndSend(topic, data));
    this.#tail = done.catch(() => undefined);
    return done;
  }

  async #sealAndSend(topic: string, data: unknown): Promise<void> {
    const core = this.core;
    const sq = (this.#sequences.peek(topic) ?? 0) + 1;
    const header: Header = { v: PROTOCOL_VERSION, k: "pub", id: newId(), to: topic, exp: wireNow() + PUBLICATION_LIFETIME_MS, sq };
    const headerBytes = encodeHeader(header);
    const body = await this.sealer.seal(topic, headerBytes, data);
    const size = headerBytes.length + body.length;
    const max = core.options.maxMessageBytes;
    if (size > max) throw new ZmcpError("too_large", `publication of ${size} bytes exceeds ${max}`);
    if (core.isClosed()) throw core.closedWith() ?? new ZmcpError("closed", "agent closed");
    this.#sequences.set(topic, sq);
    await core.transport.send([headerBytes, body]);
    core.stats.published++;
  }
}
