/**
 * The `register` simulation workload: a replicated map of registers over Raft. Client
 * processes read, write and compare-and-set a few keys through random nodes (leaders and
 * followers alike: followers forward writes and confirm reads with ReadIndex). The history
 * is judged by the linearizability checker (register model, one register per key), and
 * white-box invariants are checked after every simulated event:
 * - at most one leader per term;
 * - term never decreases on a node (across restarts), commit never within one incarnation;
 * - applied prefixes are identical everywhere (a hash chain over applied entries);
 * - log matching: two logs with an entry of the same index and term agree before it;
 * - leader completeness: a leader holds every entry committed in an earlier term;
 * - durability: a leader's match index for a follower is in the follower's log.
 */
import { checkHistory } from '../check/linearizability.js';
import type { HistoryEvent, Value } from '../check/history.js';
import { registerModel } from '../check/models/register.js';
import { decode, encode } from '../core/codec.js';
import { crc32c } from '../core/crc32c.js';
import { ChorusError, FatalError } from '../core/errors.js';
import type { NodeId } from '../core/ids.js';
import type { Env } from '../env/env.js';
import { RaftDriver, type StateMachine } from '../raft/driver.js';
import type { ConfChange, RaftBug } from '../raft/raft.js';
import type { Entry } from '../raft/types.js';
import { faultKinds, type FaultKind } from '../sim/nemesis.js';
import type { SimNode } from '../sim/node.js';
import type { RunContext, SimWorkload, Verdict } from '../sim/run.js';
import { RaftStorage } from '../storage/storage.js';

export interface RegisterOptions {
  clients: number;
  keys: number;
  /** Mean think time of a client between operations. */
  thinkMsMean: number;
  clientTimeoutMs: number;
  tickMs: number;
  snapshotEveryEntries: number;
  livenessMsMax: number;
  /**
   * Small appends (a few entries each) make replication interleave with faults, so states
   * like the paper's Figure 8 — an old-term entry on a majority without the new leader's
   * entry — actually occur.
   */
  appendBytesMax: number;
  bug?: RaftBug | 'skip-fsync';
}

export const registerDefaults: RegisterOptions = {
  clients: 8,
  keys: 5,
  thinkMsMean: 20,
  clientTimeoutMs: 1_500,
  tickMs: 10,
  snapshotEveryEntries: 200,
  livenessMsMax: 20_000,
  appendBytesMax: 128,
};

export const registerBugs = ['commit-old-term', 'skip-fsync'] as const;

/** The linearizability check's budget, in the checker's clock reads (see check()). */
const checkerBudgetReads = 100_000;

const survives: readonly FaultKind[] = faultKinds;

/** A map of registers; every applied entry extends a hash chain (for the invariant). */
export class KvStateMachine implements StateMachine {
  values = new Map<string, number>();
  chain = 0;
  index = 0;

  constructor(private readonly onApply: (index: number, term: number, chain: number) => void) {}

  apply(entries: readonly Entry[]): unknown[] {
    return entries.map((e) => {
      this.chain = mixChain(this.chain, e.index, e.term, crc32c(e.data));
      this.index = e.index;
      this.onApply(e.index, e.term, this.chain);
      if (e.type !== 'normal' || e.data.length === 0) return undefined;
      const command = decode(e.data) as [string, string, number, number?];
      const [op, key, a, b] = command;
      if (op === 'w') {
        this.values.set(key, a);
        return null;
      }
      const current = this.values.get(key) ?? null;
      if (current !== a) return false;
      this.values.set(key, b!);
      return true;
    });
  }

  get(key: string): number | null {
    return this.values.get(key) ?? null;
  }

  snapshot(): Uint8Array {
    return encode({ values: [...this.values.entries()], chain: this.chain, index: this.index });
  }

  restore(data: Uint8Array): void {
    const s = decode(data) as { values: [string, number][]; chain: number; index: number };
    this.values = new Map(s.values);
    this.chain = s.chain;
    this.index = s.index;
  }
}

function mixChain(chain: number, index: number, term: number, crc: number): number {
  let h = chain ^ Math.imul(index, 0x9e3779b1);
  h = Math.imul(h ^ term, 0x85ebca6b) ^ crc;
  h ^= h >>> 13;
  return Math.imul(h, 0xc2b2ae35) >>> 0;
}

