/** examples/durable.ts runs against a real redis-server: bob receives what alice sent while he was down. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { built } from "../support/process.js";
import { redisAvailable, startRedis, type RedisFixture } from "../support/redis.js";

const run = promisify(execFile);

describe.skipIf(!redisAvailable)("examples/durable", () => {
  let redis: RedisFixture;
  beforeEach(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await redis.dispose();
  });

  it("an agent receives a message sent while it was down", async () => {
    const { stdout } = await run(process.execPath, [built("examples/durable.js"), "--store", redis.url, "--down-ms", "1500"], { timeout: 30_000 });
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^stored for bob \(offline\)$/);
    expect(lines).toContain("bob received: sent while you were down (from alice)");
    expect(lines.at(-1)).toBe('alice got: {"reply":"hello alice"}');
  }, 40_000);
});
