/**
 * The README's Layout block cannot drift: every path it names exists, and every file of src/
 * (all levels), bin/, examples/, the top level of bench/ and every folder of test/ is named.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/process.js";

/** The paths the Layout block names: `name   description` lines, nesting by two spaces. */
export function layoutPaths(readme: string): string[] {
  const section = readme.split(/^## Layout$/m)[1];
  if (section === undefined) throw new Error("README.md has no '## Layout' section");
  const block = /```\n([\s\S]*?)\n```/.exec(section)?.[1];
  if (block === undefined) throw new Error("the Layout section has no code block");
  const paths: string[] = [];
  const folders: string[] = []; // folders[depth] = the folder a line at depth+1 is in
  for (const line of block.split("\n")) {
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    if (indent % 2 !== 0) throw new Error(`odd indentation in the Layout block: ${JSON.stringify(line)}`);
    const depth = indent / 2;
    if (depth > folders.length) throw new Error(`line nested under no folder: ${JSON.stringify(line)}`);
    folders.length = depth;
    const names = line.trim().split(/\s{2,}/)[0]!.split(/,\s*/);
    for (const name of names) {
      const parent = folders[depth - 1];
      const path = (parent ? `${parent}/` : "") + name.replace(/\/$/, "");
      paths.push(path);
      if (name.endsWith("/") && names.length === 1) folders.push(path);
    }
  }
  return paths;
}

const list = (dir: string, recursive: boolean): string[] =>
  readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = `${dir}/${name}`;
    const isDir = statSync(join(ROOT, path)).isDirectory();
    return isDir && recursive ? [path, ...list(path, true)] : [path];
  });

describe("README layout", () => {
  const named = () => new Set(layoutPaths(readFileSync(join(ROOT, "README.md"), "utf8")));

  it("names only paths that exist", () => {
    expect([...named()].filter((p) => !existsSync(join(ROOT, p)))).toEqual([]);
  });

  it("names every file of src/, bin/, examples/, the top of bench/ and every folder of test/", () => {
    const present = [
      ...list("src", true),
      ...list("bin", false),
      ...list("examples", false),
      ...list("bench", false),
      ...list("test", false).filter((p) => statSync(join(ROOT, p)).isDirectory()),
    ];
    const paths = named();
    expect(present.filter((p) => !paths.has(p))).toEqual([]);
  });

  it("reads nesting and comma lists", () => {
    const paths = layoutPaths("## Layout\n\n```\na/   x\n  b.ts, c.ts   y\n  d/\n    e.ts\nf.ts\n```\n");
    expect(paths).toEqual(["a", "a/b.ts", "a/c.ts", "a/d", "a/d/e.ts", "f.ts"]);
  });
});
