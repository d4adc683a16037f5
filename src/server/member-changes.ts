/**
 * MemberAdd, MemberRemove, MemberPromote and MemberUpdate, decided on the leader.
 *
 * The leader checks a request against the replicated member table and its own view of
 * the followers, then proposes one Raft conf change (or, for MemberUpdate, a cluster
 * command) and answers once it has applied. A member that is not the leader forwards the
 * request (server.ts). Refusals use etcd's codes and words:
 *
 * - add: URLs must parse; no member may already use one of them; one learner at a time; a
 *   voter is added only if the members that are up still make a quorum of the bigger
 *   configuration (etcd's strict reconfiguration check). The new member's id is drawn here,
 *   unused by any member present or removed (ids.ts), and travels in the conf change;
 * - remove: the member must exist; a voter is removed only if the members that are up
 *   still make a quorum of the smaller configuration;
 * - promote: the member must be a learner with at least 90% of the leader's log;
 * - update: the member must exist and the new URLs be unused by anyone else.
 *
 * Raft accepts one conf change at a time; a request that meets another in flight waits
 * for it (up to its deadline) instead of failing.
 */
import { status as Status } from '@grpc/grpc-js';
import { ChorusError, asChorusError } from '../core/errors.js';
import type { NodeId } from '../core/ids.js';
import type { Timers } from '../env/env.js';
import type { RaftDriver } from '../raft/driver.js';
import type { ConfChange } from '../raft/raft.js';
import { learnerReadyRatio, learnersMax, memberIdAttemptsMax } from './constants.js';
import { parseUrl } from './config.js';
import { StatusError } from './errors.js';
import { addedMemberId, addedNodeId } from './ids.js';
import {
  encodeClusterCommand,
  encodeMemberContext,
  type Member,
  type MemberTable,
} from './membership.js';

export type MemberRequest =
  | { op: 'add'; peerUrls: string[]; isLearner: boolean }
  | { op: 'remove'; id: string }
  | { op: 'update'; id: string; peerUrls: string[] }
  | { op: 'promote'; id: string };

export const memberErrors = {
  exists: 'etcdserver: member ID already exist',
  peerUrlExists: 'etcdserver: Peer URLs already exists',
  notEnoughStarted: 'etcdserver: re-configuration failed due to not enough started members',
  badUrls: 'etcdserver: given member URLs are invalid',
  notFound: 'etcdserver: member not found',
  notLearner: 'etcdserver: can only promote a learner member',
  learnerNotReady: 'etcdserver: can only promote a learner member which is in sync with leader',
  tooManyLearners: 'etcdserver: too many learner members in cluster',
} as const;

export interface MemberChangeContext {
  driver: RaftDriver;
  table: MemberTable;
  timers: Timers;
  clusterToken: string;
  /** Whether a voter has been heard from lately (the leader's view; itself counts). */
  isStarted(node: NodeId): boolean;
  /** Milliseconds between retries while another conf change is in flight. */
  retryMs: number;
  /** Monotonic milliseconds. */
  now(): number;
  /** Wall-clock milliseconds and a random 32-bit draw: what makes an added member's id new. */
  wallMs(): number;
  draw(): number;
}

/** Validates `request` and carries it out; the leader only. `done` gets the member touched. */
export function changeMembership(
  ctx: MemberChangeContext,
  request: MemberRequest,
  deadlineMs: number,
  done: (error: unknown, member?: Member) => void,
): void {
  let plan: { change?: ConfChange; update?: Uint8Array; node: NodeId };
  try {
    plan = planChange(ctx, request);
  } catch (error) {
    return done(error);
  }
  const finish = (error: ChorusError | undefined): void => {
    if (error !== undefined) return done(error);
    done(undefined, ctx.table.get(plan.node) ?? removedMember(request, plan.node));
  };
  if (plan.update !== undefined) return ctx.driver.propose(plan.update, (e) => finish(e));
  const change = plan.change!;
  const attempt = (): void => {
    try {
      ctx.driver.proposeConfChange(change, (error) => finish(error));
    } catch (error) {
      const e = asChorusError(error);
      // One conf change at a time: wait for the one in flight, then try again.
      if (e.code === 'proposal-dropped' && /still being applied|joint/.test(e.message)) {
        if (ctx.now() < deadlineMs) {
          ctx.timers.set(ctx.retryMs, attempt);
          return;
        }
      }
      done(e);
    }
  };
  attempt();
}

