/**
 * How a member joining a running cluster learns who it is (etcd's GetClusterFromRemotePeers).
 *
 * MemberAdd gives the new member an id the leader draws (ids.ts), which the new member cannot
 * compute. Started with --initial-cluster-state existing and a fresh data directory, it asks
 * the other members named in --initial-cluster, one after the other, for the member list, and
 * takes the entry whose peer URLs include one of its own (--initial-advertise-peer-urls, by
 * default its --initial-cluster URLs): that entry's id and Raft node id are its own from then
 * on (recorded in version.json). The list also tells it where every member is before it has
 * replayed the log.
 *
 * The question travels on the peer port as a transport query (src/env/node/tcp.ts): the
 * joiner knows only peer URLs, and the peer port is the one every member listens on whatever
 * its client URLs.
 *
 * One pass over the members is a round. A round ends the join when a member lists this one
 * (joined), or when a member that has seen a leader since it started answers for this
 * cluster token without listing it: that answer is definitive (it was never added, or added
 * with another URL), and the start fails at once with the reason, as etcd's does. Any other
 * round — nobody reachable, only answers from another cluster token or that do not decode,
 * or only members still starting, whose list may predate the `member add` — is retried after
 * a pause that doubles from `joinRetryFirstMs` to `joinRetryMaxMs`, each failed round logged,
 * until --join-timeout has passed since the first round began; then the start fails with the
 * last round's reasons. (etcd asks each peer once and exits; the retry is Chorus's, so that a
 * joiner started a moment before its peers are up still joins.)
 */
import { decode, encode } from '../core/codec.js';
import { isNodeId, type NodeId } from '../core/ids.js';
import type { Logger } from '../env/env.js';
import type { TcpAddress } from '../env/node/index.js';
import type { ClusterMember, ServerConfig } from './config.js';
import { joinRetryFirstMs, joinRetryMaxMs } from './constants.js';
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
  /**
   * The answering member has seen a leader since it started. Until then its table is what
   * its own log and snapshot held, which may predate this member's `member add` (its
   * commit index is learned from a leader), so a list without this member is not yet a
   * "no". Absent (an older member): taken as true.
   */
  settled?: boolean;
  members: ListedMember[];
}

export class JoinError extends Error {
  override name = 'JoinError';
}

