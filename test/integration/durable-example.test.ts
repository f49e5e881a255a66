/** examples/durable.ts runs against a real redis-server: bob receives what alice sent while he was down. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { tempCerts } from "../support/certs.js";
import { BIN, built, spawnChild, startBrokerProcess } from "../support/process.js";
import { waitFor } from "../support/wait.js";
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

  it("zmq-call --durable: stored while bob is down (said on stderr), answered once he starts", async () => {
    const fx = tempCerts("alice", "bob");
    const broker = await startBrokerProcess(fx, { args: ["--store", redis.url] });
    let bob: Awaited<ReturnType<typeof spawnChild>> | undefined;
    try {
      const call = spawn(process.execPath, [BIN("zmq-call"), "--broker", broker.endpoint, "--cert", fx.secretPath("alice"), "--certs", fx.dir, "--to", "bob", "--durable", "--timeout", "30000", "batch_sum", '{"numbers":[4,5]}'], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      call.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
      call.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => call.once("exit", (code) => resolve(code)));
      await waitFor(() => stderr.includes("stored by the broker"), 10_000, "the stored line");
      bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", fx.secretPath("bob"), "--certs", fx.dir], "agent ready");
      expect(await exited).toBe(0);
      expect(JSON.parse(stdout)).toEqual({ count: 2, total: 9 });
    } finally {
      await bob?.stop();
      await broker.stop();
      fx.cleanup();
    }
  }, 40_000);
});
