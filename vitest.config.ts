import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // test/unit (no sockets), test/integration, test/reliability; test files still at test/'s
    // top level (from branches that predate the split) run too until they are moved.
    include: ["test/**/*.test.ts"],
    // zeromq is a native addon: one process per test file keeps contexts apart.
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real sockets and processes; two at a time suits the 2-core CI machine.
    maxWorkers: 2,
  },
});
