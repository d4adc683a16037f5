/**
 * The nemesis: faults drawn from the seed. Swarm testing: which kinds of fault are on, and
 * at what rates, is itself drawn from the seed, so a campaign explores many fault mixes
 * instead of one blend of everything at once. The plan is printed before a run so a person
 * can see what a seed did.
 */
import type { Random } from '../core/prng.js';
import type { Cluster } from './cluster.js';
import { quietDisk } from './disk.js';
import { quietNetwork } from './network.js';
import { applyPartition, partitionShapes, type PartitionShape } from './partition.js';

/**
 * `membership` (membership changes and leadership transfers) is carried out by workloads that
 * support it (e.g. register, through the Raft leader); the others are applied here.
 */
export const faultKinds = [
  'partition',
  'loss',
  'dup',
  'crash',
  'pause',
  'clock',
  'disk',
  'membership',
] as const;
export type FaultKind = (typeof faultKinds)[number];

export interface NemesisPlan {
  kinds: FaultKind[];
  partition?: {
    meanIntervalMs: number;
    meanDurationMs: number;
    shapes: PartitionShape[];
    clogRate: number;
  };
  loss?: { rate: number };
  dup?: { dupRate: number; reorderRate: number; reorderDelayMsMean: number };
  crash?: { meanIntervalMs: number; meanDowntimeMs: number; powerLossRate: number };
  pause?: { meanIntervalMs: number; meanDurationMs: number };
  clock?: { driftPpmMax: number; meanJumpIntervalMs: number; jumpMsMax: number };
  disk?: { eioRate: number; enospcRate: number; syncMsTailMean: number; tornRate: number };
  membership?: { meanIntervalMs: number; transferRate: number; jointRate: number };
}

/** Parses "all", "none" or a comma list of kinds; unknown names are an error. */
export function parseFaultKinds(text: string): FaultKind[] {
  if (text === 'all') return [...faultKinds];
  if (text === 'none' || text === '') return [];
  const kinds = text.split(',').map((k) => k.trim());
  for (const kind of kinds) {
    if (!(faultKinds as readonly string[]).includes(kind)) {
      throw new Error(
        `unknown nemesis ${JSON.stringify(kind)}; expected all, none or some of ${faultKinds.join(',')}`,
      );
    }
  }
  return kinds as FaultKind[];
}

/** Draws the swarm plan: each allowed kind is on with probability 1/2 (at least one if any). */
export function drawPlan(random: Random, allowed: readonly FaultKind[]): NemesisPlan {
  let kinds = allowed.filter(() => random.chance(0.5));
  if (kinds.length === 0 && allowed.length > 0) kinds = [random.pick(allowed)];
  const plan: NemesisPlan = { kinds };
  const r = (min: number, max: number): number =>
    Math.round((min + random.float() * (max - min)) * 1000) / 1000;
  for (const kind of kinds) {
    switch (kind) {
      case 'partition': {
        const shapes = partitionShapes.filter(() => random.chance(0.6));
        plan.partition = {
          meanIntervalMs: r(500, 5000),
          meanDurationMs: r(200, 5000),
          shapes: shapes.length > 0 ? shapes : [random.pick(partitionShapes)],
          clogRate: r(0, 0.3),
        };
        break;
      }
      case 'loss':
        plan.loss = { rate: r(0.01, 0.4) };
        break;
      case 'dup':
        plan.dup = { dupRate: r(0.01, 0.3), reorderRate: r(0, 0.3), reorderDelayMsMean: r(1, 50) };
        break;
      case 'crash':
        plan.crash = {
          meanIntervalMs: r(500, 8000),
          meanDowntimeMs: r(50, 3000),
          powerLossRate: r(0, 0.2),
        };
        break;
      case 'pause':
        plan.pause = { meanIntervalMs: r(500, 8000), meanDurationMs: r(50, 3000) };
        break;
      case 'clock':
        plan.clock = {
          driftPpmMax: r(0, 1000),
          meanJumpIntervalMs: r(1000, 10000),
          jumpMsMax: r(0, 60000),
        };
        break;
      case 'disk':
        plan.disk = {
          eioRate: r(0, 0.01),
          enospcRate: r(0, 0.01),
          syncMsTailMean: r(0.1, 20),
          tornRate: r(0, 1),
        };
        break;
      case 'membership':
        plan.membership = {
          meanIntervalMs: r(300, 3000),
          transferRate: r(0.2, 0.8),
          jointRate: r(0, 0.5),
        };
        break;
    }
  }
  return plan;
}

