// Goal: RaftStorage keeps exactly what it acknowledged across crashes of the simulated disk
// — unsynced bytes lost, torn tails, bit flips, EIO and ENOSPC — cuts a torn tail away but
// refuses to start (StorageCorruptError naming file and offset) when damage is followed by
// valid data, survives conflict truncation, rotates and compacts segments, and replaces the
// hard state and snapshot files atomically.
import { concatBytes, joinedBytes } from '../src/core/bytes.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError } from '../src/core/assert.js';
import { nodeId } from '../src/core/ids.js';
import type { Snapshot } from '../src/raft/types.js';
import { formatVersion } from '../src/storage/constants.js';
import {
  encodeHardStateFile,
  encodeRecord,
  encodeSnapshotFile,
  readFrame,
  RecordType,
  snapshotFileJob,
} from '../src/storage/record.js';
import { RaftStorage, StorageCorruptError, type StorageDone } from '../src/storage/index.js';
import {
  Incarnation,
  diskState,
  entries,
  hardState,
  open,
  save,
  settle,
  shape,
  tryOpen,
} from './storage-helpers.js';

const confState = {
  voters: [nodeId('a'), nodeId('b'), nodeId('c')],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};

const snapshotAt = (index: number, term: number, fill = 7): Snapshot => ({
  metadata: { index, term, confState },
  data: new Uint8Array(32).fill(fill),
});

function listWal(life: Incarnation, dir = 'raft'): string[] {
  let names: string[] = [];
  life.disk.list(`${dir}/wal`, (_e, n) => (names = n ?? []));
  life.run();
  return names;
}

/** Offsets of every record in a segment's durable bytes. */
function recordOffsets(bytes: Uint8Array): number[] {
  const offsets: number[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const frame = readFrame(bytes, offset);
    assert.ok(frame.ok, `record at ${offset}`);
    offsets.push(offset);
    offset = frame.end;
  }
  return offsets;
}

/** Flips one bit of a file's bytes and makes the flip durable (a bit rot on the platter). */
function flipDurable(life: Incarnation, path: string, offset: number, bit = 0): void {
  const bytes = life.state.durableBytes(path);
  assert.ok(bytes !== undefined && offset < bytes.length, `${path}@${offset}`);
  life.disk.open(path, (_e, file) => {
    file!.write(offset, new Uint8Array([bytes[offset]! ^ (1 << bit)]), () =>
      file!.sync(() => undefined),
    );
  });
  life.run();
}

test('an empty directory opens empty; saved state comes back after close and reopen', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const first = open(life);
  assert.deepEqual(first.recovered, {
    hardState: hardState(0, '', 0),
    snapshot: undefined,
    entries: [],
  });
  assert.equal(
    save(life, first.storage, { hardState: hardState(1, 'a', 0), entries: entries(1, 5, 1) }),
    undefined,
  );
  assert.equal(save(life, first.storage, { hardState: hardState(1, 'a', 3) }), undefined);
  assert.equal(
    settle(life, (done) => first.storage.close(done)),
    undefined,
  );
  life = new Incarnation(state);
  const { recovered } = open(life);
  assert.deepEqual(recovered.hardState, hardState(1, 'a', 3));
  assert.deepEqual(recovered.entries, entries(1, 5, 1));
  assert.equal(recovered.snapshot, undefined);
});

test('a crash right after acknowledgement keeps everything acknowledged (torn or not)', () => {
  for (let seed = 1; seed <= 100; seed++) {
    const state = diskState(seed, { tornRate: seed % 2 });
    let life = new Incarnation(state);
    const { storage } = open(life, 'raft', { segmentSizeBytesMax: 256 });
    for (let i = 0; i < 10; i++) {
      const term = 1 + Math.floor(i / 4);
      const update = {
        hardState: hardState(term, 'b', i * 3),
        entries: entries(i * 3 + 1, i * 3 + 3, term),
      };
      assert.equal(save(life, storage, update), undefined);
    }
    state.crash();
    life = new Incarnation(state);
    const { recovered } = open(life);
    assert.deepEqual(recovered.hardState, hardState(3, 'b', 27), `seed ${seed}`);
    assert.equal(recovered.entries.length, 30, `seed ${seed}`);
    assert.deepEqual(
      shape(recovered.entries),
      shape([...entries(1, 12, 1), ...entries(13, 24, 2), ...entries(25, 30, 3)]),
    );
  }
});

