// Goal: `chorus snapshot restore` turns a snapshot file into the data directories of a new
// cluster that holds the file's KV state — every key's retained history, the revision, the
// compact revision, the leases — under a fresh membership made of --initial-cluster, as
// etcd's restore does. First without servers: a restored directory opens (as the server
// opens it) to exactly the file's state and the new member table; members restored from one
// file with one set of flags get identical Raft state; a damaged file, a lying file, an
// existing directory and flags that disagree are refused with a reason and write nothing.
// Then live: a 3-process cluster is written to (a leased key, several revisions of one
// key, a delete, a compaction), saved, stopped, restored into three new members on new
// ports, and started; every member serves the same history at every retained revision, a
// new write gets the next revision, and the member list is exactly the new members.
import { joinedBytes } from '../src/core/bytes.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdClient } from '../src/client/client.js';
import type { KeyValue, RangeResponse, WatchResponse } from '../src/client/types.js';
import { encode } from '../src/core/codec.js';
import { NodeDisk } from '../src/env/node/index.js';
import { LeaseTable } from '../src/kv/lease.js';
import { KvMachine, type KvCommand } from '../src/kv/machine.js';
import { openDataDir, raftDirName } from '../src/server/datadir.js';
import { founderIdentity, hexId, memberId } from '../src/server/ids.js';
import { ClusterMachine, MemberTable } from '../src/server/membership.js';
import { encodeSnapshotFile, type SnapshotMeta } from '../src/server/snapshot-file.js';
import { RaftStorage, type Recovered } from '../src/storage/index.js';
import {
  chorusBin,
  freePorts,
  serverArgs,
  spawnChorus,
  startCluster,
  stopCluster,
  waitForLeader,
  type Cluster,
  type Member,
  chorusInProcess as chorus,
} from './server-helpers.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const utf8 = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/**
 * A machine that has seen a lease, a leased key, four revisions of one key, a delete and a
 * compaction: revision 8, compacted at 4.
 */
function writtenMachine(): KvMachine {
  const machine = new KvMachine(new LeaseTable(1));
  const commands: KvCommand[] = [
    { t: 'grant', id: 77, ttl: 600 },
    { t: 'put', r: { key: text('leased'), value: text('L'), lease: 77 } },
    { t: 'put', r: { key: text('v'), value: text('v1') } },
    { t: 'put', r: { key: text('v'), value: text('v2') } },
    { t: 'put', r: { key: text('gone'), value: text('x') } },
    { t: 'compact', revision: 4 },
    { t: 'put', r: { key: text('v'), value: text('v3') } },
    { t: 'del', r: { key: text('gone') } },
    { t: 'put', r: { key: text('v'), value: text('v4') } },
  ];
  machine.apply(
    commands.map((c, i) => ({ term: 2, index: i + 10, type: 'normal', data: encode(c) })),
  );
  assert.equal(machine.revision(), 8);
  assert.equal(machine.compactRevision(), 4);
  return machine;
}

function metaOf(machine: KvMachine): SnapshotMeta {
  return {
    member: 'old1',
    memberId: '1234',
    clusterId: '5678',
    raftAppliedIndex: 18,
    raftAppliedTerm: 2,
    revision: machine.revision(),
    compactRevision: machine.compactRevision(),
    takenAtMs: 1_700_000_000_000,
    etcdVersion: '3.5.0',
  };
}

const cluster3 = 'a=http://127.0.0.1:12380,b=http://127.0.0.1:12480,c=http://127.0.0.1:12580';

function restoreArgs(file: string, dir: string, name: string, ...more: string[]): string[] {
  return [
    'snapshot',
    'restore',
    file,
    '--data-dir',
    dir,
    '--name',
    name,
    '--initial-cluster',
    cluster3,
    '--initial-cluster-token',
    'tok',
    ...more,
  ];
}

/** Opens a data directory as the server does: its identity, then its Raft storage. */
function openRestored(
  dir: string,
  name: string,
): Promise<{ identity: ReturnType<typeof founderIdentity>; recovered: Recovered }> {
  const opened = openDataDir(dir, name, 'tok');
  assert.ok(opened.identity !== undefined, 'a restored directory records its identity');
  const identity = opened.identity;
  const env = { disk: new NodeDisk(dir), log: quietLog };
  return new Promise((resolve, reject) => {
    RaftStorage.open(env, raftDirName, (error, storage, recovered) => {
      if (error !== undefined || storage === undefined || recovered === undefined)
        return reject(error ?? new Error('no storage'));
      storage.close(() => {
        opened.release();
        resolve({ identity, recovered });
      });
    });
  });
}

