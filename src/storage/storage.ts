/**
 * RaftStorage: the durable state of one Raft node — a write-ahead log of entries in segment
 * files, the hard state (term, vote) and the latest snapshot — over the callback-based Env
 * disk, so the simulator can crash it between any two completions.
 *
 * Every call joins one queue and completes in call order. Consecutive saves are group
 * committed: the saves that arrive while one batch is being written go together into the
 * next batch, one append and one fsync for all of them. A save's `done` runs only once
 * everything it asked for is durable — except a save marked `mustSync: false`, which only
 * moves the commit index: it is written without an fsync of its own and becomes durable with
 * the next one (etcd's MustSync), since Raft learns a commit index again after a restart.
 *
 * Where the bytes live (relative to `dir`):
 * - `wal/<seq>-<firstIndex>.wal`: segments of records (see record.ts). Entries are never
 *   rewritten in place: an entry at or below the last index is appended, and replay lets it
 *   replace the suffix from its index, so a conflict truncation is one append and survives a
 *   crash like any other record. Commit indexes ride in the WAL too (see below).
 * - `hardstate`: term and vote, replaced atomically (tmp, fsync, rename, fsync directory)
 *   whenever either changes, before the WAL part of the same batch is written.
 * - `snapshot`: the latest snapshot, replaced atomically the same way; a marker record in
 *   the WAL then records where it fell in the log.
 *
 * After a disk error the page cache can no longer be trusted: the storage fails every call
 * from then on with that error, and the driver is expected to stop the node (FatalError).
 */
import { assert, assertInteger } from '../core/assert.js';
import { BadInputError, ChorusError, asChorusError } from '../core/errors.js';
import type { DiskError } from '../core/errors.js';
import type { DiskFile, Done, Env } from '../env/env.js';
import type { Entry, HardState, Snapshot, SnapshotMetadata } from '../raft/types.js';
import {
  batchBytesMax,
  entryDataBytesMax,
  hardStateFileName,
  pendingOpsMax,
  segmentSizeBytesMax,
  snapshotFileName,
  snapshotFileBytesPerStep,
  snapshotSizeBytesMax,
  tmpSuffix,
  walDirName,
} from './constants.js';
import { concatBytes, piecesOf } from '../core/bytes.js';
import { piecesLength } from '../core/codec.js';
import { pauseAfterStepMs } from '../core/constants.js';
import { runInSteps } from '../core/job.js';
import {
  encodeCommit,
  encodeEntry,
  encodeHardStateFile,
  encodeSegmentHeader,
  snapshotFileJob,
  encodeSnapshotMarker,
} from './record.js';
import { recover, type RecoveredState, type SegmentInfo } from './recovery.js';
import { segmentName } from './wal.js';

/** Storage needs only the disk and the logger of an Env. */
/**
 * Timers, when given, spread the encoding of a periodic snapshot's file over turns; with a
 * clock too, the turns are paced (pauseAfterStepMs) to leave most of the time to requests.
 */
export type StorageEnv = Pick<Env, 'disk' | 'log'> & Partial<Pick<Env, 'timers' | 'clock'>>;

export type StorageDone = (error: ChorusError | undefined) => void;

/** What a node had durably when it stopped. */
export interface Recovered {
  /** Term, vote and the highest commit index that reached the disk (at least snapshot index). */
  hardState: HardState;
  snapshot: Snapshot | undefined;
  /** The log after the snapshot (or from index 1), contiguous. */
  entries: Entry[];
}

export type OpenDone = (
  error: ChorusError | undefined,
  storage: RaftStorage | undefined,
  recovered: Recovered | undefined,
) => void;

/** One Ready's worth of durable state. */
export interface SaveUpdate {
  /** Term and vote are durable before done; commit is written to the WAL in the same batch. */
  hardState?: HardState;
  /** Contiguous entries; the first may be at or below the last index (a conflict). */
  entries?: readonly Entry[];
  /**
   * false: `done` may run once the update is written, before it is durable. Only for an
   * update that moves nothing but the commit index (no entries, same term and vote).
   */
  mustSync?: boolean;
}

