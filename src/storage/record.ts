/**
 * The record format of the WAL and of the two atomically replaced files:
 *
 *   [payload length u32 LE][CRC32C of type byte + payload, u32 LE][type u8][payload]
 *
 * The payload is a msgpack array whose shape depends on the type. Readers validate the
 * length, the checksum and then the shape; a record whose checksum matches but whose shape
 * does not was written that way (a bug or a newer format), so it is corruption, not a tear.
 */
import { concatBytes, Pieces, piecesOf, readU32, writeU32 } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { decode, encode, msgpackBinHeader, piecesLength } from '../core/codec.js';
import { BadInputError } from '../core/errors.js';
import { isNodeId } from '../core/ids.js';
import type { ConfState, Entry, HardState, Snapshot, SnapshotMetadata } from '../raft/types.js';
import { formatVersion, recordHeaderBytes, recordPayloadBytesMax } from './constants.js';

export const RecordType = {
  /** First record of every segment: [version, seq, firstIndex]. */
  segment: 1,
  /** One log entry: [term, index, kind (0 normal, 1 conf-change), data]. */
  entry: 2,
  /** The commit index known when a batch was written: [commit]. */
  commit: 3,
  /** A snapshot was saved: [index, term]; replay applies the Raft snapshot rule here. */
  snapshotMarker: 4,
  /** The whole hard state file: [version, term, vote, commit]. */
  hardState: 5,
  /** The whole snapshot file: [version, index, term, confState, data]. */
  snapshot: 6,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

const knownTypes = new Set<number>(Object.values(RecordType));

export type WalRecord =
  | { type: 'segment'; version: number; seq: number; firstIndex: number }
  | { type: 'entry'; entry: Entry }
  | { type: 'commit'; commit: number }
  | { type: 'snapshot-marker'; index: number; term: number };

export function encodeRecord(
  type: RecordType,
  value: unknown,
  payloadBytesMax = recordPayloadBytesMax,
): Uint8Array {
  const payload = encode(value);
  if (payload.length > payloadBytesMax) {
    throw new BadInputError(`record of ${payload.length} bytes exceeds ${payloadBytesMax}`);
  }
  const record = new Uint8Array(recordHeaderBytes + payload.length);
  writeU32(record, 0, payload.length);
  record[8] = type;
  record.set(payload, recordHeaderBytes);
  writeU32(record, 4, crc32c(record, 8, record.length));
  return record;
}

export const encodeSegmentHeader = (seq: number, firstIndex: number): Uint8Array =>
  encodeRecord(RecordType.segment, [formatVersion, seq, firstIndex]);

export const encodeEntry = (entry: Entry): Uint8Array =>
  encodeRecord(RecordType.entry, [
    entry.term,
    entry.index,
    entry.type === 'conf-change' ? 1 : 0,
    entry.data,
  ]);

export const encodeCommit = (commit: number): Uint8Array =>
  encodeRecord(RecordType.commit, [commit]);

export const encodeSnapshotMarker = (index: number, term: number): Uint8Array =>
  encodeRecord(RecordType.snapshotMarker, [index, term]);

export const encodeHardStateFile = (hardState: HardState): Uint8Array =>
  encodeRecord(RecordType.hardState, [
    formatVersion,
    hardState.term,
    hardState.vote,
    hardState.commit,
  ]);

/**
 * The snapshot file in one pass (snapshotFileJob with no step limit), as pieces: a small
 * head, then the snapshot's data as it is, not copied.
 */
export function snapshotFilePieces(snapshot: Snapshot, sizeBytesMax: number): Uint8Array[] {
  const job = snapshotFileJob(snapshot.metadata, piecesOf(snapshot.data), sizeBytesMax, Infinity);
  while (!job.step());
  return job.result();
}

/** The snapshot file in one buffer. */
export const encodeSnapshotFile = (snapshot: Snapshot, sizeBytesMax: number): Uint8Array =>
  concatBytes(snapshotFilePieces(snapshot, sizeBytesMax));

/**
 * The snapshot file, a record of `[formatVersion, index, term, confState, data]`, as pieces
 * whose concatenation is the file: a head (the record's header and the small fields) and
 * the snapshot's data pieces themselves, never copied or joined (one allocation of the
 * whole snapshot made V8 stop the process for a full collection). The checksum runs over the
 * data in steps of at most `bytesPerStep`, so a snapshot of hundreds of megabytes does not
 * hold the event loop; the head gets it once every step is done. The payload is msgpack's
 * encoding of that array written by hand, the bytes encodeRecord would write: the array
 * header, the small fields, then the data as one bin.
 */
export function snapshotFileJob(
  metadata: SnapshotMetadata,
  data: readonly Uint8Array[],
  sizeBytesMax: number,
  bytesPerStep: number,
): { step(): boolean; result(): Uint8Array[]; data(): Pieces } {
  const dataLength = piecesLength(data);
  const { index, term, confState } = metadata;
  const fields = [0x95, formatVersion, index, term, confState].map((v, i) =>
    i === 0 ? Uint8Array.of(v as number) : encode(v),
  );
  fields.push(msgpackBinHeader(dataLength));
  const headBytes = fields.reduce((n, f) => n + f.length, 0);
  const payloadLength = headBytes + dataLength;
  if (payloadLength > sizeBytesMax)
    throw new BadInputError(`record of ${payloadLength} bytes exceeds ${sizeBytesMax}`);
  const head = new Uint8Array(recordHeaderBytes + headBytes);
  writeU32(head, 0, payloadLength);
  head[8] = RecordType.snapshot;
  let offset = recordHeaderBytes;
  for (const f of fields) {
    head.set(f, offset);
    offset += f.length;
  }
  let crc = crc32c(head, 8, head.length);
  let piece = 0;
  let within = 0; // offset in data[piece]
  return {
    step: () => {
      let budget = bytesPerStep;
      while (budget > 0 && piece < data.length) {
        const source = data[piece]!;
        const take = Math.min(budget, source.length - within);
        crc = crc32c(source, within, within + take, crc);
        within += take;
        budget -= take;
        if (within === source.length) {
          piece++;
          within = 0;
        }
      }
      if (piece < data.length) return false;
      writeU32(head, 4, crc);
      return true;
    },
    result: () => [head, ...data],
    data: () => new Pieces(data),
  };
}

/** A record framed correctly at an offset, its shape not yet checked. */
export type Frame =
  { ok: true; type: RecordType; payload: Uint8Array; end: number } | { ok: false; reason: string };

/** Reads the frame at `offset`: enough bytes, a sane length, a known type, a matching CRC. */
export function readFrame(
  bytes: Uint8Array,
  offset: number,
  payloadBytesMax = recordPayloadBytesMax,
): Frame {
  const remaining = bytes.length - offset;
  if (remaining < recordHeaderBytes) return { ok: false, reason: `${remaining} bytes of header` };
  const length = readU32(bytes, offset);
  if (length > payloadBytesMax) return { ok: false, reason: `length ${length} exceeds limit` };
  const end = offset + recordHeaderBytes + length;
  if (end > bytes.length) return { ok: false, reason: `length ${length} runs past end` };
  const type = bytes[offset + 8]!;
  const expected = readU32(bytes, offset + 4);
  const actual = crc32c(bytes, offset + 8, end);
  if (actual !== expected) {
    return {
      ok: false,
      reason: `checksum 0x${actual.toString(16)} != 0x${expected.toString(16)}`,
    };
  }
  if (!knownTypes.has(type)) return { ok: false, reason: `unknown record type ${type}` };
  return {
    ok: true,
    type: type as RecordType,
    payload: bytes.subarray(offset + recordHeaderBytes, end),
    end,
  };
}

/** Decodes a WAL record's payload; throws with the reason when its shape is wrong. */
export function decodeWalRecord(type: RecordType, payload: Uint8Array): WalRecord {
  const fields = decodeArray(payload);
  switch (type) {
    case RecordType.segment: {
      const [version, seq, firstIndex] = fields;
      return {
        type: 'segment',
        version: count(version, 'version'),
        seq: count(seq, 'seq'),
        firstIndex: count(firstIndex, 'firstIndex'),
      };
    }
    case RecordType.entry: {
      const [term, index, kind, data] = fields;
      if (kind !== 0 && kind !== 1) throw new Error(`entry kind ${String(kind)}`);
      return {
        type: 'entry',
        entry: {
          term: count(term, 'term'),
          index: positive(index, 'index'),
          type: kind === 1 ? 'conf-change' : 'normal',
          data: bytesOf(data, 'data'),
        },
      };
    }
    case RecordType.commit:
      return { type: 'commit', commit: count(fields[0], 'commit') };
    case RecordType.snapshotMarker:
      return {
        type: 'snapshot-marker',
        index: count(fields[0], 'index'),
        term: count(fields[1], 'term'),
      };
    case RecordType.hardState:
    case RecordType.snapshot:
      throw new Error(`record type ${type} does not belong in a segment`);
  }
}

export function decodeHardState(payload: Uint8Array): HardState {
  const [version, term, vote, commit] = decodeArray(payload);
  checkVersion(version);
  if (vote !== '' && !isNodeId(vote)) throw new Error(`vote ${JSON.stringify(vote)}`);
  return { term: count(term, 'term'), vote, commit: count(commit, 'commit') };
}

export function decodeSnapshot(payload: Uint8Array): Snapshot {
  const [version, index, term, confState, data] = decodeArray(payload);
  checkVersion(version);
  return {
    metadata: {
      index: count(index, 'index'),
      term: count(term, 'term'),
      confState: confStateOf(confState),
    },
    data: bytesOf(data, 'data'),
  };
}

function decodeArray(payload: Uint8Array): unknown[] {
  const value = decode(payload);
  if (!Array.isArray(value)) throw new Error('payload is not an array');
  return value;
}

function checkVersion(version: unknown): void {
  if (version !== formatVersion) throw new Error(`format version ${String(version)}`);
}

function count(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new Error(`${what} ${String(value)}`);
  return value;
}

function positive(value: unknown, what: string): number {
  const n = count(value, what);
  if (n === 0) throw new Error(`${what} 0`);
  return n;
}

/** msgpackr yields a Buffer that may share a large read buffer: copy into a plain array. */
function bytesOf(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new Error(`${what} is not bytes`);
  return new Uint8Array(value);
}

function nodeIds(value: unknown, what: string): ConfState['voters'] {
  if (!Array.isArray(value) || !value.every(isNodeId)) throw new Error(`${what} not node ids`);
  return value;
}

function confStateOf(value: unknown): ConfState {
  if (typeof value !== 'object' || value === null) throw new Error('confState');
  const c = value as Record<string, unknown>;
  if (typeof c['autoLeave'] !== 'boolean') throw new Error('confState.autoLeave');
  return {
    voters: nodeIds(c['voters'], 'voters'),
    learners: nodeIds(c['learners'], 'learners'),
    votersOutgoing: nodeIds(c['votersOutgoing'], 'votersOutgoing'),
    learnersNext: nodeIds(c['learnersNext'], 'learnersNext'),
    autoLeave: c['autoLeave'],
  };
}
