/**
 * `chorus sim`: one seed, or a campaign of seeds, of a workload on the deterministic
 * simulator. One seed prints the configuration it derives, the verdict and the trace hash;
 * a campaign prints a progress bar, a summary table and, for every failing seed, the one
 * command that reproduces it.
 */
import * as fs from 'node:fs';
import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import { seededRandom } from '../core/prng.js';
import { drawPlan, faultKinds, parseFaultKinds, type FaultKind } from '../sim/nemesis.js';
import { runSimulation, type RunResult, type SimWorkload } from '../sim/run.js';
import { broadcastWorkload } from '../workload/broadcast.js';
import { gossipBugs } from '../gossip/gossip.js';
import { registerBugs, registerWorkload } from '../workload/register.js';
import { kvBugs } from '../kv/node.js';
import { kvQuotaOptions, kvWorkload } from '../workload/kv.js';
import { leaseWorkload } from '../workload/lease.js';
import { watchWorkload } from '../workload/watch.js';
import type { CliContext } from './context.js';

/** Every workload by name; a fresh instance per run (workloads keep their history). */
export const workloads: Record<string, (bug?: string) => SimWorkload<unknown>> = {
  broadcast: (bug) =>
    broadcastWorkload(bug === undefined ? {} : { bug: parseBug(bug, gossipBugs) }),
  register: (bug) =>
    registerWorkload(bug === undefined ? {} : { bug: parseBug(bug, registerBugs) }),
  kv: (bug) => kvWorkload(bug === undefined ? {} : { bug: parseBug(bug, kvBugs) }),
  'kv-quota': (bug) =>
    kvWorkload({ ...kvQuotaOptions, ...(bug === undefined ? {} : { bug: parseBug(bug, kvBugs) }) }),
  watch: (bug) => watchWorkload(bug === undefined ? {} : { bug: parseBug(bug, kvBugs) }),
  lease: (bug) => leaseWorkload(bug === undefined ? {} : { bug: parseBug(bug, kvBugs) }),
};

function parseBug<B extends string>(bug: string, known: readonly B[]): B {
  if (!(known as readonly string[]).includes(bug)) {
    throw new UsageError(
      `unknown bug ${JSON.stringify(bug)}; this workload has ${known.join(', ')}`,
    );
  }
  return bug as B;
}
export const defaultWorkload = 'register';

export class UsageError extends Error {
  override name = 'UsageError';
}

/** "60s", "500ms", "2m" or a plain number of seconds → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (match === null)
    throw new UsageError(`bad duration ${JSON.stringify(text)}: use e.g. 500ms, 60s, 2m`);
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  return Math.round(value * (unit === 'ms' ? 1 : unit === 's' ? 1000 : 60_000));
}

/** "42" or "1..500" → the list of seeds. */
export function parseSeeds(text: string): number[] {
  const range = /^(\d+)\.\.(\d+)$/.exec(text.trim());
  if (range !== null) {
    const from = Number(range[1]);
    const to = Number(range[2]);
    if (to < from || to - from >= 1_000_000) throw new UsageError(`bad seed range ${text}`);
    return Array.from({ length: to - from + 1 }, (_, i) => from + i);
  }
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`bad seed ${JSON.stringify(text)}: use an integer or a range like 1..500`);
  }
  return [Number(text)];
}

interface SimArgs {
  workload: string;
  seed?: string;
  seeds?: string;
  nodes: string;
  nemesis: string;
  duration: string;
  trace?: string;
  plantBug?: string;
}

interface ParsedSim {
  workload: string;
  seeds: number[];
  nodes: number;
  nemesis: FaultKind[];
  durationMs: number;
  trace: string | undefined;
  campaign: boolean;
  bug: string | undefined;
}

