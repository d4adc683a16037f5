/**
 * The simulated disk of one node. It keeps what a real disk keeps: written bytes live in a
 * page cache until `sync`; a create, rename or remove lives in the directory until
 * `syncDir`. A crash reverts each file to its durable bytes (optionally keeping a torn
 * prefix of the unsynced appends) and the directory to its durable entries. Faults: EIO and
 * ENOSPC on calls, fsync latency, bit flips in stored bytes.
 *
 * Unsynced writes are kept as an undo log (the bytes each write replaced), so a sync costs
 * O(1) and a crash costs O(unsynced bytes), however large the file.
 */
import { assert } from '../core/assert.js';
import { DiskError } from '../core/errors.js';
import type { Random } from '../core/prng.js';
import type { Disk, DiskFile, Done, DoneWith } from '../env/env.js';
import { diskSyncMsMin, diskSyncMsTailMeanDefault, diskWriteMsMin } from './constants.js';

export interface DiskFaults {
  /** Probability that a write, append, truncate or sync fails with EIO. */
  eioRate: number;
  /** Probability that a write or append fails with ENOSPC. */
  enospcRate: number;
  syncMsMin: number;
  syncMsTailMean: number;
  /** Probability that a crash keeps a torn prefix of the unsynced appends. */
  tornRate: number;
}

export const quietDisk: DiskFaults = {
  eioRate: 0,
  enospcRate: 0,
  syncMsMin: diskSyncMsMin,
  syncMsTailMean: diskSyncMsTailMeanDefault,
  tornRate: 0,
};

interface Undo {
  offset: number;
  /** Bytes written by this mutation (0 for a truncate). */
  length: number;
  /** The bytes this write replaced within the old size (empty for a pure append). */
  replaced: Uint8Array;
  sizeBefore: number;
}

class Inode {
  data = new Uint8Array(64);
  size = 0;
  /** Mutations since the last completed sync, oldest first. */
  undo: Undo[] = [];

  bytes(): Uint8Array {
    return this.data.subarray(0, this.size);
  }

  write(offset: number, bytes: Uint8Array): void {
    assert(offset >= 0 && offset <= this.size, () => `write at ${offset} past end ${this.size}`);
    const end = offset + bytes.length;
    const overlapEnd = Math.min(end, this.size);
    this.undo.push({
      offset,
      length: bytes.length,
      replaced: this.data.slice(offset, Math.max(offset, overlapEnd)),
      sizeBefore: this.size,
    });
    if (end > this.data.length) {
      const grown = new Uint8Array(Math.max(end, this.data.length * 2));
      grown.set(this.data.subarray(0, this.size));
      this.data = grown;
    }
    this.data.set(bytes, offset);
    this.size = Math.max(this.size, end);
  }

  truncate(size: number): void {
    assert(size >= 0, 'negative truncate');
    if (size >= this.size) {
      this.write(this.size, new Uint8Array(size - this.size));
      return;
    }
    this.undo.push({
      offset: size,
      length: 0,
      replaced: this.data.slice(size, this.size),
      sizeBefore: this.size,
    });
    this.size = size;
  }

  /** Drops the first `count` undo records: those mutations are now durable. */
  markDurable(count: number): void {
    this.undo.splice(0, count);
  }

  /** Reverts to durable bytes, keeping the first `keep` mutations and `tornBytes` of the next append. */
  crash(keep: number, tornBytes: number): void {
    for (let i = this.undo.length - 1; i >= keep; i--) {
      const u = this.undo[i]!;
      const isAppend = u.replaced.length === 0 && u.offset === u.sizeBefore;
      if (i === keep && isAppend && tornBytes > 0) {
        this.size = Math.min(this.size, u.offset + tornBytes);
        continue;
      }
      this.data.set(u.replaced, u.offset);
      this.size = u.sizeBefore;
    }
    this.undo = [];
  }
}

export interface DiskCounters {
  writes: number;
  syncs: number;
  eio: number;
  enospc: number;
  torn: number;
  bitFlips: number;
}

/** The state of one node's disk; it outlives the node's crashes. */
export class SimDiskState {
  faults: DiskFaults = { ...quietDisk };
  readonly counters: DiskCounters = {
    writes: 0,
    syncs: 0,
    eio: 0,
    enospc: 0,
    torn: 0,
    bitFlips: 0,
  };
  private entries = new Map<string, Inode>();
  private durableEntries = new Map<string, Inode>();
  private dirs = new Set<string>(['']);

