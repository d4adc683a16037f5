/**
 * `npm run bench -- --compare`: Chorus beside etcd on the same machine, driven by the same
 * load generator. Opt-in (it takes about ten minutes and wants etcd installed), so a plain
 * `npm run bench` leaves it out.
 *
 * - Two 3-member clusters on 127.0.0.1, started alike (bench/compare-clusters.ts): Chorus's
 *   `chorus server` and, where `etcd` is on PATH (Debian's etcd-server, 3.4), etcd. Data
 *   directories under one temporary directory, fsync on for both. Both stay up for the whole
 *   run; the idle one only sends heartbeats.
 * - One load generator in this process (bench/compare-load.ts): put, linearizable get,
 *   serializable get and a guarded-put txn at 1, 16, 64 and 256 closed-loop clients.
 *   Every cell runs for both systems back to back, in alternating order (and the order flips
 *   from round to round), so drift in this shared machine's load hits both alike. Reported:
 *   medians over the rounds of throughput, p50 and p99, and the ratio Chorus / etcd.
 * - `etcdctl check perf --load=m` and `--load=l` against each (60 s each, etcd's own pass /
 *   fail criteria), when etcdctl is installed.
 * - The disk's own append + fdatasync rate, probed before and after, as the physical
 *   reference for the write rates.
 *
 * Output: a table on stdout, and `bench/results/compare-<date>-<hhmm>.json` and `.svg`
 * (bench/results/ is gitignored: docs/benchmarks.md records the figures worth keeping).
 *
 * CHORUS_BENCH_COMPARE_MS sets a cell's measured window (default 3000), _ROUNDS the rounds
 * (default 3), _PERF the check perf loads (default "m,l"; "none" skips them).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashString } from '../src/core/prng.js';
import { renderCompareChart } from './compare-chart.js';
import {
  describeLogs,
  onPath,
  benchTls,
  startChorusCluster,
  startEtcdCluster,
  stopBenchCluster,
  type BenchCluster,
  type SystemName,
} from './compare-clusters.js';
import {
  keySpace,
  LoadClients,
  operations,
  runCell,
  valueBytes,
  type CellResult,
  type Operation,
} from './compare-load.js';
import { fsyncRate } from './disk.js';
import type { Benchmark } from './run.js';
import { median } from './stats.js';

const clientCounts = [1, 16, 64, 256];
const windowMs = Number(process.env['CHORUS_BENCH_COMPARE_MS'] ?? 3_000);
/** CHORUS_BENCH_COMPARE_TLS=1: both clusters with https:// client and peer URLs (benchTls). */
const useTls = process.env['CHORUS_BENCH_COMPARE_TLS'] === '1';
const warmupMs = 500;
/**
 * Before the first round, each system runs every operation at 16 clients for this long,
 * unmeasured: Chorus runs on V8, whose optimizing compiler needs some thousands of calls
 * of a path before it runs it at full speed, so without it the first cells measured a
 * process seconds old rather than one in service (in two runs, round 1's single-client puts
 * ran at 57% of round 2's). etcd gets the same warm-up.
 */
const warmUpMsPerOperation = Number(process.env['CHORUS_BENCH_COMPARE_WARMUP_MS'] ?? 2_000);
const rounds = Number(process.env['CHORUS_BENCH_COMPARE_ROUNDS'] ?? 3);
const perfLoads = (process.env['CHORUS_BENCH_COMPARE_PERF'] ?? 'm,l')
  .split(',')
  .map((l) => l.trim())
  .filter((l) => l !== '' && l !== 'none');
const readyTimeoutMs = 30_000;
/** check perf writes for 60 s, then deletes its keys. */
const checkPerfTimeoutMs = 180_000;
const fsyncProbeMs = 300;
const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));

export interface Running {
  cluster: BenchCluster;
  load: LoadClients;
}

// --- clusters -------------------------------------------------------------------------------

/**
 * Waits until every member names the same leader, writes every key once, then warms the
 * system up (warmUpMsPerOperation).
 */
export async function ready(running: Running): Promise<void> {
  if ((await running.load.leader(readyTimeoutMs)) === undefined)
    throw new Error(
      `${running.cluster.system}: no leader within ${readyTimeoutMs} ms\n${describeLogs(running.cluster)}`,
    );
  await running.load.prefill();
  if (warmUpMsPerOperation <= 0) return;
  const pids = running.cluster.members.map((m) => m.child.pid);
  for (const operation of operations) {
    await runCell(running.load, pids, operation, 16, {
      warmupMs: 0,
      windowMs: warmUpMsPerOperation,
      seed: hashString(`warm-up/${operation}`),
    });
  }
}

