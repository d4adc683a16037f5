/**
 * A KV node: the Raft driver, the replicated KV state machine, the leader's lease clock and
 * this node's watches, behind one callback API that the simulator's workloads and the
 * server process share.
 *
 * - Writes (put, delete, txn, compact, lease grant and revoke) are proposed through Raft;
 *   a follower forwards them to the leader. The reply is the state machine's outcome.
 * - Linearizable ranges wait for a ReadIndex barrier, then read this node's store;
 *   serializable ranges read it at once (possibly stale, never torn).
 * - Keep-alives and time-to-live go to the leader (forwarded), whose clock decides expiry;
 *   a keep-alive is answered once its refreshed deadline is checkpointed (see lease.ts).
 * - Watches follow what this node applies.
 */
import { ChorusError, asChorusError } from '../core/errors.js';
import type { NodeId, TimerId } from '../core/ids.js';
import type { Env } from '../env/env.js';
import {
  RaftDriver,
  type DriverOptions,
  type RaftStore,
  type StateMachine,
} from '../raft/driver.js';
import type { RestoredState } from '../raft/raft.js';
import type { Respond } from '../transport/rpc.js';
import { KvError, type KvErrorCode } from './errors.js';
import { fromBinary, type MvccOptions } from './mvcc.js';
import { LeaseClock, LeaseTable } from './lease.js';
import {
  encodeKvCommand,
  KvMachine,
  spaceCost,
  type Alarm,
  type AlarmType,
  type KvCommand,
  type KvListener,
  type KvOutcome,
} from './machine.js';
import {
  kvLimits,
  type CompactionRequest,
  type DeleteRangeRequest,
  type DeleteRangeResult,
  type LeaseGrantRequest,
  type LeaseGrantResult,
  type LeaseTimeToLiveResult,
  type PutRequest,
  type PutResult,
  type RangeRequest,
  type RangeResult,
  type Revisioned,
  type TxnRequest,
  type TxnResult,
  type WatchCreateRequest,
} from './types.js';
import { WatchHub, type WatchSink } from './watch.js';

export type Done<T> = (error: ChorusError | undefined, result: T | undefined) => void;

export interface KvNodeOptions {
  raft: DriverOptions['raft'];
  tickMs: number;
  snapshotEveryEntries: number;
  /** DriverOptions.snapshotCatchUpEntries (its default when absent). */
  snapshotCatchUpEntries?: number;
  /** DriverOptions.snapshotCatchUpBytes and snapshotLogBytes (their defaults when absent). */
  snapshotCatchUpBytes?: number;
  snapshotLogBytes?: number;
  forwardDeadlineMs: number;
  /** How often the leader checks lease deadlines and checkpoints remaining TTLs. */
  leaseTickMs: number;
  /** How often catching-up watchers replay a batch of history. */
  watchPumpMs: number;
  /** How often watchers created with progressNotify get a progress response. */
  progressNotifyMs: number;
  bugSkipPersist?: boolean;
  /** Keys a snapshot encodes per event-loop turn (default 20,000). */
  snapshotKeysPerStep?: number;
  /** The store's B-tree and log sizes (small in simulation, so snapshots take many steps). */
  mvcc?: MvccOptions;
  /** A deliberately planted bug (tests prove the workloads' checkers catch each). */
  bug?: KvBug;
  /** Wraps the state machine handed to Raft (the simulator adds a hash chain). */
  wrapStateMachine?: (machine: StateMachine) => StateMachine;
  /** Hears what the machine applies, after the node itself (the simulator's checkers). */
  observe?: Partial<KvListener>;
  /**
   * The space quota (etcd's --quota-backend-bytes), against MvccStore.bytes; 0 or absent:
   * none. A write that would pass it raises the NOSPACE alarm and is refused.
   */
  quotaBytes?: number;
  /** The member an alarm this node raises names (etcd's member id); this node's id if absent. */
  alarmMember?: string;
}

export const kvNodeDefaults = {
  leaseTickMs: 100,
  watchPumpMs: 20,
  progressNotifyMs: 10 * 60 * 1000,
} as const;

