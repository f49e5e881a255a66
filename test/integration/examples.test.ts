import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { BIN, built, ROOT, spawnBroker, spawnChild } from "../support/process.js";

const run = promisify(execFile);

it("the quick-start demo creates keys, starts broker and agent processes, and shows calls", async () => {
  const certs = mkdtempSync(join(tmpdir(), "zmcp-demo-"));
  try {
    const { stdout } = await run(process.execPath, [join(ROOT, "dist/examples/demo.js"), "--certs", certs, "--bind", "tcp://127.0.0.1:*", "--exit"], {
      timeout: 30_000,
    });
    expect(stdout).toContain("created development key");
    expect(stdout).toMatch(/batch_sum \[1, 2, 3\.5\] → \{"count":3,"total":6\.5\}/);
    expect(stdout).toContain('"server_id":"bob"');
    expect(stdout).toContain("error invalid_args");
    expect(stdout).toContain("error unknown_tool");
    expect(stdout).toContain("job result (pushed) → {\"payload\":{\"report\":\"ready\"},\"seconds\":2}");
    expect(stdout).toContain("demo done");
    // Second run reuses the keys.
    const again = await run(process.execPath, [join(ROOT, "dist/examples/demo.js"), "--certs", certs, "--bind", "tcp://127.0.0.1:*", "--exit"], { timeout: 30_000 });
    expect(again.stdout).not.toContain("created development key");
  } finally {
    rmSync(certs, { recursive: true, force: true });
  }
});

it("zmq-call reaches the example agent through zmq-broker with keys made by zmq-keygen", async () => {
  const certs = mkdtempSync(join(tmpdir(), "zmcp-call-"));
  const bin = BIN;
  await run(process.execPath, [bin("zmq-keygen"), "cert", "alice", "--dir", certs]);
  await run(process.execPath, [bin("zmq-keygen"), "cert", "bob", "--dir", certs]);
  const broker = await spawnBroker(["--bind", "tcp://127.0.0.1:*", "--key", join(certs, "broker.key_secret"), "--allow", certs]);
  const bob = await spawnChild(built("examples/reference-agent.js"), ["--broker", broker.endpoint, "--cert", join(certs, "bob.key_secret"), "--certs", certs], "agent ready").catch(async (err: unknown) => {
    await broker.stop();
    throw err;
  });
  try {
    const common = ["--broker", broker.endpoint, "--cert", join(certs, "alice.key_secret"), "--certs", certs, "--to", "bob"];
    const ok = await run(process.execPath, [bin("zmq-call"), ...common, "batch_sum", '{"numbers":[1,2,3]}']);
    expect(JSON.parse(ok.stdout)).toEqual({ count: 3, total: 6 });
    const listed = JSON.parse((await run(process.execPath, [bin("zmq-call"), ...common, "--list"])).stdout) as Array<{ name: string }>;
    expect(listed.map((t) => t.name)).toEqual(["server_identity", "batch_sum", "start_long_task", "poll_job"]);
    const job = await run(process.execPath, [bin("zmq-call"), ...common, "start_long_task", '{"seconds":1,"payload":{"k":"v"}}']);
    expect(JSON.parse(job.stdout)).toEqual({ payload: { k: "v" }, seconds: 1 });
    const bad = await run(process.execPath, [bin("zmq-call"), ...common, "batch_sum", '{"numbers":[]}']).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(1);
    expect(JSON.parse((bad as { stderr: string }).stderr)).toMatchObject({ code: "invalid_args" });
    const notJson = await run(process.execPath, [bin("zmq-call"), ...common, "batch_sum", "{oops"]).catch((e: { code: number; stderr: string }) => e);
    expect((notJson as { code: number }).code).toBe(2);
    expect(JSON.parse((notJson as { stderr: string }).stderr)).toMatchObject({ code: "invalid_args" });
  } finally {
    await bob.stop();
    await broker.stop();
    rmSync(certs, { recursive: true, force: true });
  }
});