test('saves issued together are group committed: one fsync for the batch, done in call order', () => {
  const life = new Incarnation(diskState());
  const { storage } = open(life);
  const order: number[] = [];
  for (let i = 1; i <= 20; i++) {
    storage.save({ entries: entries(i, i, 1) }, (error) => {
      assert.equal(error, undefined);
      order.push(i);
    });
  }
  life.run();
  assert.deepEqual(
    order,
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
  // The first save starts a batch (and the first segment) alone; the other 19 wait for it.
  assert.equal(storage.counters.batches, 2);
  assert.equal(storage.counters.fsyncs, 2);
  assert.equal(storage.counters.saves, 20);
});

test('a save of the commit index alone with mustSync false is written without an fsync of its own; the next fsync, or a rotation, makes it durable', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const state = diskState(seed, { tornRate: seed % 3 === 0 ? 0 : 1 });
    const life = new Incarnation(state);
    // Small segments of several sizes: with some, the unsynced commit record ends a segment
    // that the next batch rotates away from (torn there, recovery would call it corruption).
    const options = { segmentSizeBytesMax: seed % 15 === 0 ? 1 << 20 : 60 + (seed % 15) * 10 };
    const { storage } = open(life, 'raft', options);
    let durable = 0;
    for (let i = 0; i < 6; i++) {
      const first = i * 3 + 1;
      const update = {
        hardState: hardState(1, 'b', durable),
        entries: entries(first, first + 2, 1),
      };
      assert.equal(save(life, storage, update), undefined);
      const fsyncs = storage.counters.fsyncs;
      const commitOnly = { hardState: hardState(1, 'b', first + 1), mustSync: false };
      assert.equal(save(life, storage, commitOnly), undefined);
      assert.equal(storage.counters.fsyncs, fsyncs, `seed ${seed}: no fsync of its own`);
      // The next batch's fsync (or the rotation before it) makes this commit durable.
      if (i < 5) durable = first + 1;
    }
    state.crash();
    const { recovered } = open(new Incarnation(state), 'raft', options);
    assert.equal(recovered.entries.length, 18, `seed ${seed}`);
    // The last commit-only save may or may not have reached the disk, torn or whole.
    assert.ok(
      recovered.hardState.commit === durable || recovered.hardState.commit === 17,
      `seed ${seed}: commit ${recovered.hardState.commit}, durable ${durable}`,
    );
  }
});

test('a save issued from a done callback joins the next batch', () => {
  const life = new Incarnation(diskState());
  const { storage } = open(life);
  const done: number[] = [];
  storage.save({ entries: entries(1, 1, 1) }, () => {
    done.push(1);
    storage.save({ entries: entries(3, 3, 1) }, () => done.push(3));
  });
  storage.save({ entries: entries(2, 2, 1) }, () => done.push(2));
  storage.save({ entries: entries(2, 2, 1) }, () => done.push(22));
  life.run();
  assert.deepEqual(done, [1, 2, 22, 3]);
});

test('a crash before the fsync completes loses only unacknowledged saves, as a prefix', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const state = diskState(seed, { tornRate: 0.7 });
    let life = new Incarnation(state);
    const { storage } = open(life, 'raft', { segmentSizeBytesMax: 200 + (seed % 5) * 100 });
    assert.equal(
      save(life, storage, { hardState: hardState(1, 'a', 0), entries: entries(1, 4, 1) }),
      undefined,
    );
    let acked = 4;
    for (let i = 5; i <= 40; i++) {
      storage.save({ entries: entries(i, i, 1) }, (error) => {
        assert.equal(error, undefined);
        acked = i;
      });
    }
    life.run(seed % 37);
    state.crash();
    life = new Incarnation(state);
    const { recovered } = open(life);
    const n = recovered.entries.length;
    assert.ok(n >= acked, `seed ${seed}: recovered ${n} < acknowledged ${acked}`);
    assert.deepEqual(
      recovered.entries,
      entries(1, n, 1),
      `seed ${seed}: a prefix of what was saved`,
    );
  }
});

