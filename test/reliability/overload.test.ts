/**
 * Overload with real processes: a recipient that stops reading, a flood at several times a
 * worker's capacity, 1,000 connections opened and closed, and garbage at the CURVE handshake.
 * The scenarios live in ./scenarios.ts (shared with `npm run figures`, bench/figures.ts,
 * which runs them with larger counts); counts here are sized for CI.
 */
import { describe, expect, it } from "vitest";
import { MiB } from "../support/process.js";
import { connectionChurn, flood, garbageHandshakes, stalledReader } from "./scenarios.js";

describe("overload", () => {
  it("a recipient that stops reading: the sender gets busy, broker memory stays bounded, other agents are unaffected", async () => {
    const r = await stalledReader(1500);
    expect(r.codes["busy"], r.notes).toBeGreaterThan(0);
    expect(Object.keys(r.codes)).toEqual(["busy"]);
    expect(r.lost, r.notes).toBe(0); // the other agents' calls all succeeded
    expect(r.answered).toBeGreaterThan(0);
    expect(r.survived).toBe(1);
    expect(r.peakRss, r.notes).toBeLessThan(400 * MiB); // 1,500 × 16 KiB sent; generous bound
  }, 120_000);

  it("a flood at several times capacity: sent = answered + refused explicitly, nothing lost, service recovers", async () => {
    const r = await flood(2000, 4, 200);
    expect(r.answered + r.refused + r.lost, r.notes).toBe(r.sent);
    expect(r.lost, JSON.stringify(r.codes)).toBe(0);
    expect(Object.keys(r.codes).every((c) => c === "RemoteError(peer):busy" || c === "RemoteError(broker):busy"), JSON.stringify(r.codes)).toBe(true);
    expect(r.refused, r.notes).toBeGreaterThan(0); // it was an overload
    expect(r.survived, r.notes).toBe(1);
  }, 180_000);

  it("1,000 CURVE connections opened and closed: all counted in and out, RSS and handles flat after warm-up", async () => {
    const r = await connectionChurn(1000, 50);
    expect(r.survived, r.notes).toBe(1000);
    expect(r.rssEnd - r.rssWarm, r.notes).toBeLessThan(48 * MiB);
    expect(r.handlesEnd - r.handlesWarm, r.notes).toBeLessThanOrEqual(5);
  }, 180_000);

  it("garbage before and during the CURVE handshake (raw TCP), and clients without CURVE: refused, counted, broker unharmed", async () => {
    const r = await garbageHandshakes(3);
    expect(r.crashes).toBe(0);
    expect(r.lost, r.notes).toBe(0);
    expect(r.notes).toContain("(0 got a handshake");
    expect(Object.values(r.codes).reduce((a, b) => a + b, 0), JSON.stringify(r.codes)).toBeGreaterThan(0);
  }, 120_000);
});
