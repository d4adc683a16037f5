/**
 * The HTML report of a check: one self-contained page (inline CSS and SVG, no scripts, no
 * outside resources). One lane per process, each operation a bar from invocation to
 * completion coloured by how it ended; the failing partition and the operations that could
 * not be placed stand out; hovering a bar shows the operation. Below, latency over time and
 * throughput over time, as SVG plots from the history's timestamps.
 */
import { reportOperationsMax, reportThroughputBuckets } from './constants.js';
import { describeOperation, explainResult, verdictText } from './explain.js';
import type { Operation, ProcessId } from './history.js';
import type { CheckResult } from './linearizability.js';
import type { AnyModel } from './models/index.js';

export interface ReportInput {
  result: CheckResult;
  model: AnyModel;
  /** The history's file name, for the title. */
  source: string;
  timeUnit: 'ns' | 'event';
}

/** Escapes text for HTML and SVG content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const colours = {
  ok: '#2f9e55',
  info: '#e8a33d',
  fail: '#c9545d',
  highlight: '#d0007a',
  axis: '#666',
} as const;

/** What the report needs to know about each operation besides the operation itself. */
interface Marks {
  failingKeys: ReadonlySet<string | undefined>;
  unplaceable: ReadonlyMap<number, string>;
  blocking: ReadonlySet<number>;
}

function marksOf(result: CheckResult): Marks {
  const failingKeys = new Set<string | undefined>();
  const unplaceable = new Map<number, string>();
  const blocking = new Set<number>();
  for (const p of result.partitions) {
    if (p.failure === undefined) continue;
    failingKeys.add(p.key);
    blocking.add(p.failure.blocking);
    for (const u of p.failure.unplaceable) unplaceable.set(u.id, u.reason);
  }
  return { failingKeys, unplaceable, blocking };
}

/** Linear scale from [d0, d1] onto [r0, r1]; a degenerate domain maps to r0. */
function scale(d0: number, d1: number, r0: number, r1: number): (v: number) => number {
  const span = d1 - d0;
  return (v) => (span === 0 ? r0 : r0 + ((v - d0) / span) * (r1 - r0));
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** Times as shown to a person: milliseconds for recorded nanoseconds, raw positions otherwise. */
function timeLabel(unit: 'ns' | 'event'): { factor: number; name: string } {
  return unit === 'ns' ? { factor: 1e-6, name: 'ms' } : { factor: 1, name: 'event' };
}

function ticks(lo: number, hi: number, count: number): number[] {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const result: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) result.push(t);
  return result;
}

