/**
 * A git revision of this repository checked out and built once, for side-by-side runs
 * (`bench:ab`, `sdkpath --base`): a worktree under the system's temp directory
 * (`zmcp-ab/<short rev>`), sharing this checkout's node_modules.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./proc.js";

const git = (...args: string[]) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim();

/** The short hash of `rev` and the directory of its built checkout (its `dist/` compiled). */
export function builtRevision(rev: string): { rev: string; dir: string } {
  const short = git("rev-parse", "--short", rev);
  const dir = join(tmpdir(), "zmcp-ab", short);
  if (!existsSync(join(dir, "dist", "bench", "cli.js"))) {
    if (!existsSync(dir)) {
      mkdirSync(join(tmpdir(), "zmcp-ab"), { recursive: true });
      git("worktree", "add", "--detach", "-f", dir, short);
    }
    if (!existsSync(join(dir, "node_modules"))) symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    process.stderr.write(`building ${short} in ${dir}\n`);
    execFileSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], { cwd: dir, stdio: "inherit" });
  }
  return { rev: short, dir };
}
