/**
 * The caller's measurement loops, the same for every system that has a node client:
 * sequential round trips into an HDR histogram, and a fixed number of calls in flight.
 */
import hdr from "hdr-histogram-js";
import type { Client, LatencyResult, Percentiles, ThroughputResult } from "./types.js";

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
      } catch {
        if (measuring) errors++;
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
    us: percentiles(h),
    totalCalls,
  };
  h.destroy();
  return result;
}
