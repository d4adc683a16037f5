/**
 * One simulation run: boot a cluster, run the workload with the nemesis on (safety phase),
 * heal every fault and require convergence within a bound (liveness phase), then judge the
 * result with the workload's checker. One seed gives one run, exactly.
 */
import { describeError } from '../core/errors.js';
import { seededRandom, type Random } from '../core/prng.js';
import type { Env } from '../env/env.js';
import { Cluster } from './cluster.js';
import { safetyPhaseMsDefault } from './constants.js';
import { drawPlan, Nemesis, type FaultKind, type NemesisPlan } from './nemesis.js';
import type { SimNode } from './node.js';
import type { TraceSink } from './trace.js';
import { World } from './world.js';

export type Phase = 'safety' | 'liveness' | 'done';

export interface RunContext<App> {
  readonly world: World;
  readonly cluster: Cluster<App>;
  /** The workload's own random stream. */
  readonly random: Random;
  readonly phase: Phase;
  readonly safetyEndMs: number;
  /** The faults drawn for this run (workloads carry out the kinds the nemesis cannot). */
  readonly plan: NemesisPlan;
}

export interface Verdict {
  ok: boolean;
  /** What went wrong, one sentence each; empty when ok. */
  problems: string[];
  /** Figures worth printing either way (e.g. "values: 412 acknowledged, 0 lost"). */
  summary: string[];
}

export interface SimWorkload<App> {
  readonly name: string;
  /** The faults this workload's guarantee claims to survive; `--nemesis all` means these. */
  readonly faults: readonly FaultKind[];
  /** Bound on the liveness phase: after healing, converge within this or fail. */
  readonly livenessMsMax: number;
  /** Boots one node's app; `plan` is the run's nemesis plan (drawn before any node boots). */
  create(env: Env, node: SimNode<App>, plan: NemesisPlan): App;
  /** Called once after boot: schedule client operations (stop issuing once phase is not safety). */
  start(ctx: RunContext<App>): void;
  /** True once every node agrees (checked periodically in the liveness phase). */
  converged(ctx: RunContext<App>): boolean;
  /** Judges the run; `converged` says whether the liveness phase converged in time. */
  check(ctx: RunContext<App>, converged: boolean): Verdict;
}

export interface RunOptions {
  seed: number;
  nodes: number;
  /** Fault kinds allowed; the plan draws a subset (swarm testing). */
  nemesis: readonly FaultKind[];
  safetyMs?: number;
  trace?: TraceSink;
}

export interface RunResult {
  seed: number;
  workload: string;
  nodes: number;
  plan: NemesisPlan;
  verdict: Verdict;
  traceHash: string;
  events: number;
  virtualMs: number;
  messagesDelivered: number;
  livenessMs: number | undefined;
}

const convergenceCheckMs = 50;

export function runSimulation<App>(workload: SimWorkload<App>, options: RunOptions): RunResult {
  const root = seededRandom(options.seed);
  const world = new World(root, options.trace);
  const allowed = options.nemesis.filter((k) => workload.faults.includes(k));
  const plan = drawPlan(root.fork('plan'), allowed);
  const cluster = new Cluster<App>(world, root.fork('cluster'), options.nodes, {
    create: (env, node) => workload.create(env, node, plan),
  });
  const safetyEndMs = options.safetyMs ?? safetyPhaseMsDefault;
  const ctx = {
    world,
    cluster,
    random: root.fork('workload'),
    phase: 'safety' as Phase,
    safetyEndMs,
    plan,
  };
  const nemesis = new Nemesis(cluster, root.fork('nemesis'), plan);
  world.trace.note(0, 'plan', {
    seed: options.seed,
    workload: workload.name,
    nodes: options.nodes,
    plan,
  });

  let converged = false;
  let livenessMs: number | undefined;
  let crashProblem: string | undefined;
  try {
    cluster.bootAll();
    workload.start(ctx);
    nemesis.start();
    world.runUntil(safetyEndMs);

    ctx.phase = 'liveness';
    nemesis.heal();
    const deadline = safetyEndMs + workload.livenessMsMax;
    const probe = (): void => {
      if (workload.converged(ctx)) {
        converged = true;
        livenessMs = world.now - safetyEndMs;
      } else if (world.now + convergenceCheckMs <= deadline) {
        world.after(convergenceCheckMs, probe);
      }
    };
    world.after(0, probe);
    world.runWhile(() => !converged, deadline);
  } catch (error) {
    crashProblem = describeError(error);
  }
  ctx.phase = 'done';
  let verdict: Verdict;
  if (crashProblem !== undefined) {
    verdict = { ok: false, problems: [crashProblem], summary: [] };
  } else {
    verdict = workload.check(ctx, converged);
    if (!converged) {
      verdict = {
        ...verdict,
        ok: false,
        problems: [
          `no convergence within ${workload.livenessMsMax}ms of healing`,
          ...verdict.problems,
        ],
      };
    }
  }
  world.trace.note(world.now, 'verdict', { ok: verdict.ok, problems: verdict.problems });
  return {
    seed: options.seed,
    workload: workload.name,
    nodes: options.nodes,
    plan,
    verdict,
    traceHash: world.trace.hash(),
    events: world.trace.events,
    virtualMs: world.now,
    messagesDelivered: cluster.network.counters.delivered,
    livenessMs,
  };
}
