/**
 * The bench's outputs: terminal tables with ratios to NATS and to the zeromq.js floor, the
 * goals the numbers are held to, a JSON file of every result, and an SVG chart.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CURVE_ONLY_ID, DIRECT_ID, FLOOR_ID, FULL_SECURITY_IDS, MCP_ID, NATS_ID } from "./systems/index.js";
import type { BenchResults, Goal, LatencyResult, SystemResult, ThroughputResult } from "./types.js";

const ok = (r: BenchResults, id: string): SystemResult | undefined => r.systems.find((s) => s.id === id && s.status === "ok");
const latencyOf = (r: BenchResults, id: string, payload = r.settings.headlinePayload): LatencyResult | undefined =>
  ok(r, id)?.latency.find((l) => l.payload === payload);
const throughputOf = (r: BenchResults, id: string, window: number, payload = r.settings.headlinePayload): ThroughputResult | undefined =>
  ok(r, id)?.throughput.find((t) => t.payload === payload && t.window === window);
const fullSecurityId = (r: BenchResults) => FULL_SECURITY_IDS.find((id) => ok(r, id));

const us = (v: number | undefined) => (v === undefined ? "-" : v >= 10_000 ? `${Math.round(v / 1000)}k` : v >= 100 ? String(Math.round(v)) : v.toFixed(1));
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? "-" : `${(a / b).toFixed(2)}×`);
const bytes = (n: number) => (n >= 1024 ? `${n / 1024} KiB` : `${n} B`);
const rate = (v: number | undefined) => (v === undefined ? "-" : v.toLocaleString("en-US"));

/** The goals of issue 5, judged on the headline payload. */
export function evaluateGoals(r: BenchResults): Goal[] {
  const goals: Goal[] = [];
  const full = fullSecurityId(r);
  const fullName = full ?? "zmcp full security";
  const natsLat = latencyOf(r, NATS_ID);
  const fullLat = full ? latencyOf(r, full) : undefined;
  const push = (name: string, target: string, value: number | undefined, limit: number | undefined, cmp: "<=" | ">=", show: (v: number) => string) => {
    const goal: Goal = { name, target: limit === undefined ? target : `${target} (${show(limit)})`, value: value === undefined ? "not measured" : show(value) };
    if (value !== undefined && limit !== undefined) goal.met = cmp === "<=" ? value <= limit : value >= limit;
    goals.push(goal);
  };
  const µs = (v: number) => `${v.toFixed(0)} µs`;
  push(`${fullName} p50`, "≤ NATS p50", fullLat?.us.p50, natsLat?.us.p50, "<=", µs);
  push(`${fullName} p99`, "≤ NATS p99", fullLat?.us.p99, natsLat?.us.p99, "<=", µs);
  const w = Math.max(...r.settings.windows);
  push(`${fullName} throughput, ${w} in flight`, "≥ NATS", full ? throughputOf(r, full, w)?.perSecond : undefined, throughputOf(r, NATS_ID, w)?.perSecond, ">=", (v) => `${rate(Math.round(v))}/s`);
  const mcpLat = latencyOf(r, MCP_ID);
  push(`${fullName} p50`, "≤ 1/3 of MCP p50", fullLat?.us.p50, mcpLat ? mcpLat.us.p50 / 3 : undefined, "<=", µs);
  const curve = latencyOf(r, CURVE_ONLY_ID);
  push(`${fullName} p50`, "≤ 1.25 × CURVE-only p50", fullLat?.us.p50, curve ? curve.us.p50 * 1.25 : undefined, "<=", µs);
  const idle = r.scenarios.idleAgents?.status === "ok" ? r.scenarios.idleAgents.points : [];
  const none = idle.find((pt) => pt.agents === 0);
  const most = idle.length > 1 ? idle[idle.length - 1] : undefined;
  push(`p99 with ${most?.agents ?? "1000"} idle agents`, "≤ 1.5 × p99 with none", most?.latency.us.p99, none ? none.latency.us.p99 * 1.5 : undefined, "<=", µs);
  goals.push(...issue12Goals(r, full, w));
  return goals;
}

/**
 * Issue 12's targets: ratios to NATS in the same run, brokered (full security) and over a
 * direct link, at the headline payload and at 64 KiB when it was measured.
 */
