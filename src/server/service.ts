/**
 * The etcd v3 services, independent of the protocol that carried the request: each unary
 * method takes a decoded request message (proto-loader's shape) and answers once through
 * `reply`. gRPC (grpc.ts) and the JSON gateway (gateway.ts) both call these, so the two
 * behave alike by construction.
 *
 * Every answer the KV node owes goes through `ctx.guard`, which enforces the request
 * deadline and lets a stopping server fail what is still in flight.
 */
import type { ChorusError } from '../core/errors.js';
import type { NodeId } from '../core/ids.js';
import { alarmTypes, type Alarm, type AlarmType } from '../kv/machine.js';
import type { KvNode } from '../kv/node.js';
import { status as Status } from '@grpc/grpc-js';
import {
  deleteRangeRequest,
  deleteRangeResponse,
  int64,
  putRequest,
  putResponse,
  rangeRequest,
  rangeResponse,
  txnRequest,
  txnResponse,
  uint64,
  type Header,
  type Wire,
} from './convert.js';
import { etcdMessages, StatusError, unimplemented } from './errors.js';
import type { MemberRequest } from './member-changes.js';
import type { Member } from './membership.js';

export type Reply = (error: unknown, response?: Wire) => void;
/** A completion; the error is a ChorusError, or a StatusError decided in this layer. */
export type Done<T> = (error: ChorusError | StatusError | undefined, result: T | undefined) => void;

/** What the services need from the node process (server.ts implements it). */
export interface ServiceContext {
  readonly kv: KvNode;
  /** This member's name (--name). */
  readonly memberName: string;
  /** The wall clock, in ms since the epoch (informational stamps only, never ordering). */
  wallMs(): number;
  /** A response header at `revision` (the store's current one when absent). */
  header(revision?: number): Header;
  /** Wraps a KV completion: a deadline, and failure when the server stops. */
  guard<T>(done: Done<T>): Done<T>;
  /** Every member of the cluster as the replicated member table has it, by id. */
  members(): Member[];
  nodeOf(memberId: bigint): NodeId | undefined;
  memberIdOf(node: NodeId): bigint | undefined;
  /** MemberAdd/Remove/Update/Promote, carried out by the leader (forwarded there). */
  changeMembership(request: MemberRequest, done: Done<{ member: Member; members: Member[] }>): void;
  /** Maintenance.Status without its header. */
  status(): Wire;
  /** Waits until `predicate` holds, checking every tick, or fails after `timeoutMs`. */
  waitFor(predicate: () => boolean, timeoutMs: number, done: (ok: boolean) => void): void;
  moveLeaderTimeoutMs: number;
}

export type UnaryHandler = (ctx: ServiceContext, request: Wire, reply: Reply) => void;

/** Writes whose outcome the metrics count as committed or failed proposals. */
export const writeMethods = new Set([
  'KV.Put',
  'KV.DeleteRange',
  'KV.Txn',
  'KV.Compact',
  'Lease.LeaseGrant',
  'Lease.LeaseRevoke',
]);

const answer =
  <T>(ctx: ServiceContext, reply: Reply, build: (result: T) => Wire): Done<T> =>
  (error, result) => {
    if (error !== undefined) return reply(error);
    reply(undefined, build(result!));
  };

const revisionOf = (r: unknown): number => (r as { revision: number }).revision;

