/**
 * Topics and subscription patterns (docs/EVENTS.md, docs/PROTOCOL.md §19), NATS semantics:
 *
 * - a topic is dotted tokens, `docs.indexed`; each token is 1+ of `A-Z a-z 0-9 _ -`;
 * - a pattern is a topic whose tokens may also be `*` (exactly one token) and whose last token
 *   may be `>` (one or more trailing tokens): `docs.*` matches `docs.indexed` but not `docs` or
 *   `docs.a.b`; `docs.>` matches `docs.a` and `docs.a.b` but not `docs`.
 *
 * The character set is narrow on purpose: a topic travels in the header's `to` (so never a Z85
 * key's punctuation, never `svc:`), is compared byte for byte by the broker, and shows up in
 * logs and metric labels, where anything looser invites look-alikes.
 *
 * {@link TopicTrie} matches one topic against many patterns (the broker's directory, an
 * agent's subscriptions) in time bounded by the topic's tokens, not by the number of patterns.
 */
import { ConfigError } from "../errors.js";

/** Longest topic or pattern, characters (the header's `to` cap, docs/PROTOCOL.md §4.1). */
export const MAX_TOPIC_CHARS = 128;
/** Most tokens in a topic or pattern. */
export const MAX_TOPIC_TOKENS = 16;
/** Most patterns one agent may subscribe to (one heartbeat carries them all). */
export const MAX_PATTERNS_PER_AGENT = 256;

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Why `topic` is not a valid topic (no wildcards), or undefined when it is. */
export function topicProblem(topic: unknown): string | undefined {
  return problem(topic, false);
}

/** Why `pattern` is not a valid subscription pattern, or undefined when it is. */
export function patternProblem(pattern: unknown): string | undefined {
  return problem(pattern, true);
}

export function isTopic(topic: unknown): topic is string {
  return problem(topic, false) === undefined;
}

export function isPattern(pattern: unknown): pattern is string {
  return problem(pattern, true) === undefined;
}

/** Throws ConfigError unless `topic` is a valid topic. */
export function checkTopic(topic: unknown): string {
  const why = problem(topic, false);
  if (why !== undefined) throw new ConfigError(`invalid topic ${describe(topic)}: ${why}`);
  return topic as string;
}

/** Throws ConfigError unless `pattern` is a valid pattern. */
export function checkPattern(pattern: unknown): string {
  const why = problem(pattern, true);
  if (why !== undefined) throw new ConfigError(`invalid topic pattern ${describe(pattern)}: ${why}`);
  return pattern as string;
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value) : typeof value;
}

function problem(value: unknown, wildcards: boolean): string | undefined {
  if (typeof value !== "string") return "not a string";
  if (value.length === 0) return "empty";
  if (value.length > MAX_TOPIC_CHARS) return `longer than ${MAX_TOPIC_CHARS} characters`;
  const tokens = value.split(".");
  if (tokens.length > MAX_TOPIC_TOKENS) return `more than ${MAX_TOPIC_TOKENS} tokens`;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.length === 0) return "empty token (a leading, trailing or doubled dot)";
    if (token === "*" || token === ">") {
      if (!wildcards) return `wildcard ${token} in a topic (only patterns may hold wildcards)`;
      if (token === ">" && i !== tokens.length - 1) return "> is allowed only as the last token";
      continue;
    }
    if (!TOKEN.test(token)) return `token ${JSON.stringify(token.slice(0, 32))} holds characters other than A-Z a-z 0-9 _ -`;
  }
  return undefined;
}

/** True when `topic` matches `pattern` (both assumed valid). */
export function topicMatches(pattern: string, topic: string): boolean {
  if (pattern === topic) return true;
  const p = pattern.split(".");
  const t = topic.split(".");
  for (let i = 0; i < p.length; i++) {
    const token = p[i]!;
    if (token === ">") return t.length > i;
    if (i >= t.length) return false;
    if (token !== "*" && token !== t[i]) return false;
  }
  return p.length === t.length;
}

interface Node<V> {
  children: Map<string, Node<V>>;
  /** Values whose pattern ends here. */
  here: Set<V>;
  /** Values whose pattern ends here with `>` next. */
  rest: Set<V>;
}

function node<V>(): Node<V> {
  return { children: new Map(), here: new Set(), rest: new Set() };
}

/**
 * Patterns → values, matched by topic. One value may hold several patterns; a match returns
 * each value once. `*` is a child like any token (its key is `*`), `>` a set on its parent:
 * a match walks at most the exact and the `*` child at each level, so it visits each node of
 * the trie at most once whatever the patterns are.
 */
export class TopicTrie<V> {
  readonly #root: Node<V> = node();
  #size = 0;

  /** Pattern–value pairs held. */
  get size(): number {
    return this.#size;
  }

  /** Adds `value` under `pattern` (valid); false when it was there already. */
  add(pattern: string, value: V): boolean {
    const tokens = pattern.split(".");
    let at = this.#root;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === ">") {
        if (at.rest.has(value)) return false;
        at.rest.add(value);
        this.#size++;
        return true;
      }
      let next = at.children.get(token);
      if (!next) at.children.set(token, (next = node()));
      at = next;
    }
    if (at.here.has(value)) return false;
    at.here.add(value);
    this.#size++;
    return true;
  }

  /** Removes `value` from `pattern`, pruning empty nodes; false when it was not there. */
  delete(pattern: string, value: V): boolean {
    const tokens = pattern.split(".");
    const path: Array<[Node<V>, string]> = [];
    let at = this.#root;
    let removed = false;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === ">") {
        removed = at.rest.delete(value);
        break;
      }
      const next = at.children.get(token);
      if (!next) return false;
      path.push([at, token]);
      at = next;
      if (i === tokens.length - 1) removed = at.here.delete(value);
    }
    if (!removed) return false;
    this.#size--;
    // Prune from the deepest node up while nodes hold nothing.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, token] = path[i]!;
      const child = parent.children.get(token)!;
      if (child.children.size > 0 || child.here.size > 0 || child.rest.size > 0) break;
      parent.children.delete(token);
    }
    return true;
  }

  /** Every value with a pattern matching `topic` (valid, no wildcards), each once. */
  match(topic: string): Set<V> {
    const out = new Set<V>();
    const tokens = topic.split(".");
    const walk = (at: Node<V>, depth: number): void => {
      if (depth === tokens.length) {
        for (const v of at.here) out.add(v);
        return;
      }
      for (const v of at.rest) out.add(v); // `>`: one or more tokens remain
      const exact = at.children.get(tokens[depth]!);
      if (exact) walk(exact, depth + 1);
      const star = at.children.get("*");
      if (star) walk(star, depth + 1);
    };
    walk(this.#root, 0);
    return out;
  }
}
