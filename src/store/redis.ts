/**
 * The durable store on Redis Streams (store.ts's interface).
 *
 * Layout, per recipient R (hex of its 32-byte key, in a hash tag so that a recipient's keys
 * share one Cluster slot):
 * - `zmcp:{R}:q`   a stream, one entry per stored message: f (sender key), h (header bytes),
 *                  b (sealed body), e (exp, ms), s (size) — the broker's bytes, nothing opened;
 * - `zmcp:{R}:m`   a hash: bytes stored for R, the latest exp stored (maxexp);
 * - `zmcp:{R}:lease` the delivery lease: which broker delivers to R now (SET NX PX);
 * and for the whole store `zmcp:total` (count, bytes), `zmcp:senders` (per sender key S: `c:S`,
 * `b:S`, its messages and bytes in all) and `zmcp:due` (R → its maxexp), which the sweep reads
 * to delete recipients whose every message has expired. A sender's count for one recipient
 * lives in that recipient's `m` hash (`c:S`, `b:S`; for a service queue, in its `ids` hash), so
 * it shares the recipient's Cluster slot.
 *
 * Every change is one Lua script, so bounds and counters stay exact with many brokers. Keys
 * also carry a Redis expiry a day past their last exp: if no broker runs to sweep, nothing is
 * kept forever all the same.
 *
 * The client is ioredis with the offline queue off and a command timeout: while Redis is
 * unreachable a durable send fails at once (`unavailable`) instead of waiting, and ioredis
 * reconnects with the backoff of {@link retryDelay}; the outage is logged once.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { ConfigError, ZmcpError } from "../errors.js";
import type { Logger } from "../support/log.js";
import { z85Decode } from "../wire/z85.js";
import { resolveStoreLimits, type ClaimedMessage, type DurableStore, type PutOutcome, type StoredMessage, type StoreLimits } from "./store.js";

/** The store cannot be reached (or failed): durable sends are refused `unavailable`. */
export class StoreUnavailableError extends ZmcpError {
  override name = "StoreUnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("unavailable", message, options);
  }
}

/** Keys outlive their last exp by this much (a safety net under the sweep), ms. */
const SAFETY_MS = 24 * 60 * 60 * 1000;
/** A delivery lease lasts this long unless renewed by the next batch, ms. */
const LEASE_MS = 10_000;

/**
 * Shared by the scripts: a sender's counters, in the recipient's hash (`local`) and in
 * `zmcp:senders` (`all`). A counter that reaches 0 is deleted, so the hashes hold only senders
 * with something stored (and counters from before the fields existed heal instead of drifting).
 */
const SENDERS = `
local function senderFull(loc, all, who, size, lc, lb, ac, ab)
  if tonumber(redis.call('HGET', loc, 'c:' .. who) or '0') + 1 > tonumber(lc) then return true end
  if tonumber(redis.call('HGET', loc, 'b:' .. who) or '0') + size > tonumber(lb) then return true end
  if tonumber(redis.call('HGET', all, 'c:' .. who) or '0') + 1 > tonumber(ac) then return true end
  if tonumber(redis.call('HGET', all, 'b:' .. who) or '0') + size > tonumber(ab) then return true end
  return false
end
local function senderAdd(hash, who, n, size)
  if redis.call('HINCRBY', hash, 'c:' .. who, n) <= 0 then
    redis.call('HDEL', hash, 'c:' .. who, 'b:' .. who)
  else
    redis.call('HINCRBY', hash, 'b:' .. who, size)
  end
end
local function senderGone(loc, all, who, size)
  senderAdd(loc, who, -1, -size)
  senderAdd(all, who, -1, -size)
end
`;