/** Limits a test may shrink; production uses the defaults of constants.ts. */
export interface StorageOptions {
  segmentSizeBytesMax?: number;
  batchBytesMax?: number;
  pendingOpsMax?: number;
}

export interface StorageCounters {
  /** fsyncs of files (segments, hard state, snapshot). */
  fsyncs: number;
  /** fsyncs of directories (new segment, rename, removal). */
  dirSyncs: number;
  bytesWritten: number;
  records: number;
  /** Saves and group commits: saves / batches is the batching factor. */
  saves: number;
  batches: number;
  /** Segments on disk now, created since open, and removed by compaction since open. */
  segments: number;
  segmentsCreated: number;
  segmentsRemoved: number;
  /** Bytes of a torn tail cut away at open. */
  truncatedTailBytes: number;
}

type SaveOp = {
  kind: 'save';
  records: Uint8Array[];
  bytes: number;
  /** The accepted hard state after this save (term, vote, commit). */
  hardState: HardState;
  /** Lowest and highest entry index this save writes (0 when none). */
  minIndex: number;
  maxIndex: number;
  /** Whether `done` waits for an fsync (see SaveUpdate.mustSync). */
  mustSync: boolean;
  done: StorageDone;
};
type Op =
  | SaveOp
  | {
      kind: 'snapshot';
      /**
       * The file to checksum and write first; undefined when it is already durable
       * (saveSnapshotOfLog).
       */
      file: SnapshotFile | undefined;
      marker: Uint8Array;
      index: number;
      done: StorageDone;
    }
  | { kind: 'compact'; index: number; done: StorageDone }
  | { kind: 'close'; done: StorageDone };

type Step = (next: Done) => void;
type SnapshotFile = ReturnType<typeof snapshotFileJob>;

/**
 * Writes pieces one after another from the file's start: a large piece in a write of its
 * own, runs of small ones (a few bytes of msgpack framing each) gathered up to 64 KiB.
 * Gathering them all would allocate as much again as the pieces hold (a snapshot's file is
 * hundreds of MB).
 */
function writePieces(file: DiskFile, pieces: readonly Uint8Array[], done: Done): void {
  const gatherBytesMax = 64 * 1024;
  let next = 0;
  let offset = 0;
  const writeNext = (): void => {
    if (next >= pieces.length) return done(undefined);
    const group: Uint8Array[] = [pieces[next++]!];
    let bytes = group[0]!.length;
    while (next < pieces.length && bytes + pieces[next]!.length <= gatherBytesMax) {
      bytes += pieces[next]!.length;
      group.push(pieces[next++]!);
    }
    file.write(offset, concatBytes(group), (error) => {
      if (error !== undefined) return done(error);
      offset += bytes;
      writeNext();
    });
  };
  writeNext();
}

/** Runs steps one after another; the first error ends the chain. */
function series(steps: readonly (Step | undefined)[], done: Done): void {
  const run = (i: number): void => {
    if (i === steps.length) return done(undefined);
    const step = steps[i];
    if (step === undefined) return run(i + 1);
    step((error) => (error === undefined ? run(i + 1) : done(error)));
  };
  run(0);
}

export class RaftStorage {
  readonly counters: StorageCounters;
  private readonly walDir: string;
  private readonly segmentSizeBytesMax: number;
  private readonly batchBytesMax: number;
  private readonly pendingOpsMax: number;

  // Accepted state: what the queued and finished calls add up to. Calls are validated
  // against it, so a save may follow another save whose fsync has not finished.
  private hard: HardState;
  /** Index and term of the latest accepted snapshot (0, 0 when none). */
  private snapshotIndex: number;
  private snapshotTerm: number;
  /** Terms of entries snapshotIndex+1 .. lastIndex: enough to check every call. */
  private terms: number[];