export function encodeMembersAnswer(
  clusterToken: string,
  table: MemberTable,
  settled: boolean,
): Uint8Array {
  const members = table
    .list()
    .map((m) => ({ id: m.id.toString(), node: m.node, name: m.name, peerUrls: m.peerUrls }));
  return encode({ clusterToken, settled, members } satisfies MembersAnswer);
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
  if (a.settled !== undefined && typeof a.settled !== 'boolean') return undefined;
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

/** The clock a join measures its deadline by and waits between rounds with. */
export interface JoinTiming {
  nowMs(): number;
  wait(ms: number, then: () => void): void;
}

/** What one round over the other members found. */
type Round =
  | { type: 'joined'; joined: Joined }
  /** A member of this cluster that has seen a leader lists no entry with this member's URLs. */
  | { type: 'unlisted'; heard: string[] }
  /** Nobody could say yet; `answered`: a member of this cluster answered (still starting). */
  | { type: 'undecided'; heard: string[]; answered: boolean };

/**
 * Asks the other members of --initial-cluster in rounds (see the file comment) until one
 * lists this member's peer URLs, one answers definitively that none does, or --join-timeout
 * has passed; `done` gets the reason of a failure.
 */
export function learnIdentity(
  config: ServerConfig,
  ask: AskMembers,
  timing: JoinTiming,
  log: Logger,
  done: (error: JoinError | undefined, joined: Joined | undefined) => void,
): void {
  const ownUrls = config.advertisePeerUrls;
  const listed = config.initialCluster.filter((m) => m.name === config.name);
  const others = config.initialCluster.filter(
    (m) => m.name !== config.name && !ownUrls.includes(m.peerUrl),
  );
  if (others.length === 0)
    return done(
      new JoinError(
        `--initial-cluster-state existing: --initial-cluster names no other member to ask for this member's id`,
      ),
      undefined,
    );
  if (listed.some((m) => !ownUrls.includes(m.peerUrl)))
    log.warn(
      '--initial-cluster and --initial-advertise-peer-urls disagree; joining by the latter',
      {
        initialCluster: listed.map((m) => m.peerUrl),
        advertisePeerUrls: ownUrls,
      },
    );
  const startedMs = timing.nowMs();
  let rounds = 0;
  let pauseMs = joinRetryFirstMs;
  const next = (): void => {
    rounds++;
    askRound(config, others, ask, (round) => {
      switch (round.type) {
        case 'joined':
          return done(undefined, round.joined);
        case 'unlisted':
          return done(unlisted(ownUrls, round.heard), undefined);
        case 'undecided': {
          const leftMs = config.joinTimeoutMs - (timing.nowMs() - startedMs);
          if (leftMs <= 0) return done(gaveUp(config.joinTimeoutMs, rounds, round), undefined);
          const waitMs = Math.min(pauseMs, leftMs);
          pauseMs = Math.min(2 * pauseMs, joinRetryMaxMs);
          log.warn("cannot learn this member's id yet; asking again", {
            round: rounds,
            retryInMs: waitMs,
            leftMs,
            heard: round.heard,
          });
          timing.wait(waitMs, next);
          return;
        }
      }
    });
  };
  next();
}

/** Asks each of `others` once, in order, stopping at the first that lists this member. */
function askRound(
  config: ServerConfig,
  others: readonly ClusterMember[],
  ask: AskMembers,
  done: (round: Round) => void,
): void {
  const ownUrls = config.advertisePeerUrls;
  const heard: string[] = [];
  let definitive = false;
  let answered = false;
  const next = (i: number): void => {
    const peer = others[i];
    if (peer === undefined)
      return done(
        definitive ? { type: 'unlisted', heard } : { type: 'undecided', heard, answered },
      );
    ask({ host: peer.host, port: peer.port, tls: peer.tls }, (error, bytes) => {
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
      const self = answer.members.find((m) => m.peerUrls.some((u) => ownUrls.includes(u)));
      if (self !== undefined)
        return done({
          type: 'joined',
          joined: { identity: { nodeId: self.node, memberId: self.id }, members: answer.members },
        });
      answered = true;
      const urls = answer.members.flatMap((m) => m.peerUrls).join(', ');
      if (answer.settled === false || answer.members.length === 0) {
        heard.push(
          `${where}: has not seen a leader since it started, and its member list (${urls || 'empty'}) may predate this member's addition`,
        );
      } else {
        definitive = true;
        heard.push(`${where}: lists ${urls}`);
      }
      next(i + 1);
    });
  };
  next(0);
}

function unlisted(urls: readonly string[], heard: readonly string[]): JoinError {
  return new JoinError(
    `no member of the cluster lists this member's peer URL ${urls.join(' or ')} (${heard.join('; ')}); ` +
      `add it first with \`member add <name> --peer-urls=${urls.join(',')}\`, then start it with ` +
      `--initial-cluster-state existing`,
  );
}

function gaveUp(
  timeoutMs: number,
  rounds: number,
  round: Extract<Round, { type: 'undecided' }>,
): JoinError {
  const what = round.answered
    ? 'no member in --initial-cluster that answered had seen a leader yet'
    : 'no member in --initial-cluster answered';
  const times = rounds === 1 ? 'in 1 round' : `in ${rounds} rounds`;
  return new JoinError(
    `cannot learn this member's id: ${what} (asked ${times} over --join-timeout ${timeoutMs} ms; ` +
      `last round: ${round.heard.join('; ')})`,
  );
}
