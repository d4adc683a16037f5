/**
 * Member and cluster ids. etcd derives a member's 64-bit id from its peer URLs and the
 * cluster token, and the cluster's id from its members' ids. Chorus derives a founding
 * member's id from its name (also its Raft node id) and the token, so the founders compute
 * the same ids for everyone from --initial-cluster alone. A member added later gets its id
 * from the leader at MemberAdd: a hash of its peer URLs, the token, the leader's clock and a
 * random draw (etcd mixes in the time too), so the same peer URLs added again after a
 * removal get a new id. Its Raft node id is that id in hex. The conf change carries both, so
 * every replica records the same ones however late it replays the entry; the new member
 * learns them by asking a running member for the member list (join.ts). Removed ids are
 * never reused. Ids are uint64 on the wire, beyond 2^53, so they stay bigint or decimal
 * strings here.
 */
import { createHash } from 'node:crypto';
import { nodeId, type NodeId } from '../core/ids.js';

function hash64(text: string): bigint {
  const digest = createHash('sha256').update(text).digest();
  const id = digest.readBigUInt64BE(0);
  // Zero means "no member" in etcd's messages (e.g. Status.leader without a leader).
  return id === 0n ? 1n : id;
}

export function memberId(clusterToken: string, name: string): bigint {
  return hash64(`chorus-member/${clusterToken}/${name}`);
}

/**
 * A founding member's identity (what its data directory records): its name is its Raft
 * node id, and its member id derives from the token and the name. Restored members get it too.
 */
export function founderIdentity(
  clusterToken: string,
  name: string,
): { nodeId: NodeId; memberId: string } {
  return { nodeId: nodeId(name), memberId: memberId(clusterToken, name).toString() };
}

export function clusterId(clusterToken: string, names: readonly string[]): bigint {
  const ids = names.map((n) => memberId(clusterToken, n).toString(16)).sort();
  return hash64(`chorus-cluster/${clusterToken}/${ids.join(',')}`);
}

/**
 * The id of a member added by MemberAdd with these peer URLs: unique per call through the
 * leader's wall clock and a random 32-bit draw (`attempt` moves on when an id is taken).
 */
export function addedMemberId(
  clusterToken: string,
  peerUrls: readonly string[],
  wallMs: number,
  draw: number,
  attempt = 0,
): bigint {
  const urls = [...peerUrls].sort().join(',');
  return hash64(`chorus-added-member/${clusterToken}/${urls}/${wallMs}/${draw}/${attempt}`);
}

/** The Raft node id of an added member: its id in hex, 16 digits. */
export const addedNodeId = (id: bigint): NodeId => nodeId(id.toString(16).padStart(16, '0'));

/** etcdctl prints member ids in hexadecimal. */
export const hexId = (id: bigint): string => id.toString(16);