const PUT = SENDERS + `
local n = redis.call('XLEN', KEYS[1])
if ARGV[10] == '1' and n == 0 then return 'live' end
local size = tonumber(ARGV[5])
if n + 1 > tonumber(ARGV[6]) then return 'full' end
if tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0') + size > tonumber(ARGV[7]) then return 'full' end
if tonumber(redis.call('HGET', KEYS[3], 'count') or '0') + 1 > tonumber(ARGV[8]) then return 'full' end
if tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0') + size > tonumber(ARGV[9]) then return 'full' end
if senderFull(KEYS[2], KEYS[5], ARGV[1], size, ARGV[13], ARGV[14], ARGV[15], ARGV[16]) then return 'quota' end
redis.call('XADD', KEYS[1], '*', 'f', ARGV[1], 'h', ARGV[2], 'b', ARGV[3], 'e', ARGV[4], 's', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'bytes', size)
redis.call('HINCRBY', KEYS[3], 'count', 1)
redis.call('HINCRBY', KEYS[3], 'bytes', size)
senderAdd(KEYS[2], ARGV[1], 1, size)
senderAdd(KEYS[5], ARGV[1], 1, size)
local exp = tonumber(ARGV[4])
if exp > tonumber(redis.call('HGET', KEYS[2], 'maxexp') or '0') then
  redis.call('HSET', KEYS[2], 'maxexp', ARGV[4])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[11])
  redis.call('PEXPIREAT', KEYS[1], ARGV[12])
  redis.call('PEXPIREAT', KEYS[2], ARGV[12])
end
if exp > tonumber(redis.call('HGET', KEYS[3], 'maxexp') or '0') then
  redis.call('HSET', KEYS[3], 'maxexp', ARGV[4])
  redis.call('PEXPIREAT', KEYS[3], ARGV[12])
end
return 'stored'
`;

/**
 * Deletes entries (ARGV 3.. in threes: id, size, sender) and fixes the counters; only what XDEL
 * really removed counts (twice-safe).
 */
const FORGET = SENDERS + `
local gone = 0
for i = 3, #ARGV, 3 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    local s = tonumber(ARGV[i + 1])
    redis.call('HINCRBY', KEYS[2], 'bytes', -s)
    redis.call('HINCRBY', KEYS[3], 'count', -1)
    redis.call('HINCRBY', KEYS[3], 'bytes', -s)
    senderGone(KEYS[2], KEYS[5], ARGV[i + 2], s)
    gone = gone + 1
  end
end
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return gone
`;

/** Lease, then the oldest entries; expired ones are deleted on the way. Returns {-1} if leased elsewhere. */
const CLAIM = SENDERS + `
if redis.call('XLEN', KEYS[1]) == 0 then return {0} end
local holder = redis.call('GET', KEYS[5])
if holder and holder ~= ARGV[1] then return {-1} end
redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[2])
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[3])
local now = tonumber(ARGV[4])
local out = {}
local expired = 0
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if tonumber(f['e']) < now then
    redis.call('XDEL', KEYS[1], e[1])
    local s = tonumber(f['s'])
    redis.call('HINCRBY', KEYS[2], 'bytes', -s)
    redis.call('HINCRBY', KEYS[3], 'count', -1)
    redis.call('HINCRBY', KEYS[3], 'bytes', -s)
    senderGone(KEYS[2], KEYS[6], f['f'], s)
    expired = expired + 1
  else
    table.insert(out, {e[1], f['f'], f['h'], f['b'], f['e'], f['s']})
  end
end
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[4], ARGV[5])
end
return {1, expired, out}
`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** A recipient all of whose messages are past their exp: everything goes. */
const PURGE = SENDERS + `
if tonumber(redis.call('HGET', KEYS[2], 'maxexp') or '0') >= tonumber(ARGV[2]) then return 0 end
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
local bytes = 0
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  bytes = bytes + tonumber(f['s'])
  senderAdd(KEYS[5], f['f'], -1, -tonumber(f['s']))
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HINCRBY', KEYS[3], 'count', -#entries)
redis.call('HINCRBY', KEYS[3], 'bytes', -bytes)
redis.call('ZREM', KEYS[4], ARGV[1])
return #entries
`;

