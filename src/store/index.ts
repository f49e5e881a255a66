/**
 * Opening a durable store from its URL (`zmq-broker --store redis://...`). One engine today:
 * Redis (redis.ts); the scheme picks the engine, so another can be added beside it.
 */
import { ConfigError } from "../errors.js";
import type { Logger } from "../support/log.js";
import { RedisStore } from "./redis.js";
import type { DurableStore, StoreLimits } from "./store.js";

export type { DurableStore, StoreLimits, StoredMessage, ClaimedMessage, PutOutcome } from "./store.js";
export { DEFAULT_STORE_LIMITS, resolveStoreLimits } from "./store.js";
export { RedisStore, StoreUnavailableError } from "./redis.js";

/** Default longest time a message is stored, whatever its exp: a day, ms. */
export const DEFAULT_MAX_RETENTION_MS = 24 * 60 * 60 * 1000;

export function openStore(url: string, log: Logger, limits: Partial<StoreLimits> = {}): DurableStore {
  if (/^rediss?:\/\//.test(url)) return new RedisStore(url, { log, limits });
  throw new ConfigError(`store ${JSON.stringify(url)}: unknown engine (expected redis://host:port)`);
}
