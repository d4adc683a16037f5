/**
 * The cluster's membership as replicated state, beside the KV store in the same log.
 *
 * Raft knows members only as node ids. What an etcd client sees of a member — its 64-bit
 * id, name, peer and client URLs, whether it is a learner — lives here, in a table every
 * member builds from the same entries:
 *
 * - conf-change entries: each adds, promotes, demotes or removes one member. An addition
 *   carries the member's identity (a MemberContext) in the change's context. The founding
 *   members arrive the same way: RaftConfig.bootstrap writes them as the first entries.
 * - cluster commands: normal entries whose first byte is 0xc1 (a byte msgpack never
 *   starts with, so no KV command is mistaken for one): a member publishing its name and
 *   client URLs once it runs, and MemberUpdate changing a member's peer URLs.
 *
 * ClusterMachine wraps the KV state machine: it takes these entries, hands every other one
 * to the KV machine, and puts the table into every snapshot, so a member that joins from a
 * snapshot learns the membership with the data. Deterministic: no clock, no randomness.
 */
import { concatBytes, type ByteSource } from '../core/bytes.js';
import { decode, encode, msgpackArray, MsgpackReader } from '../core/codec.js';
import { BadInputError } from '../core/errors.js';
import { thenInstall } from '../core/job.js';
import { isNodeId, nodeId, type NodeId } from '../core/ids.js';
import { restoreJobOf, type SnapshotJob, type StateMachine } from '../raft/driver.js';
import { decodeConfChange, type ConfChange } from '../raft/raft.js';
import type { Entry } from '../raft/types.js';
import { clusterId, memberId } from './ids.js';
import { namedMembers, type ClusterMember } from './config.js';

export interface Member {
  id: bigint;
  node: NodeId;
  /** Empty until the member has started and published it (as etcd shows an unstarted member). */
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/** Who a conf change adds: in its context (and in the founding entries). */
export interface MemberContext {
  id: string;
  name: string;
  peerUrls: string[];
  /** The founding entries carry the cluster's id, so a member added later learns it too. */
  clusterId?: string;
}

export type ClusterCommand =
  | { t: 'attributes'; node: NodeId; name: string; clientUrls: string[] }
  | { t: 'peer-urls'; node: NodeId; peerUrls: string[] };

/** First byte of a cluster command; 0xc1 is the one byte msgpack never uses. */
const commandMark = 0xc1;

export function encodeClusterCommand(command: ClusterCommand): Uint8Array {
  const body = encode(command);
  const bytes = new Uint8Array(body.length + 1);
  bytes[0] = commandMark;
  bytes.set(body, 1);
  return bytes;
}

export const encodeMemberContext = (context: MemberContext): Uint8Array => encode(context);

/**
 * The founding voters of a cluster made from --initial-cluster: node id = name, member id
 * from the token and the name, the cluster id in every context. A new cluster writes them
 * as its first entries (RaftConfig.bootstrap); a restore builds its member table from the
 * same changes, so a restored cluster has the ids a new one with those flags would have.
 */
export function foundingMembers(
  clusterToken: string,
  members: readonly ClusterMember[],
): { node: NodeId; context: Uint8Array }[] {
  // A member with several peer URLs is listed once per URL; an unnamed one is no founder.
  const founders = namedMembers(members);
  const cluster = clusterId(clusterToken, [...founders.keys()]).toString();
  return [...founders].map(([name, entries]) => ({
    node: nodeId(name),
    context: encodeMemberContext({
      id: memberId(clusterToken, name).toString(),
      name,
      peerUrls: entries.map((m) => m.peerUrl).sort(),
      clusterId: cluster,
    }),
  }));
}

const isClusterEntry = (e: Entry): boolean =>
  e.type === 'conf-change' || (e.data.length > 0 && e.data[0] === commandMark);

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string');

function decodeContext(bytes: Uint8Array | undefined): MemberContext | undefined {
  if (bytes === undefined) return undefined;
  const c = decode(bytes) as Partial<MemberContext> | undefined;
  if (
    c === undefined ||
    typeof c.id !== 'string' ||
    !/^\d+$/.test(c.id) ||
    typeof c.name !== 'string' ||
    !isStringArray(c.peerUrls)
  )
    return undefined;
  return c as MemberContext;
}

/** A member's table entry as stored in a snapshot (ids as decimal strings). */
type StoredMember = [string, NodeId, string, string[], string[], boolean];
type StoredTable = [StoredMember[], [NodeId, string][], string];

export class MemberTable {
  private readonly members = new Map<NodeId, Member>();
  /** Removed members, node → id: an id is never added again (etcd: "ID removed"). */
  private readonly removed = new Map<NodeId, string>();
  /** Decimal; '' until the founding entries (or a snapshot) are applied. */
  clusterId = '';

