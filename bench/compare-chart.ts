/**
 * The compare benchmark's chart: one SVG, a row of throughput panels over a row of p99
 * panels, one panel per operation, Chorus and etcd side by side at each client count.
 * Hand-rolled (about a hundred lines of string building) rather than a charting library:
 * grouped bars need nothing a library would add, and the file must open in a browser or on
 * GitHub with no script.
 */
import type { Operation } from './compare-load.js';
import type { SystemName } from './compare-clusters.js';

export interface ChartCell {
  operation: Operation;
  clients: number;
  system: SystemName;
  opsPerSecond: number;
  p99Ms: number;
}

const colors: Record<SystemName, string> = { chorus: '#3b6fb6', etcd: '#e0892b' };
const panelWidth = 230;
const panelHeight = 190;
const margin = { left: 60, top: 85, gapX: 25, gapY: 70 };

const escape = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A round upper bound for an axis (1, 2 or 5 times a power of ten) and a tick count that
 * divides it into round steps. */
function axis(value: number): { max: number; ticks: number } {
  if (!(value > 0)) return { max: 1, ticks: 4 };
  const power = 10 ** Math.floor(Math.log10(value));
  for (const [step, ticks] of [
    [1, 5],
    [2, 4],
    [5, 5],
  ] as const) {
    if (step * power >= value) return { max: step * power, ticks };
  }
  return { max: 10 * power, ticks: 5 };
}

const label = (value: number): string =>
  value >= 1000 ? `${Number((value / 1000).toFixed(1))}k` : String(Number(value.toPrecision(3)));

function panel(
  x: number,
  y: number,
  title: string,
  cells: readonly ChartCell[],
  clientCounts: readonly number[],
  systems: readonly SystemName[],
  metric: (cell: ChartCell) => number,
): string[] {
  const { max, ticks } = axis(Math.max(...cells.map(metric).filter(Number.isFinite), 0));
  const out = [
    `<text x="${x + panelWidth / 2}" y="${y - 10}" class="title">${escape(title)}</text>`,
  ];
  for (let tick = 0; tick <= ticks; tick++) {
    const ty = y + panelHeight - (tick / ticks) * panelHeight;
    out.push(`<line x1="${x}" x2="${x + panelWidth}" y1="${ty}" y2="${ty}" class="grid"/>`);
    out.push(`<text x="${x - 6}" y="${ty + 4}" class="tick">${label((tick / ticks) * max)}</text>`);
  }
  const groupWidth = panelWidth / clientCounts.length;
  const barWidth = (groupWidth * 0.7) / systems.length;
  clientCounts.forEach((clients, g) => {
    const gx = x + g * groupWidth + groupWidth * 0.15;
    systems.forEach((system, s) => {
      const cell = cells.find((c) => c.clients === clients && c.system === system);
      const v = cell === undefined ? NaN : metric(cell);
      if (!Number.isFinite(v)) return;
      const h = (v / max) * panelHeight;
      const bx = gx + s * barWidth;
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${(y + panelHeight - h).toFixed(1)}" width="${(barWidth - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${colors[system]}"><title>${system}, ${clients} clients: ${label(v)}</title></rect>`,
      );
    });
    out.push(
      `<text x="${gx + (barWidth * systems.length) / 2}" y="${y + panelHeight + 15}" class="axis">${clients}</text>`,
    );
  });
  return out;
}

/** The chart as an SVG document. */
export function renderCompareChart(
  cells: readonly ChartCell[],
  operations: readonly Operation[],
  clientCounts: readonly number[],
  subtitle: string,
): string {
  const systems = (['chorus', 'etcd'] as const).filter((s) => cells.some((c) => c.system === s));
  const width = margin.left + operations.length * (panelWidth + margin.gapX);
  const height = margin.top + 2 * panelHeight + margin.gapY + 40;
  const body: string[] = [];
  const rows = [
    { name: 'throughput, requests/s', metric: (c: ChartCell) => c.opsPerSecond },
    { name: 'p99 latency, ms', metric: (c: ChartCell) => c.p99Ms },
  ];
  rows.forEach((row, r) => {
    const y = margin.top + r * (panelHeight + margin.gapY);
    operations.forEach((operation, i) => {
      const x = margin.left + i * (panelWidth + margin.gapX);
      const own = cells.filter((c) => c.operation === operation);
      body.push(
        ...panel(x, y, `${operation}: ${row.name}`, own, clientCounts, systems, row.metric),
      );
    });
  });
  const legend = systems.map(
    (s, i) =>
      `<rect x="${margin.left + i * 90}" y="34" width="12" height="12" fill="${colors[s]}"/><text x="${margin.left + i * 90 + 16}" y="45" class="legend">${s}</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    '<style>.title{font-size:12px;text-anchor:middle;font-weight:bold}.tick{font-size:10px;text-anchor:end;fill:#555}.axis{font-size:10px;text-anchor:middle;fill:#555}.grid{stroke:#ddd}.legend{font-size:12px}</style>',
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${margin.left}" y="20" font-size="14" font-weight="bold">Chorus beside etcd: 3 members each, same machine, same load generator</text>`,
    `<text x="${margin.left + 200}" y="45" font-size="11" fill="#555">${escape(subtitle)}</text>`,
    ...legend,
    ...body,
    `<text x="${width / 2}" y="${height - 12}" class="axis">concurrent clients</text>`,
    '</svg>',
    '',
  ].join('\n');
}
