/**
 * Opening storage: read the hard state and snapshot files, scan every WAL segment in order,
 * replay the records into the log, cut a torn tail off the last segment, and hand back
 * the state and the segment to append to. The rules, in order of precedence:
 * 1. Damage in a sealed (non-last) segment, in the middle of the last one (a valid record
 *    follows it), in the hard state or snapshot file (written atomically, never torn), or a
 *    missing segment in the sequence: StorageCorruptError, naming the file and offset.
 * 2. Damage at the tail of the last segment with nothing valid after it: a torn write. Cut it
 *    off (truncate and fsync) and log a warning with the offsets. A last segment without a
 *    whole header is removed the same way: nothing in it was ever acknowledged.
 * 3. Replay in write order; the snapshot file then applies the Raft rule once more (it may
 *    be durable while its WAL marker is not), and the log after it must be contiguous. A
 *    missing marker is reported, and RaftStorage.open writes it before any other record.
 */
import type { ChorusError } from '../core/errors.js';
import type { DiskError } from '../core/errors.js';
import type { DiskFile, Done, Env } from '../env/env.js';
import { emptyHardState, type Entry, type HardState, type Snapshot } from '../raft/types.js';
import {
  hardStateFileName,
  snapshotFileName,
  snapshotSizeBytesMax,
  recordPayloadBytesMax,
  tmpSuffix,
  walDirName,
} from './constants.js';
import { StorageCorruptError } from './errors.js';
import { decodeHardState, decodeSnapshot, readFrame, RecordType } from './record.js';
import { parseSegmentName, ReplayLog, scanSegment, type SegmentScan } from './wal.js';

export interface SegmentInfo {
  seq: number;
  name: string;
  sizeBytes: number;
  /** Highest index named by any record in the segment (entry, commit or snapshot marker). */
  maxIndex: number;
}

export interface RecoveredState {
  /** Term and vote from the file; commit the highest seen anywhere, at least the snapshot's. */
  hardState: HardState;
  /** The hard state file as it is on disk (its commit may lag the WAL). */
  fileHardState: HardState;
  snapshot: Snapshot | undefined;
  entries: Entry[];
  segments: SegmentInfo[];
  /** The last segment, open for appends; undefined when the next append starts a new one. */
  file: DiskFile | undefined;
  truncatedTailBytes: number;
  /**
   * The snapshot file is durable but the WAL does not say where it fell in the log (its
   * marker was lost to a crash or a failed fsync after the file's rename). Replay applies the
   * file at the end, which is right only while nothing follows it in the WAL: the caller must
   * append the marker before any other record.
   */
  snapshotMarkerMissing: boolean;
}

type RecoverDone = (error: ChorusError | undefined, state: RecoveredState | undefined) => void;
/** A recovery step's continuation: a disk error or corruption ends recovery. */
type Next = (error: ChorusError | undefined) => void;

export function recover(env: Pick<Env, 'disk' | 'log'>, dir: string, done: RecoverDone): void {
  new Recovery(env, dir, done).start();
}

class Recovery {
  private readonly walDir: string;
  private fileHardState: HardState = { ...emptyHardState };
  private snapshot: Snapshot | undefined;
  private names: { name: string; seq: number }[] = [];
  private readonly segments: SegmentInfo[] = [];
  private readonly replay = new ReplayLog();
  private file: DiskFile | undefined;
  private truncatedTailBytes = 0;

  constructor(
    private readonly env: Pick<Env, 'disk' | 'log'>,
    private readonly dir: string,
    private readonly done: RecoverDone,
  ) {
    this.walDir = `${dir}/${walDirName}`;
  }