  list(): Member[] {
    return [...this.members.values()]
      .map((m) => ({ ...m, peerUrls: [...m.peerUrls], clientUrls: [...m.clientUrls] }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(node: NodeId): Member | undefined {
    return this.members.get(node);
  }

  byId(id: bigint): Member | undefined {
    for (const m of this.members.values()) if (m.id === id) return m;
    return undefined;
  }

  wasRemoved(id: bigint): boolean {
    return [...this.removed.values()].includes(id.toString());
  }

  isRemoved(node: NodeId): boolean {
    return this.removed.has(node);
  }

  removedNodeIds(): NodeId[] {
    return [...this.removed.keys()];
  }

  get size(): number {
    return this.members.size;
  }

  applyConfChange(change: ConfChange): void {
    const context = decodeContext(change.context);
    if (context?.clusterId !== undefined && this.clusterId === '')
      this.clusterId = context.clusterId;
    for (const { type, node } of change.changes) {
      const member = this.members.get(node);
      if (type === 'remove-node') {
        if (member === undefined) continue;
        this.members.delete(node);
        this.removed.set(node, member.id.toString());
        continue;
      }
      const isLearner = type === 'add-learner';
      if (member !== undefined) {
        member.isLearner = isLearner;
        continue;
      }
      // A change made outside the server has no context: the member is known by node id only.
      this.members.set(node, {
        id: context === undefined ? 0n : BigInt(context.id),
        node,
        name: context?.name ?? '',
        peerUrls: context === undefined ? [] : [...context.peerUrls],
        clientUrls: [],
        isLearner,
      });
    }
  }

  applyCommand(command: ClusterCommand): void {
    const member = this.members.get(command.node);
    if (member === undefined) return;
    switch (command.t) {
      case 'attributes':
        member.name = command.name;
        member.clientUrls = [...command.clientUrls];
        return;
      case 'peer-urls':
        member.peerUrls = [...command.peerUrls];
        return;
    }
  }

  toStored(): StoredTable {
    return [
      [...this.members.values()].map((m) => [
        m.id.toString(),
        m.node,
        m.name,
        [...m.peerUrls],
        [...m.clientUrls],
        m.isLearner,
      ]),
      [...this.removed],
      this.clusterId,
    ];
  }

  restore(stored: StoredTable): void {
    const [members, removed, clusterId] = stored;
    this.members.clear();
    this.removed.clear();
    for (const [id, node, name, peerUrls, clientUrls, isLearner] of members)
      this.members.set(node, { id: BigInt(id), node, name, peerUrls, clientUrls, isLearner });
    for (const [node, id] of removed) this.removed.set(node, id);
    this.clusterId = clusterId;
  }
}

function decodeCommand(data: Uint8Array): ClusterCommand | undefined {
  let value: unknown;
  try {
    value = decode(data.subarray(1));
  } catch {
    return undefined;
  }
  const c = value as Partial<ClusterCommand> | undefined;
  if (c === undefined || !isNodeId(c.node)) return undefined;
  if (c.t === 'attributes' && typeof c.name === 'string' && isStringArray(c.clientUrls))
    return c as ClusterCommand;
  if (c.t === 'peer-urls' && isStringArray(c.peerUrls)) return c as ClusterCommand;
  return undefined;
}

/**
 * A ClusterMachine snapshot: msgpack [member table, the KV machine's own snapshot bytes], as
 * pieces (the KV bytes framed, not copied). Restore writes one from a snapshot file's KV
 * bytes and a new table.
 */
export function encodeClusterSnapshot(table: StoredTable, kv: readonly Uint8Array[]): Uint8Array[] {
  return msgpackArray([{ value: table }, { binary: kv }]);
}

/** The KV state machine with the member table beside it (see the file comment). */
export class ClusterMachine implements StateMachine {
  constructor(
    private readonly inner: StateMachine,
    readonly table: MemberTable,
    /** Runs after a batch that changed the membership. */
    private readonly changed: () => void,
  ) {}

  apply(entries: readonly Entry[]): unknown[] {
    if (!entries.some(isClusterEntry)) return this.inner.apply(entries);
    // Cluster entries touch only the table and KV entries only the store, so applying each
    // kind in order separately gives the state one interleaved pass would.
    const results: unknown[] = new Array(entries.length).fill(undefined);
    const kv: Entry[] = [];
    const kvAt: number[] = [];
    entries.forEach((entry, i) => {
      if (entry.type === 'conf-change') {
        this.table.applyConfChange(decodeConfChange(entry.data));
        results[i] = { ok: true };
      } else if (isClusterEntry(entry)) {
        const command = decodeCommand(entry.data);
        if (command !== undefined) this.table.applyCommand(command);
        results[i] =
          command === undefined ? { error: 'invalid-argument', detail: 'bad cluster command' } : {};
      } else {
        kv.push(entry);
        kvAt.push(i);
      }
    });
    if (kv.length > 0) this.inner.apply(kv).forEach((r, j) => (results[kvAt[j]!] = r));
    this.changed();
    return results;
  }

  snapshot(): Uint8Array {
    const job = this.snapshotJob();
    while (!job.step());
    return concatBytes(job.result());
  }

  /** The table as it is now, beside the inner machine's snapshot (encodeClusterSnapshot). */
  snapshotJob(): SnapshotJob {
    const table = this.table.toStored();
    const job = this.inner.snapshotJob?.();
    const inner = job ?? { step: () => true, result: () => [this.inner.snapshot()] };
    return {
      step: () => inner.step(),
      result: () => encodeClusterSnapshot(table, inner.result()),
    };
  }

  restore(data: Uint8Array): void {
    const job = this.restoreJob(data);
    while (!job.step());
  }

  /** The inner machine in steps; the table with its last step. */
  restoreJob(data: ByteSource): { step(): boolean } {
    const reader = new MsgpackReader(data, 'cluster snapshot');
    if (reader.arrayHeader() !== 2) throw new BadInputError('cluster snapshot: not [table, kv]');
    const table = reader.value() as StoredTable;
    const inner = restoreJobOf(this.inner, reader.binary());
    return thenInstall(inner, () => {
      this.table.restore(table);
      this.changed();
    });
  }
}