export class RegisterNode {
  driver: RaftDriver | undefined;
  readonly sm: KvStateMachine;

  constructor(
    env: Env,
    options: RegisterOptions,
    peers: readonly NodeId[],
    onApply: KvStateMachine['onApply'],
  ) {
    this.sm = new KvStateMachine(onApply);
    RaftStorage.open(env, 'raft', (error, storage, recovered) => {
      if (error !== undefined || storage === undefined || recovered === undefined) {
        throw new FatalError('cannot open raft storage', { cause: error });
      }
      this.driver = new RaftDriver(env, {
        raft: {
          peers,
          appendBytesMax: options.appendBytesMax,
          ...(options.bug === 'commit-old-term' ? { bug: options.bug } : {}),
        },
        store: storage,
        recovered,
        stateMachine: this.sm,
        tickMs: options.tickMs,
        snapshotEveryEntries: options.snapshotEveryEntries,
        forwardDeadlineMs: options.clientTimeoutMs,
        ...(options.bug === 'skip-fsync' ? { bugSkipPersist: true } : {}),
      });
    });
  }
}

type Ctx = RunContext<RegisterNode>;

/** Errors after which the operation certainly did not take effect. */
const definiteFailures = new Set(['not-leader', 'no-leader', 'proposal-dropped', 'bad-input']);

