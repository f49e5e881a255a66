/**
 * `expose`'s tasks on the 2026-07-28 side: the `io.modelcontextprotocol/tasks` extension
 * (SEP-2663), which `@modelcontextprotocol/server` 2.4.0 does not implement (its 2026 codec
 * only lets `tasks/get` and `tasks/cancel` through when a handler with its own schema is
 * registered). A job tool called by a client that declares the extension answers with a
 * task handle at once; the mesh job runs on, and the client polls `tasks/get`, cancels with
 * `tasks/cancel`.
 *
 * Every task belongs to the caller that created it (its owner: the bearer token's identity on
 * HTTP, the connection on stdio). Another owner's task id is answered exactly like an
 * unknown one (-32602 "Task not found"): a task id is not a capability, and the answer does
 * not tell that the id exists.
 *
 * Bounded: at most `maxTasks` tasks are held, and `maxPerOwner` of one owner (a create past
 * either is refused with -32603, nothing is evicted that a client may still poll: one client
 * cannot take every place), each is dropped `ttlMs` after it was created, and a terminal task
 * keeps its result until then, within byte budgets (`maxResultBytes`, `maxResultBytesPerOwner`:
 * a result past them fails its task with -32603 rather than being held).
 */
import { randomUUID } from "node:crypto";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";

/** The extension's identifier, in client and server capabilities' `extensions`. */
export const TASKS_EXTENSION = "io.modelcontextprotocol/tasks";

/** JSON-RPC codes the extension names. */
export const INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603;
export const MISSING_REQUIRED_CLIENT_CAPABILITY = -32021;

export type TaskStatus = "working" | "input_required" | "completed" | "failed" | "cancelled";

/** The extension's `Task`, with the status-specific payload (its `DetailedTask`). */
export interface DetailedTask {
  taskId: string;
  status: TaskStatus;
  statusMessage?: string;
  createdAt: string;
  lastUpdatedAt: string;
  ttlMs: number | null;
  pollIntervalMs?: number;
  result?: CallToolResult;
  error?: { code: number; message: string; data?: unknown };
}

/** A JSON-RPC error a task method answers with (thrown from handlers: the SDK sends its code, message and data). */
export class TaskProtocolError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = "TaskProtocolError";
  }
}

interface Entry {
  owner: string;
  task: DetailedTask;
  controller: AbortController;
  expires: number;
  /** Bytes of the result held (its JSON), charged to the owner's and the store's budgets. */
  bytes: number;
}

export interface ExtensionTaskStoreOptions {
  /** How long a task is kept after its creation, ms. */
  ttlMs: number;
  /** Tasks held at once, all owners together. Default 10,000. */
  maxTasks?: number;
  /** Tasks held at once for one owner. Default 1,000. */
  maxPerOwner?: number;
  /**
   * Bytes of finished tasks' results held, all owners together (each result counted as its
   * JSON). A result past it fails its task (-32603) instead of being held. Default 256 MiB.
   */
  maxResultBytes?: number;
  /** Bytes of results held for one owner. Default 64 MiB. */
  maxResultBytesPerOwner?: number;
  /** Suggested polling interval, ms. Default 1,000. */
  pollIntervalMs?: number;
  /** The wall clock of the tasks' timestamps (tests). Default Date.now. */
  now?: () => number;
  /**
   * The clock expiry is measured on: monotonic, so that a wall clock that jumps (NTP, a resumed
   * VM, an operator) neither expires running tasks early nor keeps dead ones past their ttl.
   * Default performance.now, or `now` when only that is given (tests that move one clock).
   */
  monotonic?: () => number;
}

export class ExtensionTaskStore {
  readonly #tasks = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #maxPerOwner: number;
  readonly #perOwner = new Map<string, number>();
  readonly #maxBytes: number;
  readonly #maxBytesPerOwner: number;
  readonly #bytesPerOwner = new Map<string, number>();
  #bytes = 0;
  readonly #poll: number;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  #swept = -Infinity;

  constructor(options: ExtensionTaskStoreOptions) {
    this.#ttlMs = options.ttlMs;
    this.#max = options.maxTasks ?? 10_000;
    this.#maxPerOwner = options.maxPerOwner ?? 1000;
    this.#maxBytes = options.maxResultBytes ?? 256 * 1024 * 1024;
    this.#maxBytesPerOwner = options.maxResultBytesPerOwner ?? 64 * 1024 * 1024;
    this.#poll = options.pollIntervalMs ?? 1000;
    this.#now = options.now ?? (() => Date.now());
    this.#monotonic = options.monotonic ?? options.now ?? (() => performance.now());
  }

  get size(): number {
    return this.#tasks.size;
  }

  /** Bytes of results held now (all owners). */
  get resultBytes(): number {
    return this.#bytes;
  }

