/**
 * A durable service queue holds one entry per request id: a request enqueued twice with the same
 * id (a retry, or a sender reusing ids) is stored once, and done() retires it. Before, the second
 * entry took over the id's mapping: done() could never remove the first, which was handed out
 * again after every visibility timeout until its exp (found by a review, on a real redis-server).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RedisStore } from "../../src/store/redis.js";
import { silentLogger } from "../../src/support/log.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";
import { sleep } from "../support/wait.js";

describe.skipIf(!redisAvailable)("durable service queue: one entry per request id", () => {
  let redis: RedisFixture;
  let store: RedisStore;
  beforeEach(async () => {
    redis = await startRedis();
    store = new RedisStore(redis.url, { log: silentLogger });
    expect(await store.whenAvailable(5000)).toBe(true);
  });
  afterEach(async () => {
    await store.close();
    await redis.dispose();
  });

  const message = (requestId: string) => ({ from: "S".repeat(40), header: Buffer.from("h"), body: Buffer.from("b"), exp: Date.now() + 60_000, requestId });

  it("enqueued twice, stored once; done() retires it and nothing is handed out again", async () => {
    expect(await store.enqueue("svc1", message("aa"))).toBe("stored");
    expect(await store.enqueue("svc1", message("aa"))).toBe("stored");
    expect(await store.take("svc1", 10, 100)).toHaveLength(1);
    expect(await store.done("svc1", "aa")).toBe(true);
    await sleep(250); // past the visibility timeout: an orphaned entry would be handed out again
    expect(await store.take("svc1", 10, 100)).toEqual([]);
  });

  it("two different ids are two entries", async () => {
    expect(await store.enqueue("svc1", message("aa"))).toBe("stored");
    expect(await store.enqueue("svc1", message("bb"))).toBe("stored");
    expect(await store.take("svc1", 10, 100)).toHaveLength(2);
  });
});
