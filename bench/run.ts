/**
 * `npm run bench`: every benchmark, each reporting medians over repeated runs and, where it
 * has one, a ratio to a baseline measured in the same run (this machine is shared and noisy).
 * `npm run bench -- sim` runs only the benchmarks whose name contains "sim".
 */
import { transportBench } from './transport.js';
import { simBench } from './sim.js';
import { checkBench } from './check.js';
import { raftBench } from './raft.js';
import { kvBench } from './kv.js';

export interface Benchmark {
  name: string;
  run(): Promise<void>;
}

const benchmarks: Benchmark[] = [simBench, transportBench, checkBench, raftBench, kvBench];

const filter = process.argv.slice(2);
for (const bench of benchmarks) {
  if (filter.length > 0 && !filter.some((f) => bench.name.includes(f))) continue;
  console.log(`\n== ${bench.name}`);
  await bench.run();
}