test('torn tails (tornRate 1) recover to a prefix and are cut with a warning', () => {
  let cut = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const state = diskState(seed, { tornRate: 1 });
    let life = new Incarnation(state);
    const { storage } = open(life);
    assert.equal(save(life, storage, { entries: entries(1, 3, 1, 40) }), undefined);
    // One big unacknowledged batch: its append is in the page cache when the crash comes.
    for (let i = 4; i <= 12; i++) storage.save({ entries: entries(i, i, 2, 40) }, () => undefined);
    life.run(seed % 3);
    state.crash();
    life = new Incarnation(state);
    const { recovered, storage: reopened } = open(life);
    const n = recovered.entries.length;
    assert.ok(n >= 3, `seed ${seed}`);
    assert.deepEqual(recovered.entries, [...entries(1, 3, 1, 40), ...entries(4, n, 2, 40)]);
    const warned = life.log.lines.some((l) => l.level === 'warn' && /torn tail/.test(l.message));
    if (warned) cut++;
    assert.equal(warned, reopened.counters.truncatedTailBytes > 0);
    // The cut segment takes appends again and they survive the next crash.
    assert.equal(save(life, reopened, { entries: entries(n + 1, n + 2, 3, 40) }), undefined);
    state.crash();
    life = new Incarnation(state);
    assert.equal(open(life).recovered.entries.length, n + 2, `seed ${seed}`);
  }
  assert.ok(cut > 100, `torn tails cut ${cut}`);
});

test('a bit flip in a committed record followed by valid records stops the node with its file and offset', () => {
  for (let bit = 0; bit < 8; bit++) {
    const state = diskState(bit);
    let life = new Incarnation(state);
    const { storage } = open(life);
    for (let i = 1; i <= 10; i++)
      assert.equal(save(life, storage, { entries: entries(i, i, 1) }), undefined);
    const [segment] = listWal(life);
    const path = `raft/wal/${segment!}`;
    const offsets = recordOffsets(state.durableBytes(path)!);
    const victim = offsets[4]!; // The record of entry 4 (after the header).
    flipDurable(life, path, victim + 9 + (bit % 4), bit);
    life = new Incarnation(state);
    const { error } = tryOpen(life);
    assert.ok(error instanceof StorageCorruptError, `bit ${bit}: ${String(error)}`);
    assert.equal(error.file, path);
    assert.equal(error.offset, victim);
    assert.match(error.message, /valid record follows/);
  }
});

test('a flipped length field in the middle is corruption too, not a tail', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life);
  for (let i = 1; i <= 10; i++) save(life, storage, { entries: entries(i, i, 1) });
  const path = `raft/wal/${listWal(life)[0]!}`;
  const victim = recordOffsets(state.durableBytes(path)!)[3]!;
  flipDurable(life, path, victim + 3, 7); // Length becomes huge: it "runs past the end".
  life = new Incarnation(state);
  const { error } = tryOpen(life);
  assert.ok(error instanceof StorageCorruptError);
  assert.equal(error.offset, victim);
});

test('damage in the last record of the last segment is a tail: cut with a warning', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life);
  for (let i = 1; i <= 5; i++) save(life, storage, { entries: entries(i, i, 1) });
  const path = `raft/wal/${listWal(life)[0]!}`;
  const offsets = recordOffsets(state.durableBytes(path)!);
  flipDurable(life, path, offsets[offsets.length - 1]! + 12);
  life = new Incarnation(state);
  const { recovered } = open(life);
  assert.deepEqual(recovered.entries, entries(1, 4, 1));
  const warning = life.log.lines.find((l) => l.level === 'warn');
  assert.equal(warning?.fields['validBytes'], offsets[offsets.length - 1]);
});

test('damage at the end of a sealed segment is corruption, even with nothing after it there', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life, 'raft', { segmentSizeBytesMax: 100 });
  for (let i = 1; i <= 12; i++) save(life, storage, { entries: entries(i, i, 1) });
  const names = listWal(life);
  assert.ok(names.length >= 3, `segments ${names.join(' ')}`);
  const path = `raft/wal/${names[0]!}`;
  const offsets = recordOffsets(state.durableBytes(path)!);
  flipDurable(life, path, offsets[offsets.length - 1]! + 10);
  life = new Incarnation(state);
  const { error } = tryOpen(life);
  assert.ok(error instanceof StorageCorruptError);
  assert.equal(error.file, path);
  assert.match(error.message, /sealed segment/);
});