export const kvBugs = [
  'stale-read',
  'lease-checkpoint-elapsed',
  'watch-skip',
  'entry-kind-lost',
  'snapshot-chunk-gap',
  'alarm-unreplicated',
] as const;
/**
 * - stale-read: linearizable ranges skip the ReadIndex barrier;
 * - lease-checkpoint-elapsed: a new leader reads a checkpoint as time elapsed, not remaining;
 * - watch-skip: a watcher replaying history skips the first revision it missed;
 * - entry-kind-lost: conf-change entries received in appends are read as normal ones (a
 *   wire-codec bug; the KV machine refuses them without a crash, so only the Log Matching
 *   check's comparison of entries sees it);
 * - snapshot-chunk-gap: a follower takes a snapshot chunk beyond the bytes it holds (RaftBug;
 *   the workload sets it in the Raft config);
 * - alarm-unreplicated: a node over its quota raises NOSPACE in its own state only, not
 *   through the log, so it alone refuses the puts the others apply.
 */
export type KvBug = (typeof kvBugs)[number];

const keepAliveMethod = 'kv-lease-keepalive';
const timeToLiveMethod = 'kv-lease-ttl';

export class KvNode {
  readonly driver: RaftDriver;
  readonly machine: KvMachine;
  readonly watches: WatchHub;
  private readonly clock: LeaseClock;
  private keepAliveWaiters = new Map<number, Done<number>[]>();
  /** Keep-alives of leases whose revocation this leader proposed, waiting for it to apply. */
  private revokeWaiters = new Map<number, Done<never>[]>();
  private readonly timers: TimerId[] = [];
  private stopped = false;
  /** The term in which the lease clock took over (meaningful while it leads). */
  private leaseTerm = 0;
  /** A NOSPACE alarm this node proposed and has not yet seen decided. */
  private raisingAlarm = false;

  constructor(
    private readonly env: Env,
    private readonly options: KvNodeOptions,
    store: RaftStore,
    recovered: RestoredState,
  ) {
    const electionMs = (options.raft.electionTicks ?? 10) * options.tickMs;
    // etcd's minimum TTL: 1.5 election timeouts, so a lease outlives a leader change.
    const table = new LeaseTable(Math.ceil((1.5 * electionMs) / 1000));
    this.machine = new KvMachine(table, options.snapshotKeysPerStep, options.mvcc);
    this.clock = new LeaseClock(table, {
      stallMs: Math.max(1000, 5 * options.leaseTickMs),
      revokesPerTick: 100,
      revokeRetryMs: 2 * options.forwardDeadlineMs,
      checkpointDriftMs: 1000,
      ...(options.bug === 'lease-checkpoint-elapsed' ? { bugCheckpointElapsed: true } : {}),
    });
    this.watches = new WatchHub(this.machine, {
      catchUpRevisions: 1000,
      ...(options.bug === 'watch-skip' ? { bugSkipFirst: true } : {}),
    });
    const observe = options.observe ?? {};
    this.machine.listener = {
      events: (revision, events) => {
        this.watches.notify(revision, events);
        observe.events?.(revision, events);
      },
      compacted: (revision) => {
        this.watches.compacted(revision);
        observe.compacted?.(revision);
      },
      granted: (id) => {
        this.clock.granted(id, this.env.clock.monotonicMs());
        observe.granted?.(id);
      },
      restored: () => {
        this.watches.restored();
        observe.restored?.();
      },
      alarm: (alarm, active) => observe.alarm?.(alarm, active),
      revoked: (id) => {
        this.clock.revoked(id);
        const waiting = this.revokeWaiters.get(id) ?? [];
        this.revokeWaiters.delete(id);
        for (const done of waiting) done(new KvError('lease-not-found'), undefined);
        observe.revoked?.(id);
      },
    };
    this.driver = new RaftDriver(env, {
      raft: options.raft,
      store,
      recovered,
      stateMachine: options.wrapStateMachine?.(this.machine) ?? this.machine,
      tickMs: options.tickMs,
      snapshotEveryEntries: options.snapshotEveryEntries,
      ...(options.snapshotCatchUpEntries === undefined
        ? {}
        : { snapshotCatchUpEntries: options.snapshotCatchUpEntries }),
      ...(options.snapshotCatchUpBytes === undefined
        ? {}
        : { snapshotCatchUpBytes: options.snapshotCatchUpBytes }),
      ...(options.snapshotLogBytes === undefined
        ? {}
        : { snapshotLogBytes: options.snapshotLogBytes }),
      forwardDeadlineMs: options.forwardDeadlineMs,
      ...(options.bugSkipPersist === true ? { bugSkipPersist: true } : {}),
      ...(options.bug === 'entry-kind-lost' ? { bugEntryKindLost: true } : {}),
    });
    this.driver.rpc.handle(keepAliveMethod, (_from, body, respond) => {
      if (typeof body !== 'number') return respond(new ChorusError('bad-input', 'lease id'));
      this.leaseKeepAlive(body, (error, ttl) => reply(respond, error, ttl));
    });
    this.driver.rpc.handle(timeToLiveMethod, (_from, body, respond) => {
      if (!Array.isArray(body) || typeof body[0] !== 'number')
        return respond(new ChorusError('bad-input', 'lease id'));
      this.leaseTimeToLive(body[0], body[1] === true, (error, result) =>
        reply(respond, error, result),
      );
    });
    this.every(options.leaseTickMs, () => this.leaseTick());
    this.every(options.watchPumpMs, () => this.watches.pump());
    this.every(options.progressNotifyMs, () => this.watches.progress(false));
  }

