/**
 * JSON Schemas from mesh peers, checked and compiled once per distinct schema.
 *
 * A bridge lists every target again and again (each refresh, each call to an unknown name),
 * and a listing of 400 peers with 40 tools each is 16,000 schemas, nearly all the same as last
 * time. Compiling them each time (Ajv makes and evaluates JavaScript) blocked the event loop
 * for seconds, and Ajv keeps every schema object it compiled, so memory grew with each listing.
 * Here a schema is keyed by the SHA-256 of its canonical JSON (keys sorted, so key order does
 * not make a new entry); the verdict (and the validator) is kept in an LRU map bounded by the
 * schema bytes it holds; one schema larger than `maxSchemaBytes` is refused without compiling.
 * Ajv instances are replaced every {@link GENERATION} compilations so that Ajv's own cache is
 * bounded too, and around any schema that has an `$id` (Ajv would otherwise hand back the
 * first schema compiled with that id: one peer's schema answering for another's).
 */
import { createHash } from "node:crypto";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import type { JsonSchemaType, JsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import { LinkedMap } from "../support/linked-map.js";

/** Default largest schema compiled, bytes of JSON. */
export const DEFAULT_MAX_SCHEMA_BYTES = 64 * 1024;
/** Default bound of the cache, bytes of JSON of the schemas it holds verdicts for. */
export const DEFAULT_SCHEMA_CACHE_BYTES = 8 * 1024 * 1024;
/** Compilations per Ajv instance. */
const GENERATION = 256;
/** Bytes charged per entry besides the schema (key, verdict, map slot). */
const ENTRY_OVERHEAD = 200;

/** `validate` is there when the cache keeps validators (`keepValidators`). */
export type SchemaVerdict = { ok: true; validate?: JsonSchemaValidator<unknown> } | { ok: false; error: string };

export interface SchemaCacheOptions {
  /** Largest schema compiled, bytes of JSON; a larger one is refused. Default 65,536. */
  maxSchemaBytes?: number;
  /** Bound of the cache, bytes of the schemas' JSON (plus a small overhead per entry). Default 8 MiB. */
  maxBytes?: number;
  /**
   * Keep each compiled validator (to check values against it), or only the verdict. A compiled
   * validator takes about ten times its schema's JSON in heap, so a cache that only has to
   * know whether a schema compiles keeps verdicts. Default true.
   */
  keepValidators?: boolean;
}

interface Entry {
  verdict: SchemaVerdict;
  bytes: number;
}

export class SchemaCache {
  readonly maxSchemaBytes: number;
  readonly maxBytes: number;
  readonly #keepValidators: boolean;
  // Linked, not a Map: evicting from the front of a Map walks the holes of earlier evictions (support/linked-map.ts).
  readonly #entries = new LinkedMap<string, Entry>();
  #bytes = 0;
  #compilations = 0;
  #ajv = new AjvJsonSchemaValidator();
  #inGeneration = 0;

  constructor(options: SchemaCacheOptions = {}) {
    this.maxSchemaBytes = options.maxSchemaBytes ?? DEFAULT_MAX_SCHEMA_BYTES;
    this.maxBytes = options.maxBytes ?? DEFAULT_SCHEMA_CACHE_BYTES;
    this.#keepValidators = options.keepValidators ?? true;
    if (!(this.maxSchemaBytes > 0) || !(this.maxBytes >= this.maxSchemaBytes)) {
      throw new RangeError("maxSchemaBytes must be positive and maxBytes at least maxSchemaBytes");
    }
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes charged for the entries held (at most `maxBytes`). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Schemas compiled since this cache was made (a schema seen again is not compiled again while cached). */
  get compilations(): number {
    return this.#compilations;
  }

  /** The verdict on `schema` (a `$schema` member is ignored: the validator is draft-07 and would refuse 2020-12's). */
  check(schema: Record<string, unknown>): SchemaVerdict {
    const { $schema: _ignored, ...rest } = schema;
    let json: string;
    try {
      json = canonicalJson(rest, this.maxSchemaBytes);
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
    const key = createHash("sha256").update(json).digest("base64");
    const hit = this.#entries.get(key);
    if (hit) {
      // Order is recency order.
      this.#entries.moveToEnd(key);
      return hit.verdict;
    }
    const verdict = this.#compile(rest, json);
    // A kept validator is charged as well: about ten times its schema (measured with bench/mcp-list.ts).
    const entry = { verdict, bytes: (this.#keepValidators && verdict.ok ? 10 : 1) * json.length + ENTRY_OVERHEAD };
    this.#entries.set(key, entry);
    this.#bytes += entry.bytes;
    while (this.#bytes > this.maxBytes && this.#entries.size > 0) this.#bytes -= this.#entries.shift()!.bytes;
    return verdict;
  }

  #compile(schema: Record<string, unknown>, json: string): SchemaVerdict {
    // A schema with an `$id` (at any depth) registers it in Ajv: it is compiled alone in a
    // fresh instance, so it can neither be answered by nor answer for another schema's `$id`.
    const hasId = json.includes('"$id"');
    if (this.#inGeneration >= GENERATION || (hasId && this.#inGeneration > 0)) this.#newGeneration();
    this.#inGeneration++;
    this.#compilations++;
    try {
      const validate = this.#ajv.getValidator(schema as JsonSchemaType);
      return this.#keepValidators ? { ok: true, validate } : { ok: true };
    } catch (err) {
      return { ok: false, error: `schema does not compile: ${(err as Error).message}` };
    } finally {
      if (hasId) this.#newGeneration();
    }
  }

  #newGeneration(): void {
    this.#ajv = new AjvJsonSchemaValidator();
    this.#inGeneration = 0;
  }
}

/**
 * JSON with object keys sorted, refused (Error) past `maxBytes` characters. The size is
 * checked first with the native `JSON.stringify`, so a huge schema costs one fast pass.
 */
export function canonicalJson(value: unknown, maxBytes: number): string {
  const raw = JSON.stringify(value);
  if (raw === undefined) throw new Error("schema is not JSON");
  if (raw.length > maxBytes) throw new Error(`schema of ${raw.length} bytes exceeds the limit of ${maxBytes}`);
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    // Null prototype: a member named `__proto__` stays a member.
    const sorted = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}