test('a missing segment in the middle is corruption', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life, 'raft', { segmentSizeBytesMax: 100 });
  for (let i = 1; i <= 12; i++) save(life, storage, { entries: entries(i, i, 1) });
  const names = listWal(life);
  life.disk.remove(`raft/wal/${names[1]!}`, () => life.disk.syncDir('raft/wal', () => undefined));
  life.run();
  life = new Incarnation(state);
  const { error } = tryOpen(life);
  assert.ok(error instanceof StorageCorruptError);
  assert.match(error.message, /missing/);
});

test('a zero-filled tail (a file system that extended the file before the crash) is cut', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life);
  save(life, storage, { entries: entries(1, 3, 1) });
  const path = `raft/wal/${listWal(life)[0]!}`;
  life.disk.open(path, (_e, file) =>
    file!.append(new Uint8Array(100), () => file!.sync(() => undefined)),
  );
  life.run();
  life = new Incarnation(state);
  assert.deepEqual(open(life).recovered.entries, entries(1, 3, 1));
});

test('a corrupt hard state file is an error, not a silent reset of term and vote', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life);
  save(life, storage, { hardState: hardState(4, 'c', 0) });
  flipDurable(life, 'raft/hardstate', 12);
  life = new Incarnation(state);
  const { error } = tryOpen(life);
  assert.ok(error instanceof StorageCorruptError);
  assert.equal(error.file, 'raft/hardstate');
});

test('a commit past the last durable entry is still corruption, not clamped', () => {
  // Storage never writes such a state (a commit reaches the file only once durable in the
  // WAL), so a file that says so names entries this node has lost: it must not start.
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life);
  save(life, storage, { hardState: hardState(1, 'a', 3), entries: entries(1, 5, 1) });
  life.disk.open('raft/hardstate', (_e, file) => {
    const bytes = encodeHardStateFile(hardState(1, 'a', 9));
    file!.truncate(0, () => file!.write(0, bytes, () => file!.sync(() => undefined)));
  });
  life.run();
  life = new Incarnation(state);
  const { error } = tryOpen(life);
  assert.ok(error instanceof StorageCorruptError);
  assert.match(error.message, /commit 9 is past the last index 5/);
});

test('conflict truncation is acknowledged durable and survives a crash, also across segments', () => {
  for (const segmentSizeBytesMax of [100, 1 << 20]) {
    const state = diskState(3, { tornRate: 1 });
    let life = new Incarnation(state);
    const { storage } = open(life, 'raft', { segmentSizeBytesMax });
    save(life, storage, { hardState: hardState(1, 'a', 3), entries: entries(1, 10, 1) });
    save(life, storage, { hardState: hardState(2, 'b', 3), entries: entries(6, 7, 2) });
    state.crash();
    life = new Incarnation(state);
    let opened = open(life, 'raft', { segmentSizeBytesMax });
    assert.deepEqual(opened.recovered.entries, [...entries(1, 5, 1), ...entries(6, 7, 2)]);
    assert.deepEqual(opened.recovered.hardState, hardState(2, 'b', 3));
    // A second conflict further back, then growth again.
    save(life, opened.storage, { hardState: hardState(3, '', 4), entries: entries(5, 5, 3) });
    save(life, opened.storage, { entries: entries(6, 8, 3) });
    state.crash();
    life = new Incarnation(state);
    opened = open(life, 'raft', { segmentSizeBytesMax });
    assert.deepEqual(opened.recovered.entries, [...entries(1, 4, 1), ...entries(5, 8, 3)]);
  }
});

test('segments rotate at the size limit; compaction after a snapshot removes whole old segments', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const options = { segmentSizeBytesMax: 300 };
  const { storage } = open(life, 'raft', options);
  for (let i = 1; i <= 100; i += 5) {
    save(life, storage, { hardState: hardState(1, 'a', i + 4), entries: entries(i, i + 4, 1) });
  }
  const before = listWal(life);
  assert.ok(before.length >= 5, `segments ${before.length}`);
  assert.equal(storage.counters.segments, before.length);
  assert.match(before[0]!, /^0000000000000001-0000000000000001\.wal$/);
  assert.equal(
    settle(life, (done) => storage.saveSnapshot(snapshotAt(80, 1), done)),
    undefined,
  );
  assert.equal(
    settle(life, (done) => storage.compact(80, done)),
    undefined,
  );
  const after = listWal(life);
  assert.ok(
    after.length < before.length && after.length >= 1,
    `${before.length} -> ${after.length}`,
  );
  assert.equal(storage.counters.segmentsRemoved, before.length - after.length);
  assert.deepEqual(after, before.slice(before.length - after.length), 'the newest survive');
  save(life, storage, { entries: entries(101, 103, 2) });
  state.crash();
  life = new Incarnation(state);
  const { recovered } = open(life, 'raft', options);
  assert.equal(recovered.snapshot?.metadata.index, 80);
  assert.deepEqual(recovered.entries, [...entries(81, 100, 1), ...entries(101, 103, 2)]);
  assert.ok(recovered.hardState.commit >= 80);
});