  constructor(private readonly random: Random) {}

  /** Loses everything not durable. Returns a description for the trace. */
  crash(): string {
    this.entries = new Map(this.durableEntries);
    let torn = 0;
    for (const inode of new Set(this.entries.values())) {
      if (inode.undo.length === 0) continue;
      if (this.faults.tornRate > 0 && this.random.chance(this.faults.tornRate)) {
        const keep = this.random.int(inode.undo.length);
        const u = inode.undo[keep]!;
        const isAppend = u.replaced.length === 0 && u.offset === u.sizeBefore;
        inode.crash(keep, isAppend && u.length > 1 ? 1 + this.random.int(u.length - 1) : 0);
        torn++;
      } else {
        inode.crash(0, 0);
      }
    }
    // Files that were never linked durably are gone; clear their undo logs too.
    this.counters.torn += torn;
    return `files=${this.entries.size} torn=${torn}`;
  }

  /** Flips one random bit in one random non-empty file. Returns the victim or undefined. */
  flipBit(): string | undefined {
    const candidates = [...this.entries.entries()]
      .filter(([, inode]) => inode.size > 0)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    if (candidates.length === 0) return undefined;
    const [path, inode] = this.random.pick(candidates);
    const offset = this.random.int(inode.size);
    inode.data[offset]! ^= 1 << this.random.int(8);
    this.counters.bitFlips++;
    return `${path}@${offset}`;
  }

  /** The durable bytes of a file as a crash now would leave them (tests). */
  durableBytes(path: string): Uint8Array | undefined {
    const inode = this.durableEntries.get(path);
    if (inode === undefined) return undefined;
    const copy = new Inode();
    copy.data = inode.data.slice(0, Math.max(inode.size, inode.data.length));
    copy.size = inode.size;
    copy.undo = inode.undo.slice();
    copy.crash(0, 0);
    return copy.bytes().slice();
  }

  syncLatencyMs(): number {
    const faults = this.faults;
    return (
      faults.syncMsMin +
      (faults.syncMsTailMean > 0 ? this.random.exponential(faults.syncMsTailMean) : 0)
    );
  }

  // The operations below are used by SimDisk; each returns an error or performs the change.

  failure(kind: 'write' | 'sync' | 'other', path: string): DiskError | undefined {
    if (kind !== 'other' && this.faults.eioRate > 0 && this.random.chance(this.faults.eioRate)) {
      this.counters.eio++;
      return new DiskError('disk-io', `EIO: ${kind} ${path}`);
    }
    if (
      kind === 'write' &&
      this.faults.enospcRate > 0 &&
      this.random.chance(this.faults.enospcRate)
    ) {
      this.counters.enospc++;
      return new DiskError('disk-full', `ENOSPC: write ${path}`);
    }
    return undefined;
  }

  inode(path: string): Inode | undefined {
    return this.entries.get(path);
  }

  create(path: string): Inode {
    let inode = this.entries.get(path);
    if (inode === undefined) {
      inode = new Inode();
      this.entries.set(path, inode);
    }
    return inode;
  }

  hasDir(dir: string): boolean {
    return this.dirs.has(dir);
  }

  mkdir(dir: string): void {
    // Directories are made durable at once; the create/rename of files inside them is not.
    let current = '';
    for (const part of dir.split('/').filter((p) => p.length > 0)) {
      current = current === '' ? part : `${current}/${part}`;
      this.dirs.add(current);
    }
  }

  list(dir: string): string[] {
    const prefix = dir === '' ? '' : `${dir}/`;
    const names = new Set<string>();
    for (const path of [...this.entries.keys(), ...this.dirs]) {
      if (path.startsWith(prefix) && path.length > prefix.length)
        names.add(path.slice(prefix.length).split('/')[0]!);
    }
    return [...names].sort();
  }

  rename(from: string, to: string): boolean {
    const inode = this.entries.get(from);
    if (inode === undefined) return false;
    this.entries.delete(from);
    this.entries.set(to, inode);
    return true;
  }

  remove(path: string): void {
    this.entries.delete(path);
  }

