/**
 * The replicated KV state machine: what Raft applies, in log order, on every replica.
 * Commands are msgpack-encoded `KvCommand`s; outcomes are plain data (they may travel back
 * to a forwarding follower): `{ ok }` or `{ error }` with etcd's error code. A refused
 * command changes nothing, and every replica refuses it alike.
 *
 * Leases live here too (the replicated table); keys attach to and detach from leases as
 * puts and deletes apply, and a revocation deletes every attached key in one revision.
 */
import { concatBytes, type ByteSource } from '../core/bytes.js';
import { decode, encode, msgpackArray, MsgpackReader } from '../core/codec.js';
import { BadInputError } from '../core/errors.js';
import { thenInstall } from '../core/job.js';
import type { SnapshotJob, StateMachine } from '../raft/driver.js';
import type { Entry } from '../raft/types.js';
import { applyDeleteRange, applyPut, applyRange, applyTxn, type Applied } from './apply.js';
import { KvError } from './errors.js';
import type { LeaseTable } from './lease.js';
import {
  fromBinary,
  MvccStore,
  revisionBytes,
  type MvccOptions,
  type WriteEvents,
} from './mvcc.js';
import type {
  Bytes,
  DeleteRangeRequest,
  KvEvent,
  PutRequest,
  RangeRequest,
  RangeResult,
  Revisioned,
  TxnRequest,
} from './types.js';
import type { WatchHistory } from './watch.js';

/** etcd's alarm types (etcdserverpb.AlarmType without NONE). */
export const alarmTypes = ['NOSPACE', 'CORRUPT'] as const;
export type AlarmType = (typeof alarmTypes)[number];

/** An active alarm: which member raised it (etcd's member id, as a decimal string) and what. */
export interface Alarm {
  member: string;
  alarm: AlarmType;
}

export type KvCommand =
  | { t: 'put'; r: PutRequest }
  | { t: 'del'; r: DeleteRangeRequest }
  | { t: 'txn'; r: TxnRequest }
  | { t: 'compact'; revision: number }
  | { t: 'grant'; id: number; ttl: number }
  | { t: 'revoke'; id: number }
  | { t: 'checkpoint'; leases: [number, number][] }
  | { t: 'alarm'; activate: boolean; member: string; alarm: AlarmType };

/** A put's flags in its wire form. */
const putPrevKv = 1;
const putIgnoreValue = 2;
const putIgnoreLease = 4;
/** The first item of a command's array form: the command it is. */
const putCode = 0;

/**
 * A command as the log holds it: msgpack of the command object, except a put, the most
 * common by far, which is the array [putCode, key, value, lease, flags]: decoded on every
 * replica for every entry, an array of scalars reads several times faster than two nested
 * objects of named fields. Logs written before hold puts as objects; decodeKvCommand reads
 * both.
 */
export function encodeKvCommand(command: KvCommand): Uint8Array {
  if (command.t !== 'put') return encode(command);
  const r = command.r;
  const flags =
    (r.prevKv === true ? putPrevKv : 0) |
    (r.ignoreValue === true ? putIgnoreValue : 0) |
    (r.ignoreLease === true ? putIgnoreLease : 0);
  return encode([putCode, r.key, r.value ?? emptyValue, r.lease ?? 0, flags]);
}

const emptyValue = new Uint8Array(0);

/** The command of a log entry's data (throws on bytes that are not one). */
export function decodeKvCommand(data: Uint8Array): KvCommand {
  const value = decode(data);
  if (!Array.isArray(value)) return value as KvCommand;
  const [code, key, v, lease, flags] = value as unknown[];
  if (
    value.length !== 5 ||
    code !== putCode ||
    !(key instanceof Uint8Array) ||
    !(v instanceof Uint8Array) ||
    typeof lease !== 'number' ||
    typeof flags !== 'number'
  )
    throw new KvError('invalid-argument');
  return {
    t: 'put',
    r: {
      key,
      value: v,
      lease,
      prevKv: (flags & putPrevKv) !== 0,
      ignoreValue: (flags & putIgnoreValue) !== 0,
      ignoreLease: (flags & putIgnoreLease) !== 0,
    },
  };
}

export type KvOutcome = { ok: unknown } | { error: string; detail?: string };

/** What the node around the machine hears about as entries apply. */
export interface KvListener {
  /**
   * A revision applied. Its events are built as they are read (`select` for a watcher's
   * range, or `all()`), so a listener reads only those it needs.
   */
  events(revision: number, events: WriteEvents): void;
  compacted(revision: number): void;
  granted(id: number): void;
  revoked(id: number): void;
  /** The whole state was replaced by a snapshot. */
  restored(): void;
  /** An alarm became active or was cleared. */
  alarm?(alarm: Alarm, active: boolean): void;
}