test('compaction past the snapshot is refused', () => {
  const life = new Incarnation(diskState());
  const { storage } = open(life);
  save(life, storage, { entries: entries(1, 5, 1) });
  assert.equal(settle(life, (done) => storage.compact(3, done))?.code, 'bad-input');
});

test('a snapshot that does not match the log empties it; later entries follow the snapshot', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life, 'raft', { segmentSizeBytesMax: 200 });
  save(life, storage, { hardState: hardState(1, 'a', 2), entries: entries(1, 10, 1) });
  // The leader of term 3 sends a snapshot at 20: our entries 3..10 were never committed.
  settle(life, (done) => storage.saveSnapshot(snapshotAt(20, 3), done));
  assert.equal(storage.lastIndex(), 20);
  save(life, storage, { hardState: hardState(3, '', 20), entries: entries(21, 22, 3) });
  state.crash();
  life = new Incarnation(state);
  const { recovered } = open(life);
  assert.equal(recovered.snapshot?.metadata.index, 20);
  assert.deepEqual(recovered.entries, entries(21, 22, 3));
  assert.deepEqual(recovered.hardState, hardState(3, '', 20));
});

test('a snapshot inside the log keeps the entries after it', () => {
  const state = diskState();
  let life = new Incarnation(state);
  const { storage } = open(life);
  save(life, storage, {
    hardState: hardState(2, 'a', 6),
    entries: [...entries(1, 4, 1), ...entries(5, 9, 2)],
  });
  settle(life, (done) => storage.saveSnapshot(snapshotAt(6, 2), done));
  state.crash();
  life = new Incarnation(state);
  const { recovered } = open(life);
  assert.deepEqual(recovered.entries, entries(7, 9, 2));
  assert.deepEqual(recovered.snapshot, snapshotAt(6, 2));
});

/**
 * Interrupts saveSnapshot(8/2) over a log 1..10 of term 1 (so the snapshot empties it) with a
 * crash at `step` events, or with EIO from the first call after the snapshot file is durable
 * (the marker's append or fsync, as in kv seed 131); then a second life appends 9..12 after
 * the snapshot and crashes, and a third must find them.
 */
function snapshotInterrupted(step: number | 'eio'): void {
  const state = diskState(step === 'eio' ? 7 : step);
  let life = new Incarnation(state);
  const first = open(life).storage;
  save(life, first, { hardState: hardState(1, 'a', 2), entries: entries(1, 10, 1) });
  first.saveSnapshot(snapshotAt(8, 2), () => undefined);
  if (step === 'eio') {
    life.runUntil(() => state.durableBytes('raft/snapshot') !== undefined, 'snapshot file');
    state.faults = { ...state.faults, eioRate: 1 };
    life.run();
    state.faults = { ...state.faults, eioRate: 0 };
  } else {
    life.run(step);
  }
  state.crash();
  life = new Incarnation(state);
  const second = open(life);
  if (second.recovered.snapshot === undefined) return;
  assert.deepEqual(second.recovered.entries, [], `step ${step}`);
  if (step === 'eio') {
    const repaired = life.log.lines.some((line) => line.message.includes('marker was lost'));
    assert.ok(repaired, 'the lost marker is written at open');
  }
  assert.equal(
    save(life, second.storage, { hardState: hardState(2, '', 12), entries: entries(9, 12, 2) }),
    undefined,
  );
  state.crash();
  life = new Incarnation(state);
  const third = tryOpen(life);
  assert.equal(third.error, undefined, `step ${step}: ${third.error?.message}`);
  assert.deepEqual(shape(third.recovered!.entries), shape(entries(9, 12, 2)), `step ${step}`);
  assert.equal(third.recovered!.hardState.commit, 12, `step ${step}`);
}