  syncDir(dir: string): void {
    const inDir = (path: string): boolean => parentOf(path) === dir;
    for (const path of [...this.durableEntries.keys()])
      if (inDir(path) && !this.entries.has(path)) this.durableEntries.delete(path);
    for (const [path, inode] of this.entries) if (inDir(path)) this.durableEntries.set(path, inode);
  }
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

export type Schedule = (delayMs: number, fn: () => void) => void;

function normalize(path: string): string {
  const parts = path.split('/').filter((p) => p.length > 0 && p !== '.');
  assert(!parts.includes('..'), () => `path ${path} escapes the data directory`);
  return parts.join('/');
}

class SimFile implements DiskFile {
  private closed = false;
  constructor(
    readonly path: string,
    private readonly state: SimDiskState,
    private readonly node: Inode,
    private readonly schedule: Schedule,
  ) {}

  size(): number {
    return this.node.size;
  }

  private later(delayMs: number, fn: () => void): void {
    this.schedule(delayMs, fn);
  }

  append(data: Uint8Array, done: Done): void {
    this.write(this.node.size, data, done);
  }

  write(offset: number, data: Uint8Array, done: Done): void {
    assert(!this.closed, () => `write to closed ${this.path}`);
    const error = this.state.failure('write', this.path);
    if (error === undefined) {
      this.node.write(offset, data);
      this.state.counters.writes++;
    }
    this.later(diskWriteMsMin, () => done(error));
  }

  read(offset: number, length: number, done: DoneWith<Uint8Array>): void {
    const bytes = this.node.data.slice(offset, Math.min(this.node.size, offset + length));
    this.later(diskWriteMsMin, () => done(undefined, bytes));
  }

  truncate(size: number, done: Done): void {
    const error = this.state.failure('sync', this.path);
    if (error === undefined) this.node.truncate(size);
    this.later(diskWriteMsMin, () => done(error));
  }

  sync(done: Done): void {
    const error = this.state.failure('sync', this.path);
    const covered = this.node.undo.length;
    this.later(this.state.syncLatencyMs(), () => {
      // Durability happens when the fsync completes: a crash before then may lose the bytes.
      if (error === undefined) {
        this.node.markDurable(covered);
        this.state.counters.syncs++;
      }
      done(error);
    });
  }

  close(done: Done): void {
    this.closed = true;
    this.later(0, () => done(undefined));
  }
}

/** The Disk a node's Env sees: operations on the shared state, completions through `schedule`. */
export class SimDisk implements Disk {
  constructor(
    private readonly state: SimDiskState,
    private readonly schedule: Schedule,
  ) {}

  open(path: string, done: DoneWith<DiskFile>): void {
    const p = normalize(path);
    if (!this.state.hasDir(parentOf(p))) {
      this.schedule(0, () =>
        done(new DiskError('not-found', `open ${p}: no directory ${parentOf(p)}`), undefined),
      );
      return;
    }
    const file = new SimFile(p, this.state, this.state.create(p), this.schedule);
    this.schedule(diskWriteMsMin, () => done(undefined, file));
  }

  readFile(path: string, done: DoneWith<Uint8Array>): void {
    const p = normalize(path);
    const inode = this.state.inode(p);
    const result = inode?.bytes().slice();
    this.schedule(diskWriteMsMin, () =>
      result === undefined
        ? done(new DiskError('not-found', `read ${p}: no such file`), undefined)
        : done(undefined, result),
    );
  }

  list(dir: string, done: DoneWith<string[]>): void {
    const d = normalize(dir);
    const names = this.state.hasDir(d) ? this.state.list(d) : undefined;
    this.schedule(diskWriteMsMin, () =>
      names === undefined
        ? done(new DiskError('not-found', `list ${d}: no such directory`), undefined)
        : done(undefined, names),
    );
  }

  mkdir(dir: string, done: Done): void {
    this.state.mkdir(normalize(dir));
    this.schedule(diskWriteMsMin, () => done(undefined));
  }

  rename(from: string, to: string, done: Done): void {
    const ok = this.state.rename(normalize(from), normalize(to));
    this.schedule(diskWriteMsMin, () =>
      done(ok ? undefined : new DiskError('not-found', `rename ${from}: no such file`)),
    );
  }

  remove(path: string, done: Done): void {
    this.state.remove(normalize(path));
    this.schedule(diskWriteMsMin, () => done(undefined));
  }

  syncDir(dir: string, done: Done): void {
    const d = normalize(dir);
    const error = this.state.failure('sync', d);
    this.schedule(this.state.syncLatencyMs(), () => {
      if (error === undefined) this.state.syncDir(d);
      done(error);
    });
  }
}