/** The leader's id and term as every member reports them, to notice elections during a run. */
async function leadership(running: Running): Promise<string> {
  const statuses = await Promise.all(
    running.cluster.members.map((_, i) => running.load.status(i).catch(() => undefined)),
  );
  return statuses.map((s) => (s === undefined ? '?' : `${s.leader}@${s.raftTerm}`)).join(' ');
}

// --- etcdctl check perf ---------------------------------------------------------------------

export interface CheckPerfResult {
  system: SystemName;
  load: string;
  exitCode: number | null;
  verdict: 'PASS' | 'FAIL' | 'no verdict';
  writesPerSecond?: number;
  slowestSeconds?: number;
  stddevSeconds?: number;
  /** etcdctl's report lines (PASS / FAIL per criterion, errors). */
  report: string[];
}

function runCheckPerf(cluster: BenchCluster, load: string): Promise<CheckPerfResult> {
  return new Promise((resolve) => {
    const child = spawn(
      'etcdctl',
      [
        `--endpoints=${cluster.endpoints.map((e) => `${cluster.tls ? 'https' : 'http'}://${e}`).join(',')}`,
        ...(cluster.tls
          ? [
              `--cacert=${benchTls.ca}`,
              `--cert=${benchTls.clientCert}`,
              `--key=${benchTls.clientKey}`,
            ]
          : []),
        'check',
        'perf',
        `--load=${load}`,
      ],
      { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), checkPerfTimeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      // The progress bar redraws with carriage returns; the report is the lines after it.
      const lines = output
        .replace(/\r/g, '\n')
        .split('\n')
        .map((l) => l.trim());
      const report = lines.filter((l) =>
        /^(PASS|FAIL)|Slowest|Stddev|Throughput|ERROR|Error/.test(l),
      );
      const number = (pattern: RegExp): number | undefined => {
        const match = lines.map((l) => pattern.exec(l)).find((m) => m !== null);
        return match === undefined ? undefined : Number(match[1]);
      };
      const last = report[report.length - 1];
      resolve({
        system: cluster.system,
        load,
        exitCode: code,
        verdict: last === 'PASS' || last === 'FAIL' ? last : 'no verdict',
        ...optional('writesPerSecond', number(/Throughput (?:is|too low:) (\d+) writes\/s/)),
        ...optional('slowestSeconds', number(/Slowest request took(?: too long)?:? ([\d.]+)s/)),
        ...optional('stddevSeconds', number(/Stddev (?:is|too high:) ([\d.]+)s/)),
        report,
      });
    });
  });
}

function optional<K extends string>(key: K, value: number | undefined): { [P in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number };
}

// --- the machine ----------------------------------------------------------------------------

/** Three probes of the disk's append + fdatasync rate (it varies from second to second). */
function diskProbes(dir: string): number[] {
  return [0, 1, 2].map(() => fsyncRate(dir, fsyncProbeMs, valueBytes));
}

function firstLine(command: string, args: string[]): string {
  const ran = spawnSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  return ran.error === undefined ? (ran.stdout.split('\n')[0] ?? '').trim() : 'not installed';
}

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  let debian = 'unknown';
  try {
    debian = fs.readFileSync('/etc/debian_version', 'utf8').trim();
  } catch {
    // not Debian
  }
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    debian,
    node: process.version,
    etcd: firstLine('etcd', ['--version']),
    etcdctl: firstLine('etcdctl', ['version']),
    chorusCommit: firstLine('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']),
  };
}

// --- summary --------------------------------------------------------------------------------

export interface Summary {
  operation: Operation;
  clients: number;
  system: SystemName;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  serverCpuMsPer1k: number;
  errors: number;
}

function summarize(results: readonly (CellResult & { system: SystemName })[]): Summary[] {
  const out: Summary[] = [];
  for (const operation of operations) {
    for (const clients of clientCounts) {
      for (const system of ['chorus', 'etcd'] as const) {
        const runs = results.filter(
          (r) => r.operation === operation && r.clients === clients && r.system === system,
        );
        if (runs.length === 0) continue;
        out.push({
          operation,
          clients,
          system,
          opsPerSecond: median(runs.map((r) => r.opsPerSecond)),
          p50Ms: median(runs.map((r) => r.p50Ms)),
          p99Ms: median(runs.map((r) => r.p99Ms)),
          serverCpuMsPer1k: median(runs.map((r) => r.serverCpuMsPer1k)),
          errors: runs.reduce((n, r) => n + Object.values(r.errors).reduce((a, b) => a + b, 0), 0),
        });
      }
    }
  }
  return out;
}

/** A figure with thousands separators and `digits` decimals; '—' when not a number. */
export const fmt = (value: number, digits = 0): string =>
  Number.isFinite(value)
    ? value.toLocaleString('en-US', {
        minimumFractionDigits: digits,
        maximumFractionDigits: digits,
      })
    : '—';