/** Unary handlers by "Service.Method"; a method absent here answers UNIMPLEMENTED. */
export const unaryHandlers: Record<string, UnaryHandler> = {
  'KV.Range': (ctx, w, reply) => {
    const request = rangeRequest(w);
    ctx.kv.range(
      request,
      ctx.guard(answer(ctx, reply, (r) => rangeResponse(ctx.header(r.revision), r))),
    );
  },
  'KV.Put': (ctx, w, reply) => {
    ctx.kv.put(
      putRequest(w),
      ctx.guard(answer(ctx, reply, (r) => putResponse(ctx.header(r.revision), r))),
    );
  },
  'KV.DeleteRange': (ctx, w, reply) => {
    ctx.kv.deleteRange(
      deleteRangeRequest(w),
      ctx.guard(answer(ctx, reply, (r) => deleteRangeResponse(ctx.header(r.revision), r))),
    );
  },
  'KV.Txn': (ctx, w, reply) => {
    ctx.kv.txn(
      txnRequest(w),
      ctx.guard(answer(ctx, reply, (r) => txnResponse(ctx.header(r.revision), r))),
    );
  },
  'KV.Compact': (ctx, w, reply) => {
    const revision = int64(w['revision'], 'revision');
    ctx.kv.compact(
      { revision, physical: w['physical'] === true },
      ctx.guard(answer(ctx, reply, (r) => ({ header: ctx.header(revisionOf(r)) }))),
    );
  },

  'Lease.LeaseGrant': (ctx, w, reply) => {
    const ttl = int64(w['TTL'], 'TTL');
    const id = int64(w['ID'], 'ID');
    ctx.kv.leaseGrant(
      { ttl, id },
      ctx.guard(
        answer(ctx, reply, (r) => ({
          header: ctx.header(r.revision),
          ID: r.id,
          TTL: r.ttl,
          error: '',
        })),
      ),
    );
  },
  'Lease.LeaseRevoke': (ctx, w, reply) => {
    ctx.kv.leaseRevoke(
      int64(w['ID'], 'ID'),
      ctx.guard(answer(ctx, reply, (r) => ({ header: ctx.header(r.revision) }))),
    );
  },
  'Lease.LeaseTimeToLive': (ctx, w, reply) => {
    ctx.kv.leaseTimeToLive(
      int64(w['ID'], 'ID'),
      w['keys'] === true,
      ctx.guard(
        answer(ctx, reply, (r) => ({
          header: ctx.header(),
          ID: r.id,
          TTL: r.ttl,
          grantedTTL: r.grantedTtl,
          keys: r.keys,
        })),
      ),
    );
  },
  'Lease.LeaseLeases': (ctx, _w, reply) => {
    ctx.kv.leaseLeases(
      ctx.guard(
        answer(ctx, reply, (ids) => ({
          header: ctx.header(),
          leases: ids.map((id) => ({ ID: id })),
        })),
      ),
    );
  },

  'Cluster.MemberList': (ctx, _w, reply) => {
    reply(undefined, { header: ctx.header(), members: ctx.members().map(memberMessage) });
  },
  'Cluster.MemberAdd': (ctx, w, reply) => {
    const request: MemberRequest = {
      op: 'add',
      peerUrls: stringList(w['peerURLs']),
      isLearner: w['isLearner'] === true,
    };
    ctx.changeMembership(
      request,
      ctx.guard(
        answer(ctx, reply, (r) => ({
          header: ctx.header(),
          member: memberMessage(r.member),
          members: r.members.map(memberMessage),
        })),
      ),
    );
  },
  'Cluster.MemberRemove': (ctx, w, reply) =>
    memberChange(ctx, { op: 'remove', id: uint64(w['ID'], 'ID').toString() }, reply),
  'Cluster.MemberUpdate': (ctx, w, reply) =>
    memberChange(
      ctx,
      { op: 'update', id: uint64(w['ID'], 'ID').toString(), peerUrls: stringList(w['peerURLs']) },
      reply,
    ),
  'Cluster.MemberPromote': (ctx, w, reply) =>
    memberChange(ctx, { op: 'promote', id: uint64(w['ID'], 'ID').toString() }, reply),

  'Maintenance.Status': (ctx, _w, reply) => {
    reply(undefined, { header: ctx.header(), ...ctx.status() });
  },
  'Maintenance.Alarm': (ctx, w, reply) => alarm(ctx, w, reply),
  'Maintenance.Defragment': (ctx, _w, reply) => {
    // Nothing to defragment: the store lives in memory and the WAL is compacted by snapshots.
    reply(undefined, { header: ctx.header() });
  },
  'Maintenance.MoveLeader': (ctx, w, reply) => moveLeader(ctx, w, reply),
  // Hash and HashKV read this member's store as it is (no barrier), as etcd's do: members
  // are compared by asking each. Hash is HashKV at the current revision: Chorus keeps no
  // other data worth hashing (the lease table is derived from the same log).
  'Maintenance.Hash': (ctx, _w, reply) => {
    const h = ctx.kv.machine.store.hashKv(0);
    reply(undefined, { header: ctx.header(h.revision), hash: h.hash });
  },
  'Maintenance.HashKV': (ctx, w, reply) => {
    const h = ctx.kv.machine.store.hashKv(int64(w['revision'], 'revision'));
    reply(undefined, {
      header: ctx.header(),
      hash: h.hash,
      compactRevision: h.compactRevision,
      hashRevision: h.revision,
    });
  },
  'Maintenance.Downgrade': (_ctx, _w, reply) => reply(unimplemented('Downgrade')),
};