function issue12Goals(r: BenchResults, full: string | undefined, w: number): Goal[] {
  const goals: Goal[] = [];
  const x = (v: number) => `${v.toFixed(2)}× NATS`;
  const ratioGoal = (name: string, cmp: "<=" | ">=", limit: number, value: number | undefined, nats: number | undefined) => {
    const v = value !== undefined && nats !== undefined && nats > 0 ? value / nats : undefined;
    const goal: Goal = { name: `issue 12: ${name}`, target: `${cmp === "<=" ? "≤" : "≥"} ${limit}× NATS`, value: v === undefined ? "not measured" : x(v) };
    if (v !== undefined) goal.met = cmp === "<=" ? v <= limit : v >= limit;
    goals.push(goal);
  };
  const cpu = (t: ThroughputResult | undefined) => (t ? Object.values(t.cpuMsPer10k).reduce((a, b) => a + (b ?? 0), 0) : undefined);
  const headline = r.settings.headlinePayload;
  const paths: Array<[string, string | undefined, Record<string, number>]> = [
    ["brokered", full, { p50: 1.5, p99: 2.0, rate: 0.5, cpu: 3.0, p50Large: 1.5, rateLarge: 0.6 }],
    ["direct", ok(r, DIRECT_ID) ? DIRECT_ID : undefined, { p50: 0.9, p99: 1.2, rate: 0.8, cpu: 1.8, p50Large: 1.0, rateLarge: 1.0 }],
  ];
  for (const [path, id, t] of paths) {
    const lat = id ? latencyOf(r, id, headline) : undefined;
    const natsLat = latencyOf(r, NATS_ID, headline);
    ratioGoal(`${path} p50, ${bytes(headline)}`, "<=", t["p50"]!, lat?.us.p50, natsLat?.us.p50);
    ratioGoal(`${path} p99, ${bytes(headline)}`, "<=", t["p99"]!, lat?.us.p99, natsLat?.us.p99);
    const tp = id ? throughputOf(r, id, w, headline) : undefined;
    const natsTp = throughputOf(r, NATS_ID, w, headline);
    ratioGoal(`${path} throughput, ${w} in flight, ${bytes(headline)}`, ">=", t["rate"]!, tp?.perSecond, natsTp?.perSecond);
    ratioGoal(`${path} CPU per call, all processes, ${bytes(headline)}`, "<=", t["cpu"]!, cpu(tp), cpu(natsTp));
    if (r.settings.payloads.includes(65536)) {
      const large = id ? latencyOf(r, id, 65536) : undefined;
      ratioGoal(`${path} p50, 64 KiB`, "<=", t["p50Large"]!, large?.us.p50, latencyOf(r, NATS_ID, 65536)?.us.p50);
      ratioGoal(`${path} throughput, ${w} in flight, 64 KiB`, ">=", t["rateLarge"]!, id ? throughputOf(r, id, w, 65536)?.perSecond : undefined, throughputOf(r, NATS_ID, w, 65536)?.perSecond);
    }
  }
  return goals;
}