export function registerWorkload(
  options: Partial<RegisterOptions> = {},
): SimWorkload<RegisterNode> {
  const o: RegisterOptions = { ...registerDefaults, ...options };
  const events: HistoryEvent[] = [];
  let pending = 0;
  let nextProcess = 0;
  const appliedChain = new Map<number, number>();
  /** index → [entry term, an upper bound of the term in which it was committed]. */
  const committed = new Map<number, [number, number]>();
  const leaders = new Map<number, NodeId>();
  const lastTerm = new Map<string, number>();
  const lastCommit = new Map<string, number>();
  let violation: string | undefined;
  let nodesRef: SimNode<RegisterNode>[] = [];
  let lastDeepCheckMs = -Infinity;
  let membershipChanges = 0;

  const fail = (message: string): void => {
    violation ??= message;
    throw new Error(`invariant violated: ${message}`);
  };

  const record = (
    ctx: Ctx,
    process: number,
    type: HistoryEvent['type'],
    f: string,
    key: string,
    value: Value,
  ): void => {
    events.push({
      process,
      type,
      f,
      key,
      value,
      time: Math.round(ctx.world.now * 1e6),
      index: events.length,
    });
  };

  const runClient = (ctx: Ctx, process: number): void => {
    if (ctx.phase !== 'safety') return;
    const { random, cluster, world } = ctx;
    const key = `k${random.int(o.keys)}`;
    const roll = random.float();
    const f = roll < 0.45 ? 'read' : roll < 0.8 ? 'write' : 'cas';
    const input: Value =
      f === 'read' ? null : f === 'write' ? random.int(10) : [random.int(10), random.int(10)];
    const target = random.int(cluster.size);
    record(ctx, process, 'invoke', f, key, input);
    pending++;
    let finished = false;
    const finish = (type: 'ok' | 'fail' | 'info', value: Value): void => {
      if (finished) return;
      finished = true;
      pending--;
      timer.cancelled = true;
      record(ctx, process, type, f, key, value);
      // A process whose operation is indeterminate is gone; a fresh one takes its place.
      const next = type === 'info' ? nextProcess++ : process;
      world.after(random.exponential(o.thinkMsMean), () => runClient(ctx, next));
    };
    const timer = world.after(o.clientTimeoutMs, () => finish('info', input));
    const onError = (error: ChorusError): void =>
      finish(definiteFailures.has(error.code) ? 'fail' : 'info', input);
    cluster.call(
      target,
      (app) => {
        const driver = app.driver;
        if (driver === undefined) return onError(new ChorusError('no-leader', 'node starting'));
        const answer = (fn: () => void): void => void world.after(0.05, fn);
        if (f === 'read') {
          driver.read((error) =>
            answer(() => (error !== undefined ? onError(error) : finish('ok', app.sm.get(key)))),
          );
          return;
        }
        const command = f === 'write' ? ['w', key, input] : ['cas', key, ...(input as number[])];
        driver.propose(encode(command), (error, result) =>
          answer(() =>
            error !== undefined
              ? onError(error)
              : finish('ok', f === 'write' ? input : (result as boolean)),
          ),
        );
      },
      () => finish('fail', input),
    );
  };

  /**
   * The membership nemesis, carried out through whichever node leads: leadership transfers,
   * demoting a voter to learner, promoting a learner, and joint changes doing both at once.
   * At least three voters remain. Refusals (a change in flight, no leader) are ignored.
   */
  const membershipLoop = (ctx: Ctx, plan: NonNullable<Ctx['plan']['membership']>): void => {
    ctx.world.after(ctx.random.exponential(plan.meanIntervalMs), () => {
      if (ctx.phase !== 'safety') return;
      const leaderNode = ctx.cluster.nodes.find(
        (n) => n.status === 'up' && n.app?.driver?.node.raft.role === 'leader',
      );
      const driver = leaderNode?.app?.driver;
      if (driver !== undefined) {
        const raft = driver.node.raft;
        const voters = [...raft.incoming].sort();
        const learners = [...raft.learners].sort();
        const r = ctx.random;
        try {
          if (raft.outgoing.size > 0) {
            // An explicit joint configuration is left by an empty change.
            driver.proposeConfChange({ changes: [] });
            membershipChanges++;
          } else if (r.chance(plan.transferRate)) {
            const others = voters.filter((v) => v !== raft.id);
            if (others.length > 0) driver.transferLeader(r.pick(others));
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
              membershipChanges++;
            }
          }
        } catch (error) {
          if (!(error instanceof ChorusError)) throw error;
        }
      }
      membershipLoop(ctx, plan);
    });
  };

  const checkEvent = (ctx: Ctx): void => {
    for (const node of nodesRef) {
      const raft = node.app?.driver?.node.raft;
      if (node.status !== 'up' || raft === undefined) continue;
      // Within one incarnation; across a crash the term may fall back to the last durable one
      // (a term adopted in memory and never persisted promised nothing).
      const incarnation = `${node.id}/${node.incarnation}`;
      const previousTerm = lastTerm.get(incarnation) ?? 0;
      if (raft.term < previousTerm)
        fail(`${node.id} term went back from ${previousTerm} to ${raft.term}`);
      lastTerm.set(incarnation, raft.term);
      if (raft.log.committed < (lastCommit.get(incarnation) ?? 0))
        fail(`${node.id} commit went back`);
      lastCommit.set(incarnation, raft.log.committed);
      if (raft.role === 'leader') {
        checkMatches(node.id, raft);
        const other = leaders.get(raft.term);
        if (other !== undefined && other !== node.id)
          fail(`two leaders in term ${raft.term}: ${other} and ${node.id}`);
        leaders.set(raft.term, node.id);
      }
    }
    if (ctx.world.now - lastDeepCheckMs >= 100) {
      lastDeepCheckMs = ctx.world.now;
      checkLogs();
    }
  };

  /**
   * Durability: a follower acknowledged entries only once durable, so the leader's match for
   * it is a lower bound of the follower's log, crashes included.
   */
  const checkMatches = (leaderId: NodeId, leader: RaftDriver['node']['raft']): void => {
    for (const node of nodesRef) {
      const follower = node.app?.driver?.node.raft;
      if (node.id === leaderId || node.status !== 'up' || follower === undefined) continue;
      // A follower that moved to a later term may hold a newer leader's entries.
      if (follower.term > leader.term) continue;
      const match = leader.progress.get(node.id)?.match ?? 0;
      const want = leader.log.term(match);
      if (match <= follower.log.snapshotIndex || want === undefined) continue;
      const have = follower.log.term(match);
      if (have !== want) {
        fail(
          `durability: leader ${leaderId} counts ${node.id} as holding entry ${match}, but its log ${have === undefined ? `ends at ${follower.log.lastIndex()}` : `has term ${have} there`}`,
        );
      }
    }
  };

  const checkLogs = (): void => {
    const rafts = nodesRef.flatMap((n) =>
      n.status !== 'crashed' && n.app?.driver ? [[n.id, n.app.driver.node.raft] as const] : [],
    );
    // Log matching (§5.3): find the highest index where two logs agree on the term; below it they must be equal.
    for (let i = 0; i < rafts.length; i++) {
      for (let j = i + 1; j < rafts.length; j++) {
        const [ida, a] = rafts[i]!;
        const [idb, b] = rafts[j]!;
        const lo = Math.max(a.log.firstIndex(), b.log.firstIndex());
        let hi = Math.min(a.log.lastIndex(), b.log.lastIndex());
        while (hi >= lo && a.log.term(hi) !== b.log.term(hi)) hi--;
        for (let k = hi; k >= lo; k--) {
          if (a.log.term(k) !== b.log.term(k))
            fail(`log matching: ${ida} and ${idb} agree at ${hi} but differ at ${k}`);
        }
      }
    }
    // Leader completeness (§5.4): entries committed in an earlier term are in every leader's log.
    for (const [id, raft] of rafts) {
      if (raft.role !== 'leader') continue;
      for (const [index, [term, commitTerm]] of committed) {
        if (commitTerm >= raft.term || index < raft.log.firstIndex()) continue;
        const have = raft.log.term(index);
        if (have !== term)
          fail(
            `leader completeness: leader ${id} (term ${raft.term}) has term ${have} at committed index ${index} (term ${term})`,
          );
      }
    }
  };

  return {
    name: 'register',
    faults: survives,
    livenessMsMax: o.livenessMsMax,
    create(env: Env, node: SimNode<RegisterNode>) {
      const peers = [env.net.self, ...env.net.peers()].sort();
      return new RegisterNode(env, o, peers, (index, term, chain) => {
        const expected = appliedChain.get(index);
        if (expected === undefined) appliedChain.set(index, chain);
        else if (expected !== chain)
          fail(`${node.id} applied a different entry at ${index} than another node`);
        if (!committed.has(index)) {
          committed.set(index, [term, node.app?.driver?.node.raft.term ?? term]);
        }
      });
    },
    start(ctx) {
      nodesRef = ctx.cluster.nodes;
      ctx.world.afterEvent = () => checkEvent(ctx);
      if (ctx.plan.membership !== undefined) membershipLoop(ctx, ctx.plan.membership);
      for (let p = 0; p < o.clients; p++) {
        const process = nextProcess++;
        ctx.world.after(ctx.random.exponential(o.thinkMsMean), () => runClient(ctx, process));
      }
    },
    converged(ctx) {
      if (pending > 0) return false;
      const drivers: RaftDriver[] = [];
      for (const node of ctx.cluster.nodes) {
        if (node.status !== 'up' || node.app?.driver === undefined) return false;
        drivers.push(node.app.driver);
      }
      const leader = drivers.find((d) => d.node.raft.role === 'leader');
      if (leader === undefined) return false;
      const log = leader.node.raft.log;
      if (log.term(log.committed) !== leader.node.raft.term || log.committed < log.lastIndex())
        return false;
      return drivers.every((d) => d.appliedIndex >= log.committed);
    },
    check(ctx): Verdict {
      ctx.world.afterEvent = undefined;
      const problems: string[] = [];
      if (violation !== undefined) problems.push(violation);
      let checkerClockReads = 0;
      const result = checkHistory(
        { source: 'register workload', timeUnit: 'ns', events },
        registerModel,
        // A deterministic budget: the "clock" counts the checker's clock reads (one per
        // clockCheckEverySteps search steps), so a verdict never depends on machine speed.
        {
          clock: () => checkerClockReads++,
          timeoutMs: checkerBudgetReads,
          stopAtFirstViolation: true,
        },
      );
      if (result.verdict === 'not-linearizable') {
        const bad = result.partitions.find((p) => p.verdict === 'not-linearizable');
        problems.push(
          `history not linearizable (key ${bad?.key ?? '?'}): ${bad?.failure?.unplaceable[0]?.reason ?? ''}`,
        );
      } else if (result.verdict === 'unknown') {
        problems.push('linearizability check gave up (unknown)');
      }
      const ops = events.filter((e) => e.type !== 'invoke');
      const count = (t: string): number => ops.filter((e) => e.type === t).length;
      const leaderTerms = leaders.size;
      return {
        ok: problems.length === 0,
        problems,
        summary: [
          `operations: ${count('ok')} ok, ${count('fail')} failed, ${count('info')} indeterminate; history ${result.verdict}`,
          `leaders elected: ${leaderTerms} terms; entries applied: ${appliedChain.size}; membership changes proposed: ${membershipChanges}`,
        ],
      };
    },
  };
}