  start(): void {
    const { disk } = this.env;
    const steps: ((next: Next) => void)[] = [
      (next) => disk.mkdir(this.walDir, next),
      (next) => disk.syncDir(this.dir, next),
      (next) => this.removeLeftovers(next),
      (next) => this.readHardState(next),
      (next) => this.readSnapshot(next),
      (next) => this.listSegments(next),
      (next) => this.readSegment(0, next),
    ];
    const run = (i: number): void => {
      if (i === steps.length) return this.finish();
      steps[i]!((error) => (error === undefined ? run(i + 1) : this.done(error, undefined)));
    };
    run(0);
  }

  /** A temporary file is a replacement that never got renamed: it was never acknowledged. */
  private removeLeftovers(done: Done): void {
    this.env.disk.list(this.dir, (error, names) => {
      if (error !== undefined || names === undefined) return done(error);
      const leftovers = names.filter((name) => name.endsWith(tmpSuffix));
      const next = (i: number, removeError: DiskError | undefined): void => {
        if (removeError !== undefined || i === leftovers.length) return done(removeError);
        this.env.log.warn('removing unfinished replacement', {
          file: `${this.dir}/${leftovers[i]!}`,
        });
        this.env.disk.remove(`${this.dir}/${leftovers[i]!}`, (e) => next(i + 1, e));
      };
      next(0, undefined);
    });
  }

  /** Reads a file that holds exactly one record; a missing file yields undefined. */
  private readWhole(
    name: string,
    type: RecordType,
    payloadBytesMax: number,
    use: (payload: Uint8Array) => void,
    done: Next,
  ): void {
    const path = `${this.dir}/${name}`;
    this.env.disk.readFile(path, (error, bytes) => {
      if (error?.code === 'not-found') return done(undefined);
      if (error !== undefined || bytes === undefined) return done(error);
      const frame = readFrame(bytes, 0, payloadBytesMax);
      if (!frame.ok) return done(new StorageCorruptError(path, 0, frame.reason));
      if (frame.type !== type || frame.end !== bytes.length) {
        return done(new StorageCorruptError(path, 0, `not one record of type ${type}`));
      }
      try {
        use(frame.payload);
      } catch (cause) {
        return done(
          new StorageCorruptError(path, 0, 'checksum matches but shape is wrong', { cause }),
        );
      }
      done(undefined);
    });
  }

  private readHardState(done: Next): void {
    this.readWhole(
      hardStateFileName,
      RecordType.hardState,
      recordPayloadBytesMax,
      (payload) => (this.fileHardState = decodeHardState(payload)),
      done,
    );
  }

  private readSnapshot(done: Next): void {
    this.readWhole(
      snapshotFileName,
      RecordType.snapshot,
      snapshotSizeBytesMax,
      (payload) => {
        this.snapshot = decodeSnapshot(payload);
        this.replay.fileSnapshot = {
          index: this.snapshot.metadata.index,
          term: this.snapshot.metadata.term,
        };
      },
      done,
    );
  }

  private listSegments(done: Next): void {
    this.env.disk.list(this.walDir, (error, names) => {
      if (error !== undefined || names === undefined) return done(error);
      for (const name of names) {
        const parsed = parseSegmentName(name);
        if (parsed === undefined) {
          this.env.log.warn('ignoring a file that is not a WAL segment', { file: name });
          continue;
        }
        this.names.push({ name, seq: parsed.seq });
      }
      this.names.sort((a, b) => a.seq - b.seq);
      for (let i = 1; i < this.names.length; i++) {
        const { name, seq } = this.names[i]!;
        if (seq !== this.names[i - 1]!.seq + 1) {
          return done(
            new StorageCorruptError(
              `${this.walDir}/${name}`,
              0,
              `segment ${this.names[i - 1]!.seq + 1} is missing before it`,
            ),
          );
        }
      }
      done(undefined);
    });
  }

