// Goal: the simulated disk keeps exactly what a POSIX disk keeps across a crash — fsynced
// bytes survive, unsynced bytes do not (or survive as a torn prefix), a new file survives
// only after its directory is fsynced, a rename reverts without it — and it injects EIO,
// ENOSPC and bit flips at the configured rates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../src/core/prng.js';
import { SimDisk, SimDiskState, quietDisk } from '../src/sim/disk.js';
import type { DiskFile } from '../src/env/env.js';
import type { DiskError } from '../src/core/errors.js';

/** A disk whose completions run at once, in order (the world is not needed here). */
function disk(seed = 1): { state: SimDiskState; disk: SimDisk } {
  const state = new SimDiskState(seededRandom(seed));
  return { state, disk: new SimDisk(state, (_delay, fn) => fn()) };
}

function open(d: SimDisk, path: string): DiskFile {
  let file: DiskFile | undefined;
  d.open(path, (e, f) => {
    assert.equal(e, undefined);
    file = f;
  });
  return file!;
}

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);
const ok = (e: DiskError | undefined): void => assert.equal(e, undefined);

test('crash keeps synced bytes and drops unsynced ones', () => {
  const { state, disk: d } = disk();
  const f = open(d, 'wal');
  d.syncDir('', ok);
  f.append(bytes(1, 2, 3), ok);
  f.sync(ok);
  f.append(bytes(4, 5), ok);
  state.crash();
  assert.deepEqual([...state.durableBytes('wal')!], [1, 2, 3]);
  d.readFile('wal', (e, data) => assert.deepEqual([...data!], [1, 2, 3]));
});

test('overwrites and truncates revert to the durable bytes', () => {
  const { state, disk: d } = disk();
  const f = open(d, 'hard');
  d.syncDir('', ok);
  f.append(bytes(1, 2, 3, 4), ok);
  f.sync(ok);
  f.write(1, bytes(9, 9), ok);
  f.truncate(2, ok);
  f.append(bytes(7, 7, 7), ok);
  assert.equal(f.size(), 5);
  state.crash();
  d.readFile('hard', (_e, data) => assert.deepEqual([...data!], [1, 2, 3, 4]));
});

test('a new file vanishes in a crash unless its directory was fsynced', () => {
  const { state, disk: d } = disk();
  const f = open(d, 'a');
  f.append(bytes(1), ok);
  f.sync(ok);
  state.crash();
  d.readFile('a', (e) => assert.equal(e?.code, 'not-found'));

  const g = open(d, 'b');
  g.append(bytes(1), ok);
  g.sync(ok);
  d.syncDir('', ok);
  state.crash();
  d.readFile('b', (e, data) => {
    assert.equal(e, undefined);
    assert.deepEqual([...data!], [1]);
  });
});

test('a rename reverts in a crash unless the directory was fsynced', () => {
  const { state, disk: d } = disk();
  d.mkdir('snap', ok);
  const old = open(d, 'snap/state');
  old.append(bytes(1), ok);
  old.sync(ok);
  d.syncDir('snap', ok);
  const tmp = open(d, 'snap/state.tmp');
  tmp.append(bytes(2), ok);
  tmp.sync(ok);
  d.rename('snap/state.tmp', 'snap/state', ok);
  state.crash();
  d.readFile('snap/state', (_e, data) => assert.deepEqual([...data!], [1]));
  d.list('snap', (_e, names) => assert.deepEqual(names, ['state']));

  const tmp2 = open(d, 'snap/state.tmp');
  tmp2.append(bytes(3), ok);
  tmp2.sync(ok);
  d.rename('snap/state.tmp', 'snap/state', ok);
  d.syncDir('snap', ok);
  state.crash();
  d.readFile('snap/state', (_e, data) => assert.deepEqual([...data!], [3]));
});

test('a torn crash keeps a strict prefix of the unsynced appends', () => {
  let tornSeen = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const { state, disk: d } = disk(seed);
    state.faults = { ...quietDisk, tornRate: 1 };
    const f = open(d, 'log');
    d.syncDir('', ok);
    f.append(bytes(1, 1), ok);
    f.sync(ok);
    f.append(bytes(2, 2, 2, 2), ok);
    f.append(bytes(3, 3, 3, 3), ok);
    state.crash();
    const after = [...state.durableBytes('log')!];
    const full = [1, 1, 2, 2, 2, 2, 3, 3, 3, 3];
    assert.ok(after.length >= 2 && after.length < full.length, `kept ${after.length}`);
    assert.deepEqual(after, full.slice(0, after.length), 'a prefix, never other bytes');
    if (after.length !== 2 && after.length !== 6) tornSeen++;
  }
  assert.ok(tornSeen > 50, `mid-record tears seen ${tornSeen}`);
});

test('EIO and ENOSPC come at their configured rates; a failed write changes nothing', () => {
  const { state, disk: d } = disk(5);
  state.faults = { ...quietDisk, eioRate: 0.05, enospcRate: 0.1 };
  const f = open(d, 'x');
  let eio = 0;
  let enospc = 0;
  const n = 20_000;
  for (let i = 0; i < n; i++) {
    const before = f.size();
    f.append(bytes(1), (e) => {
      if (e?.code === 'disk-io') eio++;
      if (e?.code === 'disk-full') enospc++;
      if (e !== undefined) assert.equal(f.size(), before);
    });
  }
  assert.ok(Math.abs(eio / n - 0.05) < 0.01, `eio ${eio / n}`);
  // ENOSPC is drawn only when EIO was not.
  assert.ok(Math.abs(enospc / (n - eio) - 0.1) < 0.015, `enospc ${enospc / (n - eio)}`);
  assert.equal(f.size(), n - eio - enospc);
});

test('a bit flip changes exactly one bit of one file', () => {
  const { state, disk: d } = disk(11);
  const f = open(d, 'data');
  const original = new Uint8Array(64).fill(0xaa);
  f.append(original, ok);
  f.sync(ok);
  d.syncDir('', ok);
  const victim = state.flipBit();
  assert.match(victim!, /^data@\d+$/);
  d.readFile('data', (_e, data) => {
    let bits = 0;
    for (let i = 0; i < 64; i++) {
      let x = data![i]! ^ original[i]!;
      while (x) {
        bits += x & 1;
        x >>= 1;
      }
    }
    assert.equal(bits, 1);
  });
});
