/**
 * The file `Maintenance.Snapshot` streams (and `chorus snapshot save` writes): one member's
 * KV state at one applied Raft index, in a self-describing layout. All integers big-endian.
 *
 *   offset      bytes  field
 *   0           16     magic "CHORUS-SNAPSHOT\n"
 *   16          4      format version (uint32), `snapshotFileFormat`
 *   20          4      M: metadata length (uint32), at most `snapshotMetaBytesMax`
 *   24          8      N: machine length (uint64)
 *   32          M      metadata: a UTF-8 JSON object (`SnapshotMeta`)
 *   32+M        N      the KV machine's snapshot: what a Raft snapshot of this member holds
 *                      (msgpack of the MVCC image and the lease table, src/kv/machine.ts)
 *   32+M+N      P      zero bytes, so that 32+M+N+P is a multiple of 512
 *   end-32      32     SHA-256 of every byte before it
 *
 * The trailer is etcd's: etcd appends the SHA-256 of its bbolt file to the stream, and
 * etcdctl's `snapshot save` refuses a file whose size is not 32 more than a multiple of 512
 * (a bbolt file is page aligned) — hence the padding, so etcdctl saves Chorus snapshots too.
 * The body is not a bbolt database: `etcdctl snapshot status/restore` cannot read it
 * (`chorus snapshot status/restore` can).
 *
 * This module is pure (no I/O): the server lays the parts out and hashes them as it streams;
 * `chorus snapshot status` reads a whole file back with `readSnapshotFile` and
 * `describeSnapshot`, which validate everything and fail with a BadInputError saying what;
 * `chorus snapshot restore` (restore.ts) reads it with `readSnapshotFile` and
 * `decodeSnapshotState` before it writes anything.
 */
import { createHash } from 'node:crypto';
import { assert } from '../core/assert.js';
import { piecesLength } from '../core/codec.js';
import { BadInputError } from '../core/errors.js';
import { LeaseTable } from '../kv/lease.js';
import { KvMachine } from '../kv/machine.js';

export const snapshotMagic = 'CHORUS-SNAPSHOT\n';
/** The layout this code writes and reads. */
export const snapshotFileFormat = 1;
/** Bytes before the metadata: magic, format, the two lengths. */
export const snapshotPreambleBytes = 32;
/** The body (everything before the trailer) is padded to a multiple of this. */
export const snapshotAlignBytes = 512;
/** The SHA-256 trailer. */
export const snapshotTrailerBytes = 32;
/** Metadata is a few hundred bytes; a reader refuses more than this. */
export const snapshotMetaBytesMax = 64 * 1024;

/** Where the snapshot comes from and what point in time it holds. */
export interface SnapshotMeta {
  /** The member that took it, and the ids etcd clients see in response headers. */
  member: string;
  memberId: string;
  clusterId: string;
  /** The state is exactly the entries applied up to this index (of this term). */
  raftAppliedIndex: number;
  raftAppliedTerm: number;
  /** The store's revision and compact revision at that index. */
  revision: number;
  compactRevision: number;
  /** The member's wall clock when the snapshot was taken (informational). */
  takenAtMs: number;
  /** The etcd API version the member speaks (also in each SnapshotResponse.version). */
  etcdVersion: string;
}

/** A snapshot file without its trailer, in parts, so a big machine is never copied. */
export interface SnapshotLayout {
  parts: Uint8Array[];
  /** The parts' total: a multiple of `snapshotAlignBytes`. */
  bodyBytes: number;
}

/** `machine`: the machine's snapshot as pieces (SnapshotJob.result), streamed without a join. */
export function snapshotLayout(meta: SnapshotMeta, machine: readonly Uint8Array[]): SnapshotLayout {
  const metaBytes = new TextEncoder().encode(JSON.stringify(meta));
  assert(metaBytes.length <= snapshotMetaBytesMax, 'snapshot metadata within its limit');
  const head = new Uint8Array(snapshotPreambleBytes + metaBytes.length);
  head.set(new TextEncoder().encode(snapshotMagic), 0);
  const view = new DataView(head.buffer);
  view.setUint32(16, snapshotFileFormat);
  view.setUint32(20, metaBytes.length);
  const machineBytes = piecesLength(machine);
  view.setBigUint64(24, BigInt(machineBytes));
  head.set(metaBytes, snapshotPreambleBytes);
  const unpadded = head.length + machineBytes;
  const padding = (snapshotAlignBytes - (unpadded % snapshotAlignBytes)) % snapshotAlignBytes;
  const bodyBytes = unpadded + padding;
  assert(bodyBytes % snapshotAlignBytes === 0, 'snapshot body aligned');
  return { parts: [head, ...machine, new Uint8Array(padding)], bodyBytes };
}

/** The whole file in one buffer (tests, and small snapshots). */
export function encodeSnapshotFile(meta: SnapshotMeta, machine: Uint8Array): Uint8Array {
  const { parts, bodyBytes } = snapshotLayout(meta, [machine]);
  const file = new Uint8Array(bodyBytes + snapshotTrailerBytes);
  const hash = createHash('sha256');
  let at = 0;
  for (const part of parts) {
    file.set(part, at);
    hash.update(part);
    at += part.length;
  }
  file.set(hash.digest(), at);
  return file;
}

export interface SnapshotFile {
  meta: SnapshotMeta;
  /** A view into the file's bytes. */
  machine: Uint8Array;
  sha256: string;
}