test('entries acknowledged after a snapshot whose WAL marker was lost survive the next crash', () => {
  // Regression for kv seed 131: the marker's fsync failed after the snapshot file's rename;
  // the next life appended after the snapshot, and the replay after that dropped those
  // acknowledged entries under the old entry 8 of term 1 (commit past the last index).
  snapshotInterrupted('eio');
  for (let step = 0; step < 40; step++) snapshotInterrupted(step);
});

test('hard state replacement is atomic: a crash at any step leaves the old or the new', () => {
  const seen = new Set<string>();
  for (let step = 0; step < 40; step++) {
    const state = diskState(step, { tornRate: 1 });
    let life = new Incarnation(state);
    const { storage } = open(life);
    save(life, storage, { hardState: hardState(1, 'a', 0) });
    let acked = false;
    storage.save({ hardState: hardState(2, 'b', 0) }, () => (acked = true));
    life.run(step);
    state.crash();
    life = new Incarnation(state);
    const { recovered } = open(life);
    const got = `${recovered.hardState.term}/${recovered.hardState.vote}`;
    assert.ok(got === '1/a' || got === '2/b', `step ${step}: ${got}`);
    if (acked) assert.equal(got, '2/b', `step ${step}`);
    seen.add(got);
  }
  assert.deepEqual([...seen].sort(), ['1/a', '2/b']);
});

test('snapshot replacement is atomic: a crash at any step leaves the old or the new', () => {
  const seen = new Set<number>();
  for (let step = 0; step < 50; step++) {
    const state = diskState(step, { tornRate: 1 });
    let life = new Incarnation(state);
    const { storage } = open(life);
    save(life, storage, { hardState: hardState(1, 'a', 20), entries: entries(1, 30, 1) });
    settle(life, (done) => storage.saveSnapshot(snapshotAt(10, 1, 1), done));
    let acked = false;
    storage.saveSnapshot(snapshotAt(20, 1, 2), () => (acked = true));
    life.run(step);
    state.crash();
    life = new Incarnation(state);
    const { recovered } = open(life);
    const snapshot = recovered.snapshot!;
    const first = joinedBytes(snapshot.data)[0];
    assert.ok(
      (snapshot.metadata.index === 10 && first === 1) ||
        (snapshot.metadata.index === 20 && first === 2),
      `step ${step}: ${snapshot.metadata.index}/${first}`,
    );
    if (acked) assert.equal(snapshot.metadata.index, 20);
    assert.deepEqual(recovered.entries, entries(snapshot.metadata.index + 1, 30, 1));
    seen.add(snapshot.metadata.index);
  }
  assert.deepEqual([...seen].sort(), [10, 20]);
});

test('EIO and ENOSPC reach the caller, and every later call fails too', () => {
  for (const [faults, code] of [
    [{ eioRate: 1 }, 'disk-io'],
    [{ enospcRate: 1 }, 'disk-full'],
  ] as const) {
    const state = diskState();
    const life = new Incarnation(state);
    const { storage } = open(life);
    save(life, storage, { entries: entries(1, 2, 1) });
    state.faults = { ...state.faults, ...faults };
    const errors: (string | undefined)[] = [];
    storage.save({ entries: entries(3, 3, 1) }, (e) => errors.push(e?.code));
    storage.save({ entries: entries(4, 4, 1) }, (e) => errors.push(e?.code));
    life.run();
    assert.deepEqual(errors, [code, code]);
    state.faults = { ...state.faults, eioRate: 0, enospcRate: 0 };
    assert.equal(save(life, storage, { entries: entries(5, 5, 1) })?.code, code);
  }
});

test('an open that hits EIO reports it', () => {
  const state = diskState(1, { eioRate: 1 });
  const { error } = tryOpen(new Incarnation(state));
  assert.equal(error?.code, 'disk-io');
});

