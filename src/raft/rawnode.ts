/**
 * RawNode: the Raft core plus the Ready/advance handshake (etcd-raft's rawnode.go). The
 * driver calls `ready()`, carries out the duties it lists, then `advance(ready)`; one Ready
 * is outstanding at a time.
 */
import { assert } from '../core/assert.js';
import type { ChorusError } from '../core/errors.js';
import type { NodeId } from '../core/ids.js';
import { applyBytesMax } from './constants.js';
import { needsPersistFirst, type Message } from './messages.js';
import {
  decodeConfChange,
  Raft,
  type ConfChange,
  type RaftConfig,
  type ReadState,
  type RestoredState,
  type Role,
} from './raft.js';
import type { Entry, HardState, Snapshot } from './types.js';

export interface SoftState {
  role: Role;
  lead: NodeId | '';
  term: number;
}

/** One batch of work for the driver. The comment on each field is the caller's duty. */
export interface Ready {
  /** Persist (term, vote, commit) durably before sending `messagesAfterPersist`. Undefined: unchanged. */
  hardState: HardState | undefined;
  /** Append durably before sending `messagesAfterPersist`; the first entry's index may truncate a suffix. */
  entries: Entry[];
  /** A snapshot from the leader: persist it, restore the state machine from it, before applying entries. */
  snapshot: Snapshot | undefined;
  /** Apply to the state machine in order (they are committed and durable here). */
  committedEntries: Entry[];
  /** Send now, even while this Ready is being persisted (a leader's appends, heartbeats). */
  messages: Message[];
  /** Send only once `hardState`, `entries` and `snapshot` are durable (votes, append acks). */
  messagesAfterPersist: Message[];
  /** Serve each read once the state machine has applied `index`. */
  readStates: ReadState[];
  /** Who leads now (informational; needs no persistence). */
  softState: SoftState;
}

export class RawNode {
  readonly raft: Raft;
  private previous: HardState;
  private outstanding = false;

  constructor(config: RaftConfig, restored: RestoredState) {
    this.raft = new Raft(config, restored);
    this.previous = { ...restored.hardState };
  }

  tick(): void {
    this.raft.tick();
  }

  step(m: Message): void {
    this.raft.step(m);
  }

  propose(data: Uint8Array): number {
    return this.raft.propose(data);
  }

  /** Appends the entries of many proposals at once: the index of each, or why it was refused. */
  proposeBatch(datas: readonly Uint8Array[]): (number | ChorusError)[] {
    return this.raft.proposeBatch(datas);
  }

  proposeConfChange(change: ConfChange): number {
    return this.raft.proposeConfChange(change);
  }

  readIndex(context: string): void {
    this.raft.readIndex(context);
  }

  transferLeader(to: NodeId): void {
    this.raft.transferLeader(to);
  }

  campaign(): void {
    this.raft.campaign(false);
  }

  compact(snapshot: Snapshot, catchUpEntries = 0): void {
    this.raft.compact(snapshot, catchUpEntries);
  }

  softState(): SoftState {
    return { role: this.raft.role, lead: this.raft.lead, term: this.raft.term };
  }

  hasReady(): boolean {
    const r = this.raft;
    const hs = r.hardState();
    return (
      r.msgs.length > 0 ||
      r.readStates.length > 0 ||
      r.log.pendingSnapshot !== undefined ||
      r.log.stable < r.log.lastIndex() ||
      Math.min(r.log.committed, r.log.stable) > r.log.applied ||
      hs.term !== this.previous.term ||
      hs.vote !== this.previous.vote ||
      hs.commit !== this.previous.commit
    );
  }

  ready(): Ready {
    assert(!this.outstanding, 'ready() called again before advance()');
    this.outstanding = true;
    const r = this.raft;
    const committedEntries = r.log.nextCommitted(applyBytesMax);
    // Membership changes take effect as their entries are applied (thesis §4.1 variant used
    // by etcd: on apply rather than on append, with one change in flight at a time).
    for (const e of committedEntries)
      if (e.type === 'conf-change') r.applyConfChange(decodeConfChange(e.data));
    r.reduceUncommitted(committedEntries);
    const hs = r.hardState();
    const changed =
      hs.term !== this.previous.term ||
      hs.vote !== this.previous.vote ||
      hs.commit !== this.previous.commit;
    const messages: Message[] = [];
    const after: Message[] = [];
    for (const m of r.msgs) (needsPersistFirst(m) ? after : messages).push(m);
    r.msgs = [];
    const ready: Ready = {
      hardState: changed ? hs : undefined,
      entries: r.log.unstableEntries(),
      snapshot: r.log.pendingSnapshot,
      committedEntries,
      messages,
      messagesAfterPersist: after,
      readStates: r.readStates,
      softState: this.softState(),
    };
    r.readStates = [];
    return ready;
  }

  /** The driver carried out `ready`: entries are durable and committed entries applied. */
  advance(ready: Ready): void {
    assert(this.outstanding, 'advance() without ready()');
    this.outstanding = false;
    const r = this.raft;
    if (ready.hardState !== undefined) this.previous = ready.hardState;
    if (ready.snapshot !== undefined) {
      if (r.log.pendingSnapshot === ready.snapshot) r.log.pendingSnapshot = undefined;
      r.log.appliedSnapshot(ready.snapshot.metadata.index);
    }
    const last = ready.entries[ready.entries.length - 1];
    if (last !== undefined) r.persisted(last.index, last.term);
    const applied = ready.committedEntries[ready.committedEntries.length - 1];
    if (applied !== undefined) r.log.appliedTo(applied.index);
    r.maybeAutoLeave();
  }
}
