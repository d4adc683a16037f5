/**
 * The `register` simulation workload: a replicated map of registers over Raft. Client
 * processes read, write and compare-and-set a few keys through random nodes (leaders and
 * followers alike: followers forward writes and confirm reads with ReadIndex). The history
 * is judged by the linearizability checker (register model, one register per key), and the
 * white-box Raft invariants of raft-invariants.ts are checked after every simulated event.
 */
import type { HistoryEvent, Value } from '../check/history.js';
import { registerModel } from '../check/models/register.js';
import { decode, encode } from '../core/codec.js';
import { ChorusError, FatalError } from '../core/errors.js';
import type { NodeId } from '../core/ids.js';
import type { Env } from '../env/env.js';
import { RaftDriver, type StateMachine } from '../raft/driver.js';
import type { RaftBug } from '../raft/raft.js';
import type { Entry } from '../raft/types.js';
import { faultKinds, type FaultKind } from '../sim/nemesis.js';
import type { SimNode } from '../sim/node.js';
import type { RunContext, SimWorkload, Verdict } from '../sim/run.js';
import { RaftStorage } from '../storage/storage.js';
import { judgeHistory } from './judge.js';
import {
  ChainedStateMachine,
  RaftInvariants,
  raftWorkloadDefaults,
  type RaftWorkloadOptions,
} from './raft-invariants.js';

export interface RegisterOptions extends RaftWorkloadOptions {
  bug?: RaftBug | 'skip-fsync';
}

export const registerDefaults: RegisterOptions = raftWorkloadDefaults;

export const registerBugs = ['commit-old-term', 'skip-fsync'] as const;

const survives: readonly FaultKind[] = faultKinds;

/** A map of registers: write and compare-and-set. */
export class KvStateMachine implements StateMachine {
  values = new Map<string, number>();

  apply(entries: readonly Entry[]): unknown[] {
    return entries.map((e) => {
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
    return encode([...this.values.entries()]);
  }

  restore(data: Uint8Array): void {
    this.values = new Map(decode(data) as [string, number][]);
  }
}

export class RegisterNode {
  driver: RaftDriver | undefined;
  readonly sm: KvStateMachine;

  constructor(
    env: Env,
    options: RegisterOptions,
    peers: readonly NodeId[],
    onApply: (index: number, term: number, chain: number) => void,
  ) {
    this.sm = new KvStateMachine();
    RaftStorage.open(env, 'raft', (error, storage, recovered) => {
      if (error !== undefined || storage === undefined || recovered === undefined) {
        throw new FatalError('cannot open raft storage', { cause: error });
      }
      this.driver = new RaftDriver(env, {
        raft: {
          peers,
          appendBytesMax: options.appendBytesMax,
          snapshotChunkBytes: options.snapshotChunkBytes,
          ...(options.bug === 'commit-old-term' ? { bug: options.bug } : {}),
        },
        store: storage,
        recovered,
        stateMachine: new ChainedStateMachine(this.sm, onApply),
        tickMs: options.tickMs,
        snapshotEveryEntries: options.snapshotEveryEntries,
        snapshotCatchUpEntries: options.snapshotCatchUpEntries,
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
  const invariants = new RaftInvariants<RegisterNode>();

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

  return {
    name: 'register',
    faults: survives,
    livenessMsMax: o.livenessMsMax,
    create(env: Env, node: SimNode<RegisterNode>) {
      const peers = [env.net.self, ...env.net.peers()].sort();
      return new RegisterNode(env, o, peers, invariants.onApply(node));
    },
    start(ctx) {
      invariants.start(ctx);
      for (let p = 0; p < o.clients; p++) {
        const process = nextProcess++;
        ctx.world.after(ctx.random.exponential(o.thinkMsMean), () => runClient(ctx, process));
      }
    },
    converged(ctx) {
      return pending === 0 && invariants.converged(ctx);
    },
    check(ctx): Verdict {
      invariants.stop(ctx);
      const problems: string[] = [];
      if (invariants.violation !== undefined) problems.push(invariants.violation);
      const judged = judgeHistory('register workload', events, registerModel);
      if (judged.problem !== undefined) problems.push(judged.problem);
      return {
        ok: problems.length === 0,
        problems,
        summary: [
          `operations: ${judged.summary}`,
          `leaders elected: ${invariants.leaderTerms} terms; entries applied: ${invariants.entriesApplied}; membership changes proposed: ${invariants.membershipChanges}`,
        ],
      };
    },
  };
}
