/**
 * The data types of Raft shared by the pure core, storage and the driver. Indexes and terms
 * are plain safe integers at rest; the core brands them where mixing would be a bug.
 */
import type { NodeId } from '../core/ids.js';
import type { ByteSource } from '../core/bytes.js';

export type EntryType = 'normal' | 'conf-change';

/** One log entry. `index` starts at 1; an empty `data` normal entry is a leader's no-op. */
export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** What must be durable before any message that depends on it is sent (Raft Figure 2). */
export interface HardState {
  term: number;
  /** The candidate voted for in `term`, or '' for none. */
  vote: NodeId | '';
  commit: number;
}

/** The membership: voters (and the outgoing voters while joint), learners. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
  /** Non-empty only in a joint configuration (C_old of C_old,new). */
  votersOutgoing: NodeId[];
  /** Voters of the outgoing config that become learners when the joint config is left. */
  learnersNext: NodeId[];
  /** Leave the joint configuration automatically once entered. */
  autoLeave: boolean;
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /**
   * The state machine's bytes at `metadata.index`: one buffer, or (a periodic snapshot of
   * this node's own) the pieces its file was written from.
   */
  data: ByteSource;
}

export const emptyHardState: HardState = { term: 0, vote: '', commit: 0 };
