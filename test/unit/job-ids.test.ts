/**
 * Job ids are pasted into shells (`zmq-call --poll ID`), URLs and log queries (issue 16): they
 * must hold no character a shell treats specially, and still name the runner (PROTOCOL §10.1).
 */
import { execFileSync } from "node:child_process";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { jobRunner, newJobId } from "../../src/agent/jobs.js";
import { z85Encode } from "../../src/wire/z85.js";

/** A key whose Z85 text holds characters a shell reads as syntax (`#`, `{`, `>`, `&`, `;`...). */
function awkwardKey(): string {
  for (;;) {
    const key = z85Encode(nacl.box.keyPair().publicKey);
    if (/[#{}\]>&;<()*?$!^|[]/.test(key)) return key;
  }
}

describe("job ids (PROTOCOL §10.1)", () => {
  it("are 96 lowercase hex characters and name their runner, whatever the runner's key holds", () => {
    for (let i = 0; i < 50; i++) {
      const key = awkwardKey();
      const id = newJobId(key);
      expect(id).toMatch(/^[0-9a-f]{96}$/);
      expect(jobRunner(id)).toBe(key);
    }
  });

  it("survive a shell unquoted: bash echoes the id it was given, as one word", () => {
    const ids = Array.from({ length: 20 }, () => newJobId(awkwardKey()));
    const out = execFileSync("bash", ["-c", `for w in ${ids.join(" ")}; do printf '%s\\n' "$w"; done`], { encoding: "utf8" });
    expect(out.trim().split("\n")).toEqual(ids);
  });

  it("name no runner when malformed: upper case, a character short or long, the earlier Z85 form", () => {
    const key = awkwardKey();
    const id = newJobId(key);
    expect(jobRunner(id.toUpperCase())).toBeUndefined();
    expect(jobRunner(id.slice(1))).toBeUndefined();
    expect(jobRunner(id + "0")).toBeUndefined();
    expect(jobRunner(id.slice(0, 32) + key)).toBeUndefined();
  });
});
