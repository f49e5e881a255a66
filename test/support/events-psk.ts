/**
 * A TEST DOUBLE of the events seam (src/events/sealer.ts): a real sealer, but with one
 * pre-shared key for every topic instead of the group keys the key distributor hands out
 * (src/events, written beside this). It exists so that the fan-out (wire, broker, delivery,
 * gaps) can be tested on its own; end-to-end tests use the distributor's sealer.
 *
 * Layout: body = sealWith(key, msgpack {h: SHA-512(header bytes), p: publisher key, e: epoch,
 * d: data}) (src/wire/seal.ts: tag || nonce || XSalsa20-Poly1305 ciphertext under the key, the
 * project's libsodium path, so benchmarks do not measure a pure-JS cipher). What it gives: the broker (without the key) cannot read or
 * alter a publication, and a header changed in transit does not open (`h`). What it does not
 * give: every holder of the key can claim to be any publisher (`p`); the subscriber's check
 * that `p` is the key the broker stamped (agent/subscriber.ts) is what stops a member passing
 * off a publication as another's. Group keys with epochs are the distributor's business.
 */
import { createHash } from "node:crypto";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { ProtocolError } from "../../src/errors.js";
import type { EventKeyContext, EventSealer, EventSealerFactory, OpenedEvent } from "../../src/events/sealer.js";
import { MAX_DEPTH } from "../../src/wire/envelope.js";
import { checkMsgpack } from "../../src/wire/msgpack-guard.js";
import { openWith, sealWith } from "../../src/wire/seal.js";

export interface PskOptions {
  /** The pre-shared key, 32 bytes. Default: {@link TEST_PSK}. */
  key?: Uint8Array;
  /** Epoch reported for every publication. Default 0. */
  epoch?: number;
  /** join() rejects with this error for patterns it returns one for (a member refused a topic). */
  refuseJoin?: (pattern: string) => Error | undefined;
  /** Records the sealer's calls, for tests of the seam. */
  calls?: string[];
}

/** The default test key (fixed: two processes of a test share it without passing it around). */
export const TEST_PSK = new Uint8Array(createHash("sha256").update("zmcp events test psk").digest());

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder({ maxStrLength: 16 << 20, maxBinLength: 16 << 20, maxArrayLength: 1 << 20, maxMapLength: 1 << 20, maxExtLength: 0 });

export class PskSealer implements EventSealer {
  readonly #key: Uint8Array;
  readonly #epoch: number;

  constructor(
    readonly context: EventKeyContext,
    private readonly options: PskOptions = {},
  ) {
    this.#key = options.key ?? TEST_PSK;
    this.#epoch = options.epoch ?? 0;
  }

  seal(topic: string, header: Uint8Array, data: unknown): Promise<Uint8Array> {
    this.options.calls?.push(`seal ${topic}`);
    const plaintext = encoder.encode({ h: sha512(header), p: this.context.publicKey, e: this.#epoch, d: data });
    return Promise.resolve(sealWith(this.#key, plaintext));
  }

  open(topic: string, header: Uint8Array, body: Uint8Array, from: string): Promise<OpenedEvent> {
    this.options.calls?.push(`open ${topic} ${from}`);
    let plaintext: Uint8Array;
    try {
      plaintext = openWith(this.#key, body);
    } catch (err) {
      return Promise.reject(err); // ProtocolError(bad_seal): not sealed with the topic key, or altered
    }
    let raw: unknown;
    try {
      checkMsgpack(plaintext, MAX_DEPTH);
      raw = decoder.decode(plaintext);
    } catch (err) {
      return Promise.reject(new ProtocolError("bad_frame", `publication is not msgpack: ${String(err)}`));
    }
    const m = raw as { h?: unknown; p?: unknown; e?: unknown; d?: unknown };
    if (raw === null || typeof raw !== "object" || !(m.h instanceof Uint8Array) || typeof m.p !== "string" || typeof m.e !== "number") {
      return Promise.reject(new ProtocolError("bad_frame", "publication plaintext of the wrong shape"));
    }
    if (!Buffer.from(m.h).equals(sha512(header))) return Promise.reject(new ProtocolError("bad_seal", "header does not match the sealed digest (tampered in transit)"));
    return Promise.resolve({ data: m.d, publisher: m.p, epoch: m.e });
  }

  join(pattern: string): Promise<void> {
    this.options.calls?.push(`join ${pattern}`);
    const refusal = this.options.refuseJoin?.(pattern);
    return refusal ? Promise.reject(refusal) : Promise.resolve();
  }

  leave(pattern: string): void {
    this.options.calls?.push(`leave ${pattern}`);
  }

  close(): void {
    this.options.calls?.push("close");
  }
}

/** The `events` option for a test agent: a PSK sealer per agent. */
export function pskEvents(options: PskOptions = {}): EventSealerFactory {
  return (context) => new PskSealer(context, options);
}

function sha512(data: Uint8Array): Buffer {
  return createHash("sha512").update(data).digest();
}
