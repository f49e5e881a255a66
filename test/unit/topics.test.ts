/**
 * Topics and patterns (src/events/topics.ts): validation, NATS matching semantics, the trie
 * the broker and agents match with (checked against the plain matcher on random sets), and
 * the broker's subscription directory built on it (bounds, replacement, eviction).
 */
import { describe, expect, it } from "vitest";
import { SubscriptionDirectory } from "../../src/broker/subscriptions.js";
import { ConfigError } from "../../src/errors.js";
import { checkPattern, checkTopic, isPattern, isTopic, MAX_TOPIC_CHARS, patternProblem, topicMatches, topicProblem, TopicTrie } from "../../src/events/topics.js";
import { HeartbeatSchema } from "../../src/wire/services.js";

describe("topics: validation", () => {
  it("accepts dotted tokens of A-Z a-z 0-9 _ - up to the caps", () => {
    for (const t of ["docs", "docs.indexed", "a-b_c.D9", "x".repeat(MAX_TOPIC_CHARS), Array(16).fill("a").join(".")]) expect(topicProblem(t), t).toBeUndefined();
  });

  it("refuses empty tokens, wildcards, other characters, too long, too many tokens and non-strings", () => {
    const bad: unknown[] = ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "*", ">", "a b", "a/b", "ünï", "a:b", "svc:x", "x".repeat(MAX_TOPIC_CHARS + 1), Array(17).fill("a").join("."), 7, null, undefined, ["a"]];
    for (const t of bad) expect(topicProblem(t), JSON.stringify(t)).toBeTypeOf("string");
    expect(isTopic("a.*")).toBe(false);
  });

  it("patterns: * anywhere as a whole token, > only last", () => {
    for (const p of ["*", ">", "a.*", "*.b", "a.*.c", "a.>", "*.>", "a.b"]) expect(patternProblem(p), p).toBeUndefined();
    for (const p of ["a.>.b", ">.a", "a*", "a.b*", "a.>>", "a..*", "", "a.*x"]) expect(patternProblem(p), p).toBeTypeOf("string");
    expect(isPattern("a.>")).toBe(true);
  });

  it("checkTopic and checkPattern throw ConfigError with code config, naming the problem", () => {
    expect(() => checkTopic("a..b")).toThrow(ConfigError);
    try {
      checkPattern("a.>.b");
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe("config");
      expect((err as Error).message).toMatch(/last token/);
    }
    expect(checkTopic("a.b")).toBe("a.b");
  });
});

describe("topics: matching (NATS semantics)", () => {
  const cases: Array<[string, string, boolean]> = [
    ["docs.*", "docs.indexed", true],
    ["docs.*", "docs", false],
    ["docs.*", "docs.a.b", false],
    ["docs.>", "docs.a", true],
    ["docs.>", "docs.a.b.c", true],
    ["docs.>", "docs", false],
    [">", "a", true],
    [">", "a.b", true],
    ["*", "a", true],
    ["*", "a.b", false],
    ["*.b", "a.b", true],
    ["*.b", "a.c", false],
    ["a.*.c", "a.x.c", true],
    ["a.*.c", "a.x.d", false],
    ["*.>", "a", false],
    ["*.>", "a.b", true],
    ["a.b", "a.b", true],
    ["a.b", "a.bc", false],
    ["a.b", "a", false],
    ["a", "a.b", false],
  ];
  it.each(cases)("%s ~ %s → %s", (pattern, topic, want) => {
    expect(topicMatches(pattern, topic)).toBe(want);
    const trie = new TopicTrie<string>();
    trie.add(pattern, "k");
    expect(trie.match(topic).has("k")).toBe(want);
  });

  it("the trie agrees with the matcher on random patterns and topics, returns each value once, and deletes cleanly", () => {
    let seed = 42;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    const tokens = ["a", "b", "c"];
    const topic = () => Array.from({ length: 1 + rnd(4) }, () => tokens[rnd(3)]!).join(".");
    const pattern = () => {
      const parts = Array.from({ length: 1 + rnd(4) }, () => (rnd(4) === 0 ? "*" : tokens[rnd(3)]!));
      if (rnd(4) === 0) parts[parts.length - 1] = ">";
      return parts.join(".");
    };
    const trie = new TopicTrie<number>();
    const held: Array<[string, number]> = [];
    for (let i = 0; i < 400; i++) {
      const p = pattern();
      const v = rnd(40);
      if (trie.add(p, v)) held.push([p, v]);
    }
    expect(trie.size).toBe(held.length);
    const check = () => {
      for (let i = 0; i < 300; i++) {
        const t = topic();
        const want = new Set(held.filter(([p]) => topicMatches(p, t)).map(([, v]) => v));
        expect([...trie.match(t)].sort(), t).toEqual([...want].sort());
      }
    };
    check();
    // Remove half; the rest must still match exactly.
    for (const [p, v] of held.splice(0, held.length / 2)) expect(trie.delete(p, v)).toBe(true);
    expect(trie.delete("never.added", 1)).toBe(false);
    expect(trie.size).toBe(held.length);
    check();
    for (const [p, v] of held.splice(0)) trie.delete(p, v);
    expect(trie.size).toBe(0);
    expect(trie.match("a.b").size).toBe(0);
  });
});

