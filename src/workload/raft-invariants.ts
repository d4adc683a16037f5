/**
 * What every Raft-backed simulation workload checks and does, whatever its state machine:
 * white-box invariants after every simulated event, the membership nemesis, a hash chain
 * over applied entries, and the convergence test of the liveness phase.
 *
 * Invariants:
 * - at most one leader per term;
 * - term never decreases on a node (across restarts), commit never within one incarnation;
 * - applied prefixes are identical everywhere (a hash chain over applied entries);
 * - log matching: two logs with an entry of the same index and term agree before it;
 * - leader completeness: a leader holds every entry committed in an earlier term;
 * - durability: a leader's match index for a follower is in the follower's log.
 */
import type { ByteSource } from '../core/bytes.js';
import { encode, msgpackArray, MsgpackReader } from '../core/codec.js';
import { crc32c } from '../core/crc32c.js';
import { BadInputError, ChorusError } from '../core/errors.js';
import { thenInstall } from '../core/job.js';
import type { NodeId } from '../core/ids.js';
import {
  restoreJobOf,
  type RaftDriver,
  type SnapshotJob,
  type StateMachine,
} from '../raft/driver.js';
import { compareBytes } from '../kv/keys.js';
import type { ConfChange } from '../raft/raft.js';
import type { Entry } from '../raft/types.js';
import type { SimNode } from '../sim/node.js';
import type { RunContext } from '../sim/run.js';

/** What every Raft-backed workload's clients and cluster are tuned by. */
export interface RaftWorkloadOptions {
  clients: number;
  keys: number;
  /** Mean think time of a client between operations. */
  thinkMsMean: number;
  clientTimeoutMs: number;
  tickMs: number;
  snapshotEveryEntries: number;
  /** Entries kept before a snapshot's index: few, so lagging followers still need snapshots. */
  snapshotCatchUpEntries: number;
  livenessMsMax: number;
  /**
   * Small appends (a few entries each) make replication interleave with faults, so states
   * like the paper's Figure 8 — an old-term entry on a majority without the new leader's
   * entry — actually occur.
   */
  appendBytesMax: number;
  /**
   * Tiny snapshot chunks: the simulator's snapshots (a few KB) then travel in dozens of
   * chunks, so lost, duplicated and reordered chunks exercise the window and its resends.
   */
  snapshotChunkBytes: number;
}

export const raftWorkloadDefaults: RaftWorkloadOptions = {
  clients: 8,
  keys: 5,
  thinkMsMean: 20,
  clientTimeoutMs: 1_500,
  tickMs: 10,
  snapshotEveryEntries: 200,
  snapshotCatchUpEntries: 20,
  livenessMsMax: 20_000,
  appendBytesMax: 128,
  snapshotChunkBytes: 64,
};

export interface RaftApp {
  readonly driver: RaftDriver | undefined;
}

type OnApply = (index: number, term: number, chain: number) => void;

/**
 * Wraps a state machine with a hash chain over every applied entry; the chain travels in
 * snapshots, so a node restored from one continues the same chain.
 */
export class ChainedStateMachine implements StateMachine {
  chain = 0;
  index = 0;

  /** Present when the inner machine snapshots in steps; the chain is captured at the call. */
  readonly snapshotJob?: () => SnapshotJob;

  constructor(
    readonly inner: StateMachine,
    private readonly onApply: OnApply,
  ) {
    const job = inner.snapshotJob?.bind(inner);
    if (job !== undefined) {
      this.snapshotJob = () => {
        const [chain, index, inner] = [this.chain, this.index, job()];
        return {
          step: () => inner.step(),
          result: () =>
            msgpackArray([{ value: chain }, { value: index }, { binary: inner.result() }]),
        };
      };
    }
  }

  apply(entries: readonly Entry[]): unknown[] {
    for (const e of entries) {
      this.chain = mixChain(this.chain, e.index, e.term, crc32c(e.data));
      this.index = e.index;
      this.onApply(e.index, e.term, this.chain);
    }
    return this.inner.apply(entries);
  }