  // Durable state: what has reached the disk.
  private durableHard: HardState;
  /** The segments in order; the last one is where appends go (through `file`). */
  private readonly segments: SegmentInfo[];
  private file: DiskFile | undefined;
  /**
   * Whether `file` holds bytes written without an fsync (commit records of mustSync: false
   * saves). They must be synced before the file is closed: a torn record is tolerated only at
   * the tail of the last segment, and another file's fsync does not cover them.
   */
  private fileUnsynced = false;

  private readonly queue: Op[] = [];
  private busy = false;
  /**
   * Snapshot files waiting to be written, one at a time. Both kinds of snapshot write their
   * file through here, so two never share the temporary file.
   */
  private readonly snapshotFiles: { file: readonly Uint8Array[]; done: Done }[] = [];
  private snapshotFileBusy = false;
  /** saveSnapshotOfLog calls whose marker is not queued yet (encoding or writing the file). */
  private snapshotsOfLogPending = 0;
  /** Runs once no snapshot file is being encoded or written (close waits for them). */
  private readonly afterSnapshotFiles: (() => void)[] = [];
  private closed = false;
  private failure: ChorusError | undefined;

  /**
   * Opens (creating if needed) the storage under `dir` and recovers it. Corruption that could
   * hide committed data fails with StorageCorruptError; a torn tail is cut with a warning.
   */
  static open(env: StorageEnv, dir: string, done: OpenDone, options: StorageOptions = {}): void {
    recover(env, dir, (error, state) => {
      if (error !== undefined || state === undefined) return done(error, undefined, undefined);
      const storage = new RaftStorage(env, dir, state, options);
      storage.repairSnapshotMarker(state, (repairError) => {
        if (repairError !== undefined) return done(repairError, undefined, undefined);
        done(undefined, storage, {
          hardState: { ...state.hardState },
          snapshot: state.snapshot,
          entries: state.entries,
        });
      });
    });
  }

  private constructor(
    private readonly env: StorageEnv,
    private readonly dir: string,
    state: RecoveredState,
    options: StorageOptions,
  ) {
    this.walDir = `${dir}/${walDirName}`;
    this.segmentSizeBytesMax = options.segmentSizeBytesMax ?? segmentSizeBytesMax;
    this.batchBytesMax = options.batchBytesMax ?? batchBytesMax;
    this.pendingOpsMax = options.pendingOpsMax ?? pendingOpsMax;
    this.hard = { ...state.hardState };
    this.durableHard = { ...state.fileHardState, commit: state.hardState.commit };
    this.snapshotIndex = state.snapshot?.metadata.index ?? 0;
    this.snapshotTerm = state.snapshot?.metadata.term ?? 0;
    this.terms = state.entries.map((e) => e.term);
    this.segments = state.segments;
    this.file = state.file;
    this.counters = {
      fsyncs: 0,
      dirSyncs: 0,
      bytesWritten: 0,
      records: 0,
      saves: 0,
      batches: 0,
      segments: state.segments.length,
      segmentsCreated: 0,
      segmentsRemoved: 0,
      truncatedTailBytes: state.truncatedTailBytes,
    };
  }

  /**
   * Writes the WAL marker of a snapshot file whose marker never became durable: a crash, or
   * a failed fsync, between the file's rename and the marker's fsync. Recovery applied the
   * file at the end of replay, which is right only while nothing follows it in the WAL. The
   * entries this life appends after the snapshot would otherwise replay after the older
   * entries the snapshot replaced, and the next recovery, applying the file at the end once
   * more, would find its index held with another term and drop them: acknowledged entries
   * lost, caught only by a commit past the last index (kv seed 131). Written first, the
   * marker puts the snapshot where it took effect, as if the original fsync had succeeded.
   */
  private repairSnapshotMarker(state: RecoveredState, done: Done): void {
    const snapshot = state.snapshot;
    if (!state.snapshotMarkerMissing || snapshot === undefined) return done(undefined);
    const { index, term } = snapshot.metadata;
    assert(index === this.snapshotIndex, () => `marker ${index} is not the snapshot's`);
    this.env.log.warn('writing the WAL marker of a snapshot whose marker was lost', {
      dir: this.dir,
      index,
      term,
    });
    this.appendWal([encodeSnapshotMarker(index, term)], index + 1, index, done);
  }

