/**
 * Member and cluster ids. etcd derives a member's 64-bit id from its peer URLs and the
 * cluster token, and the cluster's id from its members' ids; Chorus derives them from the
 * member's name (its Raft node id, stable across URL changes) and the cluster token, so
 * every node computes the same ids for everyone from the --initial-cluster flag alone.
 * They are uint64 on the wire, beyond 2^53, so they stay bigint or decimal strings here.
 */
import { createHash } from 'node:crypto';

function hash64(text: string): bigint {
  const digest = createHash('sha256').update(text).digest();
  const id = digest.readBigUInt64BE(0);
  // Zero means "no member" in etcd's messages (e.g. Status.leader without a leader).
  return id === 0n ? 1n : id;
}

export function memberId(clusterToken: string, name: string): bigint {
  return hash64(`chorus-member/${clusterToken}/${name}`);
}

export function clusterId(clusterToken: string, names: readonly string[]): bigint {
  const ids = names.map((n) => memberId(clusterToken, n).toString(16)).sort();
  return hash64(`chorus-cluster/${clusterToken}/${ids.join(',')}`);
}

/** etcdctl prints member ids in hexadecimal. */
export const hexId = (id: bigint): string => id.toString(16);
