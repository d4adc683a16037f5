// Goal: Maintenance.Snapshot streams one member's state as a verifiable Chorus snapshot file,
// without stalling the member. First without sockets: the file format round-trips and
// refuses damage with a reason; the stream fixes the state at the request, encodes it over
// several turns of the event loop, sends 32 KiB blobs with remaining_bytes counting down and
// ends with the SHA-256; a full sink pauses it until it drains, and a closed one stops it.
// Then against a live 3-process cluster: `chorus snapshot save` and etcdctl 3.4's
// `snapshot save` (skipped where etcdctl is not installed) both write files that
// `chorus snapshot status` verifies with the right revision and key count; a damaged file is
// refused; the member serves reads and writes while a slow client holds a snapshot stream
// (backpressure), and after; a client that cancels releases the stream; the JSON gateway
// streams the same file; a stopping member ends an in-flight snapshot with "server stopped".
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { EtcdClient } from '../src/client/client.js';
import type { SnapshotResponse } from '../src/client/types.js';
import { encode } from '../src/core/codec.js';
import { LeaseTable } from '../src/kv/lease.js';
import { KvMachine } from '../src/kv/machine.js';
import type { Wire } from '../src/server/convert.js';
import type { ServiceContext } from '../src/server/service.js';
import { SnapshotStream, type Later } from '../src/server/snapshot.js';
import {
  describeSnapshot,
  encodeSnapshotFile,
  readSnapshotFile,
  snapshotMagic,
  type SnapshotMeta,
} from '../src/server/snapshot-file.js';
import type { StreamSink } from '../src/server/streams.js';
import {
  etcdctlEnv,
  etcdctlMissing,
  eventually,
  runProcess,
  sleep,
  startCluster,
  stopCluster,
  waitForLeader,
  type Cluster,
  chorusInProcess as chorus,
  type RanInProcess,
} from './server-helpers.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A machine with `keys` keys of `valueBytes` each, applied one entry per key. */
function machineWith(keys: number, valueBytes: number, keysPerStep: number): KvMachine {
  const machine = new KvMachine(new LeaseTable(1), keysPerStep);
  for (let i = 0; i < keys; i++) putInto(machine, i + 1, `key-${String(i).padStart(6, '0')}`, i);
  return machine;

  function putInto(m: KvMachine, index: number, key: string, seed: number): void {
    const value = new Uint8Array(valueBytes).fill(seed % 251);
    const data = encode({ t: 'put', r: { key: text(key), value } });
    m.apply([{ term: 1, index, type: 'normal', data }]);
  }
}

function put(machine: KvMachine, index: number, key: string): void {
  const data = encode({ t: 'put', r: { key: text(key), value: text('later') } });
  machine.apply([{ term: 1, index, type: 'normal', data }]);
}

/** What the stream needs of the node: the machine, the applied index and its term. */
function contextFor(machine: KvMachine, appliedIndex: number): ServiceContext {
  const fake = {
    kv: {
      machine,
      driver: {
        appliedIndex,
        node: { raft: { log: { term: (i: number) => (i === appliedIndex ? 7 : undefined) } } },
      },
    },
    memberName: 'n1',
    wallMs: () => 1_700_000_000_000,
    header: (revision?: number) => ({
      clusterId: '11',
      memberId: '22',
      revision: revision ?? machine.revision(),
      raftTerm: 7,
    }),
  };
  return fake as unknown as ServiceContext;
}

class RecordingSink implements StreamSink {
  readonly messages: Wire[] = [];
  ended = false;
  error: unknown;
  room = true;
  private readonly drains: (() => void)[] = [];

  write(message: Wire): boolean {
    assert.ok(!this.ended, 'no write after the end');
    this.messages.push(message);
    return this.room;
  }
  onDrain(fn: () => void): void {
    this.drains.push(fn);
  }
  end(error?: unknown): void {
    this.ended = true;
    this.error = error;
  }
  drain(): void {
    this.room = true;
    for (const fn of this.drains) fn();
  }
  get blobs(): Uint8Array[] {
    return this.messages.map((m) => m['blob'] as Uint8Array);
  }
}

