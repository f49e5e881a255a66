/**
 * The zod schemas users hand to `agent.tool()`: which ones the SDK can read, and the JSON
 * Schema `tools/list` advertises for them.
 *
 * zod is a peer dependency (`^4`): the SDK validates with the schema's own methods, but derives
 * JSON Schema with zod 4's `z.toJSONSchema`, which reads zod 4 internals (`_zod`). A zod 3
 * schema (the `zod@3` package, or `zod/v3`) has none, so it used to be advertised as a bare
 * `{type: "object"}`: MCP clients and LLMs were told nothing of its fields. It is refused at
 * registration instead, with the fix in the message.
 */
import { z } from "zod";
import { ConfigError } from "../errors.js";

/** The zod versions whose schemas `agent.tool()` accepts (package.json's peer range). */
export const SUPPORTED_ZOD = "^4.0.0 (zod 4 and zod/mini; from zod 3.25, the zod/v4 entry)";

/** Throws ConfigError unless `schema` is a zod 4 schema. `what` names it in the message. */
export function checkZodSchema(schema: unknown, what: string): asserts schema is z.ZodType {
  if (typeof schema !== "object" || schema === null) throw new ConfigError(`${what} must be a zod schema, got ${schema === null ? "null" : typeof schema}`);
  if ("_zod" in schema) return;
  const zod3 = "_def" in schema && typeof (schema as { safeParse?: unknown }).safeParse === "function";
  throw new ConfigError(
    zod3
      ? `${what} is a zod 3 schema; zmcp reads zod ${SUPPORTED_ZOD}: import { z } from "zod" with zod 4 installed (its JSON Schema could not be advertised in tools/list)`
      : `${what} is not a zod schema (zod ${SUPPORTED_ZOD})`,
  );
}

/**
 * JSON Schema of a tool's input (`io: "input"`: what a caller may send, so a field with a
 * `.default()` is optional, and a transform is described by what it accepts) or output
 * (`io: "output"`: what the tool returns). Anything zod cannot express (a custom check, a
 * transform's output) becomes `{}` (any), never an error.
 */
export function toolJsonSchema(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  try {
    return z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<string, unknown>;
  } catch {
    return io === "input" ? { type: "object" } : {};
  }
}
