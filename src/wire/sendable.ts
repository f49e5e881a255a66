/**
 * What a sender checks before it seals a value for a peer: the very limits the receiver
 * applies when it decodes (msgpack-guard.ts, envelope.ts), so a value the peer could not read
 * is refused here, at once, with a message saying what was wrong, instead of reaching the
 * peer as a frame it drops (a plain call then times out, a job wedges until `jobLostAfter`).
 *
 * Readable values: null, booleans, strings, numbers, `Uint8Array` (msgpack bin), arrays and
 * objects whose prototype is `Object.prototype` or null, nested at most `maxDepth` containers.
 * Everything else is refused by name: a `Date` (encoded as a msgpack extension, which
 * receivers refuse), a `Map` or `Set` (encoded as `{}`: silently lost), a BigInt (not
 * encodable), functions, symbols, and class instances (whose prototype is lost on the wire).
 * So is a map key `__proto__` (an own property, as JSON.parse makes one), which the receiver's
 * decoder refuses with the whole message, and a string or map key that is not well-formed Unicode (a lone UTF-16 surrogate): msgpack
 * carries UTF-8, which cannot encode one, and a strict receiver (Python, or this SDK since the
 * adversarial review of issue 10) refuses the whole message as `bad_frame`.
 */
import { MAX_DEPTH } from "./envelope.js";

export class UnsendableError extends TypeError {
  constructor(readonly path: string, what: string) {
    super(`${path} ${what}`);
    this.name = "UnsendableError";
  }
}

/**
 * Throws {@link UnsendableError} unless `value` can be read by a peer at `depth` containers
 * below the top of its message (the inner message map is depth 1).
 */
export function checkSendable(value: unknown, path: string, depth: number, maxDepth = MAX_DEPTH): void {
  // Iterative, so that a value nested far deeper than the stack allows is refused, not a RangeError.
  const stack: Array<[unknown, string, number]> = [[value, path, depth]];
  while (stack.length > 0) {
    const [v, at, d] = stack.pop()!;
    switch (typeof v) {
      case "string":
        if (!isWellFormed(v)) throw new UnsendableError(at, "is a string that is not well-formed Unicode (a lone surrogate), which UTF-8 cannot carry");
        continue;
      case "boolean":
      case "undefined": // dropped from objects by the encoder; nil in arrays
        continue;
      case "number":
        continue;
      case "bigint":
        throw new UnsendableError(at, "is a BigInt, which msgpack here cannot carry (send a string or a number)");
      case "function":
      case "symbol":
        throw new UnsendableError(at, `is a ${typeof v}, which cannot be sent`);
    }
    if (v === null || v instanceof Uint8Array) continue;
    const obj = v as object;
    const proto: unknown = Object.getPrototypeOf(obj);
    if (!Array.isArray(obj) && proto !== Object.prototype && proto !== null) {
      const name = typeof (proto as { constructor?: { name?: unknown } }).constructor?.name === "string" ? (proto as { constructor: { name: string } }).constructor.name : "object";
      throw new UnsendableError(at, `is a ${name}, which a peer cannot read (send plain objects, arrays, strings, numbers, booleans, null or bytes)`);
    }
    if (d + 1 > maxDepth) throw new UnsendableError(at, `is nested deeper than the ${maxDepth} levels a peer accepts (or refers to itself)`);
    if (Array.isArray(obj)) for (let i = 0; i < obj.length; i++) stack.push([obj[i], `${at}[${i}]`, d + 1]);
    else
      for (const key of Object.keys(obj)) {
        if (!isWellFormed(key)) throw new UnsendableError(`${at}.${wellFormed(key)}`, "is a key that is not well-formed Unicode (a lone surrogate), which UTF-8 cannot carry");
        // An own `__proto__` (JSON.parse makes one): the receiver's decoder refuses the whole message.
        if (key === "__proto__") throw new UnsendableError(`${at}.__proto__`, "is a key a peer's decoder refuses (it would set the prototype): rename it");
        stack.push([(obj as Record<string, unknown>)[key], `${at}.${key}`, d + 1]);
      }
  }
}

/** ES2024's String.prototype.isWellFormed (Node 20), typed here: the project's lib is ES2022. */
export function isWellFormed(s: string): boolean {
  return (s as string & { isWellFormed(): boolean }).isWellFormed();
}

/** `s` with each lone surrogate replaced by U+FFFD: for text this side writes (error messages). */
export function wellFormed(s: string): string {
  return (s as string & { toWellFormed(): string }).toWellFormed();
}