/** What a lease grant costs against the space quota (etcd's leaseOverhead). */
const leaseGrantCost = 64;

/**
 * What a command costs against the space quota, as etcd counts it: a put its revision's
 * bytes (MvccStore.bytes), a txn its larger branch (nested txns inside their branch), a
 * lease grant 64; the rest nothing. What costs nothing is never refused for want of space.
 */
export function spaceCost(command: KvCommand): number {
  switch (command.t) {
    case 'put':
      return putCost(command.r);
    case 'txn':
      return txnCost(command.r);
    case 'grant':
      return leaseGrantCost;
    case 'del':
    case 'compact':
    case 'revoke':
    case 'checkpoint':
    case 'alarm':
      return 0;
  }
}

function putCost(r: PutRequest): number {
  return revisionBytes(r.key.length, r.value?.length ?? 0);
}

function txnCost(r: TxnRequest): number {
  const branch = (ops: TxnRequest['success']): number =>
    ops.reduce(
      (sum, op) => sum + ('put' in op ? putCost(op.put) : 'txn' in op ? txnCost(op.txn) : 0),
      0,
    );
  return Math.max(branch(r.success), branch(r.failure));
}

export class KvMachine implements StateMachine, WatchHistory {
  store: MvccStore;
  listener: KvListener | undefined;
  /**
   * The active alarms, replicated as etcd's are: raised and cleared by log entries, in the
   * snapshot, so every replica refuses the same writes while one is active.
   */
  alarms: Alarm[] = [];

  constructor(
    readonly leases: LeaseTable,
    /** Keys encoded per step of a snapshot job (small in simulation, to interleave steps). */
    private readonly snapshotKeysPerStep = 20_000,
    private readonly mvccOptions: MvccOptions = {},
  ) {
    this.store = new MvccStore(mvccOptions);
  }

  revision(): number {
    return this.store.revision;
  }

  compactRevision(): number {
    return this.store.compactRevision;
  }

  eventsBetween(from: number, to: number, key: Bytes, rangeEnd: Bytes | undefined): KvEvent[] {
    return this.store.eventsBetween(from, to, key, rangeEnd);
  }

  /** A read of this replica's state (the caller decides whether a barrier came first). */
  range(request: RangeRequest): RangeResult & Revisioned {
    return { ...applyRange(this.store, request), revision: this.store.revision };
  }

  apply(entries: readonly Entry[]): unknown[] {
    return entries.map((entry) => {
      if (entry.type !== 'normal' || entry.data.length === 0) return undefined;
      let command: KvCommand;
      try {
        command = decodeKvCommand(entry.data);
      } catch {
        return { error: 'invalid-argument', detail: 'undecodable command' };
      }
      try {
        return { ok: this.execute(command) };
      } catch (error) {
        if (error instanceof KvError) {
          return { error: error.kvCode };
        }
        throw error;
      }
    });
  }

  hasAlarm(type: AlarmType): boolean {
    return this.alarms.some((a) => a.alarm === type);
  }

  /**
   * etcd's capped appliers: while NOSPACE is active, what takes space (a put, a txn with a
   * put in either branch, a lease grant) is refused; while CORRUPT is, every write is.
   * Deletes, compactions and revocations still apply under NOSPACE, so an operator can make
   * room and disarm.
   */
  private refusal(command: KvCommand): KvError | undefined {
    if (this.alarms.length === 0 || command.t === 'alarm' || command.t === 'checkpoint')
      return undefined;
    if (this.hasAlarm('CORRUPT')) return new KvError('corrupt');
    if (!this.hasAlarm('NOSPACE')) return undefined;
    return spaceCost(command) > 0 ? new KvError('no-space') : undefined;
  }

  private alarm(activate: boolean, member: string, type: AlarmType): { alarms: Alarm[] } {
    const i = this.alarms.findIndex((a) => a.member === member && a.alarm === type);
    const alarm = { member, alarm: type };
    if (activate) {
      if (i < 0) {
        this.alarms = [...this.alarms, alarm];
        this.listener?.alarm?.(alarm, true);
      }
      return { alarms: [alarm] };
    }
    if (i < 0) return { alarms: [] };
    this.alarms = this.alarms.filter((_, k) => k !== i);
    this.listener?.alarm?.(alarm, false);
    return { alarms: [alarm] };
  }

