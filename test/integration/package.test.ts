/**
 * The package as a user installs it (issue 16): `npm pack`, then an install of the tarball into a
 * fresh folder, then the commands through `npx`. No network: the fresh folder's lockfile is the
 * project's own (production entries only, plus the tarball), so `npm ci --offline` takes every
 * dependency from the npm cache that the project's `npm ci` filled.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, spawnChild } from "../support/process.js";

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  license: string;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  bin: Record<string, string>;
  engines: Record<string, string>;
  scripts: Record<string, string>;
};

interface LockEntry {
  dev?: boolean;
  link?: boolean;
}

describe("npm pack → install in a fresh folder → npx", () => {
  let fresh: string;
  let installed: string;
  beforeAll(async () => {
    fresh = mkdtempSync(join(tmpdir(), "zmcp-fresh-"));
    // --ignore-scripts: `prepare` would rebuild dist/ under the other test files' feet (the suite built it).
    const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", fresh], { cwd: ROOT, timeout: 60_000 });
    const tarball = stdout.trim().split("\n").at(-1)!;
    const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
    const packages: Record<string, unknown> = {
      // zod is a peer dependency: the user's project installs it next to zmcp.
      "": { name: "fresh", dependencies: { zmcp: `file:${tarball}`, zod: pkg.peerDependencies.zod! } },
      "node_modules/zmcp": { version: pkg.version, resolved: `file:${tarball}`, license: pkg.license, dependencies: pkg.dependencies, peerDependencies: pkg.peerDependencies, bin: pkg.bin, engines: pkg.engines },
    };
    for (const [path, entry] of Object.entries(lock.packages)) if (path !== "" && !entry.dev && !entry.link) packages[path] = entry;
    writeFileSync(join(fresh, "package.json"), JSON.stringify({ name: "fresh", private: true, dependencies: { zmcp: `file:${tarball}`, zod: pkg.peerDependencies.zod } }));
    writeFileSync(join(fresh, "package-lock.json"), JSON.stringify({ name: "fresh", lockfileVersion: 3, requires: true, packages }));
    await run("npm", ["ci", "--offline", "--no-audit", "--no-fund"], { cwd: fresh, timeout: 120_000 });
    installed = join(fresh, "node_modules", "zmcp");
  }, 180_000);
  afterAll(() => {
    if (fresh) rmSync(fresh, { recursive: true, force: true });
  });

  it("npx zmq-broker --version and npx zmq-keygen --help work from the fresh folder", async () => {
    const version = await run("npx", ["--offline", "zmq-broker", "--version"], { cwd: fresh, timeout: 30_000 });
    expect(version.stdout.trim()).toBe(pkg.version);
    const help = await run("npx", ["--offline", "zmq-keygen", "--help"], { cwd: fresh, timeout: 30_000 });
    expect(help.stdout).toContain("Usage: zmq-keygen");
    expect(help.stdout).toContain("authority");
  });

  it("the installed broker starts (native zeromq loads), creates its key and stops cleanly", async () => {
    const broker = await spawnChild(join(fresh, "node_modules", ".bin", "zmq-broker"), ["--bind", "tcp://127.0.0.1:*", "--key", join(fresh, "certs", "broker.key_secret"), "--allow", join(fresh, "certs")], "ready");
    try {
      expect(String(broker.ready["endpoint"])).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      expect(existsSync(join(fresh, "certs", "broker.key"))).toBe(true);
    } finally {
      expect(await broker.stop()).toBe(0);
    }
  });

  it("ships LICENSE (the license package.json names), docs/ for the README's links, and a prepare script for git installs", () => {
    expect(readFileSync(join(installed, "LICENSE"), "utf8")).toMatch(new RegExp(`^${pkg.license} License`));
    const readme = readFileSync(join(installed, "README.md"), "utf8");
    const links = [...readme.matchAll(/\]\(([^)#\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) expect(existsSync(join(installed, link)), `README link ${link}`).toBe(true);
    expect(pkg.scripts["prepare"]).toBe("npm run build");
  });

  it("every source map points at files the package ships", () => {
    const maps: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith(".map")) maps.push(path);
      }
    };
    walk(join(installed, "dist"));
    expect(maps.length).toBeGreaterThan(0);
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(map, "utf8")) as { sources: string[] };
      for (const source of sources) expect(existsSync(resolve(dirname(map), source)), `${map} → ${source}`).toBe(true);
    }
  });
});