const quietLog = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => quietLog,
};

/** Every key and value at `revision` of a machine, as "key=value@mod" lines. */
function stateAt(machine: KvMachine, revision: number): string[] {
  const all = new Uint8Array([0]);
  return machine
    .range({ key: all, rangeEnd: all, revision })
    .kvs.map((kv) => `${utf8(kv.key)}=${utf8(kv.value)}@${kv.modRevision}`);
}

/** A new temporary directory holding `backup.snap`, a snapshot file of writtenMachine(). */
function backupIn(prefix: string): { dir: string; file: string; machine: KvMachine } {
  const dir = fs.mkdtempSync(join(tmpdir(), prefix));
  const machine = writtenMachine();
  const file = join(dir, 'backup.snap');
  fs.writeFileSync(file, encodeSnapshotFile(metaOf(machine), machine.snapshot()));
  return { dir, file, machine };
}

/** Nothing but `names` in `dir`: a refused restore left no staging directory behind. */
function assertOnly(dir: string, names: string[], why: string): void {
  assert.deepEqual(fs.readdirSync(dir).sort(), [...names].sort(), why);
}

describe('snapshot restore into a data directory, without servers', () => {
  let dir: string;
  let file: string;
  let machine: KvMachine;

  before(() => ({ dir, file, machine } = backupIn('chorus-restore-unit-')));

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a restored directory opens to the file’s KV state and the new members only', async () => {
    const target = join(dir, 'a');
    const ran = await chorus(...restoreArgs(file, target, 'a'));
    assert.equal(ran.code, 0, ran.err.join('\n'));
    assert.match(
      ran.out[0]!,
      /^Restored snapshot .*backup\.snap into .*\/a: revision 8 \(compacted at 4\), 2 keys, 1 lease$/,
    );
    const id = hexId(memberId('tok', 'a'));
    assert.match(
      ran.out[1]!,
      new RegExp(`^Member a \\(id ${id}\\) of cluster [0-9a-f]+; members: `),
    );
    assert.match(ran.out[2]!, /^Start it with: chorus server --name a --data-dir /);

    const { identity, recovered } = await openRestored(target, 'a');
    assert.deepEqual(identity, founderIdentity('tok', 'a'), 'the identity of a founder named a');
    const snapshot = recovered.snapshot!;
    assert.deepEqual(
      {
        index: snapshot.metadata.index,
        term: snapshot.metadata.term,
        voters: snapshot.metadata.confState.voters,
        learners: snapshot.metadata.confState.learners,
        hardState: recovered.hardState,
        entries: recovered.entries.length,
      },
      {
        index: 3,
        term: 1,
        voters: ['a', 'b', 'c'],
        learners: [],
        hardState: { term: 1, vote: '', commit: 3 },
        entries: 0,
      },
      "etcd's choice: the snapshot ends where a new cluster's founding entries end",
    );

    // The server's state machine, restored from that snapshot as the driver does at start.
    const table = new MemberTable();
    const restored = new KvMachine(new LeaseTable(1));
    new ClusterMachine(restored, table, () => {}).restore(joinedBytes(snapshot.data));
    assert.deepEqual(
      table.list().map((m) => [m.name, m.node, m.peerUrls, m.isLearner, m.id]),
      [
        ['a', 'a', ['http://127.0.0.1:12380'], false, memberId('tok', 'a')],
        ['b', 'b', ['http://127.0.0.1:12480'], false, memberId('tok', 'b')],
        ['c', 'c', ['http://127.0.0.1:12580'], false, memberId('tok', 'c')],
      ].sort((x, y) => ((x[4] as bigint) < (y[4] as bigint) ? -1 : 1)),
      'exactly the new members; the old member old1 is gone',
    );
    assert.ok(table.clusterId !== '' && table.clusterId !== '5678', 'a new cluster id');
    assert.equal(restored.revision(), 8);
    assert.equal(restored.compactRevision(), 4);
    for (let revision = 4; revision <= 8; revision++)
      assert.deepEqual(stateAt(restored, revision), stateAt(machine, revision), `at ${revision}`);
    assert.throws(() => restored.range({ key: text('v'), revision: 3 }), /compacted/);
    assert.deepEqual(restored.leases.snapshot(), machine.leases.snapshot(), 'the lease table');
  });

  test("the old cluster's alarms are not carried into the new one", async () => {
    const alarmed = writtenMachine();
    alarmed.apply([
      {
        term: 2,
        index: 30,
        type: 'normal',
        data: encode({ t: 'alarm', activate: true, member: '1234', alarm: 'NOSPACE' }),
      },
    ]);
    assert.equal(alarmed.alarms.length, 1);
    // A directory of its own: the other cases check what the shared one holds.
    const own = fs.mkdtempSync(join(tmpdir(), 'chorus-restore-alarm-'));
    try {
      const alarmedFile = join(own, 'alarmed.snap');
      fs.writeFileSync(alarmedFile, encodeSnapshotFile(metaOf(alarmed), alarmed.snapshot()));
      const target = join(own, 'restored');
      const ran = await chorus(...restoreArgs(alarmedFile, target, 'a'));
      assert.equal(ran.code, 0, ran.err.join('\n'));
      assert.ok(
        ran.out.includes('Alarms not carried into the new cluster: NOSPACE of member 1234'),
        ran.out.join('\n'),
      );
      const { recovered } = await openRestored(target, 'a');
      const restored = new KvMachine(new LeaseTable(1));
      new ClusterMachine(restored, new MemberTable(), () => {}).restore(
        joinedBytes(recovered.snapshot!.data),
      );
      assert.deepEqual(restored.alarms, []);
      assert.deepEqual(stateAt(restored, 8), stateAt(machine, 8), 'the KV state itself is whole');
    } finally {
      fs.rmSync(own, { recursive: true, force: true });
    }
  });

  test('members restored from one file with one set of flags start from identical Raft state', async () => {
    for (const name of ['b', 'c']) {
      const ran = await chorus(...restoreArgs(file, join(dir, name), name));
      assert.equal(ran.code, 0, ran.err.join('\n'));
    }
    // The same members listed in another order make no difference either.
    const reordered = join(dir, 'c-reordered');
    const flag = cluster3.split(',').reverse().join(',');
    const ran = await chorus(
      ...restoreArgs(file, reordered, 'c').map((a) => (a === cluster3 ? flag : a)),
    );
    assert.equal(ran.code, 0, ran.err.join('\n'));
    const states = await Promise.all(['a', 'b', 'c'].map((n) => openRestored(join(dir, n), n)));
    states.push(await openRestored(reordered, 'c'));
    for (const state of states.slice(1))
      assert.deepEqual(state.recovered, states[0]!.recovered, 'same snapshot, hard state, log');
    fs.rmSync(reordered, { recursive: true });
    assert.deepEqual(
      states.map((s) => s.identity.nodeId),
      ['a', 'b', 'c', 'c'],
    );
  });

  test('a damaged or lying file is refused and nothing is written', async () => {
    const good = fs.readFileSync(file);
    const flipped = Buffer.from(good);
    flipped[40]! ^= 0x01;
    fs.writeFileSync(join(dir, 'flipped.snap'), flipped);
    const target = join(dir, 'new');
    const bad = await chorus(...restoreArgs(join(dir, 'flipped.snap'), target, 'a'));
    assert.equal(bad.code, 1);
    assert.match(bad.err.join('\n'), /^Error: snapshot file: SHA-256 mismatch/);

    const lying = encodeSnapshotFile({ ...metaOf(machine), revision: 9 }, machine.snapshot());
    fs.writeFileSync(join(dir, 'lying.snap'), lying);
    const lied = await chorus(...restoreArgs(join(dir, 'lying.snap'), target, 'a'));
    assert.equal(lied.code, 1);
    assert.match(lied.err.join('\n'), /metadata says revision 9 .* the state holds 8/);

    fs.writeFileSync(join(dir, 'garbage.snap'), encodeSnapshotFile(metaOf(machine), text('junk')));
    const garbage = await chorus(...restoreArgs(join(dir, 'garbage.snap'), target, 'a'));
    assert.equal(garbage.code, 1);
    assert.match(garbage.err.join('\n'), /the KV state does not decode/);

    const missing = await chorus(...restoreArgs(join(dir, 'none.snap'), target, 'a'));
    assert.equal(missing.code, 1);
    assert.match(missing.err.join('\n'), /no such file/);
    assertOnly(
      dir,
      ['a', 'b', 'c', 'backup.snap', 'flipped.snap', 'lying.snap', 'garbage.snap'],
      'no data directory and no staging directory',
    );
  });

  test('--skip-hash-check restores a file whose trailer alone is wrong', async () => {
    const good = fs.readFileSync(file);
    const badTrailer = Buffer.from(good);
    badTrailer[badTrailer.length - 1]! ^= 0x01;
    fs.writeFileSync(join(dir, 'trailer.snap'), badTrailer);
    const target = join(dir, 'skipped');
    const refused = await chorus(...restoreArgs(join(dir, 'trailer.snap'), target, 'a'));
    assert.equal(refused.code, 1);
    assert.ok(!fs.existsSync(target));
    const ran = await chorus(
      ...restoreArgs(join(dir, 'trailer.snap'), target, 'a', '--skip-hash-check'),
    );
    assert.equal(ran.code, 0, ran.err.join('\n'));
    const { recovered } = await openRestored(target, 'a');
    assert.equal(recovered.snapshot?.metadata.index, 3);
    fs.rmSync(target, { recursive: true });
    fs.rmSync(join(dir, 'trailer.snap'));
  });

  test('an existing non-empty directory is refused and left as it was; an empty one is used', async () => {
    const before = fs.readdirSync(join(dir, 'a')).sort();
    const versionBefore = fs.readFileSync(join(dir, 'a', 'version.json'), 'utf8');
    const again = await chorus(...restoreArgs(file, join(dir, 'a'), 'a'));
    assert.equal(again.code, 1);
    assert.match(again.err.join('\n'), /already exists and is not empty \(it holds /);
    assert.deepEqual(fs.readdirSync(join(dir, 'a')).sort(), before);
    assert.equal(fs.readFileSync(join(dir, 'a', 'version.json'), 'utf8'), versionBefore);

    const empty = join(dir, 'empty');
    fs.mkdirSync(empty);
    const ran = await chorus(...restoreArgs(file, empty, 'a'));
    assert.equal(ran.code, 0, ran.err.join('\n'));
    assert.ok(fs.existsSync(join(empty, raftDirName)));
    fs.rmSync(empty, { recursive: true });
  });

  test('flags that disagree are refused as usage errors and nothing is written', async () => {
    const target = join(dir, 'flags');
    const notListed = await chorus(...restoreArgs(file, target, 'z'));
    assert.equal(notListed.code, 2);
    assert.match(
      notListed.err.join('\n'),
      /--initial-cluster does not list this member's name "z"/,
    );
    const otherUrl = await chorus(
      ...restoreArgs(file, target, 'a', '--initial-advertise-peer-urls', 'http://127.0.0.1:9'),
    );
    assert.equal(otherUrl.code, 2);
    assert.match(
      otherUrl.err.join('\n'),
      /--initial-cluster has a=http:\/\/127\.0\.0\.1:12380 but missing from --initial-advertise-peer-urls=http:\/\/127\.0\.0\.1:9$/,
    );
    for (const bad of [
      ['--bump-revision', '5'],
      ['--mark-compacted'],
      ['--bump-revision', '0', '--mark-compacted'],
      ['--bump-revision', '-1', '--mark-compacted'],
      ['--bump-revision', 'lots', '--mark-compacted'],
    ]) {
      const refused = await chorus(...restoreArgs(file, target, 'a', ...bad));
      assert.equal(refused.code, 2, bad.join(' '));
      assert.match(refused.err.join('\n'), /--bump-revision|--mark-compacted/, bad.join(' '));
    }
    const past = await chorus(
      ...restoreArgs(file, target, 'a', '--bump-revision', String(2 ** 53 - 5), '--mark-compacted'),
    );
    assert.equal(past.code, 2);
    assert.match(past.err.join('\n'), /takes revision 8 past 9007199254740991/);
    const sameUrl = await chorus(
      ...restoreArgs(file, target, 'a', '--initial-advertise-peer-urls', 'http://127.0.0.1:12380'),
    );
    assert.equal(sameUrl.code, 0, sameUrl.err.join('\n'));
    fs.rmSync(target, { recursive: true });
    assertOnly(
      dir,
      ['a', 'b', 'c', 'backup.snap', 'flipped.snap', 'lying.snap', 'garbage.snap'],
      'nothing left by the refused restores',
    );
  });
});