/** A service queue: the stream, its consumer group made with it (from id 0, so nothing is skipped). */
const ENQUEUE = SENDERS + `
-- A request id already queued (a retry, or a sender reusing ids): stored once. A second entry
-- would take over the id's mapping, so done() could never retire the first, handed out again
-- after every visibility timeout until its exp.
if redis.call('HEXISTS', KEYS[2], ARGV[9]) == 1 then return 'stored' end
if redis.call('XLEN', KEYS[1]) + 1 > tonumber(ARGV[6]) then return 'full' end
local size = tonumber(ARGV[5])
if tonumber(redis.call('HGET', KEYS[3], 'count') or '0') + 1 > tonumber(ARGV[7]) then return 'full' end
if tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0') + size > tonumber(ARGV[8]) then return 'full' end
if senderFull(KEYS[2], KEYS[5], ARGV[1], size, ARGV[12], ARGV[13], ARGV[14], ARGV[15]) then return 'quota' end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[1], 'replicas', '0', 'MKSTREAM') end
local id = redis.call('XADD', KEYS[1], '*', 'f', ARGV[1], 'h', ARGV[2], 'b', ARGV[3], 'e', ARGV[4], 's', ARGV[5], 'i', ARGV[9])
redis.call('HSET', KEYS[2], ARGV[9], id .. '|' .. ARGV[5] .. '|' .. ARGV[1])
redis.call('HINCRBY', KEYS[3], 'count', 1)
redis.call('HINCRBY', KEYS[3], 'bytes', size)
senderAdd(KEYS[2], ARGV[1], 1, size)
senderAdd(KEYS[5], ARGV[1], 1, size)
redis.call('PEXPIREAT', KEYS[1], ARGV[10])
redis.call('PEXPIREAT', KEYS[2], ARGV[10])
redis.call('SADD', KEYS[4], ARGV[11])
return 'stored'
`;