/** Turns of a pretend event loop: `later` queues, `turn` runs what was queued before it. */
function turns(): { later: Later; turn: () => number } {
  const queue: (() => void)[] = [];
  return {
    later: (fn) => void queue.push(fn),
    turn: () => {
      const due = queue.splice(0);
      for (const fn of due) fn();
      return due.length;
    },
  };
}

const meta: SnapshotMeta = {
  member: 'n1',
  memberId: '22',
  clusterId: '11',
  raftAppliedIndex: 3,
  raftAppliedTerm: 2,
  revision: 4,
  compactRevision: 0,
  takenAtMs: 1,
  etcdVersion: '3.5.0',
};

/** `bytes` with the trailer recomputed, as a tool that rewrote the file on purpose would. */
function resealed(bytes: Uint8Array): Uint8Array {
  const body = bytes.subarray(0, bytes.length - 32);
  const out = new Uint8Array(bytes.length);
  out.set(body);
  out.set(createHash('sha256').update(body).digest(), body.length);
  return out;
}

describe('the snapshot file and stream, without sockets', () => {
  test('the file round-trips, is 512-aligned before its trailer and names its point in time', () => {
    const machine = machineWith(3, 10, 100);
    const file = encodeSnapshotFile(meta, machine.snapshot());
    assert.equal(file.length % 512, 32, 'etcdctl accepts only sizes of 512·n + 32');
    assert.equal(new TextDecoder().decode(file.subarray(0, 16)), snapshotMagic);
    const described = describeSnapshot(file);
    assert.deepEqual(described.meta, meta);
    assert.equal(described.revision, 4);
    assert.equal(described.totalKey, 3);
    assert.equal(described.totalSize, file.length);
    assert.equal(described.hash, machine.store.hashKv(0).hash);
  });

  test('a damaged or foreign file is refused, saying why', () => {
    const file = encodeSnapshotFile(meta, machineWith(3, 10, 100).snapshot());
    const flipped = Uint8Array.from(file);
    flipped[100] = flipped[100]! ^ 0xff;
    assert.throws(() => readSnapshotFile(flipped), /SHA-256 mismatch: the file is corrupted/);
    assert.throws(() => readSnapshotFile(file.subarray(0, file.length - 1)), /SHA-256 mismatch/);
    assert.throws(() => readSnapshotFile(file.subarray(0, 10)), /too short to be a snapshot/);
    // A bbolt file with etcd's trailer: whole, but not ours.
    assert.throws(
      () => readSnapshotFile(resealed(new Uint8Array(512 + 32).fill(7))),
      /not a Chorus snapshot/,
    );
    const future = Uint8Array.from(file);
    future[19] = 9;
    assert.throws(
      () => readSnapshotFile(resealed(future)),
      /format version 9; this chorus reads version 1/,
    );
    const lying = encodeSnapshotFile({ ...meta, revision: 5 }, machineWith(3, 10, 100).snapshot());
    assert.throws(() => describeSnapshot(lying), /metadata says revision 5 .* the state holds 4/);
    const garbage = encodeSnapshotFile(meta, text('not msgpack of a machine'));
    assert.throws(() => describeSnapshot(garbage), /the KV state does not decode/);
  });

  test('the stream fixes the state at the request, encodes over many turns and sends 32 KiB blobs', () => {
    const keys = 500;
    const machine = machineWith(keys, 300, 50);
    const sink = new RecordingSink();
    const loop = turns();
    const stream = new SnapshotStream(contextFor(machine, keys), sink, loop.later);
    stream.request({});
    assert.equal(sink.messages.length, 0, 'nothing is sent in the request’s own turn');
    // Writes after the request do not reach the snapshot: it was fixed then.
    put(machine, keys + 1, 'written-after');
    let encodingTurns = 0;
    while (sink.messages.length === 0 && loop.turn() > 0) encodingTurns++;
    // A step takes whole B-tree leaves until it has 50 keys: several turns, not one.
    assert.ok(encodingTurns > 3, `encoded over ${encodingTurns} turns, one step each`);
    while (!sink.ended && loop.turn() > 0);
    assert.ok(sink.ended && sink.error === undefined, 'the stream ended cleanly');

    const blobs = sink.blobs;
    const file = Buffer.concat(blobs);
    const trailer = blobs[blobs.length - 1]!;
    assert.equal(trailer.length, 32, 'the last response is the SHA-256 alone');
    for (const blob of blobs.slice(0, -2)) assert.equal(blob.length, 32 * 1024);
    let received = 0;
    for (const [i, m] of sink.messages.entries()) {
      received += blobs[i]!.length;
      assert.equal(m['remainingBytes'], file.length - received, `remaining_bytes of response ${i}`);
      assert.equal(m['version'], '3.5.0');
      assert.equal(m['header'] !== undefined, i === 0, 'only the first response has a header');
    }
    const described = describeSnapshot(file);
    assert.equal(described.revision, keys + 1);
    assert.equal(described.totalKey, keys, 'the key written after the request is not in it');
    assert.deepEqual(
      [described.meta.raftAppliedIndex, described.meta.raftAppliedTerm, described.meta.member],
      [keys, 7, 'n1'],
    );
    assert.equal(described.hash, machine.store.hashKv(keys + 1).hash);
    assert.throws(() => stream.request({}), /takes one request/);
  });

  test('a full sink pauses the stream until it drains; a closed stream sends nothing more', () => {
    const machine = machineWith(1500, 1000, 100_000);
    const sink = new RecordingSink();
    sink.room = false;
    const loop = turns();
    const stream = new SnapshotStream(contextFor(machine, 1500), sink, loop.later);
    stream.request({});
    while (sink.messages.length === 0 && loop.turn() > 0);
    for (let i = 0; i < 5; i++) loop.turn();
    assert.equal(sink.messages.length, 1, 'one write filled the sink; the next waits for drain');
    sink.drain();
    assert.equal(sink.messages.length, 1 + 16, 'after a drain, at most 16 chunks per turn');
    loop.turn();
    assert.equal(sink.messages.length, 1 + 32);
    sink.room = false;
    loop.turn();
    assert.equal(sink.messages.length, 1 + 33, 'full again: it stops at once');
    stream.close();
    sink.drain();
    for (let i = 0; i < 5; i++) loop.turn();
    assert.equal(sink.messages.length, 34, 'nothing after close');
    assert.ok(!sink.ended, 'closing is the client leaving: the stream is not ended by us');
  });
});

