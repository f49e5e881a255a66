/** The one polling wait and sleep of the test suite (and of the scenarios `npm run figures` runs). */

type Falsy = undefined | null | false | 0 | "";

/** Polls `check` every 20 ms until it is truthy or `timeoutMs` passes. */
export async function waitFor<T>(check: () => T | Falsy | Promise<T | Falsy>, timeoutMs = 5000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