/** Requests to dispatch: those idle past the visibility timeout (XAUTOCLAIM), then new ones (XREADGROUP). */
const TAKE = SENDERS + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, {}} end
local max = tonumber(ARGV[2])
local entries = {}
local claimed = redis.call('XAUTOCLAIM', KEYS[1], 'replicas', ARGV[1], ARGV[3], '0-0', 'COUNT', max)
for _, e in ipairs(claimed[2]) do if e then table.insert(entries, e) end end
if #entries < max then
  local fresh = redis.call('XREADGROUP', 'GROUP', 'replicas', ARGV[1], 'COUNT', max - #entries, 'STREAMS', KEYS[1], '>')
  if fresh then for _, e in ipairs(fresh[1][2]) do table.insert(entries, e) end end
end
local now = tonumber(ARGV[4])
local out = {}
local expired = 0
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if tonumber(f['e']) < now then
    redis.call('XACK', KEYS[1], 'replicas', e[1])
    if redis.call('XDEL', KEYS[1], e[1]) == 1 then
      redis.call('HINCRBY', KEYS[3], 'count', -1)
      redis.call('HINCRBY', KEYS[3], 'bytes', -tonumber(f['s']))
      senderGone(KEYS[2], KEYS[4], f['f'], tonumber(f['s']))
    end
    redis.call('HDEL', KEYS[2], f['i'])
    expired = expired + 1
  else
    table.insert(out, {e[1], f['f'], f['h'], f['b'], f['e']})
  end
end
return {expired, out}
`;

const DONE = SENDERS + `
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then return 0 end
local id, size, who = string.match(v, '([^|]+)|(%d+)|?(.*)')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('XACK', KEYS[1], 'replicas', id)
if redis.call('XDEL', KEYS[1], id) == 1 then
  redis.call('HINCRBY', KEYS[3], 'count', -1)
  redis.call('HINCRBY', KEYS[3], 'bytes', -tonumber(size))
  if who ~= '' then senderGone(KEYS[2], KEYS[4], who, tonumber(size)) end
end
return 1
`;

type ScriptReply = Array<Buffer | number | ScriptReply>;

interface Scripted {
  zmcpPut(...args: Array<string | Buffer | number>): Promise<Buffer>;
  zmcpForgetBuffer(...args: Array<string | Buffer | number>): Promise<number>;
  zmcpClaimBuffer(...args: Array<string | Buffer | number>): Promise<ScriptReply>;
  zmcpRelease(...args: Array<string | Buffer | number>): Promise<number>;
  zmcpPurge(...args: Array<string | Buffer | number>): Promise<number>;
  zmcpEnqueue(...args: Array<string | Buffer | number>): Promise<string>;
  zmcpTakeBuffer(...args: Array<string | Buffer | number>): Promise<ScriptReply>;
  zmcpDone(...args: Array<string | Buffer | number>): Promise<number>;
}

/** Reconnection backoff: 100 ms doubling to 5 s, jittered. */
export function retryDelay(attempt: number): number {
  return Math.round(Math.min(5000, 100 * 2 ** Math.min(attempt, 10)) * (0.5 + Math.random() / 2));
}

export interface RedisStoreOptions {
  limits?: Partial<StoreLimits>;
  log: Logger;
  /** Longest a command may take before the send is refused `unavailable`, ms. Default 2,000. */
  commandTimeout?: number;
}

export class RedisStore implements DurableStore {
  readonly #redis: Redis & Scripted;
  readonly #limits: StoreLimits;
  readonly #log: Logger;
  /** This process's lease token: random, so two brokers never mistake each other's lease. */
  readonly #owner = randomBytes(12).toString("hex");
  #up = false;
  #downLogged = false;
  #everUp = false;
  #closed = false;
  expired = 0;

  constructor(url: string, options: RedisStoreOptions) {
    if (!/^rediss?:\/\//.test(url)) throw new ConfigError(`store ${JSON.stringify(url)}: expected redis://host:port (or rediss://)`);
    this.#limits = resolveStoreLimits(options.limits);
    for (const [name, value] of Object.entries(this.#limits)) {
      if (!Number.isInteger(value) || value < 1) throw new ConfigError(`store limit ${name} must be a positive integer`);
    }
    this.#log = options.log;
    this.#redis = new Redis(url, {
      enableOfflineQueue: false, // while down: fail at once, never queue durable sends unseen
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeout ?? 2000,
      retryStrategy: retryDelay,
      connectionName: "zmcp-broker",
    }) as Redis & Scripted;
    this.#redis.defineCommand("zmcpPut", { numberOfKeys: 5, lua: PUT });
    this.#redis.defineCommand("zmcpForget", { numberOfKeys: 5, lua: FORGET });
    this.#redis.defineCommand("zmcpClaim", { numberOfKeys: 6, lua: CLAIM });
    this.#redis.defineCommand("zmcpRelease", { numberOfKeys: 1, lua: RELEASE });
    this.#redis.defineCommand("zmcpPurge", { numberOfKeys: 5, lua: PURGE });
    this.#redis.defineCommand("zmcpEnqueue", { numberOfKeys: 5, lua: ENQUEUE });
    this.#redis.defineCommand("zmcpTake", { numberOfKeys: 4, lua: TAKE });
    this.#redis.defineCommand("zmcpDone", { numberOfKeys: 4, lua: DONE });
    this.#redis.on("ready", () => {
      this.#up = true;
      if (this.#downLogged) this.#log.info("durable store reachable again", { store: redact(url) });
      else if (!this.#everUp) this.#log.info("durable store connected", { store: redact(url) });
      this.#everUp = true;
      this.#downLogged = false;
    });
    // ioredis emits `error` for every failed reconnect: one line per outage, not per attempt.
    this.#redis.on("error", (err: Error) => this.#outage(url, err.message));
    this.#redis.on("close", () => {
      this.#up = false;
      this.#outage(url, "connection closed");
    });
  }

  #outage(url: string, reason: string): void {
    if (this.#downLogged || this.#closed) return;
    this.#downLogged = true;
    this.#log.warn("durable store unreachable; durable sends are refused `unavailable` until it is back (reconnecting with backoff)", { store: redact(url), error: reason });
  }

  get available(): boolean {
    return this.#up && this.#redis.status === "ready";
  }

  whenAvailable(timeoutMs: number): Promise<boolean> {
    if (this.available) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#redis.off("ready", onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#redis.on("ready", onReady);
    });
  }

  async put(recipient: string, message: StoredMessage, onlyIfBacklog: boolean): Promise<PutOutcome> {
    const tag = recipientTag(recipient);
    const size = message.header.length + message.body.length;
    const l = this.#limits;
    const reply = await this.#run(() =>
      this.#redis.zmcpPut(
        ...keys(tag, "q", "m"), "zmcp:total", "zmcp:due", SENDERS_KEY,
        message.from, message.header, message.body, String(message.exp), String(size),
        String(l.perRecipientCount), String(l.perRecipientBytes), String(l.totalCount), String(l.totalBytes),
        onlyIfBacklog ? "1" : "0", tag, String(message.exp + SAFETY_MS), ...senderLimits(l),
      ),
    );
    return String(reply) as PutOutcome;
  }

  async claim(recipient: string, max: number): Promise<ClaimedMessage[] | undefined> {
    const tag = recipientTag(recipient);
    const reply = await this.#run(() =>
      this.#redis.zmcpClaimBuffer(...keys(tag, "q", "m"), "zmcp:total", "zmcp:due", `zmcp:{${tag}}:lease`, SENDERS_KEY, this.#owner, String(LEASE_MS), String(max), String(Date.now()), tag),
    );
    if (reply[0] !== 1) return undefined;
    this.expired += Number(reply[1]);
    return (reply[2] as Buffer[][]).map((e) => ({
      id: e[0]!.toString("latin1"),
      from: e[1]!.toString("latin1"),
      header: e[2]!,
      body: e[3]!,
      exp: Number(e[4]!.toString("latin1")),
    }));
  }

  async delivered(recipient: string, messages: readonly ClaimedMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const tag = recipientTag(recipient);
    const args = messages.flatMap((m) => [m.id, String(m.header.length + m.body.length), m.from]);
    await this.#run(() => this.#redis.zmcpForgetBuffer(...keys(tag, "q", "m"), "zmcp:total", "zmcp:due", SENDERS_KEY, tag, "", ...args));
  }

  async release(recipient: string): Promise<void> {
    await this.#run(() => this.#redis.zmcpRelease(`zmcp:{${recipientTag(recipient)}}:lease`, this.#owner));
  }

  async enqueue(service: string, message: StoredMessage & { requestId: string }): Promise<PutOutcome> {
    const size = message.header.length + message.body.length;
    const l = this.#limits;
    const reply = await this.#run(() =>
      this.#redis.zmcpEnqueue(
        ...serviceKeys(service), "zmcp:total", "zmcp:services", SENDERS_KEY,
        message.from, message.header, message.body, String(message.exp), String(size),
        String(l.perRecipientCount), String(l.totalCount), String(l.totalBytes), message.requestId, String(message.exp + SAFETY_MS), service,
        ...senderLimits(l),
      ),
    );
    return String(reply) as PutOutcome;
  }

  async take(service: string, max: number, visibilityMs: number): Promise<ClaimedMessage[]> {
    const reply = await this.#run(() => this.#redis.zmcpTakeBuffer(...serviceKeys(service), "zmcp:total", SENDERS_KEY, this.#owner, String(max), String(visibilityMs), String(Date.now())));
    this.expired += Number(reply[0]);
    return ((reply[1] ?? []) as Buffer[][]).map((e) => ({
      id: e[0]!.toString("latin1"),
      from: e[1]!.toString("latin1"),
      header: e[2]!,
      body: e[3]!,
      exp: Number(e[4]!.toString("latin1")),
    }));
  }

  async done(service: string, requestId: string): Promise<boolean> {
    return (await this.#run(() => this.#redis.zmcpDone(...serviceKeys(service), "zmcp:total", SENDERS_KEY, requestId))) === 1;
  }

  async queues(): Promise<string[]> {
    return this.#run(() => this.#redis.smembers("zmcp:services"));
  }

  async declare(service: string, until: number): Promise<void> {
    await this.#run(() => this.#redis.zadd("zmcp:declared", String(until), service));
  }

  async declared(): Promise<string[]> {
    const now = String(Date.now());
    await this.#run(() => this.#redis.zremrangebyscore("zmcp:declared", "-inf", `(${now}`));
    return this.#run(() => this.#redis.zrangebyscore("zmcp:declared", now, "+inf"));
  }

  // One sorted set for every durable subscription: member `KEY PATTERN` (neither a Z85 key nor
  // a pattern holds a space), score = until when it lapses. Read whole by every broker every few
  // seconds; bounded by what the brokers admit (MAX_DURABLE_SUBSCRIPTIONS in durable-subscriptions.ts).
  async subscribeDurable(key: string, pattern: string, until: number): Promise<void> {
    await this.#run(() => this.#redis.zadd(DURABLE_SUBS_KEY, String(until), `${key} ${pattern}`));
  }

  async unsubscribeDurable(key: string, pattern: string): Promise<void> {
    await this.#run(() => this.#redis.zrem(DURABLE_SUBS_KEY, `${key} ${pattern}`));
  }

  async durableSubscriptions(max: number): Promise<Array<[string, string]>> {
    const now = String(Date.now());
    await this.#run(() => this.#redis.zremrangebyscore(DURABLE_SUBS_KEY, "-inf", `(${now}`));
    const members = await this.#run(() => this.#redis.zrangebyscore(DURABLE_SUBS_KEY, now, "+inf", "LIMIT", 0, max));
    const out: Array<[string, string]> = [];
    for (const m of members) {
      const space = m.indexOf(" ");
      if (space > 0) out.push([m.slice(0, space), m.slice(space + 1)]);
    }
    return out;
  }

  async sweep(): Promise<number> {
    const now = Date.now();
    const due = await this.#run(() => this.#redis.zrangebyscore("zmcp:due", "-inf", String(now - 1), "LIMIT", 0, 100));
    let gone = 0;
    for (const tag of due) gone += await this.#run(() => this.#redis.zmcpPurge(...keys(tag, "q", "m"), "zmcp:total", "zmcp:due", SENDERS_KEY, tag, String(now)));
    this.expired += gone;
    return gone;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#redis.disconnect(false);
  }

  /** Any failure to reach Redis (or of a script) becomes StoreUnavailableError. */
  async #run<T>(command: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailableError("durable store closed");
    try {
      return await command();
    } catch (err) {
      throw new StoreUnavailableError(`durable store: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Durable subscriptions: a sorted set of `KEY PATTERN` by when each lapses. */
const DURABLE_SUBS_KEY = "zmcp:dsubs";

/** Every sender's messages and bytes stored in all (`c:KEY`, `b:KEY`). */
const SENDERS_KEY = "zmcp:senders";

/** The per-sender bounds, in the order the PUT and ENQUEUE scripts read them. */
function senderLimits(l: StoreLimits): string[] {
  return [l.perSenderRecipientCount, l.perSenderRecipientBytes, l.perSenderCount, l.perSenderBytes].map(String);
}

/** A recipient's Z85 key as hex: Z85 holds `{` and `}`, which Redis would read as a hash tag. */
function recipientTag(recipient: string): string {
  return Buffer.from(z85Decode(recipient)).toString("hex");
}

/** A service's queue keys; service names are `[A-Za-z0-9_.-]`, safe inside a hash tag. */
function serviceKeys(service: string): string[] {
  return [`zmcp:svc:{${service}}:q`, `zmcp:svc:{${service}}:ids`];
}

function keys(tag: string, ...names: string[]): string[] {
  return names.map((n) => `zmcp:{${tag}}:${n}`);
}

/** The URL without its password, for logs. */
function redact(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, "//***@");
}
