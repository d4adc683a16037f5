/**
 * A paired A/B of two Chorus builds on this machine:
 *
 *   node dist/bench/ab.js <buildA> <buildB> [--clients 1,16,64] [--rounds 5]
 *                         [--operation put] [--window-ms 3000]
 *
 * A build is a directory holding a built checkout (bin/chorus.js and dist/), e.g. a git
 * worktree of the baseline after `npx tsc`. Both 3-member clusters run side by side, started
 * and warmed up as the compare benchmark does (bench/compare.ts); each round runs every client
 * count on both, the order flipping from cell to cell. On a shared 2-core machine separate
 * runs of the same code differ by ±10 %, so the figure to read is the median of the
 * per-round ratios B/A, each measured minutes apart at most — and its spread.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startChorusCluster, stopBenchCluster } from './compare-clusters.js';
import {
  LoadClients,
  operations,
  runCell,
  type CellResult,
  type Operation,
} from './compare-load.js';
import { fmt, ready, type Running } from './compare.js';
import { median } from './stats.js';

const usage =
  'usage: node dist/bench/ab.js <buildA> <buildB> [--clients 1,16,64] [--rounds 5] [--operation put] [--window-ms 3000]';

interface AbOptions {
  builds: [string, string];
  clients: number[];
  rounds: number;
  operation: Operation;
  windowMs: number;
}

function parse(argv: string[]): AbOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      clients: { type: 'string', default: '1,16,64' },
      rounds: { type: 'string', default: '5' },
      operation: { type: 'string', default: 'put' },
      'window-ms': { type: 'string', default: '3000' },
    },
  });
  if (positionals.length !== 2) throw new Error(usage);
  const builds = positionals.map((dir) => {
    const bin = path.resolve(dir, 'bin', 'chorus.js');
    if (!fs.existsSync(bin) || !fs.existsSync(path.resolve(dir, 'dist'))) {
      throw new Error(`${dir}: not a built checkout (no bin/chorus.js or dist/)\n${usage}`);
    }
    return bin;
  }) as [string, string];
  const positive = (text: string, what: string): number => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 1)
      throw new Error(`--${what}: ${text} is not a positive integer`);
    return n;
  };
  const operation = values.operation as Operation;
  if (!operations.includes(operation)) {
    throw new Error(`--operation: ${values.operation} is not one of ${operations.join(', ')}`);
  }
  return {
    builds,
    clients: values.clients.split(',').map((c) => positive(c, 'clients')),
    rounds: positive(values.rounds, 'rounds'),
    operation,
    windowMs: positive(values['window-ms'], 'window-ms'),
  };
}

async function main(): Promise<void> {
  const options = parse(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-bench-ab-'));
  const runnings: Running[] = [];
  try {
    for (const [i, bin] of options.builds.entries()) {
      const dir = path.join(root, i === 0 ? 'a' : 'b');
      fs.mkdirSync(dir);
      const cluster = await startChorusCluster(dir, bin);
      const running = { cluster, load: new LoadClients(cluster.endpoints) };
      runnings.push(running);
      await ready(running);
    }
    const results = new Map<number, [CellResult[], CellResult[]]>();
    let cell = 0;
    for (let round = 0; round < options.rounds; round++) {
      for (const clients of options.clients) {
        const order = cell++ % 2 === 0 ? [0, 1] : [1, 0];
        for (const side of order) {
          const { cluster, load } = runnings[side]!;
          const result = await runCell(
            load,
            cluster.members.map((m) => m.child.pid),
            options.operation,
            clients,
            { warmupMs: 500, windowMs: options.windowMs, seed: round * 1_000 + clients },
          );
          const pair = results.get(clients) ?? [[], []];
          pair[side]!.push(result);
          results.set(clients, pair);
          console.log(
            `  round ${round + 1}/${options.rounds} ${String(clients).padStart(3)} clients ${side === 0 ? 'A' : 'B'} ${fmt(result.opsPerSecond).padStart(7)} req/s  p50 ${fmt(result.p50Ms, 2)} ms  p99 ${fmt(result.p99Ms, 2)} ms`,
          );
        }
      }
    }
    console.log(
      `\n| ${options.operation} clients | A req/s | B req/s | A p50 / p99 ms | B p50 / p99 ms | server CPU ms per 1k, A / B | B/A req/s (median of rounds) | B/A range |`,
    );
    console.log('| --: | --: | --: | --: | --: | --: | --: | --: |');
    for (const clients of options.clients) {
      const [a, b] = results.get(clients)!;
      const ratios = a.map((x, k) => b[k]!.opsPerSecond / x.opsPerSecond);
      const m = (rs: CellResult[], f: (r: CellResult) => number): number => median(rs.map(f));
      console.log(
        `| ${clients} | ${fmt(m(a, (r) => r.opsPerSecond))} | ${fmt(m(b, (r) => r.opsPerSecond))} | ${fmt(
          m(a, (r) => r.p50Ms),
          2,
        )} / ${fmt(
          m(a, (r) => r.p99Ms),
          2,
        )} | ${fmt(
          m(b, (r) => r.p50Ms),
          2,
        )} / ${fmt(
          m(b, (r) => r.p99Ms),
          2,
        )} | ${fmt(m(a, (r) => r.serverCpuMsPer1k))} / ${fmt(m(b, (r) => r.serverCpuMsPer1k))} | ${fmt(median(ratios), 2)} | ${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)} |`,
      );
    }
  } finally {
    for (const { load } of runnings) load.close();
    await Promise.all(runnings.map(({ cluster }) => stopBenchCluster(cluster)));
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
