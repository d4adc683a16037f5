/**
 * A simulated KV node (src/kv/node.ts over RaftStorage on the simulated disk) and what the
 * kv, watch and lease workloads share: options, the Raft invariants, the canonical history
 * of applied revisions (every node must apply the same events at the same revision), a
 * client helper that records operations, and the compaction loop.
 */
import type { HistoryEvent, Value } from '../check/history.js';
import { ChorusError, FatalError } from '../core/errors.js';
import type { Env } from '../env/env.js';
import { KvError } from '../kv/errors.js';
import type { KvListener } from '../kv/machine.js';
import { KvNode, kvNodeDefaults, type KvBug } from '../kv/node.js';
import type { KeyValue, KvEvent } from '../kv/types.js';
import type { RaftDriver } from '../raft/driver.js';
import type { SimNode } from '../sim/node.js';
import type { RunContext } from '../sim/run.js';
import type { NemesisPlan } from '../sim/nemesis.js';
import type { RaftConfig } from '../raft/raft.js';
import { RaftStorage } from '../storage/storage.js';
import {
  ChainedStateMachine,
  RaftInvariants,
  raftWorkloadDefaults,
  type RaftApp,
  type RaftWorkloadOptions,
} from './raft-invariants.js';

export interface KvSimOptions extends RaftWorkloadOptions {
  /** Mean interval between compactions (0: none). */
  compactEveryMsMean: number;
  /** Revisions kept behind the current one when compacting. */
  compactKeepRevisions: number;
  /** Every node's space quota (KvNodeOptions.quotaBytes); 0: none. */
  quotaBytes: number;
  /** Mean interval between an operator's alarm disarms (0: never): list, then deactivate each. */
  disarmEveryMsMean: number;
  /** KvNodeOptions.snapshotLogBytes and snapshotCatchUpBytes (the driver's defaults if absent). */
  snapshotLogBytes?: number;
  snapshotCatchUpBytes?: number;
  bug?: KvBug;
}

export const kvSimDefaults: KvSimOptions = {
  ...raftWorkloadDefaults,
  // Frequent snapshots: followers install them under watchers and leases.
  snapshotEveryEntries: 50,
  snapshotCatchUpEntries: 10,
  compactEveryMsMean: 1_000,
  compactKeepRevisions: 20,
  quotaBytes: 0,
  disarmEveryMsMean: 0,
};

export class KvSimApp implements RaftApp {
  node: KvNode | undefined;

  constructor(
    env: Env,
    o: KvSimOptions,
    raft: Pick<RaftConfig, 'peers' | 'bootstrap'>,
    onApply: (index: number, term: number, chain: number) => void,
    observe: Partial<KvListener>,
  ) {
    RaftStorage.open(env, 'raft', (error, storage, recovered) => {
      if (error !== undefined || storage === undefined || recovered === undefined) {
        throw new FatalError('cannot open raft storage', { cause: error });
      }
      this.node = new KvNode(
        env,
        {
          // As the server does: the founding voters are the first log entries (bootstrap), so
          // the campaigns exercise the configuration the way production builds it.
          raft: {
            ...raft,
            appendBytesMax: o.appendBytesMax,
            snapshotChunkBytes: o.snapshotChunkBytes,
            ...(o.bug === 'snapshot-chunk-gap' ? { bug: o.bug } : {}),
          },
          tickMs: o.tickMs,
          snapshotEveryEntries: o.snapshotEveryEntries,
          snapshotCatchUpEntries: o.snapshotCatchUpEntries,
          ...(o.snapshotLogBytes === undefined ? {} : { snapshotLogBytes: o.snapshotLogBytes }),
          ...(o.snapshotCatchUpBytes === undefined
            ? {}
            : { snapshotCatchUpBytes: o.snapshotCatchUpBytes }),
          forwardDeadlineMs: o.clientTimeoutMs,
          ...kvNodeDefaults,
          progressNotifyMs: 500,
          // A few keys per step: snapshots span several turns, interleaved with applies.
          snapshotKeysPerStep: 2,
          mvcc: { nodeEntriesMax: 4 },
          wrapStateMachine: (machine) => new ChainedStateMachine(machine, onApply),
          observe,
          ...(o.quotaBytes > 0 ? { quotaBytes: o.quotaBytes } : {}),
          ...(o.bug === undefined ? {} : { bug: o.bug }),
        },
        storage,
        recovered,
      );
    });
  }