  /** A new `working` task of `owner`; its signal fires when the task is cancelled (or the store closed). */
  create(owner: string): { task: DetailedTask; signal: AbortSignal } {
    this.#sweep();
    if (this.#tasks.size >= this.#max) throw new TaskProtocolError(INTERNAL_ERROR, `too many tasks held (${this.#max}); try again when some have expired`);
    const owned = this.#perOwner.get(owner) ?? 0;
    if (owned >= this.#maxPerOwner) throw new TaskProtocolError(INTERNAL_ERROR, `too many tasks held for this client (${this.#maxPerOwner}); try again when some have expired`);
    this.#perOwner.set(owner, owned + 1);
    const at = new Date(this.#now()).toISOString();
    const task: DetailedTask = { taskId: randomUUID(), status: "working", createdAt: at, lastUpdatedAt: at, ttlMs: this.#ttlMs, pollIntervalMs: this.#poll };
    const controller = new AbortController();
    this.#tasks.set(task.taskId, { owner, task, controller, expires: this.#monotonic() + this.#ttlMs, bytes: 0 });
    return { task: { ...task }, signal: controller.signal };
  }

  /** The task as `tasks/get` answers it; -32602 for an unknown, expired or another owner's id. */
  get(owner: string, taskId: string): DetailedTask {
    return { ...this.#entry(owner, taskId).task };
  }

  /** Asks a task to stop; the mesh job is cancelled and the task ends `cancelled` (a terminal task stays as it is). */
  cancel(owner: string, taskId: string): void {
    const entry = this.#entry(owner, taskId);
    if (isTerminal(entry.task.status)) return;
    this.#set(entry, { status: "cancelled", statusMessage: "cancelled by the client" });
    entry.controller.abort();
  }

  /** A progress report of a running task, shown as its status message (the extension carries no progress notifications). */
  progress(taskId: string, message: string): void {
    const entry = this.#tasks.get(taskId);
    if (entry && entry.task.status === "working") this.#set(entry, { statusMessage: message });
  }

  /**
   * The tool's answer: `completed` (a tool error included, `isError`); ignored once the task was
   * cancelled. Held until the task expires, within the byte budgets: the count caps alone let
   * one client keep 1,000 results of up to a mesh message each (a review held ~1 GB that way).
   * A result past a budget fails the task with -32603 (the client learns why; nothing else is evicted).
   */
  complete(taskId: string, result: CallToolResult): void {
    const entry = this.#tasks.get(taskId);
    if (!entry || isTerminal(entry.task.status)) return;
    const bytes = Buffer.byteLength(JSON.stringify(result), "utf8");
    if (!this.#fits(entry.owner, bytes)) this.#sweep(true);
    if (!this.#fits(entry.owner, bytes)) {
      const message = `the result (${bytes} bytes) is not held: finished tasks already hold ${this.#bytesPerOwner.get(entry.owner) ?? 0} of ${this.#maxBytesPerOwner} bytes for this client (${this.#bytes} of ${this.#maxBytes} in all); call the tool again when some have expired`;
      this.#set(entry, { status: "failed", statusMessage: message, error: { code: INTERNAL_ERROR, message } });
      return;
    }
    entry.bytes = bytes;
    this.#bytes += bytes;
    this.#bytesPerOwner.set(entry.owner, (this.#bytesPerOwner.get(entry.owner) ?? 0) + bytes);
    this.#set(entry, { status: "completed", result });
  }

  #fits(owner: string, bytes: number): boolean {
    return this.#bytes + bytes <= this.#maxBytes && (this.#bytesPerOwner.get(owner) ?? 0) + bytes <= this.#maxBytesPerOwner;
  }

  /** No answer could be had (a JSON-RPC error): `failed`, with the error. */
  fail(taskId: string, error: { code: number; message: string; data?: unknown }): void {
    const entry = this.#tasks.get(taskId);
    if (entry && !isTerminal(entry.task.status)) this.#set(entry, { status: "failed", statusMessage: error.message, error });
  }

  /** Aborts every running task and forgets them all. */
  close(): void {
    for (const entry of this.#tasks.values()) entry.controller.abort();
    this.#tasks.clear();
    this.#perOwner.clear();
    this.#bytesPerOwner.clear();
    this.#bytes = 0;
  }

  #entry(owner: string, taskId: string): Entry {
    this.#sweep();
    const entry = this.#tasks.get(taskId);
    // Another owner's task is not found either: the same answer, so an id tells nothing.
    if (!entry || entry.owner !== owner || entry.expires <= this.#monotonic()) throw new TaskProtocolError(INVALID_PARAMS, "Failed to retrieve task: Task not found");
    return entry;
  }

  #set(entry: Entry, change: Partial<DetailedTask>): void {
    entry.task = { ...entry.task, ...change, lastUpdatedAt: new Date(this.#now()).toISOString() };
  }

  #atOwnerCap(): boolean {
    for (const n of this.#perOwner.values()) if (n >= this.#maxPerOwner) return true;
    return false;
  }

  /** Drops expired tasks (a running one is aborted: nobody can ask for its result any more); at most once a second unless `force`. */
  #sweep(force = false): void {
    const now = this.#monotonic();
    if (!force && now - this.#swept < 1000 && this.#tasks.size < this.#max && !this.#atOwnerCap()) return;
    this.#swept = now;
    for (const [id, entry] of this.#tasks) {
      if (entry.expires > now) continue;
      entry.controller.abort();
      this.#tasks.delete(id);
      const owned = (this.#perOwner.get(entry.owner) ?? 1) - 1;
      if (owned > 0) this.#perOwner.set(entry.owner, owned);
      else this.#perOwner.delete(entry.owner);
      if (entry.bytes > 0) {
        this.#bytes -= entry.bytes;
        const held = (this.#bytesPerOwner.get(entry.owner) ?? 0) - entry.bytes;
        if (held > 0) this.#bytesPerOwner.set(entry.owner, held);
        else this.#bytesPerOwner.delete(entry.owner);
      }
    }
  }
}

function isTerminal(status: TaskStatus): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}
