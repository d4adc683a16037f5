/**
 * Linearizability checker speed on the reference histories: every Jepsen etcd log (102 of
 * them; etcd_095 holds no operations) and every Porcupine kv file. Each run parses and
 * checks every file; the figures are medians over runs of the total per set and of the
 * slowest file. CHORUS_PORCUPINE_DATA points at another copy of the data; CHORUS_BENCH_RUNS
 * sets the number of runs (default 5).
 *
 * Porcupine (Go) is the yardstick these histories come from. When CHORUS_PORCUPINE_SRC
 * points at a Porcupine checkout holding the timing test (TestZZCompareTiming, which
 * prints the same parse+check medians) and `go` is on PATH, it runs once before and once
 * after Chorus, and the ratio Chorus / Porcupine is printed against both runs (the machine
 * is shared and noisy). Otherwise no ratio is claimed.
 */
import { spawnSync } from 'node:child_process';
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

/** Medians of one set, Chorus's or Porcupine's: total and slowest file, in milliseconds. */
interface Figures {
  totalMs: number;
  slowestName: string;
  slowestMs: number;
}

const timingTest = 'TestZZCompareTiming';

/** Where Porcupine's timing test can run, or why it cannot. */
function porcupineSource(): { dir: string } | { why: string } {
  const dir = process.env['CHORUS_PORCUPINE_SRC'];
  if (dir === undefined || dir === '') return { why: 'CHORUS_PORCUPINE_SRC is not set' };
  const hasTest =
    existsSync(dir) &&
    readdirSync(dir).some(
      (n) => n.endsWith('_test.go') && readFileSync(path.join(dir, n), 'utf8').includes(timingTest),
    );
  if (!hasTest) return { why: `no ${timingTest} under ${dir}` };
  if (spawnSync('go', ['version'], { encoding: 'utf8' }).status !== 0) {
    return { why: 'no go on PATH' };
  }
  return { dir };
}

/** Runs Porcupine's timing test once: its parse+check medians per set, by set name. */
function runPorcupine(dir: string): Map<string, Figures> {
  const run = spawnSync('go', ['test', '-run', `${timingTest}$`, '-count=1', '-v'], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 600_000,
  });
  const figures = new Map<string, Figures>();
  const line =
    /^(.+?) \[parse\+check\]: \d+ files, median total ([\d.]+) ms.*; slowest (\S+) median ([\d.]+) ms/;
  for (const text of run.stdout.split('\n')) {
    const m = line.exec(text);
    if (m === null) continue;
    figures.set(m[1]!, { totalMs: Number(m[2]), slowestName: m[3]!, slowestMs: Number(m[4]) });
  }
  return figures;
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
    const source = porcupineSource();
    // Porcupine runs before and after Chorus, so a burst of load on the machine shows up as
    // a spread between its two runs instead of as a skewed ratio.
    const porcupine: Map<string, Figures>[] = [];
    if ('dir' in source) porcupine.push(runPorcupine(source.dir));
    const chorus = new Map<string, Figures>();
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
      chorus.set(set.name, { totalMs: median(totals), slowestName, slowestMs });
      const counts = new Map<string, number>();
      for (const v of passes[0]!.verdicts.values()) counts.set(v, (counts.get(v) ?? 0) + 1);
      console.log(
        `${set.name}: ${set.files.length} files, median total ${median(totals).toFixed(0)} ms ` +
          `(min ${Math.min(...totals).toFixed(0)}, max ${Math.max(...totals).toFixed(0)}, ${runs} runs); ` +
          `slowest ${slowestName} median ${slowestMs.toFixed(0)} ms; ` +
          [...counts].map(([v, n]) => `${n} ${v}`).join(', '),
      );
    }
    if (!('dir' in source)) {
      console.log(
        'reference: Porcupine (Go) is the checker these histories come from; not measured ' +
          `here (${source.why}; set it to a Porcupine checkout with ${timingTest} and put go ` +
          'on PATH to measure it beside), so no ratio is claimed',
      );
      return Promise.resolve();
    }
    porcupine.push(runPorcupine(source.dir));
    for (const [name, ours] of chorus) {
      const theirs = porcupine.map((p) => p.get(name));
      if (theirs.some((t) => t === undefined)) {
        console.log(`Porcupine (Go) on ${name}: its timing test printed no figures, so no ratio`);
        continue;
      }
      const [before, after] = theirs as [Figures, Figures];
      const ratio = (a: number, b: number, c: number): string =>
        `${(a / b).toFixed(2)}x / ${(a / c).toFixed(2)}x`;
      console.log(
        `Porcupine (Go) on ${name}, parse+check, runs before / after Chorus: median total ` +
          `${before.totalMs.toFixed(0)} / ${after.totalMs.toFixed(0)} ms, slowest ` +
          `${before.slowestName} ${before.slowestMs.toFixed(0)} / ${after.slowestMs.toFixed(0)} ms; ` +
          `Chorus / Porcupine: total ${ratio(ours.totalMs, before.totalMs, after.totalMs)}, ` +
          `slowest file ${ratio(ours.slowestMs, before.slowestMs, after.slowestMs)}`,
      );
    }
    return Promise.resolve();
  },
};
