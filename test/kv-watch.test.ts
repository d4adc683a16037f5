// The watch hub (src/kv/watch.ts) over a fake history: ordering, atomic revisions, replay,
// slow consumers, compaction, filters and progress.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inRange, prefixEnd } from '../src/kv/keys.js';
import { inSpan, toBinary } from '../src/kv/mvcc.js';
import type { Bytes, KvEvent } from '../src/kv/types.js';
import {
  WatchHub,
  type RevisionEvents,
  type WatchHistory,
  type WatchResponse,
} from '../src/kv/watch.js';

const enc = (s: string): Bytes => new TextEncoder().encode(s);
const dec = (b: Bytes): string => new TextDecoder().decode(b);

/** A revision's events as the hub selects them live (the store builds them on demand). */
const listed = (events: readonly KvEvent[]): RevisionEvents => ({
  select: (span, filter) =>
    events
      .filter((e) => inSpan(span, toBinary(e.kv.key)))
      .filter((e) => !(e.type === 'put' ? filter.noPut : filter.noDelete))
      .map((e) => (filter.prevKv ? e : { type: e.type, kv: e.kv })),
});

class FakeHistory implements WatchHistory {
  revisions: KvEvent[][] = [[]]; // revision 1: empty store
  compacted = 0;

  revision(): number {
    return this.revisions.length;
  }
  compactRevision(): number {
    return this.compacted;
  }
  eventsBetween(from: number, to: number, key: Bytes, rangeEnd: Bytes | undefined): KvEvent[] {
    const out: KvEvent[] = [];
    for (let rev = from; rev <= to; rev++) {
      for (const e of this.revisions[rev - 1] ?? []) {
        const hit =
          rangeEnd === undefined ? dec(e.kv.key) === dec(key) : inRange(e.kv.key, key, rangeEnd);
        if (hit) out.push(e);
      }
    }
    return out;
  }
  /** Appends one revision of puts (value = key@rev) and returns its events. */
  write(hub: WatchHub | undefined, ...keys: string[]): KvEvent[] {
    const revision = this.revisions.length + 1;
    const events: KvEvent[] = keys.map((k) => ({
      type: k.startsWith('-') ? 'delete' : 'put',
      kv: {
        key: enc(k.replace(/^-/, '')),
        value: enc(`${k}@${revision}`),
        createRevision: revision,
        modRevision: revision,
        version: 1,
        lease: 0,
      },
      prevKv: {
        key: enc(k.replace(/^-/, '')),
        value: enc('old'),
        createRevision: 1,
        modRevision: 1,
        version: 1,
        lease: 0,
      },
    }));
    this.revisions.push(events);
    hub?.notify(revision, listed(events));
    return events;
  }
}

/** A consumer recording responses; `full` makes it refuse (its buffer is full). */
function consumer(): {
  responses: WatchResponse[];
  full: boolean;
  sink: (r: WatchResponse) => boolean;
} {
  const c = {
    responses: [] as WatchResponse[],
    full: false,
    sink: (r: WatchResponse): boolean => {
      c.responses.push(r);
      return !c.full;
    },
  };
  return c;
}

const revisionsOf = (responses: WatchResponse[]): number[] =>
  responses.filter((r) => r.events.length > 0).map((r) => r.events[0]!.kv.modRevision);

test('a prefix watch from now gets each later revision once, in order, whole', () => {
  const h = new FakeHistory();
  const hub = new WatchHub(h);
  const c = consumer();
  hub.create({ key: enc('a/'), rangeEnd: prefixEnd(enc('a/')) }, c.sink);
  assert.equal(c.responses[0]?.created, true);
  h.write(hub, 'a/1', 'b/1', 'a/2');
  h.write(hub, 'b/2');
  h.write(hub, '-a/1');
  const got = c.responses.slice(1);
  assert.deepEqual(revisionsOf(got), [2, 4]);
  assert.deepEqual(
    got[0]!.events.map((e) => dec(e.kv.key)),
    ['a/1', 'a/2'],
    'both events of revision 2 in one response',
  );
  assert.equal(got[1]!.events[0]!.type, 'delete');
  assert.equal(got[0]!.events[0]!.prevKv, undefined, 'prevKv only when asked');
});

