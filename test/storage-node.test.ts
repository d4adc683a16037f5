// Goal: RaftStorage works over the real file system (NodeDisk, real fsync and rename):
// it writes, rotates, snapshots and compacts, closes, reopens and recovers the same state,
// and cuts a garbage tail appended behind its back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { ChorusError } from '../src/core/errors.js';
import { nodeId } from '../src/core/ids.js';
import { silentLogger } from '../src/env/env.js';
import { NodeDisk } from '../src/env/node/disk.js';
import { createNodeEnv, type NodeEnv } from '../src/env/node/index.js';
import { RaftStorage, type Recovered, type SaveUpdate } from '../src/storage/index.js';
import { entries, hardState, recordingLogger } from './storage-helpers.js';

const openAsync = (disk: NodeDisk, log = recordingLogger()) =>
  new Promise<{ storage: RaftStorage; recovered: Recovered }>((resolve, reject) =>
    RaftStorage.open(
      { disk, log },
      'raft',
      (error, storage, recovered) =>
        error !== undefined ? reject(error) : resolve({ storage: storage!, recovered: recovered! }),
      { segmentSizeBytesMax: 4096 },
    ),
  );

const call = (run: (done: (e: ChorusError | undefined) => void) => void) =>
  new Promise<void>((resolve, reject) => run((e) => (e === undefined ? resolve() : reject(e))));

test('writes, closes, reopens and recovers over the real disk', async () => {
  const root = mkdtempSync(join(tmpdir(), 'chorus-storage-'));
  try {
    const disk = new NodeDisk(root);
    const { storage, recovered } = await openAsync(disk);
    assert.deepEqual(recovered.entries, []);
    // Waves of saves at once: group commit batches each wave into a few fsyncs.
    const saves: Promise<void>[] = [];
    for (let i = 1; i <= 200; i++) {
      const update: SaveUpdate = {
        hardState: hardState(1 + Math.floor(i / 100), 'n1', i - 1),
        entries: entries(i, i, 1 + Math.floor(i / 100), 64),
      };
      saves.push(call((done) => storage.save(update, done)));
      if (i % 20 === 0) await Promise.all(saves.splice(0));
    }
    assert.ok(storage.counters.batches < 200, `batches ${storage.counters.batches}`);
    assert.ok(storage.counters.segments > 1, 'rotated');
    const snapshot = {
      metadata: {
        index: 150,
        term: 2,
        confState: {
          voters: [nodeId('n1')],
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        },
      },
      data: new Uint8Array([1, 2, 3]),
    };
    await call((done) => storage.saveSnapshot(snapshot, done));
    await call((done) => storage.compact(150, done));
    assert.ok(storage.counters.segmentsRemoved > 0, 'compacted');
    await call((done) => storage.close(done));
    assert.deepEqual(readdirSync(root + '/raft').sort(), ['hardstate', 'snapshot', 'wal']);

    const walDir = join(root, 'raft', 'wal');
    const last = readdirSync(walDir).sort().at(-1)!;
    appendFileSync(join(walDir, last), new Uint8Array([7, 0, 0, 0, 1, 2, 3, 4, 2, 9]));

    const log = recordingLogger();
    const again = await openAsync(disk, log);
    assert.deepEqual(again.recovered.snapshot, snapshot);
    assert.deepEqual(again.recovered.entries, [
      ...entries(151, 199, 2, 64),
      ...entries(200, 200, 3, 64),
    ]);
    assert.deepEqual(again.recovered.hardState, hardState(3, 'n1', 199));
    assert.ok(log.lines.some((l) => l.level === 'warn' && /torn tail/.test(l.message)));
    assert.equal(again.storage.counters.truncatedTailBytes, 10);
    await call((done) => again.storage.save({ entries: entries(201, 201, 3) }, done));
    await call((done) => again.storage.close(done));
    const third = await openAsync(disk);
    assert.equal(third.recovered.entries.at(-1)?.index, 201);
    await call((done) => third.storage.close(done));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('NodeDisk accepts a relative root; createNodeEnv draws a seed when given none', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-rel-'));
  try {
    const disk = new NodeDisk(relative(process.cwd(), dir));
    await new Promise<void>((resolve, reject) =>
      disk.mkdir('sub', (error) => (error === undefined ? resolve() : reject(error))),
    );
    const made = await new Promise<NodeEnv>((resolve, reject) =>
      createNodeEnv(
        {
          self: nodeId('a'),
          listen: { host: '127.0.0.1', port: 0 },
          peers: new Map(),
          dataDir: join(dir, 'env'),
          log: silentLogger,
        },
        (error, env) => (env === undefined ? reject(error ?? new Error('no env')) : resolve(env)),
      ),
    );
    await new Promise<void>((resolve) => made.close(resolve));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