  get driver(): RaftDriver | undefined {
    return this.node?.driver;
  }
}

export type KvCtx = RunContext<KvSimApp>;

/** Errors after which the operation certainly did not take effect. */
const definiteFailures = new Set(['not-leader', 'no-leader', 'proposal-dropped', 'bad-input']);

export const isDefinite = (error: ChorusError): boolean =>
  error instanceof KvError || definiteFailures.has(error.code);

const text = new TextDecoder();
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array): string => text.decode(b);

/** The shared state of one run of a KV workload. */
export class KvRun {
  readonly invariants = new RaftInvariants<KvSimApp>();
  readonly events: HistoryEvent[] = [];
  /** revision → a canonical rendering of its events, as the first node applied them. */
  readonly history = new Map<number, string>();
  readonly revisionEvents = new Map<number, readonly KvEvent[]>();
  /** world time (ms) at which each revision was first applied anywhere. */
  readonly appliedAt = new Map<number, number>();
  pending = 0;
  nextProcess = 0;
  compactions = 0;
  /** Alarms an operator deactivated (disarmLoop), and writes refused for want of space. */
  disarmed = 0;
  refusedNoSpace = 0;
  /** The highest compaction any node applied. */
  maxCompacted = 0;
  private ctx: KvCtx | undefined;

  constructor(readonly o: KvSimOptions) {}

  /**
   * With the membership nemesis on (and four nodes or more), the last node does not found the
   * cluster: it starts empty with no configuration, as a member added by MemberAdd does, and
   * the nemesis adds it as a learner (later perhaps a voter) at some point, so joining by
   * replaying the log from the founding entries, or from a snapshot, runs under faults.
   */
  create(
    env: Env,
    node: SimNode<KvSimApp>,
    plan: NemesisPlan,
    observe: Partial<KvListener> = {},
  ): KvSimApp {
    const all = [env.net.self, ...env.net.peers()].sort();
    const joiner =
      plan.membership !== undefined && all.length >= 4 ? all[all.length - 1] : undefined;
    const founders = all.filter((id) => id !== joiner);
    const raft =
      env.net.self === joiner
        ? { peers: [] }
        : { peers: [], bootstrap: founders.map((id) => ({ node: id })) };
    return new KvSimApp(env, this.o, raft, this.invariants.onApply(node), {
      ...observe,
      compacted: (revision) => {
        this.maxCompacted = Math.max(this.maxCompacted, revision);
        observe.compacted?.(revision);
      },
      events: (revision, events) => {
        this.onEvents(node, revision, events.all());
        observe.events?.(revision, events);
      },
    });
  }

  start(ctx: KvCtx, extra?: () => void): void {
    this.ctx = ctx;
    this.invariants.start(ctx, extra);
    if (this.o.compactEveryMsMean > 0) this.compactLoop(ctx);
    if (this.o.disarmEveryMsMean > 0) this.disarmLoop(ctx);
  }

  /** Every node applies the same events at the same revision. */
  private onEvents(node: SimNode<KvSimApp>, revision: number, events: readonly KvEvent[]): void {
    const rendered = renderEvents(events, true);
    const known = this.history.get(revision);
    if (known === undefined) {
      this.history.set(revision, rendered);
      this.revisionEvents.set(revision, events);
      this.appliedAt.set(revision, this.ctx?.world.now ?? 0);
    } else if (known !== rendered) {
      this.invariants.fail(
        `${node.id} applied different events at revision ${revision}: ${rendered} vs ${known}`,
      );
    }
  }

  record(process: number, type: HistoryEvent['type'], f: string, key: string, value: Value): void {
    this.events.push({
      process,
      type,
      f,
      key,
      value,
      time: Math.round((this.ctx?.world.now ?? 0) * 1e6),
      index: this.events.length,
    });
  }