function removedMember(request: MemberRequest, node: NodeId): Member {
  return {
    id: 'id' in request ? BigInt(request.id) : 0n,
    node,
    name: '',
    peerUrls: [],
    clientUrls: [],
    isLearner: false,
  };
}

function planChange(
  ctx: MemberChangeContext,
  request: MemberRequest,
): { change?: ConfChange; update?: Uint8Array; node: NodeId } {
  const raft = ctx.driver.node.raft;
  if (raft.role !== 'leader') throw new ChorusError('not-leader', 'not the leader');
  const table = ctx.table;
  const members = table.list();
  const voters = members.filter((m) => !m.isLearner);
  switch (request.op) {
    case 'add': {
      const peerUrls = normalizeUrls(request.peerUrls);
      if (members.some((m) => m.peerUrls.some((u) => peerUrls.includes(u))))
        throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.peerUrlExists);
      const id = newMemberId(ctx, table, peerUrls);
      if (request.isLearner && members.filter((m) => m.isLearner).length >= learnersMax)
        throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.tooManyLearners);
      if (!request.isLearner) {
        const started = voters.filter((m) => ctx.isStarted(m.node)).length;
        if (started < quorum(voters.length + 1))
          throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.notEnoughStarted);
      }
      const node = addedNodeId(id);
      return {
        node,
        change: {
          changes: [{ type: request.isLearner ? 'add-learner' : 'add-voter', node }],
          context: encodeMemberContext({ id: id.toString(), name: '', peerUrls }),
        },
      };
    }
    case 'remove': {
      const member = found(table, request.id);
      if (!member.isLearner) {
        const remaining = voters.filter((m) => m.node !== member.node);
        const started = remaining.filter((m) => ctx.isStarted(m.node)).length;
        if (remaining.length === 0 || started < quorum(remaining.length))
          throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.notEnoughStarted);
      }
      return {
        node: member.node,
        change: { changes: [{ type: 'remove-node', node: member.node }] },
      };
    }
    case 'promote': {
      const member = found(table, request.id);
      if (!member.isLearner)
        throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.notLearner);
      const match = raft.progress.get(member.node)?.match ?? 0;
      if (match < raft.log.lastIndex() * learnerReadyRatio)
        throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.learnerNotReady);
      return { node: member.node, change: { changes: [{ type: 'add-voter', node: member.node }] } };
    }
    case 'update': {
      const member = found(table, request.id);
      const peerUrls = normalizeUrls(request.peerUrls);
      if (
        members.some((m) => m.node !== member.node && m.peerUrls.some((u) => peerUrls.includes(u)))
      )
        throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.peerUrlExists);
      return {
        node: member.node,
        update: encodeClusterCommand({ t: 'peer-urls', node: member.node, peerUrls }),
      };
    }
  }
}

const quorum = (voters: number): number => Math.floor(voters / 2) + 1;

/** An id no member has or had (a clash of 64-bit hashes is all but impossible; still bounded). */
function newMemberId(ctx: MemberChangeContext, table: MemberTable, peerUrls: string[]): bigint {
  const wallMs = ctx.wallMs();
  const draw = ctx.draw();
  for (let attempt = 0; attempt < memberIdAttemptsMax; attempt++) {
    const id = addedMemberId(ctx.clusterToken, peerUrls, wallMs, draw, attempt);
    const node = addedNodeId(id);
    if (table.byId(id) === undefined && !table.wasRemoved(id) && table.get(node) === undefined)
      return id;
  }
  throw new StatusError(Status.FAILED_PRECONDITION, memberErrors.exists);
}

function found(table: MemberTable, id: string): Member {
  const member = /^\d+$/.test(id) ? table.byId(BigInt(id)) : undefined;
  if (member === undefined) throw new StatusError(Status.NOT_FOUND, memberErrors.notFound);
  return member;
}

/** Peer URLs as http://host:port, sorted and without duplicates; etcd's error when bad. */
export function normalizeUrls(urls: readonly string[]): string[] {
  if (urls.length === 0) throw new StatusError(Status.INVALID_ARGUMENT, memberErrors.badUrls);
  const normalized = urls.map((u) => {
    try {
      return parseUrl(u, 'peer-urls').url;
    } catch {
      throw new StatusError(Status.INVALID_ARGUMENT, memberErrors.badUrls);
    }
  });
  return [...new Set(normalized)].sort();
}