test('a watch from an old revision replays history, then follows live writes', () => {
  const h = new FakeHistory();
  for (let i = 0; i < 5; i++) h.write(undefined, 'k');
  const hub = new WatchHub(h, { catchUpRevisions: 2 });
  const c = consumer();
  hub.create({ key: enc('k'), startRevision: 3, prevKv: true }, c.sink);
  assert.deepEqual(revisionsOf(c.responses), [3, 4, 5, 6]);
  h.write(hub, 'k');
  assert.deepEqual(revisionsOf(c.responses), [3, 4, 5, 6, 7]);
  assert.equal(dec(c.responses.at(-1)!.events[0]!.prevKv!.value), 'old');
});

test('a slow consumer is paused, then replays what it missed without gaps or duplicates', () => {
  const h = new FakeHistory();
  const hub = new WatchHub(h);
  const c = consumer();
  const id = hub.create({ key: enc('k') }, c.sink);
  h.write(hub, 'k');
  c.full = true;
  h.write(hub, 'k'); // taken, but now the buffer is full: the watcher pauses
  h.write(hub, 'k');
  h.write(hub, 'k');
  assert.deepEqual(revisionsOf(c.responses), [2, 3]);
  hub.pump();
  assert.deepEqual(revisionsOf(c.responses), [2, 3], 'paused watchers are not pumped');
  c.full = false;
  hub.resume(id);
  assert.deepEqual(revisionsOf(c.responses), [2, 3, 4, 5]);
  h.write(hub, 'k');
  assert.deepEqual(revisionsOf(c.responses), [2, 3, 4, 5, 6]);
});

test('compaction past a paused watcher cancels it with the compact revision', () => {
  const h = new FakeHistory();
  const hub = new WatchHub(h);
  const c = consumer();
  const id = hub.create({ key: enc('k') }, c.sink);
  c.full = true;
  h.write(hub, 'k');
  h.write(hub, 'k');
  h.write(hub, 'k');
  h.compacted = 4;
  hub.compacted(4);
  assert.equal(c.responses.at(-1)?.canceled, true);
  assert.equal(c.responses.at(-1)?.compactRevision, 4);
  assert.equal(hub.size, 0);
  hub.resume(id); // unknown now: nothing happens
});

test('a start revision below the compact revision is created, then canceled', () => {
  const h = new FakeHistory();
  h.write(undefined, 'k');
  h.write(undefined, 'k');
  h.compacted = 2;
  const hub = new WatchHub(h);
  const c = consumer();
  hub.create({ key: enc('k'), startRevision: 1 }, c.sink);
  assert.equal(c.responses[0]?.created, true);
  assert.equal(c.responses[1]?.canceled, true);
  assert.equal(c.responses[1]?.compactRevision, 2);
  assert.match(c.responses[1]?.cancelReason ?? '', /required revision has been compacted/);
  const atCompact = consumer();
  hub.create({ key: enc('k'), startRevision: 2 }, atCompact.sink);
  assert.deepEqual(revisionsOf(atCompact.responses), [2, 3], 'the compact revision itself replays');
});

test('filters drop puts or deletes; a future start revision waits', () => {
  const h = new FakeHistory();
  const hub = new WatchHub(h);
  const noPut = consumer();
  const future = consumer();
  hub.create({ key: enc('k'), filters: ['noput'] }, noPut.sink);
  hub.create({ key: enc('k'), startRevision: 4 }, future.sink);
  h.write(hub, 'k');
  h.write(hub, '-k');
  h.write(hub, 'k');
  assert.deepEqual(revisionsOf(noPut.responses), [3]);
  assert.deepEqual(revisionsOf(future.responses), [4]);
});

test('progress goes to synced watchers only; cancel answers and forgets', () => {
  const h = new FakeHistory();
  const hub = new WatchHub(h);
  const synced = consumer();
  const behind = consumer();
  const a = hub.create({ key: enc('k'), progressNotify: true }, synced.sink);
  hub.create({ key: enc('k') }, behind.sink);
  behind.full = true;
  h.write(hub, 'k');
  hub.progress(true);
  assert.equal(synced.responses.at(-1)?.revision, 2);
  assert.equal(synced.responses.at(-1)?.events.length, 0);
  assert.equal(behind.responses.filter((r) => r.events.length === 0).length, 1, 'created only');
  assert.equal(hub.cancel(a), true);
  assert.equal(synced.responses.at(-1)?.canceled, true);
  assert.equal(hub.cancel(a), false);
});

test('an empty key is refused; a taken watch id is refused', () => {
  const hub = new WatchHub(new FakeHistory());
  assert.throws(() => hub.create({ key: new Uint8Array() }, () => true), /key is not provided/);
  hub.create({ key: enc('k'), watchId: 5 }, () => true);
  assert.throws(() => hub.create({ key: enc('k'), watchId: 5 }, () => true), /already in use/);
});
