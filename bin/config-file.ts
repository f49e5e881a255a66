/**
 * `--config FILE` for a command: a JSON object whose keys are the command's long option names
 * (`"max-message-bytes": 2097152`). JSON because it needs no dependency and every deployment
 * tool writes it. Precedence: a flag on the command line, then the file, then the default.
 * Unknown keys, `config` itself, and values of the wrong type are refused (exit 2): a typo in a
 * config file must not silently run a broker with the default it meant to change.
 */
import { readFileSync } from "node:fs";
import { InvalidArgumentError, type Command, type Option } from "commander";
import { usageError } from "./cli.js";

/** Reads `--config` (if given) into the options not set on the command line. */
export function applyConfigFile(program: Command, flag = "config"): void {
  const path = program.getOptionValue(flag) as string | undefined;
  if (path === undefined) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    usageError(`--${flag} ${path}: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) usageError(`--${flag} ${path}: expected a JSON object of options`);
  const options = new Map<string, Option>();
  for (const o of program.options) if (o.long && o.long !== `--${flag}` && o.long !== "--version" && o.long !== "--help") options.set(o.long.slice(2), o);
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    const option = options.get(key);
    if (!option) {
      const near = closest(key, [...options.keys()]);
      usageError(`--${flag} ${path}: unknown option ${JSON.stringify(key)}${near ? `; did you mean ${JSON.stringify(near)}?` : ""}`);
    }
    const attr = option.attributeName();
    if (program.getOptionValueSource(attr) === "cli") continue; // the command line wins
    if (typeof value !== "string" && typeof value !== "number") usageError(`--${flag} ${path}: ${JSON.stringify(key)} must be a string or a number`);
    let v: unknown = String(value);
    if (option.parseArg) {
      try {
        v = option.parseArg(String(value), undefined);
      } catch (err) {
        if (err instanceof InvalidArgumentError) usageError(`--${flag} ${path}: ${JSON.stringify(key)}: ${err.message}`);
        throw err;
      }
    }
    program.setOptionValueWithSource(attr, v, "config");
  }
}

/** The candidate nearest to `word` by edit distance, if it is close (≤ a third of its length, at least 2). */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