/** Applies a plan to a cluster during the safety phase; `heal` ends every fault. */
export class Nemesis<App> {
  private active = false;

  constructor(
    private readonly cluster: Cluster<App>,
    private readonly random: Random,
    readonly plan: NemesisPlan,
  ) {}

  start(): void {
    this.active = true;
    const { cluster, plan, random } = this;
    const net = cluster.network;
    net.faults = {
      ...quietNetwork,
      lossRate: plan.loss?.rate ?? 0,
      dupRate: plan.dup?.dupRate ?? 0,
      reorderRate: plan.dup?.reorderRate ?? 0,
      reorderDelayMsMean: plan.dup?.reorderDelayMsMean ?? 0,
    };
    if (plan.disk) {
      for (const node of cluster.nodes)
        node.disk.faults = { ...quietDisk, ...plan.disk, syncMsMin: quietDisk.syncMsMin };
    }
    if (plan.clock) {
      const clock = plan.clock;
      for (const node of cluster.nodes)
        node.clock.setDriftPpm((random.float() * 2 - 1) * clock.driftPpmMax);
      this.every(clock.meanJumpIntervalMs, () => {
        const node = random.pick(cluster.nodes);
        const delta = Math.round((random.float() * 2 - 1) * clock.jumpMsMax);
        node.clock.jumpWall(delta);
        this.note('clock-jump', node.index, delta);
      });
    }
    if (plan.partition) this.schedulePartitions(plan.partition);
    if (plan.crash) this.scheduleCrashes(plan.crash);
    if (plan.pause) this.schedulePauses(plan.pause);
  }

  /** Ends every fault (liveness phase). Clock drift stays: real clocks drift forever. */
  heal(): void {
    this.active = false;
    this.cluster.network.faults = { ...quietNetwork };
    for (const node of this.cluster.nodes) node.disk.faults = { ...quietDisk };
    this.cluster.healAll();
    this.note('heal', 255, 0);
  }

  private note(
    kind: string,
    node: number,
    detail: number,
    describe?: () => Record<string, unknown>,
  ): void {
    const world = this.cluster.world;
    world.trace.record(world.now, kind, node, detail, describe);
  }

  /** Runs `fn` at exponentially distributed intervals while the nemesis is active. */
  private every(meanMs: number, fn: () => void): void {
    const world = this.cluster.world;
    const loop = (): void => {
      world.after(this.random.exponential(meanMs), () => {
        if (!this.active) return;
        fn();
        loop();
      });
    };
    loop();
  }

  private later(delayMs: number, fn: () => void): void {
    this.cluster.world.after(delayMs, () => {
      if (this.active) fn();
    });
  }

  private schedulePartitions(p: NonNullable<NemesisPlan['partition']>): void {
    const { cluster, random } = this;
    const net = cluster.network;
    this.every(p.meanIntervalMs, () => {
      if (random.chance(p.clogRate)) {
        const from = random.int(cluster.size);
        const to = random.int(cluster.size);
        net.clog(from, to);
        this.note('clog', from, to);
        this.later(random.exponential(p.meanDurationMs), () => {
          net.unclog(from, to);
          this.note('unclog', from, to);
        });
        return;
      }
      const applied = applyPartition(net, random, random.pick(p.shapes));
      this.note('partition', 255, 0, () => ({ shape: applied.shape, groups: applied.description }));
      this.later(random.exponential(p.meanDurationMs), () => {
        net.heal();
        this.note('partition-heal', 255, 0);
      });
    });
  }

  private scheduleCrashes(c: NonNullable<NemesisPlan['crash']>): void {
    const { cluster, random } = this;
    this.every(c.meanIntervalMs, () => {
      const victims = random.chance(c.powerLossRate) ? cluster.nodes : [random.pick(cluster.nodes)];
      for (const node of victims) {
        if (node.status === 'crashed') continue;
        if (node.status === 'paused') node.resume();
        node.crash(victims.length > 1 ? 'power loss' : 'nemesis');
        this.later(random.exponential(c.meanDowntimeMs), () => {
          if (node.status === 'crashed') node.boot();
        });
      }
    });
  }

  private schedulePauses(p: NonNullable<NemesisPlan['pause']>): void {
    const { cluster, random } = this;
    this.every(p.meanIntervalMs, () => {
      const node = random.pick(cluster.nodes);
      if (node.status !== 'up') return;
      node.pause();
      this.later(random.exponential(p.meanDurationMs), () => node.resume());
    });
  }
}