/** Fixed-width text table; the first `left` columns are left-aligned. */
function table(header: string[], rows: string[][], left = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(header), widths.map((w) => "─".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function formatReport(r: BenchResults): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`zmq-bench (${r.settings.profile}${r.settings.rounds > 1 ? `, ${r.settings.rounds} rounds` : ""}) on ${m.nproc} × ${m.cpu}, node ${m.node}, ${m.libzmq}${m.natsServer ? `, ${m.natsServer}` : ""}`);
  if (m.loadAverage > 0.5) out.push(`note: load average ${m.loadAverage} at start; other work on this machine skews these numbers`);
  const ran = r.systems.filter((s) => s.status === "ok");

  const latRows: string[][] = [];
  for (const payload of r.settings.payloads) {
    const nats = latencyOf(r, NATS_ID, payload);
    const floor = latencyOf(r, FLOOR_ID, payload);
    for (const s of ran) {
      const l = s.latency.find((x) => x.payload === payload);
      if (!l) continue;
      latRows.push([
        bytes(payload),
        s.title,
        us(l.us.p50),
        us(l.us.p90),
        us(l.us.p99),
        us(l.us.p999),
        us(l.us.max),
        ratio(l.us.p50, nats?.us.p50),
        ratio(l.us.p99, nats?.us.p99),
        ratio(l.us.p50, floor?.us.p50),
        ratio(l.us.p99, floor?.us.p99),
        l.errors ? String(l.errors) : "",
      ]);
    }
  }
  out.push("", "Round-trip latency of sequential calls, µs (ratios: lower is better)");
  out.push(table(["payload", "system", "p50", "p90", "p99", "p99.9", "max", "p50 ×NATS", "p99 ×NATS", "p50 ×floor", "p99 ×floor", "errors"], latRows, 2));

  const wmax = Math.max(...r.settings.windows);
  const thrRows: string[][] = [];
  for (const payload of r.settings.throughputPayloads) {
    const nats = throughputOf(r, NATS_ID, wmax, payload);
    const floor = throughputOf(r, FLOOR_ID, wmax, payload);
    for (const s of ran) {
      const cells = r.settings.windows.map((w) => s.throughput.find((t) => t.payload === payload && t.window === w));
      if (cells.every((c) => !c)) continue;
      const top = cells[cells.length - 1];
      const cpu = top?.cpuMsPer10k;
      // Every process of the system (MCP has no separate responder: its server echoes).
      const all = cpu && cpu.broker !== undefined && cpu.caller !== undefined ? cpu.broker + (cpu.responder ?? 0) + cpu.caller : undefined;
      thrRows.push([
        bytes(payload),
        s.title,
        ...cells.map((c) => rate(c?.perSecond)),
        ratio(top?.perSecond, nats?.perSecond),
        ratio(top?.perSecond, floor?.perSecond),
        cpu?.broker === undefined ? "-" : String(Math.round(cpu.broker)),
        all === undefined ? "-" : String(Math.round(all)),
        top?.brokerRssMiB === undefined ? "-" : top.brokerRssMiB.toFixed(0),
      ]);
    }
  }
  out.push("", `Throughput, round trips/s by calls in flight (ratios at ${wmax} in flight: higher is better; CPU ms per 10k calls at ${wmax})`);
  out.push(
    table(["payload", "system", ...r.settings.windows.map((w) => `${w} in flight`), "×NATS", "×floor", "broker CPU", "total CPU", "broker RSS MiB"], thrRows, 2),
  );

  const idle = r.scenarios.idleAgents;
  if (idle) {
    out.push("", `Idle agents connected to the broker (${idle.system}, ${bytes(r.settings.headlinePayload)})`);
    if (idle.status !== "ok") out.push(`  ${idle.status}: ${idle.note ?? ""}`);
    const base = idle.points.find((p) => p.agents === 0);
    out.push(
      table(
        ["agents", "broker RSS MiB", "RSS/agent KiB", "p50", "p99", "p99 ×none"],
        idle.points.map((p) => [String(p.agents), p.brokerRssMiB.toFixed(1), p.rssPerAgentKiB === undefined ? "-" : p.rssPerAgentKiB.toFixed(1), us(p.latency.us.p50), us(p.latency.us.p99), ratio(p.latency.us.p99, base?.latency.us.p99)]),
      ),
    );
  }
  const brokers = r.scenarios.brokers;
  if (brokers) {
    out.push("", `Brokers (${brokers.system}, ${bytes(r.settings.headlinePayload)}; every agent connects to every broker)`);
    if (brokers.status !== "ok") out.push(`  ${brokers.status}: ${brokers.note ?? ""}`);
    out.push(
      table(
        ["brokers", "p50", "p99", `calls/s, ${wmax} in flight`, "broker CPU", "broker RSS MiB"],
        brokers.points.map((p) => [
          String(p.brokers),
          us(p.latency.us.p50),
          us(p.latency.us.p99),
          rate(p.throughput.perSecond),
          p.throughput.cpuMsPer10k.broker === undefined ? "-" : String(Math.round(p.throughput.cpuMsPer10k.broker)),
          p.throughput.brokerRssMiB?.toFixed(0) ?? "-",
        ]),
      ),
    );
  }

  const notes = r.systems.filter((s) => s.status !== "ok");
  if (notes.length) {
    out.push("", "Not measured:");
    for (const s of notes) out.push(`  ${s.id}: ${s.status}: ${s.note ?? ""}`);
  }
  out.push("", `Goals (${bytes(r.settings.headlinePayload)} payload)`);
  for (const g of r.goals) out.push(`  ${g.met === undefined ? "?" : g.met ? "✓" : "✗"} ${g.name}: ${g.value}, target ${g.target}`);
  return out.join("\n");
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
/** Floors in greys, zmcp in blues (darker with more security), peers in their own hues. */
const COLORS: Record<string, string> = {
  "native-floor": "#374151",
  "zmq-floor": "#9ca3af",
  "zmq-floor-curve": "#6b7280",
  "zmcp-curve": "#60a5fa",
  "zmcp-sealed": "#1d4ed8",
  "zmcp-sealed-js": "#93c5fd",
  "zmcp-token": "#7c3aed",
  nats: "#059669",
  mcp: "#d97706",
};
const PALETTE = ["#dc2626", "#db2777", "#0891b2", "#65a30d"];

/** Two panels: latency percentiles per system (log scale), and throughput per window. */
export function renderSvg(r: BenchResults): string {
  const W = 1200;
  const H = 560;
  const systems = r.systems.filter((s) => s.status === "ok");
  const color = new Map(r.systems.map((s, i) => [s.id, COLORS[s.id] ?? PALETTE[i % PALETTE.length]!]));
  const payload = r.settings.headlinePayload;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  const m = r.machine;
  parts.push(`<text x="20" y="28" font-size="16" font-weight="600">zmq-bench (${r.settings.profile}): ${bytes(payload)} echo, separate processes on loopback</text>`);
  parts.push(`<text x="20" y="46" fill="#555">${esc(`${m.nproc} × ${m.cpu}, node ${m.node}, ${m.libzmq}; ${r.startedAt.slice(0, 16).replace("T", " ")} UTC`)}</text>`);

  // Panel A: latency percentiles, log scale.
  const A = { x: 70, y: 80, w: 480, h: 380 };
  const keys = ["p50", "p90", "p99", "p999", "max"] as const;
  const labels = ["p50", "p90", "p99", "p99.9", "max"];
  const series = systems.flatMap((s) => {
    const l = s.latency.find((x) => x.payload === payload);
    return l ? [{ s, values: keys.map((k) => l.us[k]) }] : [];
  });
  const all = series.flatMap((x) => x.values).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all, 100))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, 1000))));
  const ly = (v: number) => A.y + A.h - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * A.h;
  const lx = (i: number) => A.x + 30 + (i * (A.w - 60)) / (keys.length - 1);
  parts.push(`<text x="${A.x}" y="${A.y - 12}" font-weight="600">Round-trip latency, sequential calls (µs, log scale)</text>`);
  for (let d = lo; d <= hi; d *= 10) {
    for (const k of [1, 2, 5]) {
      const v = d * k;
      if (v > hi) break;
      const y = ly(v);
      parts.push(`<line x1="${A.x}" x2="${A.x + A.w}" y1="${y}" y2="${y}" stroke="${k === 1 ? "#ccc" : "#eee"}"/>`);
      parts.push(`<text x="${A.x - 6}" y="${y + 4}" text-anchor="end" fill="#555">${v >= 1000 ? `${v / 1000}k` : v}</text>`);
    }
  }
  labels.forEach((label, i) => parts.push(`<text x="${lx(i)}" y="${A.y + A.h + 18}" text-anchor="middle">${label}</text>`));
  for (const { s, values } of series) {
    const c = color.get(s.id)!;
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${values.map((v, i) => `${lx(i).toFixed(1)},${ly(v).toFixed(1)}`).join(" ")}"/>`);
    values.forEach((v, i) => parts.push(`<circle cx="${lx(i).toFixed(1)}" cy="${ly(v).toFixed(1)}" r="3" fill="${c}"><title>${esc(s.title)} ${labels[i]}: ${v} µs</title></circle>`));
  }

  // Panel B: throughput per window, grouped bars, log scale (the C floor is far above the rest).
  const B = { x: 680, y: 80, w: 490, h: 380 };
  const windows = r.settings.windows;
  const rates = systems.map((s) => windows.map((w) => s.throughput.find((t) => t.payload === payload && t.window === w)?.perSecond ?? 0));
  const positive = rates.flat().filter((v) => v > 0);
  const blo = Math.pow(10, Math.floor(Math.log10(Math.min(...positive, 100))));
  const bhi = Math.pow(10, Math.ceil(Math.log10(Math.max(...positive, 1000))));
  const by = (v: number) => B.y + B.h - ((Math.log10(Math.max(v, blo)) - Math.log10(blo)) / (Math.log10(bhi) - Math.log10(blo))) * B.h;
  parts.push(`<text x="${B.x}" y="${B.y - 12}" font-weight="600">Throughput, round trips/s by calls in flight (log scale)</text>`);
  for (let d = blo; d <= bhi; d *= 10) {
    for (const k of [1, 2, 5]) {
      const v = d * k;
      if (v > bhi) break;
      parts.push(`<line x1="${B.x}" x2="${B.x + B.w}" y1="${by(v)}" y2="${by(v)}" stroke="${k === 1 ? "#ccc" : "#eee"}"/>`);
      parts.push(`<text x="${B.x - 6}" y="${by(v) + 4}" text-anchor="end" fill="#555">${v >= 1000 ? `${v / 1000}k` : v}</text>`);
    }
  }
  const groupW = B.w / windows.length;
  const barW = Math.max(4, (groupW - 24) / Math.max(1, systems.length));
  windows.forEach((w, wi) => {
    const gx = B.x + wi * groupW + 12;
    parts.push(`<text x="${gx + (barW * systems.length) / 2}" y="${B.y + B.h + 18}" text-anchor="middle">${w} in flight</text>`);
    systems.forEach((s, si) => {
      const v = rates[si]![wi]!;
      if (v <= 0) return;
      const y = by(v);
      parts.push(`<rect x="${(gx + si * barW).toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(B.y + B.h - y).toFixed(1)}" fill="${color.get(s.id)}"><title>${esc(s.title)}, ${w} in flight: ${v}/s</title></rect>`);
    });
  });
  parts.push(`<line x1="${B.x}" x2="${B.x + B.w}" y1="${B.y + B.h}" y2="${B.y + B.h}" stroke="#999"/>`);

  // Legend, wrapped to the width.
  let lxPos = 20;
  let legendY = H - 50;
  for (const s of r.systems) {
    const skipped = s.status !== "ok";
    const text = `${s.title}${skipped ? ` (${s.status})` : ""}`;
    const width = 32 + text.length * 7.2;
    if (lxPos + width > W - 10) {
      lxPos = 20;
      legendY += 20;
    }
    parts.push(`<rect x="${lxPos}" y="${legendY - 10}" width="12" height="12" fill="${skipped ? "#fff" : color.get(s.id)}" stroke="${color.get(s.id)}"/>`);
    parts.push(`<text x="${lxPos + 17}" y="${legendY}"${skipped ? ' fill="#999"' : ""}>${esc(text)}</text>`);
    lxPos += width;
  }
  parts.push(`</svg>`);
  return parts.join("\n");
}

/** Writes `<name>.json` and `<name>.svg` into `dir`; returns their paths. */
export function writeResults(r: BenchResults, dir: string, name: string): { json: string; svg: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${name}.json`);
  const svg = join(dir, `${name}.svg`);
  writeFileSync(json, JSON.stringify(r, null, 2) + "\n");
  writeFileSync(svg, renderSvg(r) + "\n");
  return { json, svg };
}

// `node dist/bench/report.js results.json [--svg out.svg]`: the table (and chart) of a past run.
if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, flag, svgOut] = process.argv.slice(2);
  if (!file) {
    process.stderr.write("usage: node dist/bench/report.js RESULTS.json [--svg OUT.svg]\n");
    process.exit(2);
  }
  const results = JSON.parse(readFileSync(file, "utf8")) as BenchResults;
  process.stdout.write(formatReport(results) + "\n");
  if (flag === "--svg" && svgOut) writeFileSync(svgOut, renderSvg(results) + "\n");
}
