/**
 * Watches on one node: each watcher follows the revisions this node applies.
 *
 * A watcher is either synced — it receives each applied revision's events as they apply —
 * or catching up, replaying history from its next revision in bounded batches. A consumer
 * that cannot keep up (its sink answers false: its buffer is full) turns its watcher back
 * to catching up and pauses it; when the consumer drains it calls `resume`, and the watcher
 * replays from history what it missed. The hub never buffers events itself, so its memory
 * does not grow with a slow watcher; history does the buffering, until compaction.
 *
 * Guarantees per watcher: events in revision order, without gaps or duplicates, every event
 * of one revision in one response. Compaction past a catching-up watcher's next revision
 * cancels it with the compact revision (etcd's behaviour: the client must start again from
 * a newer revision).
 */
import { KvError } from './errors.js';
import { compareBytes, inRange } from './keys.js';
import { spanOf, type EventFilter, type KeySpan } from './mvcc.js';
import type { Bytes, KvEvent, WatchCreateRequest } from './types.js';

/** etcdserverpb.WatchResponse, with the header reduced to its revision. */
export interface WatchResponse {
  watchId: number;
  revision: number;
  created?: boolean;
  canceled?: boolean;
  compactRevision?: number;
  cancelReason?: string;
  events: KvEvent[];
}

/** Where a watcher's missed events come from: the store's history. */
export interface WatchHistory {
  /** The last applied revision. */
  revision(): number;
  compactRevision(): number;
  /** Events of revisions [from, to] on [key, rangeEnd), in revision order, with prevKv. */
  eventsBetween(from: number, to: number, key: Bytes, rangeEnd: Bytes | undefined): KvEvent[];
}

/**
 * One applied revision's events as the hub reads them (mvcc.ts WriteEvents): each watcher
 * selects those of its range, and only those are built — a DeleteRange of 100,000 keys that
 * no watcher covers builds no event at all.
 */
export interface RevisionEvents {
  /** The events on the span's keys that pass the filter, in order. */
  select(span: KeySpan, filter: EventFilter): KvEvent[];
}

/** Returns false when the consumer's buffer is full (the response itself was taken). */
export type WatchSink = (response: WatchResponse) => boolean;

interface Watcher {
  id: number;
  key: Bytes;
  rangeEnd: Bytes | undefined;
  /** key and rangeEnd as the store's binary strings, to select live events with. */
  span: KeySpan;
  noPut: boolean;
  noDelete: boolean;
  prevKv: boolean;
  progressNotify: boolean;
  /** The first revision this watcher has not been sent. */
  next: number;
  synced: boolean;
  paused: boolean;
  sink: WatchSink;
}

export interface WatchHubOptions {
  /** Revisions replayed per watcher per pump, so one far-behind watcher cannot stall others. */
  catchUpRevisions: number;
  /** Planted bug: a resumed watcher skips the first revision it missed. */
  bugSkipFirst?: boolean;
}

export class WatchHub {
  private readonly watchers = new Map<number, Watcher>();
  private nextId = 1;

  constructor(
    private readonly history: WatchHistory,
    private readonly options: WatchHubOptions = { catchUpRevisions: 1000 },
  ) {}

  get size(): number {
    return this.watchers.size;
  }

