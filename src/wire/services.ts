/**
 * Services: many replicas, one name.
 *
 * A service is a curve key pair shared by its replicas (the certificate the operator files as
 * `svc-NAME.key`). Callers seal to the service's public key and address `svc:NAME`; the
 * broker hands the message to a live replica, which opens it with the service's secret key.
 * So payloads stay end to end sealed although the caller does not know which replica answers.
 *
 * Replicas announce themselves in heartbeats to the broker, each with a proof that they hold
 * the service's secret key: a box from the service key to the broker's key over the replica's
 * own key and a timestamp. The broker admits the announcement only if that box opens with the
 * service public key it trusts (from its allowlist directory) and is fresh, and it binds to
 * the replica's CURVE-authenticated key so it cannot be replayed by another agent.
 *
 * The broker's directory is soft state: rebuilt from the next heartbeats after a restart, and
 * a replica that stops heartbeating (or whose connection is gone) leaves it.
 */
import { Decoder } from "@msgpack/msgpack";
import { z } from "zod";
import { openWith, sealWith } from "./seal.js";
import { isPattern, MAX_PATTERNS_PER_AGENT } from "../events/topics.js";
import { isZ85Key } from "./z85.js";

export const SERVICE_PREFIX = "svc:";
/** Default interval between heartbeats, ms. */
export const DEFAULT_HEARTBEAT_MS = 1000;
/** A replica not heard from for this long leaves the directory, ms (3 missed heartbeats). */
export const DEFAULT_REPLICA_TTL_MS = 3000;
/** A proof older or newer than this is refused, ms. */
export const PROOF_WINDOW_MS = 30_000;

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function isServiceName(name: string): boolean {
  return NAME.test(name);
}

/** `svc:NAME` or `svc:NAME@REPLICA_KEY` → parts; undefined if `to` is no service address. */
export function parseServiceAddress(to: string): { name: string; replica: string | undefined } | undefined {
  if (!to.startsWith(SERVICE_PREFIX)) return undefined;
  const rest = to.slice(SERVICE_PREFIX.length);
  // A Z85 key may itself hold "@", so the replica part is recognised by its fixed length.
  if (rest.length > 41 && rest[rest.length - 41] === "@" && isZ85Key(rest.slice(-40))) {
    const name = rest.slice(0, -41);
    return isServiceName(name) ? { name, replica: rest.slice(-40) } : undefined;
  }
  return isServiceName(rest) ? { name: rest, replica: undefined } : undefined;
}

export function serviceAddress(name: string, replica?: string): string {
  return `${SERVICE_PREFIX}${name}${replica ? `@${replica}` : ""}`;
}

function proofPlaintext(replicaKey: string, ts: number): Uint8Array {
  return new TextEncoder().encode(`zmcp-service-proof|${replicaKey}|${ts}`);
}

/** The replica's proof: sealed with the shared key of (service secret, broker public). */
export function makeServiceProof(sharedKey: Uint8Array, replicaKey: string, ts: number): Uint8Array {
  return sealWith(sharedKey, proofPlaintext(replicaKey, ts));
}

/** True when `proof` opens with the shared key of (broker secret, service public) and binds `replicaKey` at `ts`. */
export function verifyServiceProof(sharedKey: Uint8Array, proof: Uint8Array, replicaKey: string, ts: number, now: number): boolean {
  if (Math.abs(now - ts) > PROOF_WINDOW_MS) return false;
  try {
    const plain = openWith(sharedKey, proof);
    return Buffer.from(plain).equals(Buffer.from(proofPlaintext(replicaKey, ts)));
  } catch {
    return false;
  }
}

/** The body of a heartbeat (`k: "hb"`): msgpack, not sealed, read by the broker. */
export const HeartbeatSchema = z.strictObject({
  svc: z
    .array(
      z.strictObject({
        name: z.string().regex(NAME),
        /** The service's public key (Z85). */
        key: z.string().length(40),
        ts: z.number(),
        proof: z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.length <= 256),
        /** Requests this replica can take now. */
        free: z.number().int().nonnegative(),
        /**
         * The service is declared durable (docs/DURABLE.md): a broker with a store queues every
         * request to it. Sent only when true, so other heartbeats stay byte for byte as before.
         */
        dur: z.literal(true).optional(),
      }),
    )
    .max(64),
  /**
   * The topic patterns this agent subscribes to (docs/EVENTS.md): the whole set each time, so
   * the broker's subscription directory is soft state rebuilt from heartbeats. Absent when
   * the agent subscribes to nothing (its heartbeat is then byte for byte what it was before).
   */
  sub: z
    .array(z.custom<string>((v) => isPattern(v), { message: "invalid topic pattern" }))
    .max(MAX_PATTERNS_PER_AGENT)
    .optional(),
  /**
   * The patterns among `sub` this agent declares durable (docs/EVENTS.md "Durable
   * subscriptions"): a broker with a store keeps matching publications for it while it cannot
   * take them. Absent when none (older brokers, whose schema is strict, refuse a heartbeat
   * carrying it `bad_frame`: a durable subscription is refused visibly, never silently live-only).
   */
  dsub: z
    .array(z.custom<string>((v) => isPattern(v), { message: "invalid topic pattern" }))
    .max(MAX_PATTERNS_PER_AGENT)
    .optional(),
});
export type Heartbeat = z.infer<typeof HeartbeatSchema>;

/** Decodes a heartbeat body within the caps of HeartbeatSchema (no extension types). */
export const heartbeatDecoder = new Decoder({ maxStrLength: 1024, maxBinLength: 1024, maxArrayLength: MAX_PATTERNS_PER_AGENT, maxMapLength: 16, maxExtLength: 0 });
