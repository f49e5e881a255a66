/** The assertion on errors: class and code, never only "it threw". */
import { expect } from "vitest";

/** Expects `p` to reject with an instance of `cls` whose `code` is `code`; returns the error. */
export async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, code: string): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${cls.name}(${code})`).toBeInstanceOf(cls);
  expect((err as { code?: unknown }).code).toBe(code);
  return err as Error;
}
