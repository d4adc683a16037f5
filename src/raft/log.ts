/**
 * The Raft log in memory: a snapshot boundary, the entries after it, and three marks —
 * `stable` (durable on this node), `committed` (durable on a quorum), `applied` (handed to
 * the state machine). Invariant: snapshotIndex <= applied <= committed (except while a
 * snapshot from the leader waits to be restored), applied <= stable (a node applies only
 * entries it holds durably), and every mark <= lastIndex.
 */
import { assert } from '../core/assert.js';
import type { Entry, Snapshot } from './types.js';

export const entryOverheadBytes = 24;

export function entryBytes(entry: Entry): number {
  return entryOverheadBytes + entry.data.length;
}

export class RaftLog {
  snapshotIndex = 0;
  snapshotTerm = 0;
  entries: Entry[] = [];
  committed = 0;
  applied = 0;
  /** Entries up to here are durable on this node. */
  stable = 0;
  /** A snapshot received from the leader, to be persisted and restored by the driver. */
  pendingSnapshot: Snapshot | undefined;

  firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex())!;
  }

  /** The term of entry `index`, or undefined when compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapshotIndex - 1]!.term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapshotIndex - 1];
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Appends after truncating any suffix from the first entry's index on. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    assert(
      first > this.committed,
      () => `truncating committed entry ${first} (committed ${this.committed})`,
    );
    assert(
      first <= this.lastIndex() + 1,
      () => `gap: appending ${first} after ${this.lastIndex()}`,
    );
    this.entries.length = first - this.snapshotIndex - 1;
    for (const e of entries) this.entries.push(e);
    this.stable = Math.min(this.stable, first - 1);
  }

  /**
   * §5.3 AppendEntries receiver: if our log matches at (prevIndex, prevTerm), drop what
   * conflicts, append what is new, and advance commit. Returns the last new index or
   * undefined on mismatch.
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    commit: number,
    entries: readonly Entry[],
  ): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(
        conflict > this.committed,
        () => `conflict at ${conflict} below committed ${this.committed}`,
      );
      this.append(entries.slice(conflict - prevIndex - 1));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** The first entry whose index exists here with another term, or the first new one; 0 if none. */
  private findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (e.index <= this.snapshotIndex) continue;
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /** The largest index <= `index` whose term is <= `term` (fast backtracking hint). */
  findConflictByTerm(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex());
    while (i > this.snapshotIndex) {
      const t = this.term(i)!;
      if (t <= term) break;
      i--;
    }
    return i;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), () => `commit ${index} beyond last ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Entries in [lo, hi) capped at `bytesMax` (always at least one). */
  slice(lo: number, hi: number, bytesMax: number): Entry[] {
    assert(lo > this.snapshotIndex, () => `slice from compacted ${lo}`);
    const result: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi && i <= this.lastIndex(); i++) {
      const e = this.entry(i)!;
      bytes += entryBytes(e);
      if (result.length > 0 && bytes > bytesMax) break;
      result.push(e);
    }
    return result;
  }

  unstableEntries(): Entry[] {
    return this.entries.slice(Math.max(0, this.stable - this.snapshotIndex));
  }

  /** The driver made entries up to `index` durable, provided they still have term `term`. */
  stableTo(index: number, term: number): void {
    if (this.matchTerm(index, term) && index > this.stable) this.stable = index;
  }

  /** Committed entries not yet applied and durable here, up to `bytesMax`. */
  nextCommitted(bytesMax: number): Entry[] {
    // A snapshot not yet handed to the state machine comes first.
    if (this.pendingSnapshot !== undefined) return [];
    const hi = Math.min(this.committed, this.stable);
    if (hi <= this.applied) return [];
    return this.slice(Math.max(this.applied + 1, this.firstIndex()), hi + 1, bytesMax);
  }

  appliedTo(index: number): void {
    assert(
      index <= this.committed && index >= this.applied,
      () => `applied ${index} (was ${this.applied}, committed ${this.committed})`,
    );
    this.applied = index;
  }

  /** Replaces the whole log with a snapshot (a follower that fell behind). */
  restore(snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    this.entries = [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.committed = index;
    this.stable = index;
    // `applied` moves to the snapshot when the driver has restored it (appliedSnapshot).
  }

  /** The state machine now holds the snapshot at `index`. */
  appliedSnapshot(index: number): void {
    if (index > this.applied) this.applied = index;
  }

  /**
   * How many entries ending at `hi` (held here) fit in `bytesMax` bytes of data, at most
   * `countMax`: what a compaction to a snapshot at `hi` keeps for followers to catch up.
   */
  entriesWithin(hi: number, countMax: number, bytesMax: number): number {
    let kept = 0;
    let bytes = 0;
    for (let i = hi; kept < countMax && i > this.snapshotIndex; i--) {
      bytes += this.entries[i - this.snapshotIndex - 1]!.data.length;
      if (bytes > bytesMax) break;
      kept++;
    }
    return kept;
  }

  /** Drops entries up to `index`, already in a snapshot of the state machine. */
  compact(index: number): void {
    if (index <= this.snapshotIndex) return;
    assert(index <= this.applied, () => `compacting ${index} beyond applied ${this.applied}`);
    const term = this.term(index)!;
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
  }

  checkInvariants(): void {
    assert(
      this.snapshotIndex <= this.applied || this.pendingSnapshot !== undefined,
      'snapshot beyond applied',
    );
    assert(this.applied <= this.committed, 'applied beyond committed');
    assert(this.committed <= this.lastIndex(), 'committed beyond last');
    for (let i = 0; i < this.entries.length; i++) {
      assert(this.entries[i]!.index === this.snapshotIndex + 1 + i, 'entry index out of place');
    }
  }
}