  snapshot(): Uint8Array {
    return encode([this.chain, this.index, this.inner.snapshot()]);
  }

  restore(data: Uint8Array): void {
    const job = this.restoreJob(data);
    while (!job.step());
  }

  /** The inner machine in steps; the chain with its last step. */
  restoreJob(data: ByteSource): { step(): boolean } {
    const reader = new MsgpackReader(data, 'chained snapshot');
    if (reader.arrayHeader() !== 3) throw new BadInputError('chained snapshot: not 3 items');
    const chain = reader.value() as number;
    const index = reader.value() as number;
    const inner = restoreJobOf(this.inner, reader.binary());
    return thenInstall(inner, () => {
      this.chain = chain;
      this.index = index;
    });
  }
}

export function mixChain(chain: number, index: number, term: number, crc: number): number {
  let h = chain ^ Math.imul(index, 0x9e3779b1);
  h = Math.imul(h ^ term, 0x85ebca6b) ^ crc;
  h ^= h >>> 13;
  return Math.imul(h, 0xc2b2ae35) >>> 0;
}

export class RaftInvariants<App extends RaftApp> {
  violation: string | undefined;
  membershipChanges = 0;
  /** Conf changes proposed that add a node from outside the configuration. */
  nodesAdded = 0;
  private readonly appliedChain = new Map<number, number>();
  /** index → [entry term, an upper bound of the term in which it was committed]. */
  private readonly committed = new Map<number, [number, number]>();
  private readonly leaders = new Map<number, NodeId>();
  private readonly lastTerm = new Map<string, number>();
  private readonly lastCommit = new Map<string, number>();
  private nodes: readonly SimNode<App>[] = [];
  private lastDeepCheckMs = -Infinity;

  get leaderTerms(): number {
    return this.leaders.size;
  }

  get entriesApplied(): number {
    return this.appliedChain.size;
  }

  fail(message: string): never {
    this.violation ??= message;
    throw new Error(`invariant violated: ${message}`);
  }

  /** The hook for ChainedStateMachine on `node`. */
  onApply(node: SimNode<App>): OnApply {
    return (index, term, chain) => {
      const expected = this.appliedChain.get(index);
      if (expected === undefined) this.appliedChain.set(index, chain);
      else if (expected !== chain)
        this.fail(`${node.id} applied a different entry at ${index} than another node`);
      if (!this.committed.has(index)) {
        this.committed.set(index, [term, node.app?.driver?.node.raft.term ?? term]);
      }
    };
  }

  /** Checks after every event, and starts the membership nemesis if the plan has one. */
  start(ctx: RunContext<App>, extra?: () => void): void {
    this.nodes = ctx.cluster.nodes;
    ctx.world.afterEvent = () => {
      this.checkEvent(ctx);
      extra?.();
    };
    if (ctx.plan.membership !== undefined) this.membershipLoop(ctx, ctx.plan.membership);
  }

  /** Stops the per-event checks (before the final verdict). */
  stop(ctx: RunContext<App>): void {
    ctx.world.afterEvent = undefined;
  }

  /**
   * Every member up, a leader of the current term with everything committed and applied. A
   * node outside the leader's configuration (one never added, or removed) is not waited for.
   */
  converged(ctx: RunContext<App>): boolean {
    const leader = this.leader(ctx);
    if (leader === undefined) return false;
    const members = this.members(ctx);
    const drivers: RaftDriver[] = [];
    for (const node of ctx.cluster.nodes) {
      if (!members.has(node.id)) continue;
      if (node.status !== 'up' || node.app?.driver === undefined) return false;
      drivers.push(node.app.driver);
    }
    const log = leader.node.raft.log;
    if (log.term(log.committed) !== leader.node.raft.term || log.committed < log.lastIndex())
      return false;
    return drivers.every((d) => d.appliedIndex >= log.committed);
  }

