/**
 * Every limit and name of the storage layer, with units last. Exceeding a limit is a clear
 * error to the caller (queue-full, bad-input), never silent growth.
 */

/** A segment that has reached this size is closed; the next batch opens a new one. */
export const segmentSizeBytesMax = 64 * 1024 * 1024;

/** Largest payload of one WAL record (an entry with its data, a marker). */
export const recordPayloadBytesMax = 32 * 1024 * 1024;

/** Largest data of one entry; leaves room in its record for term, index and type. */
export const entryDataBytesMax = recordPayloadBytesMax - 64;

/** Largest encoded snapshot file (metadata and state machine bytes). */
export const snapshotSizeBytesMax = 1024 * 1024 * 1024;
/**
 * A periodic snapshot's file is checksummed this much per turn of the event loop (CRC32C in
 * JavaScript runs at about 300 MB/s here: under 2 ms a step).
 */
export const snapshotFileBytesPerStep = 512 * 1024;

/** Saves, snapshots and compactions waiting their turn; beyond it a call fails with queue-full. */
export const pendingOpsMax = 16 * 1024;

/** Bytes of records one group commit writes with one append and one fsync. */
export const batchBytesMax = 16 * 1024 * 1024;

/** Record header: payload length (u32 LE), CRC32C of type and payload (u32 LE), type (u8). */
export const recordHeaderBytes = 9;

/** Version written in segment headers, the hard state file and the snapshot file. */
export const formatVersion = 1;

/** Digits of the sequence number and first index in a segment's name. */
export const segmentNameDigits = 16;

export const walDirName = 'wal';
export const hardStateFileName = 'hardstate';
export const snapshotFileName = 'snapshot';
/** Suffix of a file being written before its atomic rename; leftovers are removed at open. */
export const tmpSuffix = '.tmp';
