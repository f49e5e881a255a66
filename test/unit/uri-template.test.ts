/**
 * URI template matching (src/agent/resources.ts) against what a caller without any read scope
 * can send: it runs before the scope check, so it must be linear, and a match must not carry a
 * path out of the scope a token grants.
 */
import { describe, expect, it } from "vitest";
import { uriTemplateMatcher } from "../../src/agent/resources.js";

describe("uriTemplateMatcher", () => {
  it("is linear: three dot-separated variables against 4,000 dots (a backtracking regex took seconds)", () => {
    const match = uriTemplateMatcher("metrics://{host}.{metric}.{period}.json");
    const hostile = `metrics://${".".repeat(4000)}`;
    let result: unknown = "not run";
    const loops = 200; // 200 matches: a cubic matcher would not finish this test's time limit
    for (let i = 0; i < loops; i++) result = match(hostile);
    expect(result).toBeUndefined();
    expect(match("metrics://db1.cpu.5m.json")).toEqual({ host: "db1", metric: "cpu", period: "5m" });
  });

  it("a one-segment variable never carries /, ? or # (even percent-encoded), and no value is a . or .. segment", () => {
    const one = uriTemplateMatcher("file:///docs/{name}");
    expect(one("file:///docs/a.txt")).toEqual({ name: "a.txt" });
    expect(one("file:///docs/..%2Fsecret.txt")).toBeUndefined();
    expect(one("file:///docs/%2e%2e")).toBeUndefined();
    expect(one("file:///docs/..")).toBeUndefined();
    const rest = uriTemplateMatcher("tree:///{+path}");
    expect(rest("tree:///docs/a/b.txt")).toEqual({ path: "docs/a/b.txt" });
    expect(rest("tree:///docs/../secret.txt")).toBeUndefined();
    expect(rest("tree:///docs/%2e%2e/secret.txt")).toBeUndefined();
  });
});
