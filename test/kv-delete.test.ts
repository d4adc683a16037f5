// Goal: a DeleteRange, applied leaf by leaf without building per-key objects unless someone
// needs them (src/kv/mvcc.ts updateLive and WriteEvents), changes nothing observable. It
// leaves the same store as deleting each live key of the range one by one in the same
// transaction — same snapshot bytes, hash, history, events, prevKvs — whatever the tree's
// shape and whatever a clone shares; live watchers over any part of the range get exactly
// the events history replays for them; leases lose the deleted keys. A failure prints the
// seed; the seeds are fixed, so a rerun fails alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from '../src/core/codec.js';
import { seededRandom, type Random } from '../src/core/prng.js';
import { applyDeleteRange } from '../src/kv/apply.js';
import { prefixEnd } from '../src/kv/keys.js';
import { LeaseTable } from '../src/kv/lease.js';
import { KvMachine, type KvCommand } from '../src/kv/machine.js';
import { MvccStore, type MvccOptions } from '../src/kv/mvcc.js';
import type { Bytes, KeyValue, KvEvent, WatchCreateRequest } from '../src/kv/types.js';
import { WatchHub, type WatchResponse } from '../src/kv/watch.js';
import type { Entry } from '../src/raft/types.js';

const bin = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const str = (b: Uint8Array): string => String.fromCharCode(...b);
const plainKv = (kv: KeyValue): unknown => ({ ...kv, key: str(kv.key), value: str(kv.value) });
const plainEvent = (e: KvEvent): unknown =>
  e.prevKv === undefined
    ? { type: e.type, kv: plainKv(e.kv) }
    : { type: e.type, kv: plainKv(e.kv), prevKv: plainKv(e.prevKv) };
const everything = { key: bin('\x00'), rangeEnd: bin('\x00') };

// ---------------------------------------------------------------------------------------
// The store: a range delete against the straightforward path, one key at a time

/** Keys k000..k<n>, a few with bytes above 0x7f, so bytewise order matters. */
const keyOf = (i: number): string => `k${String(i).padStart(3, '0')}${i % 9 === 0 ? '\xff' : ''}`;

/** A store with some history: puts (some on leases), deletes, compactions, clones kept alive. */
function randomStore(r: Random, options: MvccOptions, keyCount: number): MvccStore {
  const store = new MvccStore(options);
  const clones: MvccStore[] = [];
  const writes = r.between(1, 3 * keyCount);
  for (let w = 0; w < writes; w++) {
    const txn = store.write();
    for (let op = r.between(1, 3); op > 0; op--) {
      const k = bin(keyOf(r.int(keyCount)));
      if (r.chance(0.8)) txn.put(k, bin(`v${w}`.repeat(r.between(0, 3))), r.pick([0, 0, 1, 2]));
      else txn.deleteRange(k, r.chance(0.5) ? undefined : bin(keyOf(r.int(keyCount))));
    }
    txn.end();
    if (r.chance(0.05) && store.compactRevision < store.revision)
      store.compact(r.between(store.compactRevision + 1, store.revision));
    // A clone shares every node: the store must copy what it changes from here on.
    if (r.chance(0.1)) clones.push(store.clone());
  }
  return store;
}

/** A random range in etcd's convention: one key, [key, end), from key on, or reversed. */
function randomRange(r: Random, keyCount: number): { key: Bytes; rangeEnd?: Bytes } {
  const key = bin(keyOf(r.int(keyCount)));
  switch (r.int(5)) {
    case 0:
      return { key };
    case 1:
      return { key, rangeEnd: bin('\x00') };
    case 2:
      return { key: bin('\x00'), rangeEnd: bin('\x00') };
    default:
      return { key, rangeEnd: bin(keyOf(r.int(keyCount + 1))) };
  }
}

interface Deleted {
  deleted: number;
  prevKvs: unknown[];
  revision: number;
  events: unknown[];
}

function deleteAtOnce(store: MvccStore, range: { key: Bytes; rangeEnd?: Bytes }, prevKvs: boolean) {
  const txn = store.write();
  const result = txn.deleteRange(range.key, range.rangeEnd, prevKvs);
  const { revision, events } = txn.end();
  return {
    deleted: result.deleted,
    prevKvs: result.prevKvs.map(plainKv),
    revision,
    events: events.all().map(plainEvent),
  };
}