function parseArgs(args: SimArgs): ParsedSim {
  if (!(args.workload in workloads)) {
    throw new UsageError(
      `unknown workload ${JSON.stringify(args.workload)}; have ${Object.keys(workloads).join(', ')}`,
    );
  }
  if ((args.seed === undefined) === (args.seeds === undefined))
    throw new UsageError('give exactly one of --seed or --seeds');
  const nodes = Number(args.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64)
    throw new UsageError(`--nodes must be 1..64, got ${args.nodes}`);
  let nemesis: FaultKind[];
  try {
    nemesis = parseFaultKinds(args.nemesis);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const seeds = parseSeeds(args.seeds ?? args.seed ?? '');
  if (args.trace !== undefined && seeds.length > 1)
    throw new UsageError('--trace needs a single --seed');
  const parsed: ParsedSim = {
    workload: args.workload,
    seeds,
    nodes,
    nemesis,
    durationMs: parseDuration(args.duration),
    trace: args.trace,
    campaign: args.seeds !== undefined,
    bug: args.plantBug,
  };
  if (parsed.bug !== undefined) workloads[parsed.workload]!(parsed.bug); // validates the name
  return parsed;
}

export function reproduceCommand(p: ParsedSim, seed: number): string {
  const nemesis =
    p.nemesis.length === faultKinds.length
      ? 'all'
      : p.nemesis.length === 0
        ? 'none'
        : p.nemesis.join(',');
  const bug = p.bug === undefined ? '' : ` --plant-bug ${p.bug}`;
  return `npx chorus sim --workload ${p.workload} --seed ${seed} --nodes ${p.nodes} --nemesis ${nemesis} --duration ${p.durationMs}ms${bug}`;
}

function runOne(p: ParsedSim, seed: number, trace?: (line: string) => void): RunResult {
  const workload = workloads[p.workload]!(p.bug);
  return runSimulation(workload, {
    seed,
    nodes: p.nodes,
    nemesis: p.nemesis,
    safetyMs: p.durationMs,
    ...(trace ? { trace } : {}),
  });
}

function single(p: ParsedSim, ctx: CliContext): void {
  const seed = p.seeds[0]!;
  const workload = workloads[p.workload]!();
  const plan = drawPlan(
    seededRandom(seed).fork('plan'),
    p.nemesis.filter((k) => workload.faults.includes(k)),
  );
  ctx.out(
    `seed: ${seed}  workload: ${p.workload}  nodes: ${p.nodes}  safety phase: ${p.durationMs}ms  liveness bound: ${workload.livenessMsMax}ms`,
  );
  ctx.out(
    `nemesis (drawn from the seed): ${plan.kinds.length === 0 ? 'none' : plan.kinds.join(', ')}`,
  );
  for (const kind of plan.kinds) ctx.out(`  ${kind}: ${JSON.stringify(plan[kind])}`);

  let sink: ((line: string) => void) | undefined;
  let fd: number | undefined;
  const buffered: string[] = [];
  if (p.trace !== undefined) {
    fd = fs.openSync(p.trace, 'w');
    const out = fd;
    sink = (line) => {
      buffered.push(line);
      if (buffered.length >= 4096) fs.writeSync(out, buffered.splice(0).join('\n') + '\n');
    };
  }
  const started = performance.now();
  const result = runOne(p, seed, sink);
  const realMs = performance.now() - started;
  if (fd !== undefined) {
    if (buffered.length > 0) fs.writeSync(fd, buffered.join('\n') + '\n');
    fs.closeSync(fd);
  }
  for (const line of result.verdict.summary) ctx.out(line);
  ctx.out(
    `virtual time: ${(result.virtualMs / 1000).toFixed(1)}s in ${(realMs / 1000).toFixed(2)}s real; ` +
      `events: ${result.events}; messages delivered: ${result.messagesDelivered}; ` +
      `liveness: ${result.livenessMs === undefined ? 'did not converge' : `converged ${result.livenessMs.toFixed(0)}ms after healing`}`,
  );
  if (result.verdict.ok) {
    ctx.out('verdict: PASS');
  } else {
    ctx.out('verdict: FAIL');
    for (const problem of result.verdict.problems) ctx.out(`  - ${problem}`);
    ctx.exitCode = 1;
  }
  if (p.trace !== undefined) ctx.out(`trace: ${p.trace}`);
  ctx.out(`trace-hash: ${result.traceHash}`);
}

function campaign(p: ParsedSim, ctx: CliContext): void {
  const bar = new cliProgress.SingleBar(
    {
      format: 'seeds [{bar}] {value}/{total} failed: {failed} eta: {eta}s',
      stream: process.stderr,
      noTTYOutput: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(p.seeds.length, 0, { failed: 0 });
  const failures: RunResult[] = [];
  const byKind = new Map<string, { runs: number; failed: number }>();
  let events = 0;
  let messages = 0;
  let virtualMs = 0;
  const liveness: number[] = [];
  const started = performance.now();
  for (const seed of p.seeds) {
    const result = runOne(p, seed);
    events += result.events;
    messages += result.messagesDelivered;
    virtualMs += result.virtualMs;
    if (result.livenessMs !== undefined) liveness.push(result.livenessMs);
    if (!result.verdict.ok) failures.push(result);
    for (const kind of result.plan.kinds.length > 0 ? result.plan.kinds : ['none']) {
      const row = byKind.get(kind) ?? { runs: 0, failed: 0 };
      row.runs++;
      if (!result.verdict.ok) row.failed++;
      byKind.set(kind, row);
    }
    bar.increment(1, { failed: failures.length });
  }
  bar.stop();
  const realS = (performance.now() - started) / 1000;
  liveness.sort((a, b) => a - b);
  ctx.out(
    `campaign: workload ${p.workload}, ${p.seeds.length} seeds, ${p.nodes} nodes, nemesis ${p.nemesis.join(',') || 'none'}`,
  );
  ctx.out('  fault kind    runs  failed');
  for (const [kind, row] of [...byKind.entries()].sort()) {
    ctx.out(
      `  ${kind.padEnd(12)} ${String(row.runs).padStart(5)} ${String(row.failed).padStart(7)}`,
    );
  }
  ctx.out(
    `  passed ${p.seeds.length - failures.length}, failed ${failures.length}; ${(virtualMs / 1000).toFixed(0)}s virtual in ${realS.toFixed(1)}s real; ` +
      `${events} events, ${messages} messages delivered` +
      (liveness.length > 0
        ? `; convergence after heal: median ${liveness[liveness.length >> 1]!.toFixed(0)}ms, max ${liveness[liveness.length - 1]!.toFixed(0)}ms`
        : ''),
  );
  for (const failure of failures) {
    ctx.out(`FAIL seed ${failure.seed}: ${failure.verdict.problems[0] ?? 'unknown'}`);
    ctx.out(`  reproduce: ${reproduceCommand(p, failure.seed)}`);
  }
  ctx.out(`${p.seeds.length - failures.length} passed, ${failures.length} failed`);
  if (failures.length > 0) ctx.exitCode = 1;
}

export function registerSim(program: Command, ctx: CliContext): void {
  program
    .command('sim')
    .description('run a workload on the deterministic simulator with faults drawn from the seed')
    .addOption(new Option('--workload <name>', 'workload').default(defaultWorkload))
    .option('--seed <n>', 'one seed')
    .option('--seeds <a..b>', 'a campaign over a range of seeds')
    .option('--nodes <n>', 'cluster size', '5')
    .option('--nemesis <kinds>', `all, none or a comma list of ${faultKinds.join(',')}`, 'all')
    .option('--duration <time>', 'length of the safety phase (faults on)', '60s')
    .option('--trace <file>', 'write every event as JSON lines')
    .option('--plant-bug <name>', 'plant a deliberate bug, to watch the checker catch it')
    .action((args: SimArgs) => {
      let parsed: ParsedSim;
      try {
        parsed = parseArgs(args);
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        ctx.err(`chorus sim: ${error.message}`);
        ctx.err(
          'usage: chorus sim [--workload broadcast] --seed N | --seeds A..B [--nodes 5] [--nemesis all|none|partition,loss,dup,crash,pause,clock,disk] [--duration 60s] [--trace out.jsonl]',
        );
        ctx.exitCode = 2;
        return;
      }
      if (parsed.campaign) campaign(parsed, ctx);
      else single(parsed, ctx);
    });
}
