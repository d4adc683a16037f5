/**
 * Linearizability checker speed on the reference histories: every Jepsen etcd log (102 of
 * them; etcd_095 holds no operations) and every Porcupine kv file. Each run parses and
 * checks every file; the figures are medians over runs of the total per set and of the
 * slowest file. Porcupine (Go) is the yardstick these histories come from; without a Go
 * toolchain here its figure is quoted, not measured. CHORUS_PORCUPINE_DATA points at another
 * copy of the data; CHORUS_BENCH_RUNS sets the number of runs (default 5).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseHistory, type HistoryFormat } from '../src/check/formats.js';
import { checkHistory } from '../src/check/linearizability.js';
import { models, type ModelName } from '../src/check/models/index.js';
import type { Benchmark } from './run.js';
import { median } from './stats.js';

const runs = Number(process.env['CHORUS_BENCH_RUNS'] ?? 5);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dataDir =
  process.env['CHORUS_PORCUPINE_DATA'] ?? path.resolve(repoRoot, '../shared/data/porcupine');

interface Input {
  name: string;
  text: string;
}

interface Set {
  name: string;
  format: HistoryFormat;
  model: ModelName;
  files: Input[];
}

function load(dir: string, keep: (name: string, text: string) => boolean): Input[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .map((name) => ({ name, text: readFileSync(path.join(dir, name), 'utf8') }))
    .filter((f) => keep(f.name, f.text));
}

/** Times one pass over a set: total and per file, in milliseconds. */
function pass(set: Set): {
  totalMs: number;
  perFileMs: Map<string, number>;
  verdicts: Map<string, string>;
} {
  const perFileMs = new Map<string, number>();
  const verdicts = new Map<string, string>();
  const start = performance.now();
  for (const file of set.files) {
    const fileStart = performance.now();
    const history = parseHistory(file.text, set.format, file.name);
    const result = checkHistory(history, models[set.model]);
    perFileMs.set(file.name, performance.now() - fileStart);
    verdicts.set(file.name, result.verdict);
  }
  return { totalMs: performance.now() - start, perFileMs, verdicts };
}

export const checkBench: Benchmark = {
  name: 'check',
  run() {
    const sets: Set[] = [
      {
        name: 'jepsen etcd',
        format: 'jepsen-etcd',
        model: 'register',
        files: load(
          path.join(dataDir, 'test_data/jepsen'),
          (n, t) => n.endsWith('.log') && t.includes('jepsen.util - '),
        ),
      },
      {
        name: 'porcupine kv',
        format: 'porcupine-kv',
        model: 'kv',
        files: load(path.join(dataDir, 'test_data/kv'), (n) => n.endsWith('.txt')),
      },
    ];
    for (const set of sets) {
      if (set.files.length === 0) {
        console.log(
          `${set.name}: no files under ${dataDir} (set CHORUS_PORCUPINE_DATA to a copy of Porcupine's test data)`,
        );
        continue;
      }
      pass(set); // warm-up: JIT and caches
      const passes = Array.from({ length: runs }, () => pass(set));
      const totals = passes.map((p) => p.totalMs);
      const perFile = set.files.map(
        (f) => [f.name, median(passes.map((p) => p.perFileMs.get(f.name)!))] as const,
      );
      const [slowestName, slowestMs] = perFile.reduce((a, b) => (b[1] > a[1] ? b : a));
      const counts = new Map<string, number>();
      for (const v of passes[0]!.verdicts.values()) counts.set(v, (counts.get(v) ?? 0) + 1);
      console.log(
        `${set.name}: ${set.files.length} files, median total ${median(totals).toFixed(0)} ms ` +
          `(min ${Math.min(...totals).toFixed(0)}, max ${Math.max(...totals).toFixed(0)}, ${runs} runs); ` +
          `slowest ${slowestName} median ${slowestMs.toFixed(0)} ms; ` +
          [...counts].map(([v, n]) => `${n} ${v}`).join(', '),
      );
    }
    console.log(
      'reference: Porcupine (Go) checks the whole etcd set in a few seconds by its own account; ' +
        'not measured here (no Go toolchain), so no ratio is claimed',
    );
    return Promise.resolve();
  },
};