/** The reference: read the live keys of the range, then delete each alone, in key order. */
function deleteOneByOne(store: MvccStore, range: { key: Bytes; rangeEnd?: Bytes }): Deleted {
  const live = store.range(range).kvs;
  const txn = store.write();
  const prevKvs = live.flatMap((kv) => txn.deleteRange(kv.key, undefined, true).prevKvs);
  const { revision, events } = txn.end();
  return {
    deleted: prevKvs.length,
    prevKvs: prevKvs.map(plainKv),
    revision,
    events: events.all().map(plainEvent),
  };
}

function sameStores(a: MvccStore, b: MvccStore, what: string): void {
  a.checkInvariants();
  assert.deepEqual(a.hashKv(), b.hashKv(), `${what}: hash`);
  assert.ok(Buffer.from(a.snapshot()).equals(b.snapshot()), `${what}: snapshot bytes`);
  // The snapshot holds every retained revision; reads at a few of them take the read path.
  const first = Math.max(1, a.compactRevision);
  const step = Math.max(1, Math.floor((a.revision - first) / 8));
  for (let rev = a.revision; rev >= first; rev -= step) {
    const read = (s: MvccStore): unknown =>
      s.range({ ...everything, revision: rev }).kvs.map(plainKv);
    assert.deepEqual(read(a), read(b), `${what}: state at revision ${rev}`);
  }
  const history = (s: MvccStore): unknown =>
    s
      .eventsBetween(s.compactRevision, s.revision, everything.key, everything.rangeEnd)
      .map(plainEvent);
  assert.deepEqual(history(a), history(b), `${what}: every retained event`);
}

function checkSeed(seed: number, options: MvccOptions, keyCount: number): void {
  const r = seededRandom(seed);
  const store = randomStore(r, options, keyCount);
  const range = randomRange(r, keyCount);
  const prevKvs = r.chance(0.5);
  const reference = store.clone();
  const untouched = store.clone();
  const before = untouched.hashKv();
  const got = deleteAtOnce(store, range, prevKvs);
  const want = deleteOneByOne(reference, range);
  assert.deepEqual(got, { ...want, prevKvs: prevKvs ? want.prevKvs : [] }, 'the delete itself');
  sameStores(store, reference, 'after the delete');
  assert.deepEqual(untouched.hashKv(), before, 'a clone taken before is untouched');
  if (got.deleted > 0) {
    // The tombstones stay at their own revision, and go at the next.
    for (const s of [store, reference]) s.compact(got.revision);
    sameStores(store, reference, 'compacted at the delete');
    for (const s of [store, reference]) {
      const txn = s.write();
      txn.put(bin('later'), bin('x'), 0);
      txn.end();
      s.compact(s.revision);
    }
    sameStores(store, reference, 'compacted past the delete');
  }
}

test('a range delete leaves the store deleting its live keys one by one would (tiny nodes)', () => {
  for (let seed = 1; seed <= 300; seed++) {
    try {
      checkSeed(seed, { nodeEntriesMax: 4 + (seed % 3), logChunkEntries: 3 }, 40);
    } catch (error) {
      assert.fail(`seed ${seed}: ${String(error)}`);
    }
  }
});

test('a range delete leaves the store deleting its live keys one by one would (default nodes)', () => {
  for (let seed = 1; seed <= 12; seed++) {
    try {
      checkSeed(seed, {}, 600);
    } catch (error) {
      assert.fail(`seed ${seed}: ${String(error)}`);
    }
  }
});

test('prevKvs come back only when asked, as the keys were', () => {
  const store = new MvccStore({ nodeEntriesMax: 4 });
  for (let i = 0; i < 50; i++) {
    const txn = store.write();
    txn.put(bin(keyOf(i)), bin(`v${i}`), i % 5 === 0 ? 1 : 0);
    txn.end();
  }
  const before = store.range({ key: bin('k010'), rangeEnd: bin('k030') }).kvs.map(plainKv);
  const quiet = store.clone();
  const asked = applyDeleteRange(store, { key: bin('k010'), rangeEnd: bin('k030'), prevKv: true });
  assert.equal(asked.result.deleted, 20);
  assert.deepEqual(asked.result.prevKvs.map(plainKv), before);
  const unasked = applyDeleteRange(quiet, { key: bin('k010'), rangeEnd: bin('k030') });
  assert.deepEqual(unasked.result, { deleted: 20, prevKvs: [] });
  assert.equal(unasked.revision, asked.revision);
  assert.deepEqual(quiet.hashKv(), store.hashKv());
  const one = applyDeleteRange(store, { key: bin('k040'), prevKv: true });
  assert.deepEqual(
    one.result.prevKvs.map((kv) => str(kv.value)),
    ['v40'],
  );
  const none = applyDeleteRange(store, { key: bin('k040'), prevKv: true });
  assert.deepEqual(none.result, { deleted: 0, prevKvs: [] });
  assert.equal(none.revision, one.revision, 'deleting nothing is no revision');
});

