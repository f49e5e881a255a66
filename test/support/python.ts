/**
 * Debian's Python for the interop tests (python/zmcp against the TypeScript mesh): where it is,
 * the interop peer script, and why the tests must be skipped when its packages are missing.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "./process.js";

export const PYTHON = "/usr/bin/python3";
export const PYTHON_PEER = join(ROOT, "python", "tests", "interop_peer.py");

/** Why the Python interop tests cannot run here, or undefined when they can (warned once per file). */
export function pythonProblem(suite: string): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import zmq, nacl.bindings, nacl.signing, msgpack; assert zmq.has('curve')"], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    const problem = `${PYTHON} lacks pyzmq (with CURVE), PyNaCl or msgpack: ${(err as Error).message.split("\n")[0]}`;
    console.warn(`${suite} skipped: ${problem} (apt-get install python3-zmq python3-nacl python3-msgpack)`);
    return problem;
  }
}