/**
 * etcd's Alarm: GET lists the alarms this member has applied (of one type, or all for
 * NONE); ACTIVATE and DEACTIVATE go through the log and answer the alarm they changed
 * (ACTIVATE of one already active answers it too; DEACTIVATE of one not active, nothing).
 */
function alarm(ctx: ServiceContext, w: Wire, reply: Reply): void {
  const type = w['alarm'];
  const action = w['action'];
  if (type !== 'NONE' && !(alarmTypes as readonly unknown[]).includes(type))
    return reply(new StatusError(Status.INVALID_ARGUMENT, `unknown alarm type ${String(type)}`));
  const message = (a: Alarm): Wire => ({ memberID: a.member, alarm: a.alarm });
  if (action === 'GET') {
    const alarms = ctx.kv.alarms().filter((a) => type === 'NONE' || a.alarm === type);
    return reply(undefined, { header: ctx.header(), alarms: alarms.map(message) });
  }
  if (action !== 'ACTIVATE' && action !== 'DEACTIVATE')
    return reply(
      new StatusError(Status.INVALID_ARGUMENT, `unknown alarm action ${String(action)}`),
    );
  const member = uint64(w['memberID'], 'memberID').toString();
  if (type === 'NONE') return reply(undefined, { header: ctx.header(), alarms: [] });
  ctx.kv.alarm(
    action === 'ACTIVATE',
    member,
    type as AlarmType,
    ctx.guard(
      answer(ctx, reply, (r) => ({
        header: ctx.header(r.revision),
        alarms: r.alarms.map(message),
      })),
    ),
  );
}

function memberMessage(m: Member): Wire {
  return {
    ID: m.id.toString(),
    name: m.name,
    peerURLs: m.peerUrls,
    clientURLs: m.clientUrls,
    isLearner: m.isLearner,
  };
}

/** Remove, update, promote: answered with the header and the members after the change. */
function memberChange(ctx: ServiceContext, request: MemberRequest, reply: Reply): void {
  ctx.changeMembership(
    request,
    ctx.guard(
      answer(ctx, reply, (r) => ({ header: ctx.header(), members: r.members.map(memberMessage) })),
    ),
  );
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function moveLeader(ctx: ServiceContext, w: Wire, reply: Reply): void {
  const target = ctx.nodeOf(uint64(w['targetID'], 'targetID'));
  const raft = ctx.kv.driver.node.raft;
  if (raft.role !== 'leader')
    return reply(new StatusError(Status.FAILED_PRECONDITION, etcdMessages.notLeader));
  if (target === undefined)
    return reply(new StatusError(Status.NOT_FOUND, etcdMessages.badLeaderTransferee));
  if (target === raft.id) return reply(undefined, { header: ctx.header() });
  ctx.kv.driver.transferLeader(target);
  ctx.waitFor(
    () => ctx.kv.driver.node.raft.lead === target,
    ctx.moveLeaderTimeoutMs,
    (ok) =>
      ok
        ? reply(undefined, { header: ctx.header() })
        : reply(new StatusError(Status.UNAVAILABLE, etcdMessages.leaderTransferTimeout)),
  );
}