/** The summary as a Markdown table, ready for docs/benchmarks.md. */
function table(summary: readonly Summary[]): string[] {
  const lines = [
    '| operation | clients | Chorus req/s | p50 ms | p99 ms | etcd req/s | p50 ms | p99 ms | req/s Chorus/etcd | p99 Chorus/etcd | server CPU ms per 1k req, Chorus / etcd |',
    '| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |',
  ];
  for (const operation of operations) {
    for (const clients of clientCounts) {
      const chorus = summary.find(
        (s) => s.operation === operation && s.clients === clients && s.system === 'chorus',
      );
      const etcd = summary.find(
        (s) => s.operation === operation && s.clients === clients && s.system === 'etcd',
      );
      if (chorus === undefined) continue;
      const ratio = (a: number, b: number | undefined): string =>
        b === undefined ? '—' : fmt(a / b, 2);
      const errors =
        chorus.errors + (etcd?.errors ?? 0) > 0
          ? ` (errors: ${chorus.errors} / ${etcd?.errors ?? 0})`
          : '';
      lines.push(
        `| ${operation}${errors} | ${clients} | ${fmt(chorus.opsPerSecond)} | ${fmt(chorus.p50Ms, 2)} | ${fmt(chorus.p99Ms, 2)} | ${etcd === undefined ? '— | — | —' : `${fmt(etcd.opsPerSecond)} | ${fmt(etcd.p50Ms, 2)} | ${fmt(etcd.p99Ms, 2)}`} | ${ratio(chorus.opsPerSecond, etcd?.opsPerSecond)} | ${ratio(chorus.p99Ms, etcd?.p99Ms)} | ${fmt(chorus.serverCpuMsPer1k)} / ${etcd === undefined ? '—' : fmt(etcd.serverCpuMsPer1k)} |`,
      );
    }
  }
  return lines;
}

