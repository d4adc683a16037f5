/**
 * The pure half of the WAL: segment names, scanning one segment's bytes into records, and
 * replaying records into the log they describe. No I/O here, so every recovery rule can be
 * tested on byte arrays.
 */
import { decodeWalRecord, readFrame, type WalRecord } from './record.js';
import type { Entry } from '../raft/types.js';
import { formatVersion, segmentNameDigits } from './constants.js';
import { StorageCorruptError } from './errors.js';

// ---- names -------------------------------------------------------------------------------

const segmentNamePattern = new RegExp(
  `^(\\d{${segmentNameDigits}})-(\\d{${segmentNameDigits}})\\.wal$`,
);

export function segmentName(seq: number, firstIndex: number): string {
  const pad = (n: number): string => String(n).padStart(segmentNameDigits, '0');
  return `${pad(seq)}-${pad(firstIndex)}.wal`;
}

export function parseSegmentName(name: string): { seq: number; firstIndex: number } | undefined {
  const match = segmentNamePattern.exec(name);
  if (match === null) return undefined;
  return { seq: Number(match[1]), firstIndex: Number(match[2]) };
}

// ---- scanning ----------------------------------------------------------------------------

export interface ScannedRecord {
  offset: number;
  record: WalRecord;
}

export interface SegmentScan {
  records: ScannedRecord[];
  /** Length of the valid prefix; less than the file size when a torn tail was found. */
  validBytes: number;
  /** Why the tail was cut, for the warning (undefined when the whole file is valid). */
  tailDamage: string | undefined;
}

/**
 * Reads every record of one segment. In the last segment, damage with no valid record after
 * it is a torn (or corrupt) tail and ends the scan; anywhere else, or with a valid record
 * after it, damage is corruption and throws StorageCorruptError naming file and offset.
 */
export function scanSegment(
  path: string,
  seq: number,
  bytes: Uint8Array,
  isLast: boolean,
): SegmentScan {
  const records: ScannedRecord[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const frame = readFrame(bytes, offset);
    if (!frame.ok) {
      const reason = frame.reason;
      if (!isLast) throw new StorageCorruptError(path, offset, `${reason} in a sealed segment`);
      const later = findValidRecord(bytes, offset + 1);
      if (later !== undefined) {
        throw new StorageCorruptError(
          path,
          offset,
          `${reason}; a valid record follows at ${later}`,
        );
      }
      return { records, validBytes: offset, tailDamage: reason };
    }
    let record: WalRecord;
    try {
      record = decodeWalRecord(frame.type, frame.payload);
    } catch (cause) {
      throw new StorageCorruptError(path, offset, 'checksum matches but shape is wrong', { cause });
    }
    checkPlacement(path, seq, offset, record);
    records.push({ offset, record });
    offset = frame.end;
  }
  return { records, validBytes: offset, tailDamage: undefined };
}

function checkPlacement(path: string, seq: number, offset: number, record: WalRecord): void {
  const isHeader = record.type === 'segment';
  if (isHeader !== (offset === 0)) {
    throw new StorageCorruptError(path, offset, isHeader ? 'header not first' : 'no header');
  }
  if (isHeader && (record.version !== formatVersion || record.seq !== seq)) {
    throw new StorageCorruptError(
      path,
      offset,
      `header says version ${record.version} seq ${record.seq}, expected ${formatVersion} ${seq}`,
    );
  }
}

/**
 * The offset of the first record after `from` that frames and decodes correctly, if any.
 * A tear leaves only a prefix of the last write, so nothing valid can follow it; a flipped
 * bit in older data leaves the records after it intact. (A payload that itself embeds a
 * well-formed record could make a tear look like corruption: that fails safe, by stopping.)
 */
export function findValidRecord(bytes: Uint8Array, from: number): number | undefined {
  for (let offset = from; offset < bytes.length; offset++) {
    const frame = readFrame(bytes, offset);
    if (!frame.ok) continue;
    try {
      decodeWalRecord(frame.type, frame.payload);
      return offset;
    } catch {
      // Not a record after all: keep looking.
    }
  }
  return undefined;
}

// ---- replay ------------------------------------------------------------------------------

/**
 * The log as the records describe it, in write order. An entry at or below the last index
 * replaces the suffix from its index (a conflict); a snapshot marker applies the Raft rule
 * (keep the entries after it if the entry at its index has its term, otherwise drop them all).
 */
export class ReplayLog {
  /** Index just before `entries[0]`; undefined until the first entry or marker is seen. */
  base: number | undefined;
  entries: Entry[] = [];
  commit = 0;
  /**
   * The durable snapshot file, when there is one. Its WAL marker may never have become
   * durable (a crash or a failed fsync after the file's rename). RaftStorage.open now writes
   * the missing marker before any other record, but a WAL written before it did may hold
   * entries appended after such a snapshot: they follow an older entry with a gap the
   * snapshot covers, which is not damage.
   */
  fileSnapshot: { index: number; term: number } | undefined;

  get lastIndex(): number {
    return (this.base ?? 0) + this.entries.length;
  }

  apply(record: WalRecord, path: string, offset: number): void {
    switch (record.type) {
      case 'segment':
        return;
      case 'entry':
        return this.append(record.entry, path, offset);
      case 'commit':
        this.commit = Math.max(this.commit, record.commit);
        return;
      case 'snapshot-marker':
        return this.snapshot(record.index, record.term);
    }
  }

  append(entry: Entry, path: string, offset: number): void {
    if (this.base === undefined || entry.index <= this.base) {
      // The first entry seen (older segments may have been compacted away).
      this.base = entry.index - 1;
      this.entries = [entry];
      return;
    }
    const last = this.base + this.entries.length;
    if (
      entry.index > last + 1 &&
      this.fileSnapshot !== undefined &&
      entry.index - 1 <= this.fileSnapshot.index
    ) {
      this.snapshot(this.fileSnapshot.index, this.fileSnapshot.term);
      return this.append(entry, path, offset);
    }
    if (entry.index > last + 1) {
      throw new StorageCorruptError(path, offset, `entry ${entry.index} follows ${last}: a gap`);
    }
    this.entries.length = entry.index - this.base - 1;
    this.entries.push(entry);
  }

  termAt(index: number): number | undefined {
    if (this.base === undefined || index <= this.base) return undefined;
    return this.entries[index - this.base - 1]?.term;
  }

  snapshot(index: number, term: number): void {
    const local = this.termAt(index);
    if (local !== undefined && local !== term) {
      this.entries = [];
    } else if (this.base !== undefined && this.base < index) {
      this.entries = this.entries.slice(index - this.base);
    } else if (this.base !== undefined) {
      return; // Every entry held is already after the snapshot.
    } else {
      this.entries = [];
    }
    this.base = index;
  }
}