describe("broker subscription directory", () => {
  it("each heartbeat replaces the key's set; an empty set forgets it; a key matches once however many patterns", () => {
    const dir = new SubscriptionDirectory(6000, 100);
    expect(dir.announce("K1", ["a.*", "a.>", "a.b"], 0)).toBeUndefined();
    expect(dir.match("a.b", 1)).toEqual(["K1"]);
    expect(dir.size).toBe(3);
    expect(dir.announce("K1", ["b.*"], 2)).toBeUndefined();
    expect(dir.match("a.b", 3)).toEqual([]);
    expect(dir.match("b.x", 3)).toEqual(["K1"]);
    expect(dir.size).toBe(1);
    dir.announce("K1", [], 4);
    expect(dir.size).toBe(0);
    expect(dir.keys).toBe(0);
  });

  it("refuses a set that would take the directory past its bound, and changes nothing then", () => {
    const dir = new SubscriptionDirectory(6000, 5);
    expect(dir.announce("K1", ["a", "b", "c"], 0)).toBeUndefined();
    expect(dir.announce("K2", ["d", "e", "f"], 0)).toMatch(/full/);
    expect(dir.size).toBe(3);
    expect(dir.match("d", 1)).toEqual([]);
    // Replacing K1's own set by as many patterns is within the bound.
    expect(dir.announce("K1", ["x", "y", "z"], 1)).toBeUndefined();
    expect(dir.announce("K2", ["d", "e"], 1)).toBeUndefined();
    expect(dir.size).toBe(5);
  });

  it("a key unheard past the TTL no longer matches and leaves; forget() drops it at once", () => {
    const dir = new SubscriptionDirectory(1000, 100);
    dir.announce("K1", ["a.>"], 0);
    dir.announce("K2", ["a.>"], 0);
    dir.announce("K2", ["a.>"], 900);
    expect(dir.match("a.b", 1500)).toEqual(["K2"]);
    expect(dir.keys).toBe(1);
    dir.forget("K2");
    expect(dir.match("a.b", 1500)).toEqual([]);
    expect(dir.size).toBe(0);
  });

  it("the heartbeat schema refuses invalid patterns and more than 256", () => {
    expect(HeartbeatSchema.safeParse({ svc: [], sub: ["a.*"] }).success).toBe(true);
    expect(HeartbeatSchema.safeParse({ svc: [], sub: ["a..b"] }).success).toBe(false);
    expect(HeartbeatSchema.safeParse({ svc: [], sub: [7] }).success).toBe(false);
    expect(HeartbeatSchema.safeParse({ svc: [], sub: Array.from({ length: 257 }, (_, i) => `t${i}`) }).success).toBe(false);
    expect(HeartbeatSchema.safeParse({ svc: [], sub: Array.from({ length: 256 }, (_, i) => `t${i}`) }).success).toBe(true);
  });
});
