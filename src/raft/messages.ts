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

const messageFields: Record<
  MessageType,
  Record<string, 'number' | 'boolean' | 'string' | 'entries' | 'bytes' | 'metadata'>
> = {
  vote: { pre: 'boolean', lastIndex: 'number', lastTerm: 'number', transfer: 'boolean' },
  'vote-resp': { pre: 'boolean', granted: 'boolean' },
  app: { index: 'number', logTerm: 'number', entries: 'entries', commit: 'number' },
  'app-resp': { index: 'number', reject: 'boolean', hintIndex: 'number', hintTerm: 'number' },
  heartbeat: { commit: 'number', context: 'string' },
  'heartbeat-resp': { context: 'string' },
  snap: { metadata: 'metadata', offset: 'number', data: 'bytes', done: 'boolean' },
  'snap-resp': { index: 'number', offset: 'number' },
  'timeout-now': {},
  'read-index': { context: 'string' },
  'read-index-resp': { context: 'string', index: 'number' },
};

const isIndex = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function isEntry(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    isIndex(e['term']) &&
    isIndex(e['index']) &&
    (e['type'] === 'normal' || e['type'] === 'conf-change') &&
    e['data'] instanceof Uint8Array
  );
}

function isIdList(v: unknown): boolean {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function isMetadata(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  const cs = m['confState'] as Record<string, unknown> | undefined;
  return (
    isIndex(m['index']) &&
    isIndex(m['term']) &&
    typeof cs === 'object' &&
    cs !== null &&
    isIdList(cs['voters']) &&
    isIdList(cs['learners']) &&
    isIdList(cs['votersOutgoing']) &&
    isIdList(cs['learnersNext']) &&
    typeof cs['autoLeave'] === 'boolean'
  );
}

/**
 * Validates a message from the network (a peer may be buggy or hostile): the reason it is
 * malformed, or undefined when every field has the right type. `from` must be the sender.
 */
export function malformedReason(raw: unknown, sender: NodeId): string | undefined {
  if (typeof raw !== 'object' || raw === null) return 'not an object';
  const m = raw as Record<string, unknown>;
  const type = m['type'];
  if (typeof type !== 'string' || !(type in messageFields))
    return `unknown type ${JSON.stringify(type)}`;
  if (m['from'] !== sender) return `from ${JSON.stringify(m['from'])} is not the sender ${sender}`;
  if (typeof m['to'] !== 'string') return 'bad to';
  if (!isIndex(m['term'])) return 'bad term';
  for (const [field, kind] of Object.entries(messageFields[type as MessageType])) {
    const v = m[field];
    const ok =
      kind === 'number'
        ? isIndex(v)
        : kind === 'entries'
          ? Array.isArray(v) && v.every(isEntry)
          : kind === 'bytes'
            ? v instanceof Uint8Array
            : kind === 'metadata'
              ? isMetadata(v)
              : typeof v === kind;
    if (!ok) return `bad ${type}.${field}`;
  }
  return undefined;
}