function perfTable(results: readonly CheckPerfResult[]): string[] {
  const lines = [
    '| system | load | verdict | writes/s | slowest s | stddev s |',
    '| --- | --- | --- | --: | --: | --: |',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.system} | ${r.load} | ${r.verdict} | ${r.writesPerSecond ?? '—'} | ${r.slowestSeconds ?? '—'} | ${r.stddevSeconds ?? '—'} |`,
    );
  }
  return lines;
}

// --- the run --------------------------------------------------------------------------------

async function start(system: SystemName, root: string, runnings: Running[]): Promise<Running> {
  const dir = path.join(root, system);
  fs.mkdirSync(dir);
  const cluster =
    system === 'chorus'
      ? await startChorusCluster(dir, undefined, { tls: useTls })
      : await startEtcdCluster(dir, useTls);
  const running = {
    cluster,
    load: new LoadClients(cluster.endpoints, useTls ? benchTls : undefined),
  };
  runnings.push(running);
  await ready(running);
  return running;
}

async function measureCells(
  systems: readonly Running[],
): Promise<(CellResult & { system: SystemName })[]> {
  const results: (CellResult & { system: SystemName })[] = [];
  let cellIndex = 0;
  for (let round = 0; round < rounds; round++) {
    for (const operation of operations) {
      for (const clients of clientCounts) {
        const order = (round + cellIndex++) % 2 === 0 ? systems : [...systems].reverse();
        const seed = hashString(`${operation}/${clients}/${round}`);
        for (const { cluster, load } of order) {
          const pids = cluster.members.map((m) => m.child.pid);
          const result = await runCell(load, pids, operation, clients, {
            warmupMs,
            windowMs,
            seed,
          });
          results.push({ ...result, system: cluster.system });
          const errors = Object.entries(result.errors).map(([e, n]) => `${n}× ${e}`);
          console.log(
            `  round ${round + 1}/${rounds} ${operation.padEnd(16)} ${String(clients).padStart(3)} clients ${cluster.system.padEnd(6)} ${fmt(result.opsPerSecond).padStart(7)} req/s  p50 ${fmt(result.p50Ms, 2).padStart(6)} ms  p99 ${fmt(result.p99Ms, 2).padStart(7)} ms${errors.length > 0 ? `  errors: ${errors.join(', ')}` : ''}`,
          );
        }
      }
    }
  }
  return results;
}

async function runCompare(): Promise<void> {
  const hasEtcd = onPath('etcd');
  const hasEtcdctl = onPath('etcdctl');
  if (!hasEtcd) {
    console.log(
      '  etcd is not on PATH (Debian: apt-get install etcd-server): measuring Chorus alone',
    );
  }
  if (!hasEtcdctl && perfLoads.length > 0) {
    console.log('  etcdctl is not on PATH (Debian: apt-get install etcd-client): no check perf');
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-bench-compare-'));
  const startedAt = new Date();
  const diskBefore = diskProbes(root);
  const runnings: Running[] = [];
  try {
    const systems = [await start('chorus', root, runnings)];
    if (hasEtcd) systems.push(await start('etcd', root, runnings));
    const leadersBefore = await Promise.all(systems.map(leadership));
    console.log(
      `  ${rounds} rounds × ${operations.length} operations × ${clientCounts.length} client counts; ${warmupMs} ms warm-up + ${windowMs} ms measured per cell and system, after ${warmUpMsPerOperation} ms of each operation at 16 clients unmeasured${useTls ? '; TLS on client and peer ports, client certificates required' : ''}`,
    );
    const cells = await measureCells(systems);
    const leadersAfter = await Promise.all(systems.map(leadership));

    const perf: CheckPerfResult[] = [];
    if (hasEtcdctl) {
      for (const [i, load] of perfLoads.entries()) {
        const order = i % 2 === 0 ? systems : [...systems].reverse();
        for (const { cluster } of order) {
          console.log(`  etcdctl check perf --load=${load} against ${cluster.system} (60 s)…`);
          const result = await runCheckPerf(cluster, load);
          console.log(`    ${result.report.join('; ')}`);
          perf.push(result);
        }
      }
    }
    const diskAfter = diskProbes(root);
    const summary = summarize(cells);
    report({
      startedAt,
      summary,
      cells,
      perf,
      disk: { before: diskBefore, after: diskAfter },
      leaders: systems.map((s, i) => ({
        system: s.cluster.system,
        before: leadersBefore[i]!,
        after: leadersAfter[i]!,
      })),
      // What the members logged at their level (warn: slow applies, a blocked event loop,
      // leader changes), so a bad cell or a failed check perf can be explained afterwards.
      logs: systems.flatMap(({ cluster }) =>
        cluster.members.map((m) => ({
          system: cluster.system,
          member: m.name,
          lines: [...m.logTail],
        })),
      ),
    });
  } finally {
    for (const { cluster, load } of runnings) {
      load.close();
      await stopBenchCluster(cluster);
    }
    fs.rmSync(root, { recursive: true, force: true });
  }
}

interface Outcome {
  startedAt: Date;
  summary: Summary[];
  cells: (CellResult & { system: SystemName })[];
  perf: CheckPerfResult[];
  disk: { before: number[]; after: number[] };
  leaders: { system: SystemName; before: string; after: string }[];
  /** The last lines of each member's log (compare-clusters keeps a bounded tail). */
  logs: { system: SystemName; member: string; lines: string[] }[];
}

function report(outcome: Outcome): void {
  const { startedAt, summary, perf, disk, leaders, logs } = outcome;
  const diskMedian = median([...disk.before, ...disk.after]);
  console.log('');
  for (const line of table(summary)) console.log(line);
  if (perf.length > 0) {
    console.log('');
    for (const line of perfTable(perf)) console.log(line);
  }
  console.log(
    `\n  disk: append ${valueBytes} B + fdatasync in the same file system: median ${fmt(diskMedian)} /s (before ${disk.before.map((d) => fmt(d)).join(', ')}; after ${disk.after.map((d) => fmt(d)).join(', ')})`,
  );
  for (const l of leaders) {
    const changed = l.before !== l.after ? '  (leadership changed during the run)' : '';
    console.log(
      `  ${l.system} leader@term per member: before ${l.before}; after ${l.after}${changed}`,
    );
  }
  for (const { system, member, lines } of logs) {
    if (lines.length > 0)
      console.log(`  ${system} ${member} logged ${lines.length} lines (kept in the JSON file)`);
  }

  const stamp = startedAt.toISOString().slice(0, 16).replace(':', '').replace('T', '-');
  fs.mkdirSync(resultsDir, { recursive: true });
  const base = path.join(resultsDir, `compare-${stamp}`);
  const json = {
    benchmark: 'compare',
    startedAt: startedAt.toISOString(),
    machine: machine(),
    settings: {
      tls: useTls,
      clientCounts,
      operations,
      rounds,
      warmupMs,
      warmUpMsPerOperation,
      windowMs,
      keySpace,
      valueBytes,
      perfLoads,
    },
    diskFsyncsPerSecond: disk,
    leaders,
    summary,
    checkPerf: perf,
    memberLogs: logs,
    cells: outcome.cells,
  };
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  const subtitle = `${startedAt.toISOString().slice(0, 10)}, ${os.cpus().length} cores, Node ${process.version}, ${rounds} round${rounds === 1 ? '' : 's'} of ${windowMs / 1000} s per cell, medians${useTls ? ', TLS' : ''}`;
  fs.writeFileSync(`${base}.svg`, renderCompareChart(summary, operations, clientCounts, subtitle));
  console.log(`  wrote ${base}.json and ${base}.svg`);
}

export const compareBench: Benchmark = {
  name: 'compare (Chorus beside etcd)',
  flag: '--compare',
  run: runCompare,
};