  /** Index of the last entry accepted (or of the snapshot when the log after it is empty). */
  lastIndex(): number {
    return this.snapshotIndex + this.terms.length;
  }

  /** Term of the entry at `index`, or of the snapshot at its index; undefined outside. */
  term(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex) return undefined;
    return this.terms[index - this.snapshotIndex - 1];
  }

  /** Index of the latest accepted snapshot (0 when none). */
  snapshotIndexNow(): number {
    return this.snapshotIndex;
  }

  /**
   * Makes `update` durable, then calls `done`. Saves issued while a batch is being written
   * are group committed into the next one and complete in call order. Errors found at call
   * time (closed, failed, queue-full, bad-input) are reported synchronously.
   */
  save(update: SaveUpdate, done: StorageDone): void {
    if (!this.admit(done)) return;
    const entries = update.entries ?? [];
    const mustSync = update.mustSync ?? true;
    if (!mustSync) {
      const next = update.hardState;
      assert(
        entries.length === 0 &&
          (next === undefined || (next.term === this.hard.term && next.vote === this.hard.vote)),
        'a save without fsync moves only the commit index',
      );
    }
    const records: Uint8Array[] = [];
    try {
      for (const entry of entries) {
        if (entry.data.length > entryDataBytesMax) {
          throw new BadInputError(
            `entry ${entry.index} has ${entry.data.length} bytes, more than ${entryDataBytesMax}`,
          );
        }
        records.push(encodeEntry(entry));
      }
    } catch (error) {
      return done(asChorusError(error));
    }
    this.acceptEntries(entries);
    if (update.hardState !== undefined) this.acceptHardState(update.hardState);
    let bytes = 0;
    for (const record of records) bytes += record.length;
    const minIndex = entries[0]?.index ?? 0;
    const maxIndex = entries[entries.length - 1]?.index ?? 0;
    this.counters.saves++;
    this.enqueue({
      kind: 'save',
      records,
      bytes,
      hardState: { ...this.hard },
      minIndex,
      maxIndex,
      mustSync,
      done,
    });
  }

  /**
   * Replaces the snapshot atomically, then marks it in the WAL. If the log holds the
   * snapshot's index with its term, the entries after it are kept; otherwise the log after
   * the snapshot is empty (Raft §7) and the next entries must start at index + 1.
   */
  saveSnapshot(snapshot: Snapshot, done: StorageDone): void {
    if (!this.admit(done)) return;
    const { index, term } = snapshot.metadata;
    assertInteger(index, 'snapshot index');
    if (index <= this.snapshotIndex) {
      return done(
        new BadInputError(
          `snapshot at ${index} is not after the current one at ${this.snapshotIndex}`,
        ),
      );
    }
    let file: SnapshotFile;
    try {
      file = snapshotFileJob(
        snapshot.metadata,
        piecesOf(snapshot.data),
        snapshotSizeBytesMax,
        snapshotFileBytesPerStep,
      );
    } catch (error) {
      return done(asChorusError(error));
    }
    const local = this.term(index);
    assert(
      index > this.hard.commit || local === undefined || local === term,
      () => `snapshot ${index}/${term} contradicts committed entry of term ${local}`,
    );
    this.terms = local === term ? this.terms.slice(index - this.snapshotIndex) : [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    // A snapshot holds applied, hence committed, state: recovery reports commit ≥ its index.
    this.hard = { ...this.hard, commit: Math.max(this.hard.commit, index) };
    const marker = encodeSnapshotMarker(index, term);
    this.enqueue({ kind: 'snapshot', file, marker, index, done });
  }

  /**
   * A snapshot of this log's own entries (its index held with its term, at or below the
   * commit): the driver's periodic snapshot. Unlike saveSnapshot it does not order the calls
   * after it: its file is written and fsynced beside the WAL queue, so saves issued meanwhile
   * go on and may complete first (a large file's write and fsync ahead of them in the queue
   * stalled commits for seconds under load). Once the file is durable, its marker joins the
   * queue and the snapshot becomes the current one (compact may then reach it). A crash
   * before that leaves either no new file or a durable file without its marker, which open
   * repairs; the log still holds every entry either way, since nothing was compacted.
   * The data comes in pieces (the state machine's layers, unjoined) and is never joined: the
   * file is written piece by piece, and `done` gets the snapshot with those pieces as data.
   */
  saveSnapshotOfLog(
    metadata: SnapshotMetadata,
    data: readonly Uint8Array[],
    done: (error: ChorusError | undefined, snapshot: Snapshot | undefined) => void,
  ): void {
    const failed = (error: ChorusError | undefined): void => done(error, undefined);
    if (!this.admit(failed)) return;
    const { index, term } = metadata;
    assertInteger(index, 'snapshot index');
    if (index <= this.snapshotIndex || index > this.hard.commit || this.term(index) !== term) {
      return failed(
        new BadInputError(
          `snapshot ${index}/${term} is not of this log's committed entries after ${this.snapshotIndex}`,
        ),
      );
    }
    let job: ReturnType<typeof snapshotFileJob>;
    try {
      job = snapshotFileJob(metadata, data, snapshotSizeBytesMax, snapshotFileBytesPerStep);
    } catch (error) {
      return failed(asChorusError(error));
    }
    this.snapshotsOfLogPending++;
    // Checksummed a slice per turn of the event loop, paced (background work), then written.
    const encode = (): void =>
      this.inSteps(job, true, () => this.writeSnapshotFile(job.result(), written));
    const written = (error: DiskError | undefined): void => {
      this.snapshotsOfLogPending--;
      this.queueMarker(index, term, error, (markerError) => {
        if (markerError !== undefined) return failed(markerError);
        done(undefined, { metadata, data: job.data() });
      });
      // A close that waited for this snapshot now queues behind its marker.
      this.runIfSnapshotFilesIdle();
    };
    encode();
  }

  /** After saveSnapshotOfLog's file: its marker joins the queue, unless it cannot or need not. */
  private queueMarker(
    index: number,
    term: number,
    error: DiskError | undefined,
    done: StorageDone,
  ): void {
    if (error !== undefined) {
      if (this.failure === undefined) this.fail(error, []);
      return done(error);
    }
    if (this.failure !== undefined)
      return done(new ChorusError(this.failure.code, `storage failed: ${this.failure.message}`));
    // Superseded meanwhile by an installed snapshot (whose file replaced this one): no marker.
    if (index <= this.snapshotIndex) return done(undefined);
    // Committed entries are never rewritten, so the log still holds index with term.
    this.terms = this.terms.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.enqueue({
      kind: 'snapshot',
      file: undefined,
      marker: encodeSnapshotMarker(index, term),
      index,
      done,
    });
  }

  /**
   * Runs a job one step per turn of the event loop (all at once when the env has no timers),
   * `paced` pausing after each step as background work does (pauseAfterStepMs), then `done`.
   */
  private inSteps(job: { step(): boolean }, paced: boolean, done: () => void): void {
    const pause = paced ? pauseAfterStepMs : (): number => 0;
    runInSteps(
      job,
      this.env,
      pause,
      () => false,
      () => done(),
    );
  }

  private runIfSnapshotFilesIdle(): void {
    const idle =
      !this.snapshotFileBusy && this.snapshotFiles.length === 0 && this.snapshotsOfLogPending === 0;
    if (idle) for (const run of this.afterSnapshotFiles.splice(0)) run();
  }

  private writeSnapshotFile(file: readonly Uint8Array[], done: Done): void {
    this.snapshotFiles.push({ file, done });
    this.pumpSnapshotFiles();
  }

  private pumpSnapshotFiles(): void {
    if (this.snapshotFileBusy) return;
    const next = this.snapshotFiles.shift();
    if (next === undefined) return this.runIfSnapshotFilesIdle();
    this.snapshotFileBusy = true;
    this.writeAtomic(snapshotFileName, next.file, (error) => {
      this.snapshotFileBusy = false;
      next.done(error);
      this.pumpSnapshotFiles();
    });
  }

  /**
   * Removes the oldest segments whose every record is at or below `index`, which must not
   * exceed the snapshot index. The segment being appended to is always kept.
   */
  compact(index: number, done: StorageDone): void {
    if (!this.admit(done)) return;
    if (index > this.snapshotIndex) {
      return done(
        new BadInputError(`compact to ${index} is past the snapshot at ${this.snapshotIndex}`),
      );
    }
    this.enqueue({ kind: 'compact', index, done });
  }

  /** Completes every queued call, then closes the open segment. */
  close(done: StorageDone): void {
    if (!this.admit(done)) return;
    this.closed = true;
    // After every snapshot file in progress, and the markers they queue.
    this.afterSnapshotFiles.push(() => this.enqueue({ kind: 'close', done }));
    this.runIfSnapshotFilesIdle();
  }

  // ---- validation ---------------------------------------------------------------------

  private admit(done: StorageDone): boolean {
    if (this.failure !== undefined) {
      done(
        new ChorusError(this.failure.code, `storage failed: ${this.failure.message}`, {
          cause: this.failure,
        }),
      );
      return false;
    }
    if (this.closed) {
      done(new ChorusError('closed', 'storage is closed'));
      return false;
    }
    if (this.queue.length >= this.pendingOpsMax) {
      done(new ChorusError('queue-full', `${this.pendingOpsMax} storage calls are waiting`));
      return false;
    }
    return true;
  }

  /** Raft never hands storage a gap, a rewrite of a committed entry or a term going back. */
  private acceptEntries(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!;
    assertInteger(first.index, 'entry index');
    assert(
      first.index > this.snapshotIndex && first.index <= this.lastIndex() + 1,
      () => `entries start at ${first.index}; log is ${this.snapshotIndex}..${this.lastIndex()}`,
    );
    let previousTerm = this.term(first.index - 1) ?? 0;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      assert(entry.index === first.index + i, () => `entry ${entry.index} is not contiguous`);
      assert(entry.term >= previousTerm, () => `entry ${entry.index} term goes back`);
      assert(
        entry.index > this.hard.commit || this.term(entry.index) === entry.term,
        () => `entry ${entry.index} would overwrite a committed entry`,
      );
      previousTerm = entry.term;
    }
    this.terms.length = first.index - this.snapshotIndex - 1;
    for (const entry of entries) this.terms.push(entry.term);
  }

  private acceptHardState(next: HardState): void {
    const current = this.hard;
    assert(next.term >= current.term, () => `term goes back ${current.term} -> ${next.term}`);
    assert(
      next.term > current.term || current.vote === '' || next.vote === current.vote,
      () => `vote changes within term ${next.term}`,
    );
    assert(
      next.commit >= current.commit,
      () => `commit goes back ${current.commit} -> ${next.commit}`,
    );
    assert(
      next.commit <= this.lastIndex(),
      () => `commit ${next.commit} past last index ${this.lastIndex()}`,
    );
    this.hard = { ...next };
  }

  // ---- the queue ------------------------------------------------------------------------

  private enqueue(op: Op): void {
    this.queue.push(op);
    this.pump();
  }

  private pump(): void {
    if (this.busy || this.failure !== undefined) return;
    const op = this.queue[0];
    if (op === undefined) return;
    this.busy = true;
    switch (op.kind) {
      case 'save':
        return this.runSaves();
      case 'snapshot':
        this.queue.shift();
        return this.finish([op], (next) =>
          series(
            [
              // A received snapshot, checksummed in steps (unpaced: the node waits for it).
              op.file === undefined
                ? undefined
                : (step) =>
                    this.inSteps(op.file!, false, () =>
                      this.writeSnapshotFile(op.file!.result(), step),
                    ),
              (step) => this.appendWal([op.marker], op.index + 1, op.index, step),
              (step) => {
                this.durableHard.commit = Math.max(this.durableHard.commit, op.index);
                step(undefined);
              },
            ],
            next,
          ),
        );
      case 'compact':
        this.queue.shift();
        return this.finish([op], (next) => this.removeSegments(op.index, next));
      case 'close':
        this.queue.shift();
        return this.finish([op], (next) => this.closeFile(next));
    }
  }

  /** Runs `work`, then completes `ops` in order (or fails the storage) and pumps again. */
  private finish(ops: readonly Op[], work: Step): void {
    work((error) => {
      if (error !== undefined) return this.fail(error, ops);
      // Still busy while the callbacks run: saves they issue queue up for the next batch.
      for (const op of ops) op.done(undefined);
      this.busy = false;
      this.pump();
    });
  }

  /** Group commit: every save at the head of the queue, up to the batch byte limit. */
  private runSaves(): void {
    const batch: SaveOp[] = [];
    let bytes = 0;
    for (;;) {
      const op = this.queue[0];
      if (op?.kind !== 'save') break;
      if (batch.length > 0 && bytes + op.bytes > this.batchBytesMax) break;
      this.queue.shift();
      batch.push(op);
      bytes += op.bytes;
    }
    const last = batch[batch.length - 1]!.hardState;
    const records = batch.flatMap((op) => op.records);
    // A commit record counts as naming its index, so compaction never drops it below the
    // snapshot and a restarted node's commit never goes back.
    const maxIndex = Math.max(last.commit, ...batch.map((op) => op.maxIndex));
    const written = batch.filter((op) => op.minIndex > 0);
    const firstIndex = written.length > 0 ? Math.min(...written.map((op) => op.minIndex)) : 0;
    // The commit index need not be durable for safety (Raft recomputes it), but writing it
    // costs nothing here and lets a restarted node apply what it had applied at once.
    if (last.commit > this.durableHard.commit) records.push(encodeCommit(last.commit));
    const voteChanged = last.term !== this.durableHard.term || last.vote !== this.durableHard.vote;
    // Only commit indexes, which need not be durable: written, and made durable by the next
    // batch's fsync. Until then durableHard keeps the older commit, so the next batch writes
    // the commit again and the hard state file never names one that is not durable.
    const sync = voteChanged || batch.some((op) => op.mustSync);
    this.counters.batches++;
    this.finish(batch, (next) =>
      series(
        [
          // Term and vote first: entries of a term must never be durable before the term is.
          voteChanged
            ? (step) =>
                this.writeAtomic(
                  hardStateFileName,
                  // The file carries only a commit already durable in the WAL, so it never
                  // points past entries that this very batch might still lose.
                  encodeHardStateFile({ ...last, commit: this.durableHard.commit }),
                  step,
                )
            : undefined,
          records.length > 0
            ? (step) => this.appendWal(records, firstIndex, maxIndex, step, sync)
            : undefined,
          (step) => {
            if (sync) this.durableHard = { ...last };
            step(undefined);
          },
        ],
        next,
      ),
    );
  }

  private fail(error: DiskError, ops: readonly Op[]): void {
    this.failure = error;
    this.env.log.error('storage failed; the node must stop', { error: error.message });
    const waiting = [...ops, ...this.queue.splice(0)];
    for (const op of waiting) op.done(error);
  }

  // ---- disk steps -------------------------------------------------------------------------

  /**
   * Appends records to the last segment (rotating first when it is full), then fsyncs unless
   * `sync` is false. `firstIndex` (the lowest entry index written, 0 for none) only names a
   * new segment.
   */
  private appendWal(
    records: Uint8Array[],
    firstIndex: number,
    maxIndex: number,
    done: Done,
    sync = true,
  ): void {
    const current = this.segments[this.segments.length - 1];
    const rotate =
      this.file === undefined ||
      current === undefined ||
      current.sizeBytes >= this.segmentSizeBytesMax;
    const seq = (current?.seq ?? 0) + 1;
    const nameIndex = firstIndex > 0 ? firstIndex : this.lastIndex() + 1;
    const parts = rotate ? [encodeSegmentHeader(seq, nameIndex), ...records] : records;
    const data = concatBytes(parts);
    series(
      [
        rotate ? (step) => this.closeFile(step) : undefined,
        rotate ? (step) => this.openSegment(seq, nameIndex, step) : undefined,
        (step) => this.file!.append(data, step),
        (step) => {
          const segment = this.segments[this.segments.length - 1]!;
          segment.sizeBytes += data.length;
          segment.maxIndex = Math.max(segment.maxIndex, maxIndex);
          this.counters.bytesWritten += data.length;
          this.counters.records += parts.length;
          if (sync) return this.syncFile(step);
          this.fileUnsynced = true;
          step(undefined);
        },
        // A new segment counts only once its directory entry is durable too.
        rotate ? (step) => this.syncDir(this.walDir, step) : undefined,
      ],
      done,
    );
  }

  private openSegment(seq: number, firstIndex: number, done: Done): void {
    const name = segmentName(seq, firstIndex);
    this.env.disk.open(`${this.walDir}/${name}`, (error, file) => {
      if (error !== undefined || file === undefined) return done(error);
      this.file = file;
      this.segments.push({ seq, name, sizeBytes: 0, maxIndex: 0 });
      this.counters.segments = this.segments.length;
      this.counters.segmentsCreated++;
      done(undefined);
    });
  }

  /** fsyncs the segment being appended to; everything written to it so far is then durable. */
  private syncFile(done: Done): void {
    this.counters.fsyncs++;
    this.file!.sync((error) => {
      if (error === undefined) this.fileUnsynced = false;
      done(error);
    });
  }

  private closeFile(done: Done): void {
    const file = this.file;
    if (file === undefined) return done(undefined);
    if (this.fileUnsynced) {
      return this.syncFile((error) => (error === undefined ? this.closeFile(done) : done(error)));
    }
    this.file = undefined;
    file.close(done);
  }

  /**
   * Writes `bytes` (one buffer, or pieces in order) as the file `name`: temporary file, fsync,
   * rename over `name`, fsync the directory — old or new, never a mix.
   */
  private writeAtomic(name: string, bytes: Uint8Array | readonly Uint8Array[], done: Done): void {
    const { disk } = this.env;
    const target = `${this.dir}/${name}`;
    const tmp = `${target}${tmpSuffix}`;
    const pieces = bytes instanceof Uint8Array ? [bytes] : bytes;
    disk.open(tmp, (error, file) => {
      if (error !== undefined || file === undefined) return done(error);
      series(
        [
          (step) => file.truncate(0, step),
          (step) => writePieces(file, pieces, step),
          (step) => {
            this.counters.fsyncs++;
            this.counters.bytesWritten += piecesLength(pieces);
            this.counters.records++;
            file.sync(step);
          },
          (step) => file.close(step),
          (step) => disk.rename(tmp, target, step),
          (step) => this.syncDir(this.dir, step),
        ],
        done,
      );
    });
  }

  /** Removes, oldest first and one durable removal at a time, segments wholly at or below `index`. */
  private removeSegments(index: number, done: Done): void {
    const oldest = this.segments[0];
    if (this.segments.length <= 1 || oldest === undefined || oldest.maxIndex > index) {
      return done(undefined);
    }
    // One directory fsync per segment keeps the survivors a contiguous run of sequence
    // numbers even on a file system that reorders directory updates.
    series(
      [
        (step) => this.env.disk.remove(`${this.walDir}/${oldest.name}`, step),
        (step) => this.syncDir(this.walDir, step),
      ],
      (error) => {
        if (error !== undefined) return done(error);
        this.segments.shift();
        this.counters.segments = this.segments.length;
        this.counters.segmentsRemoved++;
        this.removeSegments(index, done);
      },
    );
  }

  private syncDir(dir: string, done: Done): void {
    this.counters.dirSyncs++;
    this.env.disk.syncDir(dir, done);
  }
}