  get id(): NodeId {
    return this.env.net.self;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) this.env.timers.cancel(t);
    this.driver.stop();
    this.failKeepAlives(new ChorusError('closed', 'node stopping'));
  }

  // --- KV ------------------------------------------------------------------------------------

  put(request: PutRequest, done: Done<PutResult & Revisioned>): void {
    this.write({ t: 'put', r: request }, done);
  }

  deleteRange(request: DeleteRangeRequest, done: Done<DeleteRangeResult & Revisioned>): void {
    this.write({ t: 'del', r: request }, done);
  }

  txn(request: TxnRequest, done: Done<TxnResult & Revisioned>): void {
    this.write({ t: 'txn', r: request }, done);
  }

  compact(request: CompactionRequest, done: Done<Revisioned>): void {
    this.write({ t: 'compact', revision: request.revision }, done);
  }

  range(request: RangeRequest, done: Done<RangeResult & Revisioned>): void {
    const local = (): void => {
      try {
        done(undefined, this.machine.range(request));
      } catch (error) {
        done(asChorusError(error), undefined);
      }
    };
    if (request.serializable === true || this.options.bug === 'stale-read') return local();
    this.driver.read((error) => (error !== undefined ? done(error, undefined) : local()));
  }

  // --- leases --------------------------------------------------------------------------------

  leaseGrant(request: LeaseGrantRequest, done: Done<LeaseGrantResult & Revisioned>): void {
    const chosen = request.id === undefined || request.id === 0;
    const id = chosen ? this.newLeaseId() : request.id!;
    this.write<LeaseGrantResult & Revisioned>(
      { t: 'grant', id, ttl: request.ttl },
      (error, result) => {
        // A chosen id that collides with an existing lease: choose again, once.
        if (chosen && error instanceof KvError && error.kvCode === 'lease-exists')
          return this.write({ t: 'grant', id: this.newLeaseId(), ttl: request.ttl }, done);
        done(error, result);
      },
    );
  }

  leaseRevoke(id: number, done: Done<Revisioned>): void {
    this.write({ t: 'revoke', id }, done);
  }

  /** Returns the lease's TTL in seconds once the refreshed deadline is checkpointed. */
  leaseKeepAlive(id: number, done: Done<number>, confirmed = false): void {
    const raft = this.driver.node.raft;
    if (raft.role !== 'leader') return this.forward(keepAliveMethod, id, done);
    // A new leader takes over at once rather than at its next lease tick.
    this.syncLeadership(this.env.clock.monotonicMs());
    if (!this.clock.leading || !this.leadsTerm(this.leaseTerm))
      return done(
        new ChorusError('no-leader', 'the leader is still taking over leases'),
        undefined,
      );
    if (this.clock.isRevoking(id)) {
      // Expired here, revocation proposed: answer "not found" only once it applies (this
      // node may be a stale leader whose revocation never commits), as etcd does.
      const waiting = this.revokeWaiters.get(id) ?? [];
      waiting.push((error) => done(error, undefined));
      this.revokeWaiters.set(id, waiting);
      return;
    }
    if (!confirmed && !this.machine.leases.exists(id)) {
      // Unknown here — but this may be a stale leader that never saw the grant. Confirm
      // leadership with a read barrier before saying "not found" (etcd does the same).
      this.driver.read((error) =>
        error !== undefined ? done(error, undefined) : this.leaseKeepAlive(id, done, true),
      );
      return;
    }
    try {
      const ttl = this.clock.keepAlive(id, this.env.clock.monotonicMs());
      const waiting = this.keepAliveWaiters.get(id) ?? [];
      waiting.push((error) => done(error, error === undefined ? ttl : undefined));
      this.keepAliveWaiters.set(id, waiting);
    } catch (error) {
      done(asChorusError(error), undefined);
    }
  }

  leaseTimeToLive(
    id: number,
    keys: boolean,
    done: Done<LeaseTimeToLiveResult>,
    confirmed = false,
  ): void {
    const raft = this.driver.node.raft;
    if (raft.role !== 'leader') return this.forward(timeToLiveMethod, [id, keys], done);
    const lease = this.machine.leases.get(id);
    if (lease === undefined && !confirmed) {
      // As for keep-alives: a stale leader must not call a newer lease missing.
      this.driver.read((error) =>
        error !== undefined ? done(error, undefined) : this.leaseTimeToLive(id, keys, done, true),
      );
      return;
    }
    if (lease === undefined) return done(undefined, { id, ttl: -1, grantedTtl: 0, keys: [] });
    const remaining =
      this.clock.remainingMs(id, this.env.clock.monotonicMs()) ??
      lease.remainingMs ??
      lease.ttl * 1000;
    done(undefined, {
      id,
      ttl: Math.ceil(remaining / 1000),
      grantedTtl: lease.ttl,
      keys: keys ? [...lease.keys].sort().map(fromBinary) : [],
    });
  }

  /** Every lease id, after a read barrier (linearizable). */
  leaseLeases(done: Done<number[]>): void {
    this.driver.read((error) =>
      error !== undefined ? done(error, undefined) : done(undefined, this.machine.leases.ids()),
    );
  }

  // --- alarms --------------------------------------------------------------------------------

  /** The active alarms as this node has applied them (etcd's Alarm GET is local too). */
  alarms(): readonly Alarm[] {
    return this.machine.alarms;
  }

  /** etcd's Alarm ACTIVATE / DEACTIVATE: through the log; answers the alarm it changed. */
  alarm(
    activate: boolean,
    member: string,
    type: AlarmType,
    done: Done<{ alarms: Alarm[] } & Revisioned>,
  ): void {
    this.write({ t: 'alarm', activate, member, alarm: type }, done);
  }

  /**
   * etcd's quota check, before a proposal: would `cost` more bytes pass the quota? Then the
   * write is refused, and NOSPACE raised unless this member's is active or on its way. The
   * refusal itself is local (replicas apply what the log holds); the alarm, once applied,
   * makes every replica refuse what takes space until an operator disarms it.
   */
  private overQuota(cost: number): boolean {
    const quota = this.options.quotaBytes ?? 0;
    // What costs nothing always passes: a txn without puts among it (etcd would refuse even a
    // read-only txn while its database is over the quota).
    if (quota <= 0 || cost === 0 || this.machine.store.bytes + cost <= quota) return false;
    const member = this.options.alarmMember ?? this.id;
    const active = this.machine.alarms.some((a) => a.member === member && a.alarm === 'NOSPACE');
    if (!active && !this.raisingAlarm) {
      if (this.options.bug === 'alarm-unreplicated') {
        this.machine.alarms = [...this.machine.alarms, { member, alarm: 'NOSPACE' }];
      } else {
        this.raisingAlarm = true;
        this.alarm(true, member, 'NOSPACE', () => (this.raisingAlarm = false));
      }
    }
    return true;
  }

  // --- watches -------------------------------------------------------------------------------

  watch(request: WatchCreateRequest, sink: WatchSink): number {
    return this.watches.create(request, sink);
  }

  // --- internals -----------------------------------------------------------------------------

  /** `term`: a leader's own duty (lease expiry, checkpoint), proposed only while leading it. */
  private write<T>(command: KvCommand, done: Done<T>, term?: number): void {
    if (this.stopped) return done(new ChorusError('closed', 'node stopped'), undefined);
    if (this.overQuota(spaceCost(command))) return done(new KvError('no-space'), undefined);
    let data: Uint8Array;
    try {
      data = encodeKvCommand(command);
    } catch (error) {
      return done(
        new ChorusError('bad-input', 'request cannot be encoded', { cause: error }),
        undefined,
      );
    }
    if (data.length > kvLimits.maxRequestBytes)
      return done(new KvError('request-too-large'), undefined);
    const decided = (error: ChorusError | undefined, outcome: unknown): void => {
      if (error !== undefined) return done(error, undefined);
      const o = outcome as KvOutcome;
      if ('error' in o) return done(new KvError(o.error as KvErrorCode, o.detail), undefined);
      done(undefined, o.ok as T);
    };
    if (term === undefined) this.driver.propose(data, decided);
    else this.driver.proposeInTerm(data, term, decided);
  }

  private forward<T>(method: string, body: unknown, done: Done<T>): void {
    const lead = this.driver.node.raft.lead;
    if (lead === '' || lead === this.id)
      return done(new ChorusError('no-leader', 'no leader'), undefined);
    this.driver.rpc.call(
      lead,
      method,
      body,
      (error, result) => {
        if (error !== undefined) return done(error, undefined);
        const r = result as { kvError?: KvErrorCode; ok?: T };
        if (r.kvError !== undefined) return done(new KvError(r.kvError), undefined);
        done(undefined, r.ok);
      },
      { deadlineMs: this.options.forwardDeadlineMs },
    );
  }

  private newLeaseId(): number {
    const r = this.env.random;
    // A positive id below 2^52: exact as a JS number, and as etcd's int64.
    return r.int(1 << 26) * 2 ** 26 + r.int(1 << 26) + 1;
  }

  /** Runs `fn` every `ms`; each loop keeps one slot holding its pending timer (for stop). */
  private every(ms: number, fn: () => void): void {
    const slot = this.timers.length;
    const run = (): void => {
      if (this.stopped) return;
      fn();
      this.timers[slot] = this.env.timers.set(ms, run);
    };
    this.timers.push(this.env.timers.set(ms, run));
  }

  /** The leader's lease duties: take over, expire, checkpoint (see lease.ts). */
  private leaseTick(): void {
    const now = this.env.clock.monotonicMs();
    this.syncLeadership(now);
    if (!this.clock.leading) return;
    const { revoke, checkpoint } = this.clock.tick(now);
    // Decided on this term's lease clock: a stale leader's expiry must never be forwarded
    // to the next leader and commit there (lease seed 173 revoked a renewed lease so).
    for (const id of revoke) this.write({ t: 'revoke', id }, () => {}, this.leaseTerm);
    const waiting = this.keepAliveWaiters;
    this.keepAliveWaiters = new Map();
    // A lease revoked since its keep-alive is not in the checkpoint: it is gone.
    const covered = new Set(checkpoint.map(([id]) => id));
    for (const [id, list] of waiting) {
      if (covered.has(id)) continue;
      waiting.delete(id);
      for (const done of list) done(new KvError('lease-not-found'), undefined);
    }
    if (checkpoint.length === 0) return;
    this.write(
      { t: 'checkpoint', leases: checkpoint },
      (error) => {
        for (const list of waiting.values()) for (const done of list) done(error, undefined);
      },
      this.leaseTerm,
    );
  }

  /** Takes over leases once leading and caught up; lets go when leadership moved. */
  private syncLeadership(now: number): void {
    const raft = this.driver.node.raft;
    const log = raft.log;
    // Leadership is per term: a node that lost and regained it between two ticks must take
    // over again, or it would keep deadlines that another leader's keep-alives moved since.
    if (this.clock.leading && !this.leadsTerm(this.leaseTerm)) {
      this.clock.demote();
      this.failKeepAlives(new ChorusError('not-leader', 'leadership moved; retry'));
    }
    const caughtUp =
      raft.role === 'leader' &&
      log.term(log.committed) === raft.term &&
      this.driver.appliedIndex >= log.committed;
    if (caughtUp && !this.clock.leading) {
      this.clock.promote(now);
      this.leaseTerm = raft.term;
    }
  }

  private leadsTerm(term: number): boolean {
    const raft = this.driver.node.raft;
    return raft.role === 'leader' && raft.term === term;
  }

  private failKeepAlives(error: ChorusError): void {
    const waiting = [...this.keepAliveWaiters.values(), ...this.revokeWaiters.values()];
    this.keepAliveWaiters = new Map();
    this.revokeWaiters = new Map();
    for (const list of waiting) for (const done of list) done(error, undefined);
  }
}

/** A forwarded lease call's answer: KV refusals travel as data, keeping their etcd code. */
function reply(respond: Respond, error: ChorusError | undefined, result: unknown): void {
  if (error instanceof KvError) return respond(undefined, { kvError: error.kvCode });
  if (error !== undefined) return respond(error);
  respond(undefined, { ok: result });
}
