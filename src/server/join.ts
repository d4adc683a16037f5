/**
 * How a member joining a running cluster learns who it is (etcd's GetClusterFromRemotePeers).
 *
 * MemberAdd gives the new member an id the leader draws (ids.ts), which the new member cannot
 * compute. Started with --initial-cluster-state existing and a fresh data directory, it asks
 * the members named in --initial-cluster, one after the other, for the member list, and
 * takes the entry whose peer URLs include one of its own (its --initial-cluster URLs): that entry's
 * id and Raft node id are its own from then on (recorded in version.json). The list also
 * tells it where every member is before it has replayed the log.
 *
 * The question travels on the peer port as a transport query (src/env/node/tcp.ts): the
 * joiner knows only peer URLs, and the peer port is the one every member listens on whatever
 * its client URLs. It is refused, with a reason, when no member answers, when the members
 * belong to another cluster token, or when none lists this member's peer URL (it was never
 * added, or added with another URL).
 */
import { decode, encode } from '../core/codec.js';
import { isNodeId, type NodeId } from '../core/ids.js';
import type { TcpAddress } from '../env/node/index.js';
import type { ServerConfig } from './config.js';
import type { MemberIdentity } from './datadir.js';
import type { MemberTable } from './membership.js';

/** The transport query a member answers with its member list. */
export const membersQuestion = 'members';

/** One member as the answer lists it (ids as decimal strings). */
export interface ListedMember {
  id: string;
  node: NodeId;
  name: string;
  peerUrls: string[];
}

export interface MembersAnswer {
  clusterToken: string;
  members: ListedMember[];
}

export class JoinError extends Error {
  override name = 'JoinError';
}

export function encodeMembersAnswer(clusterToken: string, table: MemberTable): Uint8Array {
  const members = table
    .list()
    .map((m) => ({ id: m.id.toString(), node: m.node, name: m.name, peerUrls: m.peerUrls }));
  return encode({ clusterToken, members } satisfies MembersAnswer);
}

export function decodeMembersAnswer(bytes: Uint8Array): MembersAnswer | undefined {
  let value: unknown;
  try {
    value = decode(bytes);
  } catch {
    return undefined;
  }
  const a = value as Partial<MembersAnswer> | undefined;
  if (a === undefined || typeof a.clusterToken !== 'string' || !Array.isArray(a.members))
    return undefined;
  const ok = a.members.every(
    (m: Partial<ListedMember>) =>
      typeof m.id === 'string' &&
      /^\d+$/.test(m.id) &&
      isNodeId(m.node) &&
      typeof m.name === 'string' &&
      Array.isArray(m.peerUrls) &&
      m.peerUrls.every((u) => typeof u === 'string'),
  );
  return ok ? (a as MembersAnswer) : undefined;
}

/** Asks the member at `address` for its member list. */
export type AskMembers = (
  address: TcpAddress,
  done: (error: Error | undefined, answer: Uint8Array | undefined) => void,
) => void;

export interface Joined {
  identity: MemberIdentity;
  /** The cluster's members as the answering member knew them, this one included. */
  members: ListedMember[];
}

/**
 * Asks the other members of --initial-cluster in turn (each once, in order) until one lists
 * this member's peer URL; fails with every answer's reason when none does.
 */
export function learnIdentity(
  config: ServerConfig,
  ask: AskMembers,
  done: (error: JoinError | undefined, joined: Joined | undefined) => void,
): void {
  const ownUrls = config.initialCluster.filter((m) => m.name === config.name).map((m) => m.peerUrl);
  const others = config.initialCluster.filter((m) => !ownUrls.includes(m.peerUrl));
  if (others.length === 0)
    return done(
      new JoinError(
        `--initial-cluster-state existing: --initial-cluster names no other member to ask for this member's id`,
      ),
      undefined,
    );
  const heard: string[] = [];
  let answered = false;
  const next = (i: number): void => {
    const peer = others[i];
    if (peer === undefined) return done(failure(ownUrls, heard, answered), undefined);
    ask({ host: peer.host, port: peer.port }, (error, bytes) => {
      const where = `${peer.name === '' ? 'a member' : peer.name} at ${peer.peerUrl}`;
      if (error !== undefined || bytes === undefined) {
        heard.push(`${where}: ${error?.message ?? 'no answer'}`);
        return next(i + 1);
      }
      const answer = decodeMembersAnswer(bytes);
      if (answer === undefined) {
        heard.push(`${where}: an answer that is not a member list`);
        return next(i + 1);
      }
      if (answer.clusterToken !== config.initialClusterToken) {
        heard.push(
          `${where}: belongs to cluster token ${JSON.stringify(answer.clusterToken)}, not ${JSON.stringify(config.initialClusterToken)}`,
        );
        return next(i + 1);
      }
      answered = true;
      const self = answer.members.find((m) => m.peerUrls.some((u) => ownUrls.includes(u)));
      if (self === undefined) {
        const urls = answer.members.flatMap((m) => m.peerUrls).join(', ');
        heard.push(`${where}: lists ${urls || 'no member'}`);
        return next(i + 1);
      }
      done(undefined, {
        identity: { nodeId: self.node, memberId: self.id },
        members: answer.members,
      });
    });
  };
  next(0);
}

function failure(urls: readonly string[], heard: readonly string[], answered: boolean): JoinError {
  const url = urls.join(',');
  const detail = heard.join('; ');
  if (!answered)
    return new JoinError(
      `cannot learn this member's id: no member in --initial-cluster answered (${detail})`,
    );
  return new JoinError(
    `no member of the cluster lists this member's peer URL ${urls.join(' or ')} (${detail}); ` +
      `add it first with \`member add <name> --peer-urls=${url}\`, then start it with ` +
      `--initial-cluster-state existing`,
  );
}
