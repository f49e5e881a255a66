/**
 * What a member and the key distributor say to each other: the `events/key` tool's arguments
 * and answer. They travel inside an ordinary sealed call (the caller's capability token with
 * it), so the broker sees neither the keys nor which topic was asked for.
 */
import { z } from "zod";
import { MAX_TOPIC_CHARS } from "./topics.js";
import { MAX_CREDENTIAL_BYTES } from "./format.js";
import { SIGN_PUBLIC_BYTES } from "./signing.js";

/** The distributor's tool. */
export const EVENT_KEY_TOOL = "events/key";

const epochNumber = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const bytes = (n: number) => z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.length === n, { message: `must be ${n} bytes` });

export const KeyRequestSchema = z.strictObject({
  /** A topic; for `sub` also a pattern, which asks only whether the caller may subscribe to it (no key). */
  topic: z.string().min(1).max(MAX_TOPIC_CHARS),
  /** `sub`: the key, to open; `pub`: the key and a credential, to publish (needs `signer`). */
  access: z.enum(["sub", "pub"]),
  /** The epoch wanted (a publication named it); default the current one. */
  epoch: epochNumber.optional(),
  /** The caller's Ed25519 public key, for the credential (`pub`). */
  signer: bytes(SIGN_PUBLIC_BYTES).optional(),
  /** Publications the caller sealed in the current epoch since it last said (`pub`): count-based rotation. */
  sealed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});
export type KeyRequest = z.infer<typeof KeyRequestSchema>;

export const KeyAnswerSchema = z.strictObject({
  topic: z.string().min(1).max(MAX_TOPIC_CHARS),
  /** The distributor's current epoch. */
  current: epochNumber,
  /** Ask again by then (ms since the epoch): the end of this lease, or of the epoch's grace. */
  until: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** `until` less the distributor's now, ms: the lease's length, which the member counts on its own clock. */
  ttl: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** The epoch of `key` (absent for a pattern). */
  epoch: epochNumber.optional(),
  /** The topic's key in `epoch` (XSalsa20-Poly1305, 32 bytes). */
  key: bytes(32).optional(),
  /** The distributor's Ed25519 public key: credentials of `epoch` are signed with it. */
  signer: bytes(SIGN_PUBLIC_BYTES),
  /** `pub`: the caller's credential for `topic` in `epoch`. */
  credential: z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.length <= MAX_CREDENTIAL_BYTES, { message: `must be bytes, at most ${MAX_CREDENTIAL_BYTES}` }).optional(),
  /** `pub`: say how many were sealed (field `sealed`) once this many are (count-based rotation). */
  maxMessages: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});
export type KeyAnswer = z.infer<typeof KeyAnswerSchema>;