describe('snapshot restore --bump-revision --mark-compacted, and leftovers of a killed restore', () => {
  let dir: string;
  let file: string;
  let machine: KvMachine;

  before(() => ({ dir, file, machine } = backupIn('chorus-restore-bump-')));

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** The KV machine a member restored into `target` starts with. */
  async function restoredMachine(target: string, name: string): Promise<KvMachine> {
    const { recovered } = await openRestored(target, name);
    const restored = new KvMachine(new LeaseTable(1));
    new ClusterMachine(restored, new MemberTable(), () => {}).restore(
      joinedBytes(recovered.snapshot!.data),
    );
    return restored;
  }

  test("etcdutl's bump: the revision moves N on, everything below it is compacted, values stay", async () => {
    const bump = ['--bump-revision', '100', '--mark-compacted'];
    const ran = await chorus(...restoreArgs(file, join(dir, 'a'), 'a', ...bump));
    assert.equal(ran.code, 0, ran.err.join('\n'));
    assert.match(ran.out.join('\n'), /: revision 8 \(compacted at 4\), 2 keys, 1 lease\n/);
    assert.match(
      ran.out.join('\n'),
      /Revision bumped by 100 to 108 and compacted there: the first write gets 109/,
    );
    const restored = await restoredMachine(join(dir, 'a'), 'a');
    assert.equal(restored.revision(), 108);
    assert.equal(restored.compactRevision(), 108);
    restored.store.checkInvariants();
    // Each live key keeps its value, create and mod revisions and version; the deleted key's
    // tombstone and every older version are gone, as etcd's compaction leaves them.
    assert.deepEqual(stateAt(restored, 108), stateAt(machine, 8));
    assert.equal(restored.store.keyCount, 2, 'no tombstone of the deleted key is kept');
    for (const revision of [8, 107])
      assert.throws(() => restored.range({ key: text('v'), revision }), /compacted/);
    assert.throws(() => restored.eventsBetween(9, 108, text('v'), undefined), /compacted/);
    assert.deepEqual(restored.eventsBetween(108, 108, text('v'), undefined), []);
    assert.deepEqual(restored.leases.snapshot(), machine.leases.snapshot(), 'the lease table');
    // The HashKV every restored member will agree on: each key's newest put only.
    assert.equal(restored.store.hashKv(0).compactRevision, 108);
    const [outcome] = restored.apply([
      {
        term: 2,
        index: 4,
        type: 'normal',
        data: encode({ t: 'put', r: { key: text('n'), value: text('1') } }),
      },
    ]);
    assert.deepEqual((outcome as { ok: { revision: number } }).ok.revision, 109);

    // Every member restored with the same flags starts from the same bytes.
    const other = await chorus(...restoreArgs(file, join(dir, 'b'), 'b', ...bump));
    assert.equal(other.code, 0, other.err.join('\n'));
    const [a, b] = await Promise.all([
      openRestored(join(dir, 'a'), 'a'),
      openRestored(join(dir, 'b'), 'b'),
    ]);
    assert.deepEqual(a.recovered, b.recovered);
  });

  test('a restore removes the staging directories a killed restore of its target left, and only those', async () => {
    // What a restore killed midway leaves: a staging directory with a dead process's LOCK.
    const seeded = await chorus(...restoreArgs(file, join(dir, 'seed'), 'c'));
    assert.equal(seeded.code, 0, seeded.err.join('\n'));
    const leftover = join(dir, 'c.restoring-AbC123');
    fs.renameSync(join(dir, 'seed'), leftover);
    fs.writeFileSync(join(leftover, 'LOCK'), '999999999\n');
    // One of a restore still running (its LOCK names a live process), and look-alikes.
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
    const running = join(dir, 'c.restoring-Run999');
    fs.mkdirSync(running);
    fs.writeFileSync(join(running, 'LOCK'), `${sleeper.pid}\n`);
    const lookalikes = ['c.restoring-toolong1', 'cc.restoring-AbC123', 'c.restoring-abc12'];
    for (const name of lookalikes) fs.mkdirSync(join(dir, name));
    fs.writeFileSync(join(dir, 'c.restoring-File01'), 'a file, not a directory');
    try {
      const refused = await chorus(...restoreArgs(file, join(dir, 'c'), 'nobody'));
      assert.equal(refused.code, 2);
      assert.ok(fs.existsSync(leftover), 'a refused restore removes nothing');

      const ran = await chorus(...restoreArgs(file, join(dir, 'c'), 'c'));
      assert.equal(ran.code, 0, ran.err.join('\n'));
      assert.match(ran.out[0]!, /^Removed .*\/c\.restoring-AbC123, left by an earlier restore of /);
      assert.ok(!fs.existsSync(leftover));
      assert.ok(fs.existsSync(running), "a running restore's staging directory is left to it");
      for (const name of [...lookalikes, 'c.restoring-File01'])
        assert.ok(fs.existsSync(join(dir, name)), `${name} is not this target's staging`);
      assert.equal((await restoredMachine(join(dir, 'c'), 'c')).revision(), 8);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });
});

/** A KeyValue as one comparable line. */
const line = (kv: KeyValue): string =>
  `${kv.key.toString()}=${kv.value.toString()} create=${kv.createRevision} mod=${kv.modRevision} version=${kv.version} lease=${kv.lease}`;

const allKeys = { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };

/**
 * Watches every key from `startRevision` on `endpoint` until a response satisfies `until`;
 * the responses up to it.
 */
function watchFrom(
  client: EtcdClient,
  endpoint: string,
  startRevision: number,
  until: (r: WatchResponse) => boolean,
): Promise<WatchResponse[]> {
  const stream = client.stream('Watch.Watch', endpoint);
  const responses: WatchResponse[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`watch from ${startRevision}: ${JSON.stringify(responses)}`));
    }, 10_000);
    stream.on('data', (r: WatchResponse) => {
      responses.push(r);
      if (!until(r)) return;
      clearTimeout(timer);
      stream.cancel();
      resolve(responses);
    });
    // Our own cancel ends the stream with CANCELLED.
    stream.on('error', () => {});
    stream.write({ createRequest: { ...allKeys, startRevision: String(startRevision) } });
  });
}

