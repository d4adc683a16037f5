/** Limits and defaults of the Raft core, named with units last. */

/** Ticks without hearing from a leader before a follower campaigns (randomized up to 2x). */
export const electionTicksDefault = 10;
/** Ticks between a leader's heartbeats. */
export const heartbeatTicksDefault = 1;
/** Bytes of entries in one append message (always at least one entry). */
export const appendBytesMax = 1024 * 1024;
/** Appends in flight to one follower in replicate state, by count and by bytes. */
export const inflightMessagesMax = 256;
export const inflightBytesMax = 16 * 1024 * 1024;
/** Bytes of proposed but uncommitted entries; beyond it a proposal is refused. */
export const uncommittedBytesMax = 64 * 1024 * 1024;
/** Committed entry bytes handed to the state machine per Ready. */
export const applyBytesMax = 16 * 1024 * 1024;
/** Snapshot bytes per InstallSnapshot chunk. */
export const snapshotChunkBytes = 256 * 1024;
/**
 * Chunks of a snapshot sent and not yet acknowledged, per follower. The window is filled as
 * acknowledgements arrive and rewound only after two heartbeat rounds without progress: an
 * answer never triggers a chunk of its own, so duplicate answers cannot multiply the traffic
 * (a resend per heartbeat reply did: each started another stream of the whole snapshot).
 */
export const snapshotChunksInFlightMax = 4;
/**
 * Check-quorum rounds (election timeouts) in a row without a word from a follower after which
 * the leader gives up a snapshot transfer to it and releases the snapshot: otherwise a
 * follower that died mid-transfer kept a snapshot of the whole state alive in the leader,
 * beside its newest one, for as long as it stayed away.
 */
export const snapshotSilentRoundsMax = 3;
/**
 * Entries a compaction keeps before the snapshot's index (etcd: SnapshotCatchUpEntries), for
 * followers that install a snapshot older than the newest (RaftDriver; the Raft core keeps
 * none unless told).
 */
export const snapshotCatchUpEntriesDefault = 5000;
/**
 * ...and at most these bytes of them: 5,000 entries of 1.5 MB values would keep 7.5 GB in
 * memory after every snapshot.
 */
export const snapshotCatchUpBytesDefault = 64 * 1024 * 1024;
/**
 * Entry bytes applied since the last snapshot after which the driver takes one, whatever
 * the count: the log is in memory, and 100,000 entries (the default count) of large values
 * would not fit — a client overwriting one key with 1 MB values, compacting as it goes, stays
 * under any space quota while the log grows by a megabyte per write.
 */
export const snapshotLogBytesDefault = 512 * 1024 * 1024;
/** Read-index requests pending on the leader; beyond it one is refused. */
export const pendingReadsMax = 4096;
/** Largest entry payload accepted by propose. */
export const entryBytesMax = 1536 * 1024;
/**
 * Proposals a leader holds at once — gathered for the next append, or appended and not yet
 * applied. Beyond it a proposal is refused at once with queue-full (a client sees etcd's
 * "too many requests") instead of waiting behind thousands of others until it times out;
 * etcd refuses at the same depth (maxGapBetweenApplyAndCommitIndex).
 */
export const proposalsPendingMax = 5000;
/**
 * Bytes of a state machine's snapshot joined into one buffer per turn of the event loop
 * (a copy runs at several GB/s, so a step is about a millisecond).
 */
export const snapshotJoinBytesPerStep = 2 * 1024 * 1024;
