/**
 * Quorum arithmetic for majority and joint configurations (Raft thesis §4.3). Pure
 * functions over sets of voters; a joint configuration needs a majority of both halves.
 */
import type { NodeId } from '../core/ids.js';

export type VoteResult = 'won' | 'lost' | 'pending';

/** The highest index that a majority of `voters` has acknowledged (Infinity for no voters). */
export function majorityIndex(voters: ReadonlySet<NodeId>, acked: (id: NodeId) => number): number {
  if (voters.size === 0) return Infinity;
  const indexes: number[] = [];
  for (const id of voters) indexes.push(acked(id));
  indexes.sort((a, b) => b - a);
  return indexes[Math.floor(voters.size / 2)]!;
}

export function jointIndex(
  incoming: ReadonlySet<NodeId>,
  outgoing: ReadonlySet<NodeId>,
  acked: (id: NodeId) => number,
): number {
  const index = Math.min(majorityIndex(incoming, acked), majorityIndex(outgoing, acked));
  return index === Infinity ? 0 : index;
}

export function majorityVote(
  voters: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  if (voters.size === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  const quorum = Math.floor(voters.size / 2) + 1;
  if (granted >= quorum) return 'won';
  if (granted + missing >= quorum) return 'pending';
  return 'lost';
}

export function jointVote(
  incoming: ReadonlySet<NodeId>,
  outgoing: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const a = majorityVote(incoming, votes);
  const b = majorityVote(outgoing, votes);
  if (a === 'won' && b === 'won') return 'won';
  if (a === 'lost' || b === 'lost') return 'lost';
  return 'pending';
}
