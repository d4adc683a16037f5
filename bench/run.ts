/**
 * `npm run bench`: every benchmark, each reporting medians over repeated runs and, where it
 * has one, a ratio to a baseline measured in the same run (this machine is shared and noisy).
 * `npm run bench -- sim` runs only the benchmarks whose name contains "sim".
 * `npm run bench -- --compare` runs Chorus beside etcd (bench/compare.ts): a benchmark with a
 * `flag` is opt-in, run only when its flag is given, because it is long or needs more than
 * this repository (an etcd binary). `--catch-up` measures a follower catching up from a
 * snapshot (bench/catch-up.ts); `--large-values` the members' memory under large values
 * (bench/large-values.ts).
 */
import { transportBench } from './transport.js';
import { simBench } from './sim.js';
import { checkBench } from './check.js';
import { raftBench } from './raft.js';
import { kvBench } from './kv.js';
import { compareBench } from './compare.js';
import { catchUpBench } from './catch-up.js';
import { largeValuesBench } from './large-values.js';

export interface Benchmark {
  name: string;
  /** When set (e.g. `--compare`), the benchmark runs only when this flag is given. */
  flag?: string;
  run(): Promise<void>;
}

const benchmarks: Benchmark[] = [
  simBench,
  transportBench,
  checkBench,
  raftBench,
  kvBench,
  compareBench,
  catchUpBench,
  largeValuesBench,
];

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('--'));
const filter = args.filter((a) => !a.startsWith('--'));
const known = benchmarks.flatMap((b) => (b.flag === undefined ? [] : [b.flag]));
const unknown = flags.filter((f) => !known.includes(f));
if (unknown.length > 0) {
  console.error(`unknown flag ${unknown.join(' ')}; known: ${known.join(' ')}`);
  process.exit(2);
}

function selected(bench: Benchmark): boolean {
  if (bench.flag !== undefined) return flags.includes(bench.flag);
  if (filter.length > 0) return filter.some((f) => bench.name.includes(f));
  // A flag alone asks for that benchmark only.
  return flags.length === 0;
}

for (const bench of benchmarks.filter(selected)) {
  console.log(`\n== ${bench.name}`);
  await bench.run();
}
