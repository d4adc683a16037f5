/**
 * `npm run bench -- --large-values`: the members' memory while one key is overwritten with
 * large values (1 MiB by default) and history is compacted every 100 writes — a store that
 * stays small, and a Raft log that grows by a value per write until a snapshot compacts it.
 * Every 100 writes it prints each member's resident memory; at the end, the largest seen and
 * the growth per write over the second half of the run (near 0 when memory has levelled off).
 *
 * Opt-in. CHORUS_BENCH_LARGE_WRITES (default 1500) and _VALUE_BYTES (1 MiB) size it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChorusCluster, stopBenchCluster } from './compare-clusters.js';
import { kvCall, kvClient, LoadClients } from './compare-load.js';
import type { Benchmark } from './run.js';

const writes = Number(process.env['CHORUS_BENCH_LARGE_WRITES'] ?? 1500);
const valueBytes = Number(process.env['CHORUS_BENCH_LARGE_VALUE_BYTES'] ?? 1024 * 1024);
const compactEvery = 100;

/** Resident memory of a process in MB, from /proc (Linux); NaN elsewhere. */
function rssMb(pid: number | undefined): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
  } catch {
    return NaN;
  }
}

export const largeValuesBench: Benchmark = {
  name: 'large values: memory of the members',
  flag: '--large-values',
  async run() {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-bench-large-'));
    const cluster = await startChorusCluster(root);
    const load = new LoadClients(cluster.endpoints);
    const client = kvClient(cluster.endpoints[0]!);
    try {
      if ((await load.leader(30_000)) === undefined) throw new Error('no leader');
      const value = Buffer.alloc(valueBytes, 7);
      const samples: number[][] = [];
      const started = performance.now();
      console.log(`${writes} puts of ${valueBytes} B to one key, compacted every ${compactEvery}`);
      for (let i = 1; i <= writes; i++) {
        const put = (await kvCall(client, 'Put', { key: Buffer.from('big'), value })) as {
          header: { revision: string };
        };
        if (i % compactEvery !== 0) continue;
        await kvCall(client, 'Compact', { revision: put.header.revision });
        const rss = cluster.members.map((m) => rssMb(m.child.pid));
        samples.push(rss);
        const seconds = ((performance.now() - started) / 1000).toFixed(1);
        console.log(
          `  ${String(i).padStart(5)} writes ${seconds.padStart(6)} s  RSS MB ${rss.map((r) => r.toFixed(0).padStart(5)).join(' ')}`,
        );
      }
      const max = cluster.members.map((_, k) => Math.max(...samples.map((s) => s[k]!)));
      const half = samples[Math.floor((samples.length - 1) / 2)]!;
      const last = samples[samples.length - 1]!;
      const writesApart =
        (samples.length - 1 - Math.floor((samples.length - 1) / 2)) * compactEvery;
      const growth = last.map((r, k) => (r - half[k]!) / writesApart);
      console.log(`  largest RSS MB       ${max.map((r) => r.toFixed(0)).join(' / ')}`);
      console.log(
        `  growth, second half  ${growth.map((g) => g.toFixed(2)).join(' / ')} MB per write`,
      );
    } finally {
      client.close();
      load.close();
      await stopBenchCluster(cluster);
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
};
