/**
 * The `broadcast` simulation workload: clients broadcast unique integers through random
 * nodes and read random nodes' sets; after the faults heal every node must hold every
 * acknowledged value. Judged by the set-full checker.
 */
import { checkSetFull, type SetAdd, type SetRead } from '../check/setfull.js';
import { GossipNode, type GossipBug } from '../gossip/gossip.js';
import { faultKinds, type FaultKind } from '../sim/nemesis.js';
import type { RunContext, SimWorkload, Verdict } from '../sim/run.js';

export interface BroadcastOptions {
  /** Mean time between broadcasts, across all clients. */
  broadcastIntervalMsMean: number;
  /** Mean time between reads of one random node. */
  readIntervalMsMean: number;
  /** A client gives up on a broadcast after this long; the outcome is then indeterminate. */
  clientTimeoutMs: number;
  livenessMsMax: number;
  /** A deliberate bug to plant in every node (tests that prove the checker can fail). */
  bug?: GossipBug;
}

export const broadcastDefaults: BroadcastOptions = {
  broadcastIntervalMsMean: 20,
  readIntervalMsMean: 10,
  clientTimeoutMs: 1_000,
  livenessMsMax: 20_000,
};

/**
 * The faults gossip broadcast claims to survive. Bit flips are not among them: a value
 * acknowledged after one local fsync has one copy until it spreads, and corrupting that copy
 * loses it; the Raft workloads, which acknowledge only after a quorum, take on corruption.
 */
const survives: readonly FaultKind[] = faultKinds.filter((k) => k !== 'membership');

type Ctx = RunContext<GossipNode>;

export function broadcastWorkload(
  options: Partial<BroadcastOptions> = {},
): SimWorkload<GossipNode> {
  const o = { ...broadcastDefaults, ...options };
  const adds: SetAdd[] = [];
  const reads: SetRead[] = [];
  let nextValue = 1;

  const issueBroadcast = (ctx: Ctx): void => {
    const { world, cluster, random } = ctx;
    const index = random.int(cluster.size);
    const add: SetAdd = {
      value: nextValue++,
      node: cluster.ids[index]!,
      invokeMs: world.now,
      completeMs: undefined,
      outcome: 'info',
    };
    adds.push(add);
    let answered = false;
    // After the timeout the client stops waiting: the outcome stays indeterminate (info).
    const timeout = world.after(o.clientTimeoutMs, () => {
      answered = true;
    });
    const complete = (outcome: 'ok' | 'fail'): void => {
      if (answered) return;
      answered = true;
      timeout.cancelled = true;
      add.outcome = outcome;
      add.completeMs = world.now;
    };
    cluster.call(
      index,
      (app) =>
        app.broadcast(add.value, (error) =>
          world.after(0.05, () => complete(error === undefined ? 'ok' : 'fail')),
        ),
      () => complete('fail'),
    );
  };

  const issueRead = (ctx: Ctx): void => {
    const node = ctx.cluster.node(ctx.random.int(ctx.cluster.size));
    if (node.status !== 'up' || node.app === undefined || !node.app.ready) return;
    reads.push({ node: node.id, timeMs: ctx.world.now, values: new Set(node.app.values()) });
  };

  const loop = (ctx: Ctx, meanMs: number, action: (ctx: Ctx) => void): void => {
    ctx.world.after(ctx.random.exponential(meanMs), () => {
      if (ctx.phase !== 'safety') return;
      action(ctx);
      loop(ctx, meanMs, action);
    });
  };

  return {
    name: 'broadcast',
    faults: survives,
    livenessMsMax: o.livenessMsMax,
    create: (env) => new GossipNode(env, o.bug === undefined ? {} : { bug: o.bug }),
    start(ctx) {
      loop(ctx, o.broadcastIntervalMsMean, issueBroadcast);
      loop(ctx, o.readIntervalMsMean, issueRead);
    },
    converged(ctx) {
      const apps: GossipNode[] = [];
      for (const node of ctx.cluster.nodes) {
        if (node.status !== 'up' || node.app?.ready !== true) return false;
        apps.push(node.app);
      }
      const size = apps[0]!.size;
      if (apps.some((a) => a.size !== size)) return false;
      return adds.every((add) => add.outcome !== 'ok' || apps.every((a) => a.has(add.value)));
    },
    check(ctx): Verdict {
      const finalReads: SetRead[] = ctx.cluster.nodes.map((n) => ({
        node: n.id,
        timeMs: ctx.world.now,
        values: new Set(n.app?.values() ?? []),
      }));
      const result = checkSetFull(adds, reads, finalReads);
      const latency = result.stableLatencyMs;
      return {
        ok: result.ok,
        problems: result.problems,
        summary: [
          `broadcasts: ${result.acknowledged} acknowledged, ${result.indeterminate} indeterminate, ${result.failed} failed; reads: ${reads.length}`,
          `lost: ${result.lost.length}; missing on some node: ${result.neverVisible.length}`,
          latency
            ? `stable visibility ms: median ${latency.median.toFixed(1)}, p99 ${latency.p99.toFixed(1)}, max ${latency.max.toFixed(1)}`
            : 'stable visibility: no acknowledged values',
        ],
      };
    },
  };
}