  /**
   * Creates a watcher and sends its `created` response. A start revision below the compact
   * revision is answered created-then-canceled with the compact revision (etcd's rule: the
   * compact revision itself can still be watched).
   */
  create(request: WatchCreateRequest, sink: WatchSink): number {
    if (request.key.length === 0 && (request.rangeEnd?.length ?? 0) === 0)
      throw new KvError('empty-key');
    let id = request.watchId ?? 0;
    if (id === 0) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.watchers.has(id)) {
      throw new KvError('invalid-argument', `watch id ${id} already in use`);
    }
    const current = this.history.revision();
    const start = request.startRevision ?? 0;
    const filters = request.filters ?? [];
    const rangeEnd =
      request.rangeEnd !== undefined && request.rangeEnd.length > 0 ? request.rangeEnd : undefined;
    const watcher: Watcher = {
      id,
      key: request.key,
      rangeEnd,
      span: spanOf(request.key, rangeEnd),
      noPut: filters.includes('noput'),
      noDelete: filters.includes('nodelete'),
      prevKv: request.prevKv ?? false,
      progressNotify: request.progressNotify ?? false,
      next: start > 0 ? start : current + 1,
      synced: false,
      paused: false,
      sink,
    };
    sink({ watchId: id, revision: current, created: true, events: [] });
    const compacted = this.history.compactRevision();
    if (start > 0 && start < compacted) {
      sink({
        watchId: id,
        revision: current,
        canceled: true,
        compactRevision: compacted,
        cancelReason: new KvError('compacted').message,
        events: [],
      });
      return id;
    }
    this.watchers.set(id, watcher);
    watcher.synced = watcher.next > current;
    if (!watcher.synced) this.catchUp(watcher);
    return id;
  }

  /** Cancels a watcher; answers its sink with `canceled`. Returns false if unknown. */
  cancel(id: number, reason?: string): boolean {
    const watcher = this.watchers.get(id);
    if (watcher === undefined) return false;
    this.watchers.delete(id);
    watcher.sink({
      watchId: id,
      revision: this.history.revision(),
      canceled: true,
      ...(reason === undefined ? {} : { cancelReason: reason }),
      events: [],
    });
    return true;
  }

  /** Drops a watcher without answering (its stream is gone). */
  forget(id: number): void {
    this.watchers.delete(id);
  }

  /** The consumer drained its buffer: replay what the watcher missed. */
  resume(id: number): void {
    const watcher = this.watchers.get(id);
    if (watcher === undefined || !watcher.paused) return;
    watcher.paused = false;
    if (this.options.bugSkipFirst === true) watcher.next++;
    this.catchUp(watcher);
  }

  /** Called after each applied revision with the events it produced. */
  notify(revision: number, events: RevisionEvents): void {
    for (const watcher of [...this.watchers.values()]) {
      if (!watcher.synced || revision < watcher.next) continue;
      const mine = events.select(watcher.span, watcher);
      watcher.next = revision + 1;
      if (mine.length === 0) continue;
      const taken = watcher.sink({ watchId: watcher.id, revision, events: mine });
      if (!taken) {
        watcher.synced = false;
        watcher.paused = true;
      }
    }
  }

  /** A compaction applied: catching-up watchers below it are canceled. */
  compacted(compactRevision: number): void {
    for (const watcher of [...this.watchers.values()]) {
      if (watcher.synced || watcher.next >= compactRevision) continue;
      this.watchers.delete(watcher.id);
      watcher.sink({
        watchId: watcher.id,
        revision: this.history.revision(),
        canceled: true,
        compactRevision,
        cancelReason: new KvError('compacted').message,
        events: [],
      });
    }
  }

  /**
   * The store was replaced by a snapshot (a follower far behind): the revisions it skipped
   * produced no events here, so every synced watcher goes back to replaying from history
   * (or is canceled, if the snapshot's history starts after its position).
   */
  restored(): void {
    for (const watcher of [...this.watchers.values()]) {
      if (!watcher.synced) continue;
      watcher.synced = false;
      this.catchUp(watcher);
    }
  }

  /** Replays one bounded batch for every catching-up watcher (call periodically). */
  pump(): void {
    for (const watcher of [...this.watchers.values()]) {
      if (!watcher.synced && !watcher.paused) this.catchUp(watcher, 1);
    }
  }

  /** Whether watcher `id` has delivered everything up to the current revision. */
  isSynced(id: number): boolean {
    return this.watchers.get(id)?.synced === true;
  }

  /**
   * Progress notifications: an empty response carrying the current revision, to synced
   * watchers (all of them when `all`, as a client's progress request asks; otherwise only
   * those created with progressNotify). A watcher still catching up gets none: the revision
   * would claim it had seen everything up to it.
   */
  progress(all: boolean, ids?: ReadonlySet<number>): void {
    const revision = this.history.revision();
    for (const watcher of this.watchers.values()) {
      if (ids !== undefined && !ids.has(watcher.id)) continue;
      if (!watcher.synced || (!all && !watcher.progressNotify)) continue;
      watcher.sink({ watchId: watcher.id, revision, events: [] });
    }
  }

  /** The replayed events the watcher wants (live ones are selected by RevisionEvents). */
  private select(watcher: Watcher, events: readonly KvEvent[]): KvEvent[] {
    const mine: KvEvent[] = [];
    for (const event of events) {
      if (event.type === 'put' ? watcher.noPut : watcher.noDelete) continue;
      if (!matches(watcher, event.kv.key)) continue;
      if (watcher.prevKv || event.prevKv === undefined) mine.push(event);
      else mine.push({ type: event.type, kv: event.kv });
    }
    return mine;
  }

  /** Replays up to `batches` rounds of history; becomes synced on reaching the present. */
  private catchUp(watcher: Watcher, batches = Infinity): void {
    for (let round = 0; round < batches && !watcher.synced && !watcher.paused; round++) {
      const current = this.history.revision();
      if (watcher.next > current) {
        watcher.synced = true;
        return;
      }
      if (watcher.next < this.history.compactRevision()) {
        this.compacted(this.history.compactRevision());
        return;
      }
      const to = Math.min(current, watcher.next + this.options.catchUpRevisions - 1);
      const events = this.select(
        watcher,
        this.history.eventsBetween(watcher.next, to, watcher.key, watcher.rangeEnd),
      );
      watcher.next = to + 1;
      // One response per revision: all events of a revision together, revisions in order.
      let start = 0;
      while (start < events.length) {
        const revision = events[start]!.kv.modRevision;
        let end = start;
        while (end < events.length && events[end]!.kv.modRevision === revision) end++;
        const taken = watcher.sink({
          watchId: watcher.id,
          revision: current,
          events: events.slice(start, end),
        });
        start = end;
        if (!taken) {
          // Full: resume after the last revision sent (after the batch, if it was the last).
          if (start < events.length) watcher.next = revision + 1;
          watcher.paused = true;
          return;
        }
      }
    }
  }
}

function matches(watcher: Watcher, key: Bytes): boolean {
  if (watcher.rangeEnd === undefined) return compareBytes(key, watcher.key) === 0;
  return inRange(key, watcher.key, watcher.rangeEnd);
}