async function etcdctl(args: string[], timeoutMs = 20_000): Promise<RanInProcess> {
  const ran = await runProcess('etcdctl', args, { env: etcdctlEnv, timeoutMs });
  return { code: ran.code ?? -1, out: ran.stdout.split('\n'), err: ran.stderr.split('\n') };
}

/** A metric's value on one member (the member label comes first or last). */
async function metric(port: number, name: string, kind: string): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = new RegExp(`^${name}\\{[^}]*kind="${kind}"[^}]*\\} (\\d+)$`, 'm').exec(body);
  return line === null ? 0 : Number(line[1]);
}

/** Collects a snapshot stream: every response, then how it ended. */
function collect(
  stream: ReturnType<EtcdClient['snapshot']>,
): Promise<{ responses: SnapshotResponse[]; error: ServiceError | undefined }> {
  const responses: SnapshotResponse[] = [];
  return new Promise((resolve) => {
    stream.on('data', (r: SnapshotResponse) => responses.push(r));
    stream.on('error', (error: ServiceError) => resolve({ responses, error }));
    stream.on('end', () => resolve({ responses, error: undefined }));
  });
}

const blobsOf = (responses: SnapshotResponse[]): Buffer =>
  Buffer.concat(responses.map((r) => r.blob));

describe('snapshots of a live 3-process cluster', { timeout: 150_000 }, () => {
  let cluster: Cluster;
  let client: EtcdClient;
  let leader: { endpoint: string; port: number };
  let dir: string;
  /** The store's revision and live keys after the writes of the first test. */
  let written: { revision: number; keys: number };

  before(async () => {
    dir = fs.mkdtempSync(join(tmpdir(), 'chorus-snapshot-test-'));
    cluster = await startCluster(3);
    const name = await waitForLeader(cluster, 20_000);
    const member = cluster.members.find((m) => m.name === name)!;
    leader = { endpoint: `127.0.0.1:${member.clientPort}`, port: member.clientPort };
    // Every request to the leader: it has applied each write before answering.
    client = new EtcdClient({
      endpoints: [leader.endpoint],
      dialTimeoutMs: 3_000,
      commandTimeoutMs: 10_000,
    });
  });

  after(async () => {
    client?.close();
    if (cluster !== undefined) await stopCluster(cluster);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function revisionNow(): Promise<number> {
    const r = await client.call('KV.Range', { key: Buffer.from('none') });
    return Number(r.header!.revision);
  }

  test('chorus and etcdctl save snapshots that chorus snapshot status verifies', async () => {
    for (let t = 0; t < 3; t++) {
      const success = Array.from({ length: 100 }, (_, i) => ({
        requestPut: {
          key: Buffer.from(`snap/k${String(t * 100 + i).padStart(4, '0')}`),
          value: Buffer.from(`value ${t * 100 + i}`),
        },
      }));
      await client.call('KV.Txn', { compare: [], success, failure: [] });
    }
    await client.call('KV.DeleteRange', {
      key: Buffer.from('snap/k0000'),
      rangeEnd: Buffer.from('snap/k0010'),
    });
    written = { revision: await revisionNow(), keys: 290 };
    assert.equal(written.revision, 5, 'three txns and a delete after the first revision');

    const mine = join(dir, 'chorus.snap');
    const saved = await chorus('snapshot', 'save', mine, '--endpoints', leader.endpoint);
    assert.deepEqual(saved, {
      code: 0,
      out: [`Snapshot saved at ${mine}`, 'Server version 3.5.0'],
      err: [],
    });
    assert.ok(!fs.existsSync(`${mine}.part`));
    const status = await chorus('snapshot', 'status', mine, '-w', 'json');
    assert.equal(status.code, 0, status.err.join('\n'));
    const parsed = JSON.parse(status.out[0]!) as Record<string, number>;
    assert.deepEqual(
      { revision: parsed['revision'], totalKey: parsed['totalKey'] },
      { revision: written.revision, totalKey: written.keys },
    );
    assert.equal(parsed['totalSize'], fs.statSync(mine).size);
    const table = await chorus('snapshot', 'status', mine, '-w', 'table');
    assert.match(table.out[1]!, /\| +HASH +\| +REVISION +\| +TOTAL KEYS +\| +TOTAL SIZE +\|/);
    assert.match(
      table.out[3]!,
      new RegExp(`\\| +${parsed['hash']!.toString(16)} +\\| +5 +\\| +290 +\\| +[0-9.]+ kB +\\|`),
    );
  });

  test(
    'etcdctl 3.4 saves a Chorus snapshot that chorus snapshot status verifies',
    { skip: etcdctlMissing },
    async () => {
      const theirs = join(dir, 'etcdctl.snap');
      const ran = await etcdctl([`--endpoints=${leader.endpoint}`, 'snapshot', 'save', theirs]);
      assert.equal(ran.code, 0, ran.err.join('\n'));
      assert.ok(ran.out.includes(`Snapshot saved at ${theirs}`), ran.out.join('\n'));
      const status = await chorus('snapshot', 'status', theirs, '-w', 'json');
      assert.equal(status.code, 0, status.err.join('\n'));
      const theirStatus = JSON.parse(status.out[0]!) as Record<string, number>;
      const mine = await chorus('snapshot', 'status', join(dir, 'chorus.snap'), '-w', 'json');
      const myStatus = JSON.parse(mine.out[0]!) as Record<string, number>;
      assert.deepEqual(theirStatus, myStatus, 'the same member, the same revision: one state');
    },
  );

  test('a damaged snapshot file is refused with a clear error', async () => {
    const good = fs.readFileSync(join(dir, 'chorus.snap'));
    const flipped = Buffer.from(good);
    flipped[Math.floor(good.length / 2)]! ^= 0x01;
    fs.writeFileSync(join(dir, 'flipped.snap'), flipped);
    const bad = await chorus('snapshot', 'status', join(dir, 'flipped.snap'));
    assert.equal(bad.code, 1);
    assert.match(
      bad.err.join('\n'),
      /^Error: snapshot file: SHA-256 mismatch: the file is corrupted or truncated/,
    );
    fs.writeFileSync(join(dir, 'short.snap'), good.subarray(0, good.length - 100));
    const short = await chorus('snapshot', 'status', join(dir, 'short.snap'));
    assert.equal(short.code, 1);
    assert.match(short.err.join('\n'), /SHA-256 mismatch/);
    const missing = await chorus('snapshot', 'status', join(dir, 'none.snap'));
    assert.equal(missing.code, 1);
    assert.match(missing.err.join('\n'), /no such file/);
  });

  test('the member keeps serving while a slow client holds a snapshot stream, and after', async () => {
    // About 12 MiB of values: hundreds of chunks, far more than any buffer on the way.
    const big = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 12; i++)
      await client.call('KV.Put', { key: Buffer.from(`big/${i}`), value: big });
    const revision = await revisionNow();
    const stream = client.snapshot(await client.reachable(leader.endpoint));
    const done = collect(stream);
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.pause();
    await eventually('the server sees a full send buffer', 5_000, async () =>
      (await metric(leader.port, 'chorus_stream_buffer_full_total', 'snapshot')) > 0
        ? true
        : undefined,
    );
    assert.equal(await metric(leader.port, 'chorus_streams', 'snapshot'), 1);
    for (let i = 0; i < 5; i++) {
      const started = Date.now();
      await client.call('KV.Put', { key: Buffer.from(`during/${i}`), value: Buffer.from('x') });
      const got = await client.call('KV.Range', { key: Buffer.from(`during/${i}`) });
      assert.equal(got.kvs.length, 1);
      assert.ok(Date.now() - started < 2_000, 'a write and a read while the snapshot waits');
    }
    stream.resume();
    const { responses, error } = await done;
    assert.equal(error, undefined);
    const described = describeSnapshot(blobsOf(responses));
    assert.equal(described.revision, revision, 'the state when the stream opened');
    assert.equal(described.totalKey, written.keys + 12);
    assert.equal(Number(responses.at(-1)!.remainingBytes), 0);
    await eventually('the stream is released', 5_000, async () =>
      (await metric(leader.port, 'chorus_streams', 'snapshot')) === 0 ? true : undefined,
    );
    await client.call('KV.Put', { key: Buffer.from('after'), value: Buffer.from('y') });
  });

  test('a client that cancels mid-stream releases the snapshot', async () => {
    const stream = client.snapshot(await client.reachable(leader.endpoint));
    const done = collect(stream);
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.cancel();
    const { error } = await done;
    assert.equal(error?.code, Status.CANCELLED);
    await eventually('the server closes the cancelled stream', 5_000, async () =>
      (await metric(leader.port, 'chorus_streams', 'snapshot')) === 0 ? true : undefined,
    );
  });

  test('the JSON gateway streams the snapshot as newline-delimited results', async () => {
    const response = await fetch(`http://127.0.0.1:${leader.port}/v3/maintenance/snapshot`, {
      method: 'POST',
      body: '{}',
    });
    assert.equal(response.status, 200);
    const lines = (await response.text()).trim().split('\n');
    const results = lines.map(
      (l) => (JSON.parse(l) as { result: { blob: string; remaining_bytes?: string } }).result,
    );
    const file = Buffer.concat(results.map((r) => Buffer.from(r.blob, 'base64')));
    assert.equal(Number(results[0]!.remaining_bytes), file.length - 32 * 1024);
    assert.equal(describeSnapshot(file).revision, await revisionNow());
  });

  test('a stopping member ends an in-flight snapshot with "server stopped"', async () => {
    const member = cluster.members.find((m) => m.clientPort === leader.port)!;
    const stream = client.snapshot(await client.reachable(leader.endpoint));
    const done = collect(stream);
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.pause();
    member.child.kill('SIGTERM');
    // The status follows the responses already sent: read them, as a live client does.
    await sleep(100);
    stream.resume();
    const { responses, error } = await done;
    assert.deepEqual(
      { code: error?.code, details: error?.details },
      { code: Status.UNAVAILABLE, details: 'etcdserver: server stopped' },
    );
    assert.ok(Number(responses.at(-1)!.remainingBytes) > 0, 'it ended before the last byte');
    const exit = await member.exited;
    assert.equal(exit.code, 0, member.stderr.slice(-10).join('\n'));
  });
});
