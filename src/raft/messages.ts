/**
 * Raft messages. Every message carries the sender's term; `from`/`to` are node ids. The
 * numbered paper sections say where each comes from.
 */
import type { NodeId } from '../core/ids.js';
import type { Entry, SnapshotMetadata } from './types.js';

interface Base {
  from: NodeId;
  to: NodeId;
  term: number;
}

/** §5.2 RequestVote; `pre` for the PreVote phase (thesis §9.6), `transfer` after TimeoutNow. */
export interface VoteRequest extends Base {
  type: 'vote';
  pre: boolean;
  lastIndex: number;
  lastTerm: number;
  transfer: boolean;
}

export interface VoteResponse extends Base {
  type: 'vote-resp';
  pre: boolean;
  granted: boolean;
}

/** §5.3 AppendEntries: entries after (index, logTerm), and the leader's commit. */
export interface Append extends Base {
  type: 'app';
  index: number;
  logTerm: number;
  entries: Entry[];
  commit: number;
}

/**
 * The answer to an append. On success `index` is the last index now matching. On reject,
 * `index` is the rejected prev index and (hintIndex, hintTerm) says where to retry.
 */
export interface AppendResponse extends Base {
  type: 'app-resp';
  index: number;
  reject: boolean;
  hintIndex: number;
  hintTerm: number;
}

/** Heartbeats carry the commit (capped at the follower's match) and a read-index context. */
export interface Heartbeat extends Base {
  type: 'heartbeat';
  commit: number;
  context: string;
}

export interface HeartbeatResponse extends Base {
  type: 'heartbeat-resp';
  context: string;
}

/** §7 InstallSnapshot, in chunks: `offset` into the snapshot data, `done` on the last one. */
export interface SnapshotChunk extends Base {
  type: 'snap';
  metadata: SnapshotMetadata;
  offset: number;
  data: Uint8Array;
  done: boolean;
}

/** Acknowledges the snapshot bytes received so far (or asks to restart from `offset`). */
export interface SnapshotResponse extends Base {
  type: 'snap-resp';
  index: number;
  offset: number;
}

/** Thesis §3.10: the leader tells a caught-up follower to campaign at once. */
export interface TimeoutNow extends Base {
  type: 'timeout-now';
}

/** Thesis §6.4: a follower asks the leader for a read index. */
export interface ReadIndexRequest extends Base {
  type: 'read-index';
  context: string;
}

export interface ReadIndexResponse extends Base {
  type: 'read-index-resp';
  context: string;
  /** 0 when the leader could not serve it (then the follower's caller should retry). */
  index: number;
}

export type Message =
  | VoteRequest
  | VoteResponse
  | Append
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | SnapshotChunk
  | SnapshotResponse
  | TimeoutNow
  | ReadIndexRequest
  | ReadIndexResponse;

export type MessageType = Message['type'];

/**
 * Messages that promise something about this node's durable state (a vote, an append
 * accepted, a candidacy) go out only after the Ready that produced them is persisted; the
 * rest (a leader's appends and heartbeats) may go at once (thesis §10.2.1).
 */
export function needsPersistFirst(m: Message): boolean {
  switch (m.type) {
    case 'vote':
    case 'vote-resp':
    case 'app-resp':
    case 'snap-resp':
      return true;
    case 'app':
    case 'heartbeat':
    case 'heartbeat-resp':
    case 'snap':
    case 'timeout-now':
    case 'read-index':
    case 'read-index-resp':
      return false;
  }
}