  private readSegment(i: number, done: Next): void {
    const current = this.names[i];
    if (current === undefined) return done(undefined);
    const path = `${this.walDir}/${current.name}`;
    const isLast = i === this.names.length - 1;
    this.env.disk.readFile(path, (error, bytes) => {
      if (error !== undefined || bytes === undefined) return done(error);
      let scan: SegmentScan;
      let maxIndex = 0;
      try {
        scan = scanSegment(path, current.seq, bytes, isLast);
        for (const { offset, record } of scan.records) {
          this.replay.apply(record, path, offset);
          if (record.type === 'entry') maxIndex = Math.max(maxIndex, record.entry.index);
          if (record.type === 'snapshot-marker') maxIndex = Math.max(maxIndex, record.index);
          if (record.type === 'commit') maxIndex = Math.max(maxIndex, record.commit);
        }
      } catch (error) {
        if (error instanceof StorageCorruptError) return done(error);
        throw error;
      }
      const segment = {
        seq: current.seq,
        name: current.name,
        sizeBytes: scan.validBytes,
        maxIndex,
      };
      if (scan.tailDamage !== undefined) {
        this.env.log.warn('cutting a torn tail off the last WAL segment', {
          file: path,
          validBytes: scan.validBytes,
          sizeBytes: bytes.length,
          reason: scan.tailDamage,
        });
        this.truncatedTailBytes += bytes.length - scan.validBytes;
      }
      if (!isLast) {
        this.segments.push(segment);
        return this.readSegment(i + 1, done);
      }
      if (scan.records.length === 0) return this.dropSegment(path, done);
      this.segments.push(segment);
      this.openLast(path, scan.validBytes, bytes.length, done);
    });
  }

  /** The last segment has no whole header: its creation was never acknowledged. */
  private dropSegment(path: string, done: Done): void {
    this.env.disk.remove(path, (error) => {
      if (error !== undefined) return done(error);
      this.env.disk.syncDir(this.walDir, done);
    });
  }

  private openLast(path: string, validBytes: number, sizeBytes: number, done: Done): void {
    this.env.disk.open(path, (error, file) => {
      if (error !== undefined || file === undefined) return done(error);
      this.file = file;
      if (validBytes === sizeBytes) return done(undefined);
      file.truncate(validBytes, (truncateError) => {
        if (truncateError !== undefined) return done(truncateError);
        file.sync(done);
      });
    });
  }

  private finish(): void {
    const replay = this.replay;
    const snapshot = this.snapshot;
    const snapshotIndex = snapshot?.metadata.index ?? 0;
    // A replayed marker of this snapshot leaves the log starting right after it (base = its
    // index), and so do the entries after it when compaction removed the marker's segment;
    // anything lower means the marker never became durable.
    const snapshotMarkerMissing = snapshot !== undefined && (replay.base ?? -1) < snapshotIndex;
    if (snapshot !== undefined) replay.snapshot(snapshotIndex, snapshot.metadata.term);
    const entries = replay.entries;
    const firstIndex = entries[0]?.index;
    if (firstIndex !== undefined && firstIndex !== snapshotIndex + 1) {
      return this.done(
        new StorageCorruptError(
          this.walDir,
          0,
          `log starts at ${firstIndex} but the snapshot ends at ${snapshotIndex}`,
        ),
        undefined,
      );
    }
    const lastIndex = snapshotIndex + entries.length;
    const commit = Math.max(this.fileHardState.commit, replay.commit, snapshotIndex);
    if (commit > lastIndex) {
      return this.done(
        new StorageCorruptError(
          this.walDir,
          0,
          `commit ${commit} is past the last index ${lastIndex}`,
        ),
        undefined,
      );
    }
    this.env.log.info('storage recovered', {
      dir: this.dir,
      segments: this.segments.length,
      snapshotIndex,
      lastIndex,
      commit,
      truncatedTailBytes: this.truncatedTailBytes,
      snapshotMarkerMissing,
    });
    this.done(undefined, {
      hardState: { ...this.fileHardState, commit },
      fileHardState: this.fileHardState,
      snapshot,
      entries,
      segments: this.segments,
      file: this.file,
      truncatedTailBytes: this.truncatedTailBytes,
      snapshotMarkerMissing,
    });
  }
}
