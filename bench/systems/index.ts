/**
 * Every benchmarked system, in report order. Adding a system is one entry here (and one file
 * beside this one); a zmcp security step is one entry of `ZMCP_STEPS` in zmcp.ts.
 */
import type { RoleStarter } from "../types.js";
import { mcp } from "./mcp.js";
import { native } from "./native.js";
import { nats } from "./nats.js";
import type { SystemSpec } from "./spec.js";
import { zmcpSystems } from "./zmcp.js";
import { zmqDirectSealed } from "./zmq-direct.js";
import { zmqFloor, zmqFloorCurve } from "./zmq-floor.js";

export const SYSTEMS: readonly SystemSpec[] = [native, zmqFloor, zmqFloorCurve, zmqDirectSealed, ...zmcpSystems, nats, mcp];

/** The ids that ratios are taken against. */
export const NATS_ID = "nats";
export const FLOOR_ID = "zmq-floor";
export const MCP_ID = "mcp";
export const CURVE_ONLY_ID = "zmcp-curve";
/** zmcp over a direct link (issue 12's direct targets). */
export const DIRECT_ID = "zmcp-direct";
/** zmcp with every security step, most complete first: the first that ran is "full security". */
export const FULL_SECURITY_IDS = ["zmcp-token", "zmcp-sealed"];

export function findSystem(id: string): SystemSpec | undefined {
  return SYSTEMS.find((s) => s.id === id);
}

/** The starter of `role` in `system`, for a worker process. */
export function findRole(system: string, role: string): RoleStarter {
  const start = findSystem(system)?.roles[role];
  if (!start) throw new Error(`no role ${role} in system ${system}`);
  return start;
}