// ---------------------------------------------------------------------------------------
// The state machine: watchers over parts of the range, leases

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const prefix = enc('p/');

class Node {
  readonly machine = new KvMachine(new LeaseTable(1), 20_000, { nodeEntriesMax: 8 });
  readonly hub = new WatchHub(this.machine);
  private index = 0;

  constructor() {
    this.machine.listener = {
      events: (revision, events) => this.hub.notify(revision, events),
      compacted: (revision) => this.hub.compacted(revision),
      granted: () => undefined,
      revoked: () => undefined,
      restored: () => undefined,
    };
  }

  apply(...commands: KvCommand[]): unknown[] {
    const entries: Entry[] = commands.map((command) => ({
      index: ++this.index,
      term: 1,
      type: 'normal',
      data: encode(command),
    }));
    return this.machine.apply(entries).map((outcome) => {
      assert.ok(
        outcome !== undefined && !('error' in (outcome as object)),
        JSON.stringify(outcome),
      );
      return (outcome as { ok: unknown }).ok;
    });
  }

  /** A watcher's events, one response per revision. */
  watch(request: WatchCreateRequest): WatchResponse[] {
    const responses: WatchResponse[] = [];
    this.hub.create(request, (response) => {
      if (response.events.length > 0) responses.push(response);
      return true;
    });
    return responses;
  }
}

const pkey = (i: number): Uint8Array => enc(`p/${String(i).padStart(5, '0')}`);

/** 3,000 keys under p/, one in 7 on lease 1 and one in 11 on lease 2; one key outside. */
function loaded(): Node {
  const node = new Node();
  node.apply({ t: 'grant', id: 1, ttl: 60 }, { t: 'grant', id: 2, ttl: 60 });
  const puts: KvCommand[] = [];
  for (let i = 0; i < 3000; i++) {
    const lease = i % 7 === 0 ? 1 : i % 11 === 0 ? 2 : 0;
    puts.push({ t: 'put', r: { key: pkey(i), value: enc(`value ${i}`), lease } });
  }
  puts.push({ t: 'put', r: { key: enc('q/outside'), value: enc('stays'), lease: 1 } });
  node.apply(...puts);
  return node;
}

const watches: [string, WatchCreateRequest][] = [
  ['part of the range', { key: pkey(500), rangeEnd: pkey(1500) }],
  ['from a key on, prev_kv', { key: pkey(1000), rangeEnd: enc('\x00'), prevKv: true }],
  ['one key, prev_kv', { key: pkey(2000), prevKv: true }],
  ['the first key', { key: pkey(0) }],
  ['the last key', { key: pkey(2999), prevKv: true }],
  ['a key never written', { key: pkey(9999) }],
  [
    'the whole prefix, no deletes',
    { key: prefix, rangeEnd: prefixEnd(prefix), filters: ['nodelete'] },
  ],
  ['the whole prefix, prev_kv', { key: prefix, rangeEnd: prefixEnd(prefix), prevKv: true }],
  ['elsewhere', { key: enc('q/'), rangeEnd: enc('q0') }],
  ['straddling the range end', { key: pkey(2990), rangeEnd: enc('q/z') }],
];

/** What a watcher must get at `revision`: history's events for its range, filtered. */
function expected(node: Node, request: WatchCreateRequest, revision: number): unknown[] {
  const rangeEnd = request.rangeEnd?.length === 0 ? undefined : request.rangeEnd;
  if (request.filters?.includes('nodelete')) return [];
  return node.machine
    .eventsBetween(revision, revision, request.key, rangeEnd)
    .map((e) => (request.prevKv === true ? e : { type: e.type, kv: e.kv }))
    .map(plainEvent);
}