function compareProcess(a: ProcessId, b: ProcessId): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'number') return -1;
  if (typeof b === 'number') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function timelineSvg(input: ReportInput, marks: Marks, ops: readonly Operation[]): string {
  const laneHeight = 20;
  const left = 90;
  const top = 24;
  const processes = [...new Set(ops.map((o) => o.process))].sort(compareProcess);
  const lane = new Map(processes.map((p, i) => [p, i]));
  const t0 = Math.min(...ops.map((o) => o.callTime));
  const t1 = Math.max(...ops.map((o) => o.returnTime ?? o.callTime));
  const end = t1 + Math.max(1, (t1 - t0) * 0.02);
  const plotWidth = Math.min(12_000, Math.max(900, ops.length * 6));
  const width = left + plotWidth + 20;
  const height = top + processes.length * laneHeight + 10;
  const x = scale(t0, end, left, left + plotWidth);
  const unit = timeLabel(input.timeUnit);
  const parts: string[] = [
    `<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
  ];
  for (const t of ticks(t0, end, Math.max(4, Math.round(plotWidth / 120)))) {
    const px = x(t).toFixed(1);
    parts.push(
      `<line x1="${px}" y1="${top - 4}" x2="${px}" y2="${height}" stroke="#eee"/>`,
      `<text x="${px}" y="${top - 8}" class="tick">${fmt(t * unit.factor)}</text>`,
    );
  }
  processes.forEach((p, i) => {
    const y = top + i * laneHeight;
    if (i % 2 === 1)
      parts.push(`<rect x="0" y="${y}" width="${width}" height="${laneHeight}" fill="#f7f7f9"/>`);
    parts.push(`<text x="6" y="${y + 14}" class="lane">process ${escapeHtml(String(p))}</text>`);
  });
  for (const op of ops)
    parts.push(bar(op, input, marks, x, top + lane.get(op.process)! * laneHeight, end));
  parts.push('</svg>');
  return parts.join('\n');
}

function bar(
  op: Operation,
  input: ReportInput,
  marks: Marks,
  x: (v: number) => number,
  laneY: number,
  end: number,
): string {
  const x0 = x(op.callTime);
  const completed = op.returnTime ?? end;
  const x1 = Math.max(x0 + 3, x(completed));
  const inFailing = marks.failingKeys.size === 0 || marks.failingKeys.has(op.key);
  const reason = marks.unplaceable.get(op.id);
  const flagged = reason !== undefined || marks.blocking.has(op.id);
  const classes = [
    'op',
    op.status,
    inFailing ? 'failing-partition' : 'other-partition',
    flagged ? 'unplaceable' : '',
  ]
    .filter((c) => c !== '')
    .join(' ');
  const hover = [
    describeOperation(op, input.model),
    op.key === undefined ? '' : `key ${JSON.stringify(op.key)}`,
    reason === undefined ? '' : `could not be placed: ${reason}`,
    marks.blocking.has(op.id) ? 'completed before any legal order could place it' : '',
  ]
    .filter((s) => s !== '')
    .join('\n');
  const stroke = flagged
    ? ` stroke="${colours.highlight}" stroke-width="3"`
    : inFailing && marks.failingKeys.size > 0
      ? ' stroke="#333" stroke-width="0.6"'
      : '';
  const tail =
    op.status === 'info'
      ? `<rect x="${x1.toFixed(1)}" y="${laneY + 7}" width="${Math.max(0, x(end) - x1).toFixed(1)}" height="2" fill="${colours.info}" opacity="0.5"/>`
      : '';
  return (
    `<g class="${classes}" data-op="${op.id}"><title>${escapeHtml(hover)}</title>` +
    `<rect x="${x0.toFixed(1)}" y="${laneY + 3}" width="${(x1 - x0).toFixed(1)}" height="14" rx="2" fill="${colours[op.status]}"${stroke}/>` +
    `${tail}</g>`
  );
}

interface Series {
  name: string;
  colour: string;
  points: readonly (readonly [number, number])[];
}

/** A small x/y plot: dots or a line per series, axes with ticks and labels. */
function plotSvg(
  title: string,
  xName: string,
  yName: string,
  series: readonly Series[],
  kind: 'dots' | 'line',
): string {
  const width = 640;
  const height = 260;
  const m = { left: 64, right: 16, top: 28, bottom: 40 };
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xLo = xs.length > 0 ? Math.min(...xs) : 0;
  const xHi = xs.length > 0 ? Math.max(...xs) : 1;
  const yHi = ys.length > 0 ? Math.max(...ys) * 1.05 : 1;
  const x = scale(xLo, xHi === xLo ? xLo + 1 : xHi, m.left, width - m.right);
  const y = scale(0, yHi === 0 ? 1 : yHi, height - m.bottom, m.top);
  const parts = [
    `<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<text x="${m.left}" y="16" class="plot-title">${escapeHtml(title)}</text>`,
    `<line x1="${m.left}" y1="${height - m.bottom}" x2="${width - m.right}" y2="${height - m.bottom}" stroke="${colours.axis}"/>`,
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${height - m.bottom}" stroke="${colours.axis}"/>`,
  ];
  for (const t of ticks(xLo, xHi, 6)) {
    parts.push(
      `<text x="${x(t).toFixed(1)}" y="${height - m.bottom + 14}" class="tick">${fmt(t)}</text>`,
    );
  }
  for (const t of ticks(0, yHi, 4)) {
    parts.push(
      `<line x1="${m.left}" y1="${y(t).toFixed(1)}" x2="${width - m.right}" y2="${y(t).toFixed(1)}" stroke="#eee"/>`,
      `<text x="${m.left - 6}" y="${(y(t) + 4).toFixed(1)}" class="tick-y">${fmt(t)}</text>`,
    );
  }
  parts.push(
    `<text x="${(m.left + width - m.right) / 2}" y="${height - 6}" class="axis-name">${escapeHtml(xName)}</text>`,
    `<text transform="translate(14 ${(m.top + height - m.bottom) / 2}) rotate(-90)" class="axis-name">${escapeHtml(yName)}</text>`,
  );
  series.forEach((s, i) => {
    if (kind === 'dots') {
      for (const [px, py] of s.points) {
        parts.push(
          `<circle cx="${x(px).toFixed(1)}" cy="${y(py).toFixed(1)}" r="2.2" fill="${s.colour}" opacity="0.75"/>`,
        );
      }
    } else if (s.points.length > 0) {
      const d = s.points
        .map(([px, py], j) => `${j === 0 ? 'M' : 'L'}${x(px).toFixed(1)},${y(py).toFixed(1)}`)
        .join('');
      parts.push(`<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="2"/>`);
    }
    parts.push(
      `<rect x="${width - m.right - 110}" y="${m.top + i * 16 - 9}" width="10" height="10" fill="${s.colour}"/>`,
      `<text x="${width - m.right - 95}" y="${m.top + i * 16}" class="key">${escapeHtml(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function latencyPlot(ops: readonly Operation[], unitName: 'ns' | 'event'): string {
  const unit = timeLabel(unitName);
  const series = (['ok', 'fail', 'info'] as const).map((status) => ({
    name: status,
    colour: colours[status],
    points: ops
      .filter((o) => o.status === status && o.returnTime !== undefined)
      .map((o) => [o.callTime * unit.factor, (o.returnTime! - o.callTime) * unit.factor] as const),
  }));
  const yName = unitName === 'ns' ? 'latency (ms)' : 'latency (events)';
  return plotSvg('Latency over time', `invocation time (${unit.name})`, yName, series, 'dots');
}

function throughputPlot(ops: readonly Operation[], unitName: 'ns' | 'event'): string {
  const unit = timeLabel(unitName);
  const done = ops.filter((o) => o.returnTime !== undefined);
  const lo = Math.min(...ops.map((o) => o.callTime));
  const hi = Math.max(lo + 1, ...done.map((o) => o.returnTime!));
  // Whole buckets for positions (events); exact fractions for recorded times.
  const raw = (hi - lo) / reportThroughputBuckets;
  const width = unitName === 'event' ? Math.max(1, Math.ceil(raw)) : raw;
  const series = (['ok', 'fail', 'info'] as const).map((status) => {
    const counts = new Array<number>(reportThroughputBuckets).fill(0);
    for (const o of done) {
      if (o.status !== status) continue;
      const bucket = Math.floor((o.returnTime! - lo) / width);
      counts[Math.min(reportThroughputBuckets - 1, bucket)]! += 1;
    }
    // Per second for recorded times; per bucket otherwise, where there is no clock to divide by.
    const rate = unitName === 'ns' ? 1e9 / width : 1;
    return {
      name: status,
      colour: colours[status],
      points: counts.map((c, i) => [(lo + (i + 0.5) * width) * unit.factor, c * rate] as const),
    };
  });
  const yName =
    unitName === 'ns' ? 'completions per second' : `completions per ${fmt(width)} events`;
  return plotSvg('Throughput over time', `completion time (${unit.name})`, yName, series, 'line');
}

const css = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 8px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: 600; }
.verdict.linearizable { background: ${colours.ok}; }
.verdict.not-linearizable { background: ${colours.fail}; }
.verdict.unknown { background: ${colours.info}; }
pre.explain { background: #f6f6f8; border: 1px solid #ddd; padding: 10px; white-space: pre-wrap; max-height: 320px; overflow: auto; }
.legend span { display: inline-block; margin-right: 16px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px; margin-right: 4px; }
.scroll { overflow-x: auto; border: 1px solid #ddd; margin: 8px 0 20px; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
svg text.tick { text-anchor: middle; }
svg text.tick-y { text-anchor: end; }
svg text.key { text-anchor: start; }
svg text.lane { font-weight: 600; }
svg text.plot-title { font-size: 13px; font-weight: 600; fill: #222; }
svg text.axis-name { text-anchor: middle; fill: #555; }
g.other-partition { opacity: 0.3; }
g.op:hover rect { filter: brightness(0.85); }
`;

/** The whole page as one string; the caller writes it where it likes. */
export function renderReport(input: ReportInput): string {
  const { result, model } = input;
  const marks = marksOf(result);
  const ops = result.operations.slice(0, reportOperationsMax);
  const omitted = result.operations.length - ops.length;
  const verdict = result.verdict;
  const legend = [
    `<span><i class="swatch" style="background:${colours.ok}"></i>ok</span>`,
    `<span><i class="swatch" style="background:${colours.info}"></i>info (indeterminate; thin tail: may take effect later)</span>`,
    `<span><i class="swatch" style="background:${colours.fail}"></i>fail (did not take effect)</span>`,
    `<span><i class="swatch" style="background:#fff;border:3px solid ${colours.highlight}"></i>could not be placed</span>`,
    marks.failingKeys.size > 0 ? '<span>faded: partitions that are not the failing one</span>' : '',
  ].join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Chorus check: ${escapeHtml(input.source)} — ${verdictText(verdict)}</title>
<style>${css}</style>
</head>
<body>
<h1>Linearizability of ${escapeHtml(input.source)}</h1>
<p><span class="verdict ${verdict}">${verdictText(verdict)}</span>
 model <b>${escapeHtml(result.model)}</b>, ${result.operations.length} operations, ${result.partitions.length} partition(s)</p>
<pre class="explain">${escapeHtml(explainResult(result, model).join('\n'))}</pre>
<h2>Operations by process</h2>
<p class="legend">${legend}</p>
${omitted > 0 ? `<p>The first ${ops.length} operations are drawn; ${omitted} more are left out.</p>` : ''}
<div class="scroll">${ops.length > 0 ? timelineSvg(input, marks, ops) : '<p>No operations.</p>'}</div>
<h2>Latency and throughput</h2>
<div class="plots">${ops.length > 0 ? latencyPlot(ops, input.timeUnit) + throughputPlot(ops, input.timeUnit) : ''}</div>
</body>
</html>
`;
}
