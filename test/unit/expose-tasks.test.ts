/**
 * The 2026 tasks extension's store (src/mcp/expose-tasks.ts) on a clock the test moves: tasks
 * expire `ttlMs` after creation (a clock that jumps past it finds them gone, and their jobs
 * aborted), the store holds at most `maxTasks`, owners see only their own, and the
 * transitions after a terminal status are ignored.
 */
import { describe, expect, it } from "vitest";
import { ExtensionTaskStore, TaskProtocolError } from "../../src/mcp/expose-tasks.js";

function thrown(f: () => unknown): TaskProtocolError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(TaskProtocolError);
    return err as TaskProtocolError;
  }
  throw new Error("did not throw");
}

describe("ExtensionTaskStore", () => {
  it("a task expires ttlMs after its creation: a jump of the clock past it finds it gone, its job aborted", () => {
    let now = 1_000_000;
    const store = new ExtensionTaskStore({ ttlMs: 60_000, now: () => now });
    const { task, signal } = store.create("a");
    expect(store.get("a", task.taskId)).toMatchObject({ status: "working", ttlMs: 60_000, createdAt: new Date(1_000_000).toISOString() });
    now += 59_999;
    expect(store.get("a", task.taskId).status).toBe("working");
    now += 1;
    expect(thrown(() => store.get("a", task.taskId))).toMatchObject({ code: -32602, message: "Failed to retrieve task: Task not found" });
    // The next sweep drops it and aborts what still ran.
    now += 1000;
    store.create("a");
    expect(signal.aborted).toBe(true);
    expect(store.size).toBe(1);
  });

  it("holds at most maxTasks (a create past it is -32603, nothing evicted); expired ones make room", () => {
    let now = 0;
    const store = new ExtensionTaskStore({ ttlMs: 10_000, maxTasks: 2, now: () => now });
    const first = store.create("a").task;
    store.create("b");
    expect(thrown(() => store.create("c")).code).toBe(-32603);
    expect(store.get("a", first.taskId).status).toBe("working");
    now += 10_000;
    expect(store.create("c").task.status).toBe("working");
    expect(store.size).toBe(1);
  });

  it("one owner holds at most maxPerOwner: another owner still gets places, and expiry gives them back", () => {
    let now = 0;
    const store = new ExtensionTaskStore({ ttlMs: 10_000, maxPerOwner: 2, now: () => now });
    store.create("greedy");
    store.create("greedy");
    expect(thrown(() => store.create("greedy"))).toMatchObject({ code: -32603, message: expect.stringContaining("for this client") });
    expect(store.create("other").task.status).toBe("working");
    now += 10_000;
    expect(store.create("greedy").task.status).toBe("working");
  });

  it("an owner sees only its tasks; a terminal status stays; progress shows while working", () => {
    const store = new ExtensionTaskStore({ ttlMs: 60_000 });
    const { task, signal } = store.create("a");
    expect(thrown(() => store.get("b", task.taskId)).message).toBe(thrown(() => store.get("b", "no-such-id")).message);
    expect(thrown(() => store.cancel("b", task.taskId)).code).toBe(-32602);
    expect(signal.aborted).toBe(false);
    store.progress(task.taskId, "progress 1/2");
    expect(store.get("a", task.taskId).statusMessage).toBe("progress 1/2");
    store.cancel("a", task.taskId);
    expect(signal.aborted).toBe(true);
    store.complete(task.taskId, { content: [] });
    store.fail(task.taskId, { code: -32603, message: "late" });
    expect(store.get("a", task.taskId)).toMatchObject({ status: "cancelled" });
    expect(store.get("a", task.taskId)).not.toHaveProperty("result");
  });
});