test('live watchers over parts of a deleted range get exactly their events', () => {
  const node = loaded();
  const live = watches.map(([name, request]) => ({ name, request, got: node.watch(request) }));
  const [outcome] = node.apply({ t: 'del', r: { key: prefix, rangeEnd: prefixEnd(prefix) } });
  assert.deepEqual(outcome, { deleted: 3000, prevKvs: [], revision: node.machine.revision() });
  const revision = node.machine.revision();
  for (const { name, request, got } of live) {
    const want = expected(node, request, revision);
    const delivered = got.filter((r) => r.revision === revision).flatMap((r) => r.events);
    assert.deepEqual(delivered.map(plainEvent), want, name);
    assert.ok(got.filter((r) => r.revision === revision).length <= 1, `${name}: one response`);
    // A watcher replaying history from the delete's revision gets the same.
    const replayed = node.watch({ ...request, startRevision: revision }).flatMap((r) => r.events);
    assert.deepEqual(replayed.map(plainEvent), want, `${name}, replayed`);
  }
  const counts = Object.fromEntries(
    live.map(({ name, got }) => [name, got.flatMap((r) => r.events).length]),
  );
  assert.deepEqual(counts, {
    'part of the range': 1000,
    'from a key on, prev_kv': 2000,
    'one key, prev_kv': 1,
    'the first key': 1,
    'the last key': 1,
    'a key never written': 0,
    'the whole prefix, no deletes': 0,
    'the whole prefix, prev_kv': 3000,
    elsewhere: 0,
    'straddling the range end': 10,
  });
  const prevKv = live[1]!.got[0]!.events[0]!.prevKv!;
  assert.deepEqual([str(prevKv.key), str(prevKv.value)], ['p/01000', 'value 1000']);
});

test('a range delete detaches its keys from their leases; a revoke then deletes only the rest', () => {
  const node = loaded();
  const leases = node.machine.leases;
  assert.equal(leases.get(1)!.keys.size, 429 + 1);
  node.apply({ t: 'del', r: { key: pkey(0), rangeEnd: pkey(2000), prevKv: true } });
  const left = (id: number): string[] => [...leases.get(id)!.keys].sort();
  assert.deepEqual(
    left(1),
    [
      ...Array.from({ length: 3000 }, (_, i) => i)
        .filter((i) => i >= 2000 && i % 7 === 0)
        .map((i) => str(pkey(i))),
      'q/outside',
    ].sort(),
  );
  assert.ok(
    left(2).every((k) => k >= 'p/02000'),
    'lease 2 lost every deleted key',
  );
  const outside = node.watch({ key: enc('q/outside') });
  const [revoked] = node.apply({ t: 'revoke', id: 1 });
  const revision = (revoked as { revision: number }).revision;
  assert.equal(node.machine.range({ key: enc('q/outside') }).count, 0);
  assert.equal(outside.length, 1, 'the revoke deleted the key outside the range');
  const deletedByRevoke = node.machine.eventsBetween(revision, revision, prefix, prefixEnd(prefix));
  assert.ok(
    deletedByRevoke.every((e) => e.type === 'delete' && str(e.kv.key) >= 'p/02000'),
    'the revoke deleted only keys the range delete left',
  );
  assert.equal(deletedByRevoke.length, 143, 'keys 2000..2999 on lease 1');
});

test('after a large delete, old revisions read, watch and compact as before', () => {
  const node = loaded();
  const before = node.machine.revision();
  const hashBefore = node.machine.store.hashKv(before);
  node.apply({ t: 'del', r: { key: prefix, rangeEnd: prefixEnd(prefix) } });
  const deleted = node.machine.revision();
  const store = node.machine.store;
  assert.equal(
    store.range({ key: prefix, rangeEnd: prefixEnd(prefix), revision: before }).count,
    3000,
  );
  assert.equal(store.range({ key: prefix, rangeEnd: prefixEnd(prefix) }).count, 0);
  assert.deepEqual(store.hashKv(before), hashBefore, 'the hash of an old revision is unchanged');
  // `before` put the key outside the prefix; the one before it, the last key inside.
  const fromOld = node.watch({
    key: prefix,
    rangeEnd: prefixEnd(prefix),
    startRevision: before - 1,
  });
  assert.deepEqual(
    fromOld.map((r) => [r.events[0]!.kv.modRevision, r.events.length]),
    [
      [before - 1, 1],
      [deleted, 3000],
    ],
  );
  node.apply({ t: 'compact', revision: deleted });
  assert.equal(store.keyCount, 3001, 'tombstones at the compact revision stay');
  assert.equal(
    node
      .watch({ key: prefix, rangeEnd: prefixEnd(prefix), startRevision: deleted })
      .flatMap((r) => r.events).length,
    3000,
    'a watch from the compact revision still sees the delete',
  );
  node.apply({ t: 'put', r: { key: enc('q/next'), value: enc('x') } });
  node.apply({ t: 'compact', revision: node.machine.revision() });
  assert.equal(store.keyCount, 2, 'the next compaction drops the deleted keys');
  store.checkInvariants();
});