test('limits and misuse: oversized entries, a full queue, a closed storage, rewriting committed entries', () => {
  const life = new Incarnation(diskState());
  const { storage } = open(life, 'raft', { pendingOpsMax: 3 });
  const huge = {
    term: 1,
    index: 1,
    type: 'normal' as const,
    data: new Uint8Array(33 * 1024 * 1024),
  };
  assert.equal(save(life, storage, { entries: [huge] })?.code, 'bad-input');
  const codes: (string | undefined)[] = [];
  for (let i = 1; i <= 5; i++)
    storage.save({ entries: entries(i, i, 1) }, (e) => codes.push(e?.code));
  life.run();
  // The first save is in flight at once, so three more fit in the queue and the fifth does not.
  assert.deepEqual(codes, ['queue-full', undefined, undefined, undefined, undefined]);
  save(life, storage, { hardState: hardState(1, '', 4) });
  assert.throws(() => storage.save({ entries: entries(4, 4, 2) }, () => undefined), AssertionError);
  assert.throws(() => storage.save({ entries: entries(7, 7, 1) }, () => undefined), AssertionError);
  assert.throws(
    () => storage.save({ hardState: hardState(0, '', 4) }, () => undefined),
    AssertionError,
  );
  settle(life, (done) => storage.close(done));
  assert.equal(save(life, storage, {})?.code, 'closed');
});

/** saveSnapshotOfLog of a whole snapshot, its data split in two pieces (as a job gives it). */
function saveOfLog(storage: RaftStorage, snapshot: Snapshot, done: StorageDone): void {
  const half = snapshot.data.length >> 1;
  const pieces = [snapshot.data.subarray(0, half), snapshot.data.subarray(half)];
  storage.saveSnapshotOfLog(snapshot.metadata, pieces, (error, saved) => {
    if (error === undefined) {
      assert.ok(saved !== undefined, 'done gets the snapshot');
      assert.deepEqual(saved.metadata, snapshot.metadata);
      assert.deepEqual(joinedBytes(saved.data), joinedBytes(snapshot.data), 'done gets the data');
    }
    done(error);
  });
}

test('saveSnapshotOfLog: saves go on while the file is written; a crash at any step loses no acknowledged entry', () => {
  // Ordered completion is what saveSnapshot promises; saveSnapshotOfLog does not: a save
  // issued after it completes first, so a big file's fsync cannot stall the WAL.
  {
    const state = diskState();
    const life = new Incarnation(state);
    const { storage } = open(life);
    save(life, storage, { hardState: hardState(1, 'a', 8), entries: entries(1, 10, 1) });
    const order: string[] = [];
    saveOfLog(storage, snapshotAt(8, 1), (e) => order.push(`snapshot ${e?.message ?? ''}`));
    storage.save({ entries: entries(11, 11, 1) }, (e) => order.push(`save ${e?.message ?? ''}`));
    life.run();
    assert.deepEqual(order, ['save ', 'snapshot ']);
    // A snapshot of entries the log does not hold committed is refused.
    assert.equal(
      settle(life, (done) => saveOfLog(storage, snapshotAt(11, 1), done))?.code,
      'bad-input',
    );
    assert.equal(
      settle(life, (done) => storage.compact(8, done)),
      undefined,
    );
    // A close waits for a snapshot file in progress (5 MiB: encoded over several turns) and
    // its marker: nothing after it.
    save(life, storage, { hardState: hardState(1, 'a', 10) });
    const closing: string[] = [];
    const big = { ...snapshotAt(10, 1), data: new Uint8Array(5 * 1024 * 1024).fill(9) };
    saveOfLog(storage, big, (e) => closing.push(`snapshot ${e?.message ?? ''}`));
    storage.close((e) => closing.push(`close ${e?.message ?? ''}`));
    life.run();
    assert.deepEqual(closing, ['snapshot ', 'close ']);
    state.crash();
    const reopened = new Incarnation(state);
    assert.equal(open(reopened).recovered.snapshot?.metadata.index, 10);
    assert.ok(
      !reopened.log.lines.some((line) => line.message.includes('marker was lost')),
      'the marker was written before the close',
    );
  }
  for (let step = 0; step < 60; step++) {
    const state = diskState(step);
    let life = new Incarnation(state);
    const { storage } = open(life, 'raft', { segmentSizeBytesMax: 200 });
    save(life, storage, { hardState: hardState(1, 'a', 8), entries: entries(1, 10, 1) });
    let snapshotDone = false;
    saveOfLog(storage, snapshotAt(8, 1), (e) => {
      assert.equal(e, undefined);
      snapshotDone = true;
    });
    const acked: number[] = [];
    for (let i = 11; i <= 14; i++)
      storage.save({ hardState: hardState(1, 'a', i), entries: entries(i, i, 1) }, (e) => {
        if (e === undefined) acked.push(i);
      });
    life.run(step);
    state.crash();
    life = new Incarnation(state);
    const reopened = tryOpen(life);
    assert.equal(reopened.error, undefined, `step ${step}: ${reopened.error?.message}`);
    const r = reopened.recovered!;
    const snapshotIndex = r.snapshot?.metadata.index ?? 0;
    assert.ok(
      snapshotIndex === 0 || snapshotIndex === 8,
      `step ${step}: snapshot ${snapshotIndex}`,
    );
    if (snapshotDone) assert.equal(snapshotIndex, 8, `step ${step}: acknowledged snapshot lost`);
    const last = Math.max(snapshotIndex, ...r.entries.map((e) => e.index));
    assert.ok(last >= Math.max(10, ...acked), `step ${step}: acknowledged entries lost (${last})`);
    assert.deepEqual(
      shape(r.entries),
      shape(entries(snapshotIndex + 1, last, 1)),
      `step ${step}: the log after the snapshot is whole`,
    );
  }
});