  /** The nodes in the configuration of the leader (all nodes when none leads). */
  members(ctx: RunContext<App>): Set<string> {
    const raft = this.leader(ctx)?.node.raft;
    if (raft === undefined) return new Set(ctx.cluster.nodes.map((n) => n.id));
    return new Set([...raft.incoming, ...raft.outgoing, ...raft.learners, ...raft.learnersNext]);
  }

  /** The leader's driver, if some node that is up leads. */
  leader(ctx: RunContext<App>): RaftDriver | undefined {
    return ctx.cluster.nodes.find(
      (n) => n.status === 'up' && n.app?.driver?.node.raft.role === 'leader',
    )?.app?.driver;
  }

  /**
   * The membership nemesis, carried out through whichever node leads: leadership transfers,
   * adding a node outside the configuration as a learner (it joins by replaying the log or
   * from a snapshot), removing a learner, demoting a voter to learner, promoting a learner,
   * and joint changes doing both at once. At least three voters remain. Refusals (a change
   * in flight, no leader) are ignored.
   */
  private membershipLoop(
    ctx: RunContext<App>,
    plan: NonNullable<RunContext<App>['plan']['membership']>,
  ): void {
    ctx.world.after(ctx.random.exponential(plan.meanIntervalMs), () => {
      if (ctx.phase !== 'safety') return;
      const driver = this.leader(ctx);
      if (driver !== undefined) {
        const raft = driver.node.raft;
        const voters = [...raft.incoming].sort();
        const learners = [...raft.learners].sort();
        const members = this.members(ctx);
        const outside = ctx.cluster.nodes.map((n) => n.id).filter((id) => !members.has(id));
        const r = ctx.random;
        try {
          if (raft.outgoing.size > 0) {
            // An explicit joint configuration is left by an empty change.
            driver.proposeConfChange({ changes: [] });
            this.membershipChanges++;
          } else if (r.chance(plan.transferRate)) {
            const others = voters.filter((v) => v !== raft.id);
            if (others.length > 0) driver.transferLeader(r.pick(others));
          } else if (outside.length > 0 && r.chance(0.5)) {
            driver.proposeConfChange({ changes: [{ type: 'add-learner', node: r.pick(outside) }] });
            this.membershipChanges++;
            this.nodesAdded++;
          } else if (learners.length > 0 && r.chance(0.1)) {
            driver.proposeConfChange({
              changes: [{ type: 'remove-node', node: r.pick(learners) }],
            });
            this.membershipChanges++;
          } else {
            const changes: ConfChange['changes'] = [];
            const demotable = voters.filter((v) => v !== raft.id);
            const canDemote = voters.length > 3 && demotable.length > 0;
            if (learners.length > 0 && (!canDemote || r.chance(0.5)))
              changes.push({ type: 'add-voter', node: r.pick(learners) });
            if (canDemote && (changes.length === 0 || r.chance(plan.jointRate))) {
              changes.push({ type: 'add-learner', node: r.pick(demotable) });
            }
            if (changes.length > 0) {
              driver.proposeConfChange({
                changes,
                transition: r.chance(plan.jointRate) ? 'joint-explicit' : 'auto',
              });
              this.membershipChanges++;
            }
          }
        } catch (error) {
          if (!(error instanceof ChorusError)) throw error;
        }
      }
      this.membershipLoop(ctx, plan);
    });
  }