  private execute(command: KvCommand): unknown {
    const refused = this.refusal(command);
    if (refused !== undefined) throw refused;
    const leaseExists = (id: number): boolean => this.leases.exists(id);
    switch (command.t) {
      case 'put':
        return this.written(applyPut(this.store, command.r, leaseExists));
      case 'del':
        return this.written(applyDeleteRange(this.store, command.r));
      case 'txn':
        return this.written(applyTxn(this.store, command.r, leaseExists));
      case 'compact':
        this.store.compact(command.revision);
        this.listener?.compacted(command.revision);
        return { revision: this.store.revision };
      case 'grant': {
        const ttl = this.leases.grant(command.id, command.ttl);
        this.listener?.granted(command.id);
        return { id: command.id, ttl, revision: this.store.revision };
      }
      case 'revoke': {
        const keys = this.leases.revoke(command.id);
        const write = this.store.write();
        for (const key of keys) write.deleteRange(fromBinary(key), undefined);
        const { revision, events } = write.end();
        this.track(revision, events);
        this.listener?.revoked(command.id);
        return { revision: this.store.revision };
      }
      case 'checkpoint':
        for (const [id, remaining] of command.leases) this.leases.checkpoint(id, remaining);
        return { revision: this.store.revision };
      case 'alarm':
        if (!(alarmTypes as readonly string[]).includes(command.alarm))
          throw new KvError('invalid-argument', `alarm ${String(command.alarm)}`);
        return {
          ...this.alarm(command.activate, String(command.member), command.alarm),
          revision: this.store.revision,
        };
    }
  }

  /** A write's result: attach/detach leases, tell watchers, return the result with revision. */
  private written<R>(outcome: Applied<R>): R & Revisioned {
    this.track(outcome.revision, outcome.events);
    return { ...outcome.result, revision: this.store.revision };
  }

  /** Lease bookkeeping reads each change's revisions, never its event (most keys: no lease). */
  private track(revision: number, events: WriteEvents): void {
    if (events.length === 0) return;
    events.forEachLeaseChange((key, detached, attached) => {
      this.leases.detach(detached, key);
      this.leases.attach(attached, key);
    });
    this.listener?.events(revision, events);
  }

  snapshot(): Uint8Array {
    const job = this.snapshotJob();
    while (!job.step());
    return concatBytes(job.result());
  }

  /**
   * The store is cloned now (O(1)) and encoded in steps; the lease table is small. The
   * format is msgpack [store snapshot, lease table], with the alarms as a third item while
   * any is active (so a snapshot without alarms reads as before they existed).
   */
  snapshotJob(): SnapshotJob {
    const store = this.store.snapshotJob(this.snapshotKeysPerStep);
    const leases = this.leases.snapshot();
    const alarms = this.alarms.map((a) => [a.member, a.alarm]);
    return {
      step: () => store.step(),
      result: () =>
        msgpackArray([
          { binary: store.result() },
          { value: leases },
          ...(alarms.length > 0 ? [{ value: alarms }] : []),
        ]),
    };
  }

  restore(data: Uint8Array): void {
    const job = this.restoreJob(data);
    while (!job.step());
  }

  /** The store in steps (MvccStore.restoreJob); leases and watchers with its last step. */
  restoreJob(data: ByteSource): { step(): boolean } {
    const reader = new MsgpackReader(data, 'kv snapshot');
    const items = reader.arrayHeader();
    if (items !== 2 && items !== 3)
      throw new BadInputError('kv snapshot: not [store, leases] or [store, leases, alarms]');
    const store = MvccStore.restoreJob(reader.binary(), this.mvccOptions);
    const leases = reader.value() as ReturnType<LeaseTable['snapshot']>;
    const alarms = items === 3 ? alarmsOf(reader.value()) : [];
    return thenInstall(store, () => {
      this.store = store.result();
      this.leases.restore(leases);
      this.alarms = alarms;
      this.listener?.restored();
    });
  }
}

function alarmsOf(value: unknown): Alarm[] {
  if (!Array.isArray(value)) throw new BadInputError('kv snapshot: alarms not a list');
  return value.map((item: unknown) => {
    if (
      !Array.isArray(item) ||
      typeof item[0] !== 'string' ||
      !(alarmTypes as readonly unknown[]).includes(item[1])
    )
      throw new BadInputError('kv snapshot: malformed alarm');
    return { member: item[0], alarm: item[1] as AlarmType };
  });
}