test('a snapshot file built in steps has the bytes encodeRecord writes for it', () => {
  for (const size of [0, 1, 7, 1000, 70_000]) {
    const data = Uint8Array.from({ length: size }, (_, i) => (i * 31 + 7) & 0xff);
    const snapshot: Snapshot = {
      metadata: {
        index: 12,
        term: 3,
        confState: {
          voters: [nodeId('a'), nodeId('b')],
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        },
      },
      data,
    };
    const { index, term, confState } = snapshot.metadata;
    const whole = encodeRecord(RecordType.snapshot, [formatVersion, index, term, confState, data]);
    assert.deepEqual(encodeSnapshotFile(snapshot, 1 << 30), whole);
    // The data in pieces, split anywhere: the same file, and data() is the data joined.
    const pieces = [
      data.subarray(0, size / 3),
      data.subarray(size / 3, size / 2),
      data.subarray(size / 2),
    ];
    for (const bytesPerStep of [1, 999, 1 << 20]) {
      const job = snapshotFileJob(snapshot.metadata, pieces, 1 << 30, bytesPerStep);
      let steps = 1;
      while (!job.step()) steps++;
      assert.deepEqual(concatBytes(job.result()), whole, `size ${size}, ${bytesPerStep} per step`);
      // The data pieces themselves, not copies: nothing as large as the snapshot is allocated.
      assert.deepEqual(job.result().slice(1), pieces);
      assert.ok(
        job
          .result()
          .slice(1)
          .every((piece, i) => piece === pieces[i]),
      );
      assert.deepEqual(joinedBytes(job.data()), data);
      assert.equal(steps, Math.max(1, Math.ceil(size / bytesPerStep)));
    }
  }
  assert.throws(
    () =>
      snapshotFileJob({ index: 1, term: 1, confState: emptyConf }, [new Uint8Array(100)], 50, 10),
    /exceeds 50/,
  );
});

const emptyConf = {
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};

test('saveSnapshotOfLog paces its steps with a clock: a step of d ms is followed by a pause of 3d', () => {
  const life = new Incarnation(diskState());
  // A clock that advances 4 ms at every reading, and timers that record the delays asked.
  let now = 0;
  const delays: number[] = [];
  const env = {
    ...life.env,
    clock: { monotonicMs: () => (now += 4), wallMs: () => now },
    timers: {
      set: (delayMs: number, fn: () => void) => {
        delays.push(delayMs);
        return life.env.timers.set(delayMs, fn);
      },
      cancel: (id: Parameters<typeof life.env.timers.cancel>[0]) => life.env.timers.cancel(id),
    },
  };
  let storage: RaftStorage | undefined;
  RaftStorage.open(env, 'raft', (error, opened) => {
    assert.equal(error, undefined);
    storage = opened;
  });
  life.run();
  save(life, storage!, { hardState: hardState(1, 'a', 8), entries: entries(1, 8, 1) });
  delays.length = 0;
  // 2 MiB of data: four steps of 512 KiB, so three pauses before the write.
  const big = { ...snapshotAt(8, 1), data: new Uint8Array(2 * 1024 * 1024).fill(5) };
  assert.equal(
    settle(life, (done) => saveOfLog(storage!, big, done)),
    undefined,
  );
  assert.deepEqual(delays, [12, 12, 12]);
});