export interface ReadOptions {
  /**
   * False skips the SHA-256 comparison (`snapshot restore --skip-hash-check`): for a file
   * whose trailer is known to be wrong but whose state is wanted anyway. The layout is still
   * checked, and the trailer's 32 bytes are still expected at the end.
   */
  verifyHash?: boolean;
}

/** Checks the trailer, the magic, the format and the lengths; the machine is not decoded. */
export function readSnapshotFile(file: Uint8Array, options: ReadOptions = {}): SnapshotFile {
  const bad = (what: string): never => {
    throw new BadInputError(`snapshot file: ${what}`);
  };
  const minimum = snapshotPreambleBytes + snapshotTrailerBytes;
  if (file.length < minimum) bad(`${file.length} bytes is too short to be a snapshot`);
  const bodyBytes = file.length - snapshotTrailerBytes;
  const expected = Buffer.from(file.subarray(bodyBytes)).toString('hex');
  if (options.verifyHash ?? true) {
    const actual = createHash('sha256').update(file.subarray(0, bodyBytes)).digest('hex');
    if (actual !== expected)
      bad(
        `SHA-256 mismatch: the file is corrupted or truncated (trailer ${expected}, computed ${actual})`,
      );
  }
  const magic = new TextDecoder().decode(file.subarray(0, snapshotMagic.length));
  if (magic !== snapshotMagic)
    bad('not a Chorus snapshot (no CHORUS-SNAPSHOT header; an etcd bbolt snapshot?)');
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const format = view.getUint32(16);
  if (format !== snapshotFileFormat)
    bad(`format version ${format}; this chorus reads version ${snapshotFileFormat}`);
  const metaLength = view.getUint32(20);
  const machineLength = view.getBigUint64(24);
  if (metaLength > snapshotMetaBytesMax) bad(`metadata of ${metaLength} bytes`);
  const machineAt = snapshotPreambleBytes + metaLength;
  if (BigInt(machineAt) + machineLength > BigInt(bodyBytes))
    bad('the lengths in the header run past the end of the file');
  const machineEnd = machineAt + Number(machineLength);
  if (bodyBytes - machineEnd >= snapshotAlignBytes || bodyBytes % snapshotAlignBytes !== 0)
    bad('padding is not what the lengths say');
  if (file.subarray(machineEnd, bodyBytes).some((b) => b !== 0)) bad('padding is not zero');
  const meta = parseMeta(file.subarray(snapshotPreambleBytes, machineAt), bad);
  return { meta, machine: file.subarray(machineAt, machineEnd), sha256: expected };
}

function parseMeta(bytes: Uint8Array, bad: (what: string) => never): SnapshotMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    return bad(`metadata is not JSON (${(error as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null) return bad('metadata is not an object');
  const o = raw as Record<string, unknown>;
  const int = (name: string): number => {
    const n = o[name];
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : bad(`metadata.${name}`);
  };
  const text = (name: string): string => {
    const s = o[name];
    return typeof s === 'string' ? s : bad(`metadata.${name}`);
  };
  return {
    member: text('member'),
    memberId: text('memberId'),
    clusterId: text('clusterId'),
    raftAppliedIndex: int('raftAppliedIndex'),
    raftAppliedTerm: int('raftAppliedTerm'),
    revision: int('revision'),
    compactRevision: int('compactRevision'),
    takenAtMs: int('takenAtMs'),
    etcdVersion: text('etcdVersion'),
  };
}

/** What `snapshot status` prints, after the whole state decoded and checked. */
export interface SnapshotDescription {
  meta: SnapshotMeta;
  /** The store's HashKV at the snapshot's revision (what Maintenance.Hash answered then). */
  hash: number;
  revision: number;
  /** Keys alive at the revision. */
  totalKey: number;
  leases: number;
  totalSize: number;
  sha256: string;
}

/** Keys alive at the machine's revision. */
export function liveKeys(machine: KvMachine): number {
  const all = new Uint8Array([0]);
  return machine.store.range({ key: all, rangeEnd: all, countOnly: true }).count;
}

/**
 * Decodes the KV state a read file holds and checks it against the metadata: what status
 * and restore do before trusting the bytes.
 */
export function decodeSnapshotState({ meta, machine: bytes }: SnapshotFile): KvMachine {
  // The lease minimum TTL only matters for grants; a restored table keeps its TTLs.
  const machine = new KvMachine(new LeaseTable(1));
  try {
    machine.restore(bytes);
  } catch (error) {
    throw new BadInputError(
      `snapshot file: the KV state does not decode (${(error as Error).message})`,
      { cause: error },
    );
  }
  const store = machine.store;
  if (store.revision !== meta.revision || store.compactRevision !== meta.compactRevision)
    throw new BadInputError(
      `snapshot file: metadata says revision ${meta.revision} (compacted at ${meta.compactRevision}), the state holds ${store.revision} (${store.compactRevision})`,
    );
  return machine;
}

/** Verifies a whole snapshot file and decodes the state in it. */
export function describeSnapshot(file: Uint8Array): SnapshotDescription {
  const read = readSnapshotFile(file);
  const { meta, sha256 } = read;
  const machine = decodeSnapshotState(read);
  const store = machine.store;
  return {
    meta,
    hash: store.hashKv(0).hash,
    revision: store.revision,
    totalKey: liveKeys(machine),
    leases: machine.leases.ids().length,
    totalSize: file.length,
    sha256,
  };
}
