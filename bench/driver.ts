/**
 * The caller's measurement loops, the same for every system that has a node client:
 * sequential round trips into an HDR histogram, and a fixed number of calls in flight.
 */
import hdr from "hdr-histogram-js";
import type { Client, LatencyResult, Percentiles, ThroughputResult } from "./types.js";

/** A failed call's code (ZmcpError, NATS), or the start of its message. */
function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : String((err as Error | null)?.message ?? err).slice(0, 40);
}

/** A histogram of nanoseconds, 1 ns to 100 s at 3 significant digits. */
export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 100e9, numberOfSignificantValueDigits: 3 });
}

/** Percentiles of a nanosecond histogram, in microseconds. */
export function percentiles(h: hdr.Histogram): Percentiles {
  const us = (ns: number) => Math.round(ns / 10) / 100;
  return {
    p50: us(h.getValueAtPercentile(50)),
    p90: us(h.getValueAtPercentile(90)),
    p99: us(h.getValueAtPercentile(99)),
    p999: us(h.getValueAtPercentile(99.9)),
    max: us(h.maxValue),
    mean: us(h.mean),
    count: h.totalCount,
  };
}

export function encode(h: hdr.Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** A payload of `size` bytes; its content does not matter, only that it comes back whole. */
export function payloadOf(size: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = 97 + (i % 26);
  return buf;
}

const now = () => process.hrtime.bigint();

export async function measureLatency(client: Client, size: number, warmup: number, calls: number): Promise<LatencyResult> {
  const payload = payloadOf(size);
  let errors = 0;
  for (let i = 0; i < warmup; i++) {
    try {
      await client.call(payload);
    } catch {
      errors++;
    }
  }
  if (warmup > 0 && errors === warmup) throw new Error(`every warm-up call failed`);
  errors = 0;
  const h = newHistogram();
  for (let i = 0; i < calls; i++) {
    const t0 = now();
    try {
      await client.call(payload);
      h.recordValue(Number(now() - t0));
    } catch {
      errors++;
    }
  }
  const result = { payload: size, warmup, calls, errors, us: percentiles(h), histogram: encode(h) };
  h.destroy();
  return result;
}

/**
 * Keeps `window` calls in flight: `warmupMs` unmeasured, then `durationMs` measured.
 * `totalCalls` counts every call the run completed (warm-up and drain included), to turn
 * CPU time read around the whole run into CPU per call.
 */
export async function measureThroughput(
  client: Client,
  size: number,
  window: number,
  durationMs: number,
  warmupMs: number,
): Promise<Omit<ThroughputResult, "cpuMsPer10k"> & { totalCalls: number }> {
  const payload = payloadOf(size);
  const h = newHistogram();
  let measuring = false;
  let stopping = false;
  let calls = 0;
  let totalCalls = 0;
  let errors = 0;
  const errorCodes: Record<string, number> = {};
  const lane = async () => {
    while (!stopping) {
      const t0 = now();
      try {
        await client.call(payload);
        totalCalls++;
        if (measuring) {
          h.recordValue(Number(now() - t0));
          calls++;
        }
      } catch (err) {
        if (measuring) {
          errors++;
          const what = errorCode(err);
          errorCodes[what] = (errorCodes[what] ?? 0) + 1;
        }
        // A failing system must not spin: give the event loop a breath.
        await new Promise((r) => setImmediate(r));
      }
    }
  };
  const lanes = Array.from({ length: window }, lane);
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const t0 = now();
  await new Promise((r) => setTimeout(r, durationMs));
  measuring = false;
  const elapsedNs = Number(now() - t0);
  stopping = true;
  await Promise.all(lanes);
  const result = {
    payload: size,
    window,
    durationMs: Math.round(elapsedNs / 1e6),
    calls,
    perSecond: Math.round((calls * 1e9) / elapsedNs),
    errors,
    errorCodes,
    us: percentiles(h),
    totalCalls,
  };
  h.destroy();
  return result;
}

/** What a fixed offered-load run measured (see {@link measureRate}). */
export interface RateResult {
  payload: number;
  /** Requests per second offered: request i is due at start + i / rate. */
  rate: number;
  durationMs: number;
  /** Requests due in the measured interval (every one is sent, however late). */
  offered: number;
  /** Of those, completed round trips. */
  completed: number;
  /** Completed per second over the measured interval and its drain. */
  achievedPerSecond: number;
  errors: number;
  /** Errors by code (a zmcp error's `code`, else the message's first words). */
  errorCodes: Record<string, number>;
  /** Still unanswered when the drain ended (counted in neither histogram). */
  unfinished: number;
  /** Largest number of requests in flight at once. */
  maxInFlight: number;
  /** From each request's intended send time: what a caller that needs one call per 1/rate s sees (coordinated omission counted). */
  corrected: Percentiles & { p9999: number };
  /** From the moment each request was actually handed to the client. */
  service: Percentiles & { p9999: number };
  /** Both HDR histograms (ns), compressed base64. */
  histograms: { corrected: string; service: string };
}

const withP9999 = (h: hdr.Histogram) => ({ ...percentiles(h), p9999: Math.round(h.getValueAtPercentile(99.99) / 10) / 100 });

/**
 * A constant request rate, as wrk2 and the OpenMessaging benchmark drive a system: request i
 * is due at `start + i / rate` whether or not earlier ones have come back, and its latency is
 * taken from that intended time, so a stall delays every request due during it and shows in
 * the histogram (no coordinated omission). Due requests are sent from a timer that wakes at
 * least every millisecond; how late a send leaves is part of the corrected latency, and the
 * service histogram shows the latency from the actual send for comparison.
 *
 * `warmupMs` at the same rate is not recorded. The run then drains for up to `drainMs`.
 */
export async function measureRate(client: Client, size: number, rate: number, durationMs: number, warmupMs: number, drainMs = 10_000): Promise<RateResult> {
  const payload = payloadOf(size);
  const corrected = newHistogram();
  const service = newHistogram();
  const intervalNs = 1e9 / rate;
  const start = now();
  const measureFrom = start + BigInt(Math.round(warmupMs * 1e6));
  const end = measureFrom + BigInt(Math.round(durationMs * 1e6));
  let sent = 0;
  let offered = 0;
  let completed = 0;
  let errors = 0;
  const errorCodes: Record<string, number> = {};
  let inFlight = 0;
  let maxInFlight = 0;
  let lastDone = start;
  const outstanding = new Set<Promise<void>>();

  const fire = (intended: bigint, measured: boolean) => {
    const t0 = now();
    inFlight++;
    if (inFlight > maxInFlight) maxInFlight = inFlight;
    const p = client.call(payload).then(
      () => {
        const t1 = now();
        if (measured) {
          corrected.recordValue(Number(t1 - intended));
          service.recordValue(Number(t1 - t0));
          completed++;
          lastDone = t1;
        }
      },
      (err: unknown) => {
        if (!measured) return;
        errors++;
        const what = errorCode(err);
        errorCodes[what] = (errorCodes[what] ?? 0) + 1;
      },
    );
    const tracked = p.finally(() => {
      inFlight--;
      outstanding.delete(tracked);
    });
    outstanding.add(tracked);
  };

  await new Promise<void>((resolve) => {
    const tick = () => {
      const t = now();
      // Every request due by now, however many: a late tick sends the backlog at once.
      for (;;) {
        const intended = start + BigInt(Math.round(sent * intervalNs));
        if (intended > t || intended >= end) break;
        const measured = intended >= measureFrom;
        if (measured) offered++;
        sent++;
        fire(intended, measured);
      }
      if (start + BigInt(Math.round(sent * intervalNs)) >= end) return resolve();
      const nextDue = Number(start + BigInt(Math.round(sent * intervalNs)) - now()) / 1e6;
      setTimeout(tick, Math.max(0, Math.floor(nextDue)));
    };
    tick();
  });
  const drainUntil = Date.now() + drainMs;
  while (outstanding.size > 0 && Date.now() < drainUntil) {
    await Promise.race([Promise.all(outstanding), new Promise((r) => setTimeout(r, 100))]);
  }
  const elapsedNs = Number((lastDone > end ? lastDone : end) - measureFrom);
  const result: RateResult = {
    payload: size,
    rate,
    durationMs,
    offered,
    completed,
    achievedPerSecond: Math.round((completed * 1e9) / elapsedNs),
    errors,
    errorCodes,
    unfinished: offered - completed - errors,
    maxInFlight,
    corrected: withP9999(corrected),
    service: withP9999(service),
    histograms: { corrected: encode(corrected), service: encode(service) },
  };
  corrected.destroy();
  service.destroy();
  return result;
}