  /**
   * Runs one client operation against node `target`: `call` starts it on the node and
   * reports through `reply`. The reply reaches the client a little later (never inside the
   * node's own call stack); a timeout makes it indeterminate.
   */
  operate<T>(
    ctx: KvCtx,
    target: number,
    call: (
      node: KvNode,
      reply: (error: ChorusError | undefined, result: T | undefined) => void,
    ) => void,
    finish: (outcome: {
      error?: ChorusError;
      result?: T;
      timedOut?: boolean;
      down?: boolean;
    }) => void,
  ): void {
    this.pending++;
    let finished = false;
    const end = (outcome: Parameters<typeof finish>[0]): void => {
      if (finished) return;
      finished = true;
      this.pending--;
      timer.cancelled = true;
      finish(outcome);
    };
    const timer = ctx.world.after(this.o.clientTimeoutMs, () => end({ timedOut: true }));
    ctx.cluster.call(
      target,
      (app) => {
        const node = app.node;
        if (node === undefined)
          return end({ error: new ChorusError('no-leader', 'node starting') });
        call(node, (error, result) =>
          ctx.world.after(0.05, () =>
            end(error !== undefined ? { error } : result === undefined ? {} : { result }),
          ),
        );
      },
      () => end({ down: true }),
    );
  }

  /**
   * Ends the per-event checks and returns the run's problems so far: an invariant violated,
   * and — once converged — stores that differ.
   */
  finish(ctx: KvCtx, converged: boolean): string[] {
    this.invariants.stop(ctx);
    const problems: string[] = [];
    if (this.invariants.violation !== undefined) problems.push(this.invariants.violation);
    const hashes = converged ? this.compareHashes(ctx) : undefined;
    if (hashes !== undefined) problems.push(hashes);
    return problems;
  }

  /**
   * After convergence every node applied the same log, so HashKV — over every key revision
   * the store keeps — must agree everywhere. Returns a problem, or undefined.
   */
  private compareHashes(ctx: KvCtx): string | undefined {
    const seen = new Map<string, string>();
    const members = this.invariants.members(ctx);
    for (const node of ctx.cluster.nodes) {
      const machine = node.app?.node?.machine;
      if (node.status !== 'up' || machine === undefined || !members.has(node.id)) continue;
      const h = machine.store.hashKv();
      const alarms = machine.alarms.map((a) => `${a.member}:${a.alarm}`).sort();
      seen.set(
        `${h.hash}@${h.revision}/${h.compactRevision} alarms [${alarms.join(' ')}]`,
        node.id,
      );
    }
    return seen.size <= 1
      ? undefined
      : `stores differ after convergence: ${[...seen].map(([h, id]) => `${id} ${h}`).join(', ')}`;
  }

  /**
   * Now and then an operator disarms, as `etcdctl alarm disarm` does: the alarms one node
   * lists, each deactivated through the log.
   */
  private disarmLoop(ctx: KvCtx): void {
    ctx.world.after(ctx.random.exponential(this.o.disarmEveryMsMean), () => {
      if (ctx.phase !== 'safety') return;
      this.operate<unknown>(
        ctx,
        ctx.random.int(ctx.cluster.size),
        (node, reply) => {
          const alarms = node.alarms();
          let left = alarms.length;
          if (left === 0) return reply(undefined, undefined);
          for (const a of alarms)
            node.alarm(false, a.member, a.alarm, (error, result) => {
              if (error === undefined && result!.alarms.length > 0) this.disarmed++;
              if (--left === 0) reply(undefined, undefined);
            });
        },
        () => undefined,
      );
      this.disarmLoop(ctx);
    });
  }

  /** Now and then a client compacts history, keeping the last few revisions. */
  private compactLoop(ctx: KvCtx): void {
    ctx.world.after(ctx.random.exponential(this.o.compactEveryMsMean), () => {
      if (ctx.phase !== 'safety') return;
      const target = ctx.random.int(ctx.cluster.size);
      this.operate<{ revision: number }>(
        ctx,
        target,
        (node, reply) => {
          const revision = node.machine.revision() - this.o.compactKeepRevisions;
          if (revision <= node.machine.compactRevision()) return reply(undefined, undefined);
          node.compact({ revision }, (error) => {
            if (error === undefined) this.compactions++;
            reply(undefined, undefined);
          });
        },
        () => undefined,
      );
      this.compactLoop(ctx);
    });
  }
}

const renderKv = (kv: KeyValue): string =>
  `${str(kv.key)}=${str(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}/${kv.lease}`;

/** A canonical rendering of a revision's events (with their prevKv when asked). */
export function renderEvents(events: readonly KvEvent[], prevKv = false): string {
  return events
    .map((e) => {
      const prev = prevKv && e.prevKv !== undefined ? ` (was ${renderKv(e.prevKv)})` : '';
      return `${e.type}:${renderKv(e.kv)}${prev}`;
    })
    .join(' ');
}