describe(
  'restore of a live cluster’s snapshot into a new 3-process cluster',
  { timeout: 150_000 },
  () => {
    let dir: string;
    let old: Cluster | undefined;
    let restored: Cluster | undefined;
    let clients: EtcdClient[] = [];
    const token = 'restored-cluster';

    /** What the old cluster held at every retained revision, and its lease. */
    let history: Map<number, string[]>;
    let snapshotRevision: number;
    let compactRevision: number;
    let leaseId: string;

    const clientFor = (endpoint: string): EtcdClient => {
      const client = new EtcdClient({
        endpoints: [endpoint],
        dialTimeoutMs: 3_000,
        commandTimeoutMs: 10_000,
      });
      clients.push(client);
      return client;
    };

    before(() => {
      dir = fs.mkdtempSync(join(tmpdir(), 'chorus-restore-live-'));
    });

    after(async () => {
      for (const c of clients) c.close();
      clients = [];
      if (old !== undefined) await stopCluster(old);
      if (restored !== undefined) await stopCluster(restored);
      fs.rmSync(dir, { recursive: true, force: true });
    });

    test('the old cluster is written to, saved and stopped', async () => {
      old = await startCluster(3);
      const leaderName = await waitForLeader(old, 20_000);
      const leader = old.members.find((m) => m.name === leaderName)!;
      const endpoint = `127.0.0.1:${leader.clientPort}`;
      const client = clientFor(endpoint);
      const grant = await client.call('Lease.LeaseGrant', { TTL: '600' });
      leaseId = String(grant.ID);
      const put = async (key: string, value: string, lease?: string): Promise<number> => {
        const r = await client.call('KV.Put', {
          key: Buffer.from(key),
          value: Buffer.from(value),
          ...(lease === undefined ? {} : { lease }),
        });
        return Number(r.header!.revision);
      };
      await put('app/leased', 'held by a lease', leaseId);
      for (let i = 1; i <= 5; i++) await put('app/counter', `v${i}`);
      await put('app/doomed', 'soon deleted');
      await put('app/other', 'o1');
      compactRevision = await put('app/counter', 'v6');
      await client.call('KV.Compact', { revision: String(compactRevision) });
      await client.call('KV.DeleteRange', { key: Buffer.from('app/doomed') });
      await put('app/counter', 'v7');
      snapshotRevision = await put('app/other', 'o2');

      history = new Map();
      for (let revision = compactRevision; revision <= snapshotRevision; revision++) {
        const r = await client.call('KV.Range', { ...allKeys, revision: String(revision) });
        history.set(revision, r.kvs.map(line));
      }
      assert.ok(history.get(snapshotRevision)!.some((l) => l.includes(`lease=${leaseId}`)));

      const file = join(dir, 'backup.snap');
      const saved = await chorus('snapshot', 'save', file, '--endpoints', endpoint);
      assert.equal(saved.code, 0, saved.err.join('\n'));
      const exits = await stopCluster(old);
      old = undefined;
      assert.ok(
        exits.every((e) => e.code === 0),
        JSON.stringify(exits),
      );
    });

    test('three new members restored from the file elect a leader', async () => {
      const ports = await freePorts(6);
      const names = ['r1', 'r2', 'r3'];
      const initialCluster = names
        .map((n, i) => `${n}=http://127.0.0.1:${ports[2 * i + 1]}`)
        .join(',');
      const root = join(dir, 'new');
      const members: Member[] = [];
      for (const [i, name] of names.entries()) {
        const dataDir = join(root, name);
        const peerUrl = `http://127.0.0.1:${ports[2 * i + 1]}`;
        // A separate process, as an operator runs it.
        const ran = spawnChorus([
          chorusBin,
          'snapshot',
          'restore',
          join(dir, 'backup.snap'),
          '--name',
          name,
          '--data-dir',
          dataDir,
          '--initial-cluster',
          initialCluster,
          '--initial-cluster-token',
          token,
          '--initial-advertise-peer-urls',
          peerUrl,
        ]);
        const exit = await ran.exited;
        assert.equal(exit.code, 0, ran.stderr.join('\n'));
        assert.match(ran.stderr.join('\n'), new RegExp(`revision ${snapshotRevision} `));
      }
      for (const [i, name] of names.entries()) {
        const clientPort = ports[2 * i]!;
        const peerPort = ports[2 * i + 1]!;
        const dataDir = join(root, name);
        const args = serverArgs(name, dataDir, clientPort, peerPort, initialCluster);
        const started = spawnChorus([...args, '--initial-cluster-token', token]);
        members.push({ name, clientPort, peerPort, dataDir, ...started });
      }
      restored = {
        root,
        members,
        initialCluster,
        endpoints: members.map((m) => `127.0.0.1:${m.clientPort}`),
      };
      const leader = await waitForLeader(restored, 20_000);
      assert.ok(names.includes(leader), `leader ${leader} is a new member`);
    });

    test('every member serves the snapshot’s history at every retained revision', async () => {
      assert.ok(restored !== undefined, 'the restored cluster runs');
      for (const endpoint of restored.endpoints) {
        const client = clientFor(endpoint);
        const now = await client.call('KV.Range', { ...allKeys, serializable: true });
        assert.equal(Number(now.header!.revision), snapshotRevision, `${endpoint}: the revision`);
        for (const [revision, expected] of history) {
          const r: RangeResponse = await client.call('KV.Range', {
            ...allKeys,
            revision: String(revision),
            serializable: true,
          });
          assert.deepEqual(r.kvs.map(line), expected, `${endpoint} at revision ${revision}`);
        }
        await assert.rejects(
          client.call('KV.Range', {
            key: Buffer.from('app/counter'),
            revision: String(compactRevision - 1),
          }),
          /required revision has been compacted/,
        );
        const ttl = await client.call('Lease.LeaseTimeToLive', { ID: leaseId, keys: true });
        assert.equal(String(ttl.grantedTTL), '600');
        assert.deepEqual(
          ttl.keys.map((k) => k.toString()),
          ['app/leased'],
        );
      }
    });

    test('a new write continues from the snapshot’s revision; members are exactly the new ones', async () => {
      assert.ok(restored !== undefined, 'the restored cluster runs');
      const client = clientFor(restored.endpoints[0]!);
      const put = await client.call('KV.Put', {
        key: Buffer.from('app/after'),
        value: Buffer.from('new'),
      });
      assert.equal(Number(put.header!.revision), snapshotRevision + 1);
      for (const endpoint of restored.endpoints) {
        const one = clientFor(endpoint);
        const got = await one.call('KV.Range', { key: Buffer.from('app/after') });
        assert.equal(got.kvs[0]?.value.toString(), 'new', endpoint);
        const list = await one.call('Cluster.MemberList', {});
        const members = list.members
          .map((m) => ({
            name: m.name,
            peerURLs: m.peerURLs,
            id: String(m.ID),
            isLearner: m.isLearner,
          }))
          .sort((a, b) => a.name.localeCompare(b.name));
        assert.deepEqual(
          members,
          restored.members.map((m) => ({
            name: m.name,
            peerURLs: [`http://127.0.0.1:${m.peerPort}`],
            id: memberId(token, m.name).toString(),
            isLearner: false,
          })),
          `${endpoint}: the member list`,
        );
        assert.equal(String(got.header!.clusterId), String(list.header!.clusterId));
      }
    });

    test('restored with --bump-revision --mark-compacted, a member continues N revisions on and refuses older ones', async () => {
      const bump = 1_000;
      const [clientPort, peerPort] = (await freePorts(2)) as [number, number];
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const dataDir = join(dir, 'bumped', 'q1');
      const ran = await chorus(
        'snapshot',
        'restore',
        join(dir, 'backup.snap'),
        '--name',
        'q1',
        '--data-dir',
        dataDir,
        '--initial-cluster',
        `q1=${peerUrl}`,
        '--initial-cluster-token',
        'bumped',
        '--bump-revision',
        String(bump),
        '--mark-compacted',
      );
      assert.equal(ran.code, 0, ran.err.join('\n'));
      const args = serverArgs('q1', dataDir, clientPort, peerPort, `q1=${peerUrl}`);
      const started = spawnChorus([...args, '--initial-cluster-token', 'bumped']);
      const member: Member = { name: 'q1', clientPort, peerPort, dataDir, ...started };
      const bumped: Cluster = {
        root: join(dir, 'bumped'),
        members: [member],
        initialCluster: `q1=${peerUrl}`,
        endpoints: [`127.0.0.1:${clientPort}`],
      };
      try {
        await waitForLeader(bumped, 20_000);
        const endpoint = bumped.endpoints[0]!;
        const client = clientFor(endpoint);
        const bumpedRevision = snapshotRevision + bump;
        const now = await client.call('KV.Range', allKeys);
        assert.equal(Number(now.header!.revision), bumpedRevision);
        assert.deepEqual(now.kvs.map(line), history.get(snapshotRevision), 'the same keys');
        await assert.rejects(
          client.call('KV.Range', { ...allKeys, revision: String(snapshotRevision) }),
          /required revision has been compacted/,
        );
        const put = await client.call('KV.Put', {
          key: Buffer.from('app/after'),
          value: Buffer.from('bumped'),
        });
        assert.equal(Number(put.header!.revision), bumpedRevision + 1);

        // A watcher of the old cluster resuming after the snapshot's revision is told its
        // revisions are compacted, as etcd's --mark-compacted makes it; one from the bumped
        // revision sees the new write.
        const resumed = await watchFrom(client, endpoint, snapshotRevision + 1, (r) => r.canceled);
        assert.equal(Number(resumed.at(-1)!.compactRevision), bumpedRevision);
        const fresh = await watchFrom(client, endpoint, bumpedRevision, (r) => r.events.length > 0);
        assert.deepEqual(
          fresh.at(-1)!.events.map((e) => [e.kv!.key.toString(), Number(e.kv!.modRevision)]),
          [['app/after', bumpedRevision + 1]],
        );
      } finally {
        await stopCluster(bumped);
      }
    });
  },
);