  private checkEvent(ctx: RunContext<App>): void {
    for (const node of this.nodes) {
      const raft = node.app?.driver?.node.raft;
      if (node.status !== 'up' || raft === undefined) continue;
      // Within one incarnation; across a crash the term may fall back to the last durable one
      // (a term adopted in memory and never persisted promised nothing).
      const incarnation = `${node.id}/${node.incarnation}`;
      const previousTerm = this.lastTerm.get(incarnation) ?? 0;
      if (raft.term < previousTerm)
        this.fail(`${node.id} term went back from ${previousTerm} to ${raft.term}`);
      this.lastTerm.set(incarnation, raft.term);
      if (raft.log.committed < (this.lastCommit.get(incarnation) ?? 0))
        this.fail(`${node.id} commit went back`);
      this.lastCommit.set(incarnation, raft.log.committed);
      if (raft.role === 'leader') {
        this.checkMatches(node.id, raft);
        const other = this.leaders.get(raft.term);
        if (other !== undefined && other !== node.id)
          this.fail(`two leaders in term ${raft.term}: ${other} and ${node.id}`);
        this.leaders.set(raft.term, node.id);
      }
    }
    if (ctx.world.now - this.lastDeepCheckMs >= 100) {
      this.lastDeepCheckMs = ctx.world.now;
      this.checkLogs();
    }
  }

  /**
   * Durability: a follower acknowledged entries only once durable, so the leader's match for
   * it is a lower bound of the follower's log, crashes included.
   */
  private checkMatches(leaderId: NodeId, leader: RaftDriver['node']['raft']): void {
    for (const node of this.nodes) {
      const follower = node.app?.driver?.node.raft;
      if (node.id === leaderId || node.status !== 'up' || follower === undefined) continue;
      // A follower that moved to a later term may hold a newer leader's entries.
      if (follower.term > leader.term) continue;
      const match = leader.progress.get(node.id)?.match ?? 0;
      const want = leader.log.term(match);
      if (match <= follower.log.snapshotIndex || want === undefined) continue;
      const have = follower.log.term(match);
      if (have !== want) {
        this.fail(
          `durability: leader ${leaderId} counts ${node.id} as holding entry ${match}, but its log ${have === undefined ? `ends at ${follower.log.lastIndex()}` : `has term ${have} there`}`,
        );
      }
    }
  }

  private checkLogs(): void {
    const rafts = this.nodes.flatMap((n) =>
      n.status !== 'crashed' && n.app?.driver ? [[n.id, n.app.driver.node.raft] as const] : [],
    );
    // Log matching (§5.3): find the highest index where two logs agree on the term; below it
    // they must be identical — the same term, and the same entry (its kind and bytes: an entry
    // changed on the way, by the wire codec or the disk, breaks this too).
    for (let i = 0; i < rafts.length; i++) {
      for (let j = i + 1; j < rafts.length; j++) {
        const [ida, a] = rafts[i]!;
        const [idb, b] = rafts[j]!;
        const lo = Math.max(a.log.firstIndex(), b.log.firstIndex());
        let hi = Math.min(a.log.lastIndex(), b.log.lastIndex());
        while (hi >= lo && a.log.term(hi) !== b.log.term(hi)) hi--;
        for (let k = hi; k >= lo; k--) {
          if (a.log.term(k) !== b.log.term(k))
            this.fail(`log matching: ${ida} and ${idb} agree at ${hi} but differ at ${k}`);
          const ea = a.log.entry(k);
          const eb = b.log.entry(k);
          if (ea !== undefined && eb !== undefined && !sameEntry(ea, eb))
            this.fail(
              `log matching: ${ida} and ${idb} hold different entries at ${k}, term ${ea.term}`,
            );
        }
      }
    }
    // Leader completeness (§5.4): entries committed in an earlier term are in every leader's log.
    for (const [id, raft] of rafts) {
      if (raft.role !== 'leader') continue;
      for (const [index, [term, commitTerm]] of this.committed) {
        if (commitTerm >= raft.term || index < raft.log.firstIndex()) continue;
        const have = raft.log.term(index);
        if (have !== term)
          this.fail(
            `leader completeness: leader ${id} (term ${raft.term}) has term ${have} at committed index ${index} (term ${term})`,
          );
      }
    }
  }
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a === b || (a.type === b.type && compareBytes(a.data, b.data) === 0);
}
