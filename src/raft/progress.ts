/**
 * The leader's view of one follower (etcd-raft's tracker): how far its log matches, what to
 * send next, and how much is in flight. States:
 * - probe: the leader does not know where the logs diverge; one append at a time;
 * - replicate: the follower is in sync; appends stream, bounded by the in-flight window;
 * - snapshot: the follower needs a snapshot; appends pause until it is installed.
 */
import { assert } from '../core/assert.js';
import type { Snapshot } from './types.js';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** Appends in flight to one follower, bounded in count and bytes. */
export class Inflights {
  private readonly items: { index: number; bytes: number }[] = [];
  private bytes = 0;

  constructor(
    readonly countMax: number,
    readonly bytesMax: number,
  ) {}

  get count(): number {
    return this.items.length;
  }

  full(): boolean {
    return this.items.length >= this.countMax || this.bytes >= this.bytesMax;
  }

  add(lastIndex: number, bytes: number): void {
    assert(!this.full(), 'inflights overflow');
    this.items.push({ index: lastIndex, bytes });
    this.bytes += bytes;
  }

  /** Frees every append whose last index is at or below `index`. */
  freeTo(index: number): void {
    let n = 0;
    while (n < this.items.length && this.items[n]!.index <= index) {
      this.bytes -= this.items[n]!.bytes;
      n++;
    }
    this.items.splice(0, n);
  }

  /** Frees the oldest append (a heartbeat answer shows the follower alive but behind). */
  freeFirst(): void {
    const first = this.items.shift();
    if (first !== undefined) this.bytes -= first.bytes;
  }

  reset(): void {
    this.items.length = 0;
    this.bytes = 0;
  }
}

export class Progress {
  /** Highest index known to match the leader's log. */
  match = 0;
  /** Next index to send. Invariant: match < next. */
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: an append was sent and we wait for its answer (or a heartbeat reply). */
  probeSent = false;
  /** In snapshot state: the snapshot being sent, and bytes acknowledged. */
  snapshotBeingSent: Snapshot | undefined = undefined;
  snapshotOffset = 0;
  /** In snapshot state: where the next chunk starts, and whether the last one went out. */
  snapshotSent = 0;
  snapshotSentAll = false;
  /**
   * Periodic heartbeat rounds since the probe went out (probe state) or since the
   * acknowledged snapshot bytes last grew (snapshot state): a heartbeat reply resends only
   * after such rounds, never once per reply (a follower back from a pause answers a backlog
   * of heartbeats at once, and read-index rounds add replies of their own).
   */
  quietRounds = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In snapshot state: check-quorum rounds in a row without a word from the follower. */
  silentRounds = 0;
  readonly inflights: Inflights;

  constructor(next: number, inflightCountMax: number, inflightBytesMax: number) {
    this.next = next;
    this.inflights = new Inflights(inflightCountMax, inflightBytesMax);
  }

  becomeProbe(): void {
    // From snapshot state, resume after the snapshot's index.
    const next =
      this.state === 'snapshot'
        ? Math.max(this.match + 1, this.pendingSnapshot + 1)
        : this.match + 1;
    this.reset('probe');
    this.next = next;
  }

  becomeReplicate(): void {
    this.reset('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshot: Snapshot): void {
    this.reset('snapshot');
    this.snapshotBeingSent = snapshot;
  }

  /** In snapshot state: the index of the snapshot being sent (0 otherwise). */
  get pendingSnapshot(): number {
    return this.snapshotBeingSent?.metadata.index ?? 0;
  }

  /**
   * In snapshot state: give the transfer up (the follower has been silent too long) and
   * probe from what it holds, releasing the snapshot: a follower that comes back gets the
   * leader's newest one then.
   */
  abandonSnapshot(): void {
    this.snapshotBeingSent = undefined;
    this.becomeProbe();
  }

  /** In snapshot state: send again from the acknowledged offset (chunks were lost). */
  rewindSnapshot(offset = this.snapshotOffset): void {
    this.snapshotOffset = offset;
    this.snapshotSent = offset;
    this.snapshotSentAll = false;
    this.quietRounds = 0;
  }

  private reset(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.silentRounds = 0;
    this.snapshotBeingSent = undefined;
    this.rewindSnapshot(0);
    this.inflights.reset();
  }

  /** A successful append response up to `index`. Returns true when it was news. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** Optimistically advance after sending entries up to `lastIndex` (replicate state). */
  sentEntries(lastIndex: number, bytes: number): void {
    if (this.state === 'replicate') {
      this.next = lastIndex + 1;
      this.inflights.add(lastIndex, bytes);
    } else if (this.state === 'probe') {
      this.probeWent();
    }
  }

  /** In probe state: an append went out; wait for its answer (or a quiet round). */
  probeWent(): void {
    this.probeSent = true;
    this.quietRounds = 0;
  }

  /**
   * A rejected append at `rejected`; `hint` is where the leader should retry. Returns false
   * for a stale rejection that must be ignored.
   */
  maybeDecrease(rejected: number, hint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    const next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1);
    // No lower to go (the follower rejects at its own match: it lost acknowledged entries,
    // which only a broken disk does): retry on the next heartbeat instead of looping.
    if (next === this.next) return false;
    this.next = next;
    this.probeSent = false;
    return true;
  }

  /** Whether appends to this follower must wait (probe in flight, window full, snapshot). */
  paused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  checkInvariants(): void {
    assert(this.match < this.next, () => `progress match ${this.match} >= next ${this.next}`);
  }
}
