// Goal: three real `chorus server` processes on loopback serve the etcd v3 API to a client
// nobody here wrote (the `etcd3` npm package): KV, txn, leases with keep-alive, watch, its
// lock helper, maintenance and cluster calls. The JSON gateway on the same port answers as
// etcd's grpc-gateway does. Bad input of every kind gets etcd's error while the node keeps
// serving; a second process refuses a locked data directory; SIGTERM exits 0. A second cluster
// changes its membership with new processes (see its describe).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { loadEtcdProto } from '../src/server/proto.js';
import {
  eventually,
  freePorts,
  health,
  serverArgs,
  exitWithin,
  sleep,
  spawnChorus,
  startCluster,
  stopCluster,
  waitForLeader,
  type Cluster,
  type Member,
} from './server-helpers.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

interface Posted {
  status: number;
  body: Record<string, unknown>;
}

async function post(port: number, path: string, body: unknown): Promise<Posted> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as Record<string, unknown> };
}

type GrpcKv = grpc.Client & {
  Put(
    request: object,
    callback: (error: grpc.ServiceError | null, response: unknown) => void,
  ): void;
};

function rawKvClient(port: number): GrpcKv {
  const pkg = grpc.loadPackageDefinition(loadEtcdProto()) as unknown as {
    etcdserverpb: { KV: new (address: string, credentials: grpc.ChannelCredentials) => GrpcKv };
  };
  return new pkg.etcdserverpb.KV(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

function rawPut(client: GrpcKv, request: object): Promise<grpc.ServiceError | undefined> {
  return new Promise((resolve) => client.Put(request, (error) => resolve(error ?? undefined)));
}

describe('a 3-process Chorus cluster', { timeout: 50_000 }, () => {
  let cluster: Cluster;
  let client: Etcd3;
  let port: number;

  before(async () => {
    cluster = await startCluster(3);
    port = cluster.members[0]!.clientPort;
    client = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
  });

  after(async () => {
    client?.close();
    if (cluster !== undefined) await stopCluster(cluster);
  });

  /** Every member still answers /health and a put goes through. */
  async function stillServing(): Promise<void> {
    for (const m of cluster.members) assert.equal((await health(m.clientPort))?.mode, 'serving');
    await client.put('alive').value(String(Date.now()));
  }

  test('etcd3: put, get, delete, prefix, revisions', async () => {
    await client.put('fruit/apple').value('red');
    await client.put('fruit/banana').value('yellow');
    assert.equal(await client.get('fruit/apple').string(), 'red');
    assert.deepEqual(await client.getAll().prefix('fruit/').strings(), {
      'fruit/apple': 'red',
      'fruit/banana': 'yellow',
    });
    const deleted = await client.delete().key('fruit/apple').exec();
    assert.equal(deleted.deleted, '1');
    assert.equal(await client.get('fruit/apple').string(), null);
    // Every member answers, serializable or not, with the same value.
    for (const endpoint of cluster.endpoints) {
      const one = new Etcd3({ hosts: `http://${endpoint}` });
      try {
        assert.equal(await one.get('fruit/banana').string(), 'yellow');
        assert.equal(await one.get('fruit/banana').serializable(true).string(), 'yellow');
      } finally {
        one.close();
      }
    }
  });

  test('etcd3: txn compare-and-swap succeeds once', async () => {
    await client.put('cas').value('v1');
    const first = await client
      .if('cas', 'Value', '==', 'v1')
      .then(client.put('cas').value('v2'))
      .else(client.get('cas'))
      .commit();
    assert.equal(first.succeeded, true);
    const second = await client
      .if('cas', 'Value', '==', 'v1')
      .then(client.put('cas').value('v3'))
      .else(client.get('cas'))
      .commit();
    assert.equal(second.succeeded, false);
    const kv = second.responses[0]!.response_range.kvs[0]!;
    assert.equal(kv.value.toString(), 'v2');
  });

  test('etcd3: lease grant, keep-alive, attached key, revoke', async () => {
    const lease = client.lease(5, { autoKeepAlive: false });
    const id = await lease.grant();
    await lease.put('leased').value('x');
    const kept = await lease.keepaliveOnce();
    assert.equal(kept.ID, id);
    assert.ok(Number(kept.TTL) > 0 && Number(kept.TTL) <= 5, `TTL ${kept.TTL}`);
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
    assert.equal(ttl.grantedTTL, '5');
    assert.deepEqual(
      ttl.keys.map((k) => k.toString()),
      ['leased'],
    );
    await lease.revoke();
    assert.equal(await client.get('leased').string(), null);
  });

  test('etcd3: watch sees puts and deletes in order, from any member', async () => {
    const watcher = await client.watch().prefix('w/').create();
    const seen: string[] = [];
    watcher.on('put', (kv) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
    watcher.on('delete', (kv) => seen.push(`delete ${kv.key.toString()}`));
    const writer = new Etcd3({ hosts: `http://${cluster.endpoints[2]!}` });
    try {
      for (let i = 0; i < 5; i++) await writer.put(`w/${i}`).value(String(i));
      await writer.delete().key('w/0');
    } finally {
      writer.close();
    }
    await eventually('six watch events', 5_000, () =>
      Promise.resolve(seen.length >= 6 ? true : undefined),
    );
    assert.deepEqual(seen, [
      'put w/0=0',
      'put w/1=1',
      'put w/2=2',
      'put w/3=3',
      'put w/4=4',
      'delete w/0',
    ]);
    await watcher.cancel();
  });

  test('a progress request gets one response, watch id -1, at the current revision', async () => {
    type Bidi = grpc.ClientDuplexStream<object, Record<string, unknown>>;
    const pkg = grpc.loadPackageDefinition(loadEtcdProto()) as unknown as {
      etcdserverpb: {
        Watch: new (
          address: string,
          credentials: grpc.ChannelCredentials,
        ) => grpc.Client & { Watch(): Bidi };
      };
    };
    const watchClient = new pkg.etcdserverpb.Watch(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    );
    const stream = watchClient.Watch();
    const responses: Record<string, unknown>[] = [];
    stream.on('data', (r: Record<string, unknown>) => responses.push(r));
    stream.on('error', () => {});
    try {
      for (const key of ['p/a', 'p/b']) stream.write({ createRequest: { key: Buffer.from(key) } });
      await eventually('two watchers created', 5_000, () =>
        Promise.resolve(responses.filter((r) => r['created'] === true).length === 2 || undefined),
      );
      await client.put('p/progress').value('x');
      stream.write({ progressRequest: {} });
      await eventually('a progress response', 5_000, () =>
        Promise.resolve(responses.some((r) => r['watchId'] === '-1') || undefined),
      );
      await sleep(200);
      const progress = responses.filter((r) => r['watchId'] === '-1');
      assert.equal(progress.length, 1, JSON.stringify(responses));
      const header = progress[0]!['header'] as { revision: string };
      assert.ok(Number(header.revision) > 1);
      assert.deepEqual(progress[0]!['events'], []);
    } finally {
      stream.end();
      watchClient.close();
    }
  });

  test('etcd3: the lock helper excludes a second holder until release', async () => {
    // etcd3's Lock is a try-lock: acquiring a held lock fails at once.
    const first = client.lock('the-lock').ttl(5);
    await first.acquire();
    await assert.rejects(client.lock('the-lock').ttl(5).acquire(), /Failed to acquire a lock/);
    await first.release();
    const order: string[] = [];
    await client
      .lock('the-lock')
      .ttl(5)
      .do(() => {
        order.push('held');
        return Promise.resolve();
      });
    assert.deepEqual(order, ['held']);
  });

  test('etcd3: the election helper elects one campaigner, then the next once it resigns', async () => {
    // A second client, as a second process would have: its own lease and connection.
    const other = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
    try {
      const observer = await client.election('the-election', 5).observe();
      const seen: string[] = [];
      observer.on('change', (leader) => seen.push(leader ?? ''));
      const first = client.election('the-election', 5).campaign('first');
      await first.wait();
      const second = other.election('the-election', 5).campaign('second');
      let secondElected = false;
      const secondWon = second.wait().then(() => (secondElected = true));
      await sleep(300);
      assert.equal(secondElected, false, 'two leaders at once');
      assert.equal(await client.election('the-election', 5).leader(), 'first');
      await first.resign();
      await secondWon;
      assert.equal(await other.election('the-election', 5).leader(), 'second');
      await eventually('the observer sees both leaders', 5_000, () =>
        Promise.resolve(seen.includes('second') ? true : undefined),
      );
      await second.resign();
      await observer.cancel();
    } finally {
      other.close();
    }
  });

  test('maintenance status and member list agree across members', async () => {
    const statuses = await Promise.all(
      cluster.endpoints.map(async (endpoint) => {
        const one = new Etcd3({ hosts: `http://${endpoint}` });
        try {
          return await one.maintenance.status();
        } finally {
          one.close();
        }
      }),
    );
    const leaders = new Set(statuses.map((s) => s.leader));
    assert.equal(leaders.size, 1);
    assert.notEqual([...leaders][0], '0');
    assert.equal(statuses[0]!.version, '3.5.0');
    assert.ok(Number(statuses[0]!.raftIndex) > 0);
    const members = await client.cluster.memberList({});
    assert.equal(members.members.length, 3);
    assert.deepEqual(
      members.members.map((m) => m.name).sort(),
      cluster.members.map((m) => m.name),
    );
    for (const m of members.members) {
      const ours = cluster.members.find((c) => c.name === m.name)!;
      assert.deepEqual(m.clientURLs, [`http://127.0.0.1:${ours.clientPort}`]);
      assert.deepEqual(m.peerURLs, [`http://127.0.0.1:${ours.peerPort}`]);
    }
    const ids = new Set(members.members.map((m) => m.ID));
    assert.ok(ids.has(statuses[0]!.leader), 'the leader is a member');
  });

  test('HashKV agrees across members; MoveLeader hands leadership to the named member', async () => {
    await client.put('hash-me').value('1');
    const statuses = await Promise.all(
      cluster.members.map((m) => post(m.clientPort, '/v3/maintenance/status', {})),
    );
    const revision = Math.min(
      ...statuses.map((s) => Number((s.body['header'] as Record<string, string>)['revision'])),
    );
    const hashes = await Promise.all(
      cluster.members.map((m) =>
        post(m.clientPort, '/v3/maintenance/hashkv', { revision: String(revision) }),
      ),
    );
    assert.equal(new Set(hashes.map((h) => h.body['hash'])).size, 1, JSON.stringify(hashes));
    assert.equal(hashes[0]!.body['hash_revision'], String(revision));
    const hash = await post(port, '/v3/maintenance/hash', {});
    assert.equal(typeof hash.body['hash'], 'number');

    const leaderId = statuses[0]!.body['leader'] as string;
    const leaderIndex = statuses.findIndex(
      (s) => (s.body['header'] as Record<string, string>)['member_id'] === leaderId,
    );
    assert.ok(leaderIndex >= 0);
    const target = statuses.find((_, i) => i !== leaderIndex)!;
    const targetId = (target.body['header'] as Record<string, string>)['member_id']!;
    const follower = cluster.members.find((_, i) => i !== leaderIndex)!;
    const refused = await post(follower.clientPort, '/v3/maintenance/transfer-leadership', {
      targetID: targetId,
    });
    assert.equal(refused.body['message'], 'etcdserver: not leader');
    const moved = await post(
      cluster.members[leaderIndex]!.clientPort,
      '/v3/maintenance/transfer-leadership',
      { targetID: targetId },
    );
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    const after = await post(port, '/v3/maintenance/status', {});
    assert.equal(after.body['leader'], targetId);
    await waitForLeader(cluster, 10_000);
  });

  test('JSON gateway: kv, txn, lease and maintenance as etcd encodes them', async () => {
    const put = await post(port, '/v3/kv/put', {
      key: b64('gw'),
      value: b64('one'),
      prev_kv: true,
    });
    assert.equal(put.status, 200);
    const header = put.body['header'] as Record<string, unknown>;
    assert.match(String(header['cluster_id']), /^\d+$/);
    assert.match(String(header['member_id']), /^\d+$/);
    assert.match(String(header['revision']), /^\d+$/);
    assert.match(String(header['raft_term']), /^\d+$/);

    const range = await post(port, '/v3/kv/range', { key: b64('gw') });
    const kvs = range.body['kvs'] as Record<string, string>[];
    assert.equal(unb64(kvs[0]!['value']!), 'one');
    assert.equal(kvs[0]!['version'], '1');
    assert.equal(range.body['count'], '1');

    const txn = await post(port, '/v3/kv/txn', {
      compare: [{ key: b64('gw'), result: 'EQUAL', target: 'VALUE', value: b64('one') }],
      success: [{ request_put: { key: b64('gw'), value: b64('two') } }],
      failure: [],
    });
    assert.equal(txn.status, 200);
    assert.equal(txn.body['succeeded'], true);
    // camelCase field names are accepted too, as jsonpb accepts them.
    const camel = await post(port, '/v3/kv/range', { key: b64('gw'), keysOnly: true });
    assert.equal((camel.body['kvs'] as Record<string, string>[])[0]!['value'], undefined);

    const grant = await post(port, '/v3/lease/grant', { TTL: 30 });
    const leaseId = grant.body['ID'] as string;
    assert.match(leaseId, /^\d+$/);
    const ttl = await post(port, '/v3/lease/timetolive', { ID: leaseId });
    assert.equal(ttl.body['grantedTTL'], '30');
    const leases = await post(port, '/v3/lease/leases', {});
    assert.ok((leases.body['leases'] as { ID: string }[]).some((l) => l.ID === leaseId));
    const kept = await fetch(`http://127.0.0.1:${port}/v3/lease/keepalive`, {
      method: 'POST',
      body: JSON.stringify({ ID: leaseId }),
    });
    const keptLine = JSON.parse((await kept.text()).trim().split('\n')[0]!) as {
      result: Record<string, string>;
    };
    assert.equal(keptLine.result['ID'], leaseId);
    assert.equal((await post(port, '/v3/lease/revoke', { ID: leaseId })).status, 200);

    const del = await post(port, '/v3/kv/deleterange', { key: b64('gw') });
    assert.equal(del.body['deleted'], '1');
    const status = await post(port, '/v3/maintenance/status', {});
    assert.equal(status.body['version'], '3.5.0');
    const list = await post(port, '/v3/cluster/member/list', {});
    assert.equal((list.body['members'] as unknown[]).length, 3);
    const revision = Number(header['revision']);
    const compact = await post(port, '/v3/kv/compaction', { revision: String(revision) });
    assert.equal(compact.status, 200);
    const old = await post(port, '/v3/kv/range', { key: b64('gw'), revision: revision - 1 });
    assert.equal(old.status, 400);
    assert.equal(old.body['message'], 'etcdserver: mvcc: required revision has been compacted');
    assert.equal(old.body['code'], 11);
  });

  test('JSON gateway: /v3/watch streams newline-delimited results', async () => {
    const controller = new AbortController();
    const response = await fetch(`http://127.0.0.1:${port}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: { key: b64('gw-watch') } }),
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    const lines: Record<string, Record<string, unknown>>[] = [];
    let buffered = '';
    const readLine = async (): Promise<void> => {
      while (!buffered.includes('\n')) {
        const { value, done } = (await reader.read()) as { value: Uint8Array; done: boolean };
        if (done) throw new Error('watch stream ended');
        buffered += Buffer.from(value).toString('utf8');
      }
      const at = buffered.indexOf('\n');
      lines.push(JSON.parse(buffered.slice(0, at)) as Record<string, Record<string, unknown>>);
      buffered = buffered.slice(at + 1);
    };
    await readLine();
    assert.equal(lines[0]!['result']!['created'], true);
    await client.put('gw-watch').value('hi');
    await readLine();
    const events = lines[1]!['result']!['events'] as { kv: Record<string, string> }[];
    assert.equal(unb64(events[0]!.kv['value']!), 'hi');
    controller.abort();
    await reader.cancel().catch(() => {});
  });

  test('a watcher that stops reading is paused, then replays every event in order', async () => {
    // 160 puts of 64 KiB: far more than the socket and stream buffers hold, so the server's
    // writes report a full buffer, the watcher pauses, and on drain replays from history.
    const count = 160;
    const value = Buffer.alloc(64 * 1024, 7);
    const controller = new AbortController();
    const response = await fetch(`http://127.0.0.1:${port}/v3/watch`, {
      method: 'POST',
      body: JSON.stringify({ create_request: { key: b64('slow/'), range_end: b64('slow0') } }),
      signal: controller.signal,
    });
    for (let i = 0; i < count; i += 16)
      await Promise.all(
        Array.from({ length: Math.min(16, count - i) }, (_, j) =>
          client.put(`slow/${String(i + j).padStart(4, '0')}`).value(value),
        ),
      );
    const reader = response.body!.getReader();
    let text = '';
    const revisions: number[] = [];
    while (revisions.length < count) {
      const { value: chunk, done } = (await reader.read()) as { value: Uint8Array; done: boolean };
      if (done) break;
      text += Buffer.from(chunk).toString('utf8');
      let at: number;
      while ((at = text.indexOf('\n')) >= 0) {
        const line = JSON.parse(text.slice(0, at)) as {
          result: { events?: { kv: { mod_revision: string; value: string } }[] };
        };
        text = text.slice(at + 1);
        for (const e of line.result.events ?? []) {
          assert.equal(e.kv.value.length, Math.ceil(value.length / 3) * 4);
          revisions.push(Number(e.kv.mod_revision));
        }
      }
    }
    controller.abort();
    await reader.cancel().catch(() => {});
    assert.equal(revisions.length, count);
    for (let i = 1; i < revisions.length; i++)
      assert.ok(revisions[i]! > revisions[i - 1]!, `revisions out of order at ${i}`);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const full = /chorus_stream_buffer_full_total\{kind="watch"[^}]*\} (\d+)/.exec(metrics);
    assert.ok(full !== null && Number(full[1]) > 0, 'the stream never reported a full buffer');
  });

  test('bad input gets the right error and the node keeps serving', async () => {
    // Malformed JSON, unknown fields, wrong types: 400 with grpc-gateway's error body.
    const malformed = await post(port, '/v3/kv/put', '{"key": ');
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body['code'], 3);
    assert.match(String(malformed.body['error']), /malformed JSON/);
    const unknown = await post(port, '/v3/kv/put', { key: b64('a'), colour: 'blue' });
    assert.equal(unknown.status, 400);
    const wrongType = await post(port, '/v3/kv/range', { key: 42 });
    assert.equal(wrongType.status, 400);
    const emptyKey = await post(port, '/v3/kv/put', { value: b64('v') });
    assert.equal(emptyKey.body['message'], 'etcdserver: key is not provided');
    const notFound = await post(port, '/v3/no/such', {});
    assert.equal(notFound.status, 404);

    // int64 beyond 2^53: refused, never rounded to another lease.
    const big = await post(port, '/v3/kv/put', {
      key: b64('a'),
      value: b64('b'),
      lease: '9007199254740993',
    });
    assert.equal(big.status, 400);
    const raw = rawKvClient(port);
    try {
      const bigGrpc = await rawPut(raw, {
        key: Buffer.from('a'),
        value: Buffer.from('b'),
        lease: '9007199254740993',
      });
      assert.equal(bigGrpc?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(bigGrpc.details, /beyond 2\^53/);
    } finally {
      raw.close();
    }

    // Oversized: a body past the gateway's limit, a put past etcd's request limit (the
    // store refuses it), and a gRPC message past the transport limit.
    const huge = await fetch(`http://127.0.0.1:${port}/v3/kv/put`, {
      method: 'POST',
      body: JSON.stringify({ key: b64('big'), value: 'A'.repeat(3 * 1024 * 1024) }),
    });
    assert.equal(huge.status, 413);
    await assert.rejects(
      client
        .put('big')
        .value(Buffer.alloc(1600 * 1024))
        .exec(),
      /etcdserver: request is too large/,
    );
    await assert.rejects(
      client
        .put('big')
        .value(Buffer.alloc(3 * 1024 * 1024))
        .exec(),
      /larger than max|RESOURCE_EXHAUSTED|exceed/i,
    );

    // Too many txn operations: etcd's limit of 128 per branch.
    const ops = Array.from({ length: 129 }, (_, i) => client.put(`t${i}`).value('v'));
    await assert.rejects(
      client
        .if('t0', 'Version', '>', 0)
        .then(...ops)
        .commit(),
      /too many operations in txn request/,
    );

    // Unknown lease: a put attached to it, a revoke, a keep-alive (etcd answers TTL 0).
    await assert.rejects(
      client.put('orphan').value('x').lease('123456789').exec(),
      /requested lease not found/,
    );
    const revoke = await post(port, '/v3/lease/revoke', { ID: '123456789' });
    assert.equal(revoke.status, 404);
    assert.equal(revoke.body['message'], 'etcdserver: requested lease not found');
    const keepalive = await fetch(`http://127.0.0.1:${port}/v3/lease/keepalive`, {
      method: 'POST',
      body: JSON.stringify({ ID: '123456789' }),
    });
    const line = JSON.parse((await keepalive.text()).trim()) as { result: Record<string, string> };
    assert.equal(line.result['TTL'], undefined); // TTL 0 is left out, as jsonpb does

    // A malformed gRPC frame: a message that is not a protobuf RangeRequest.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const status = await new Promise<string | undefined>((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/etcdserverpb.KV/Range',
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a]);
        const frame = Buffer.alloc(5 + garbage.length);
        frame.writeUInt32BE(garbage.length, 1);
        garbage.copy(frame, 5);
        let grpcStatus: string | undefined;
        stream.on('response', (headers) => (grpcStatus ??= headers['grpc-status'] as string));
        stream.on(
          'trailers',
          (trailers: http2.IncomingHttpHeaders) => (grpcStatus = trailers['grpc-status'] as string),
        );
        stream.on('close', () => resolve(grpcStatus));
        stream.on('error', reject);
        stream.resume();
        stream.end(frame);
      });
      assert.notEqual(status, undefined);
      assert.notEqual(status, '0');
    } finally {
      session.close();
    }

    await stillServing();
  });

  test('a second process on a locked data directory refuses to start', async () => {
    const m = cluster.members[0]!;
    const second = spawnChorus(serverArgs(m.name, m.dataDir, 1, 1, cluster.initialCluster));
    const exit = await second.exited;
    assert.equal(exit.code, 1);
    const said = second.stderr.join('\n');
    assert.match(said, /is in use by another Chorus process \(pid \d+\)/);
    await stillServing();
  });

  test('/metrics is Prometheus text with the Raft and request metrics', async () => {
    // Peers are probed a second after start, then every 5 s.
    const text = await eventually('a peer round trip measured', 10_000, async () => {
      const t = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /chorus_network_peer_round_trip_time_seconds_bucket\{[^}]*to="n/.test(t)
        ? t
        : undefined;
    });
    for (const name of [
      'chorus_raft_term',
      'chorus_leader_changes_seen_total',
      'chorus_proposals_committed_total',
      'chorus_apply_duration_seconds_bucket',
      'chorus_wal_fsync_duration_seconds_bucket',
      'chorus_requests_total{method="KV.Put",protocol="grpc"',
      'chorus_request_duration_seconds_bucket',
      'chorus_mode{mode="serving"',
    ])
      assert.ok(text.includes(name), `metrics lack ${name}`);
  });

  test('a member without quorum is degraded and refuses writes with "no leader"', async () => {
    const [alone, ...others] = cluster.members;
    for (const m of others) m.child.kill('SIGSTOP');
    try {
      await eventually('the lone member degrades', 10_000, async () =>
        (await health(alone!.clientPort))?.mode === 'degraded' ? true : undefined,
      );
      const response = await fetch(`http://127.0.0.1:${alone!.clientPort}/health`);
      assert.equal(response.status, 503);
      const refused = await post(alone!.clientPort, '/v3/kv/put', {
        key: b64('k'),
        value: b64('v'),
      });
      assert.equal(refused.status, 503);
      assert.equal(refused.body['message'], 'etcdserver: no leader');
    } finally {
      for (const m of others) m.child.kill('SIGCONT');
    }
    await waitForLeader(cluster, 15_000);
    await stillServing();
  });

  test('SIGTERM stops every member with exit code 0', async () => {
    client.close();
    const exits = await stopCluster(cluster);
    assert.deepEqual(
      exits.map((e) => e.code),
      [0, 0, 0],
      cluster.members.map((m) => m.stderr.slice(-5).join('\n')).join('\n---\n'),
    );
    cluster = undefined as unknown as Cluster;
  });
});

/** A TCP relay on loopback (on `listenPort`, or any) whose connections the test can cut. */
async function startRelay(
  targetPort: number,
  listenPort = 0,
): Promise<{ port: number; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let cut = false;
  const server = net.createServer((inbound) => {
    if (cut) return void inbound.destroy();
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// Membership changes with new processes: a removed member's peer URL added again gets a new
// id and the new process learns it from the cluster; a removed member that never got the
// leader's notice is told by the first peer it dials; a member nobody added cannot join.
describe('membership of a 3-process Chorus cluster', { timeout: 90_000 }, () => {
  let cluster: Cluster;
  let port: number;

  before(async () => {
    cluster = await startCluster(3);
    port = cluster.members[0]!.clientPort;
  });

  after(async () => {
    if (cluster !== undefined) await stopCluster(cluster);
  });

  /** MemberAdd of a learner at `peerUrl` through the JSON gateway; its id. */
  async function addLearner(peerUrl: string): Promise<string> {
    const added = await post(port, '/v3/cluster/member/add', {
      peerURLs: [peerUrl],
      isLearner: true,
    });
    assert.equal(added.status, 200, JSON.stringify(added.body));
    return (added.body['member'] as { ID: string }).ID;
  }

  async function removeMember(id: string): Promise<void> {
    const removed = await post(port, '/v3/cluster/member/remove', { ID: id });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
  }

  /**
   * Starts `name` with --initial-cluster-state existing; `advertised` is its peer URL, and
   * `others` what --initial-cluster says of the rest (the cluster's members by default).
   */
  async function startJoiner(
    name: string,
    advertised: string,
    listenPeerPort?: number,
    others = cluster.initialCluster,
    more: string[] = [],
  ): Promise<Member> {
    const [clientPort, ownPort] = (await freePorts(2)) as [number, number];
    const peerPort = listenPeerPort ?? Number(new URL(advertised).port);
    const dataDir = join(cluster.root, `${name}-${ownPort}`);
    const initialCluster = `${others},${name}=${advertised}`;
    const started = spawnChorus([
      ...serverArgs(name, dataDir, clientPort, peerPort, initialCluster),
      '--initial-cluster-state',
      'existing',
      ...more,
    ]);
    return { name, clientPort, peerPort, dataDir, ...started };
  }

  test("a removed member's peer URL added again: a new id, and a fresh process joins and serves", async () => {
    await post(port, '/v3/kv/put', { key: b64('before-join'), value: b64('v') });
    const [peerPort] = (await freePorts(1)) as [number];
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const firstId = await addLearner(peerUrl);
    const first = await startJoiner('n4', peerUrl);
    try {
      await eventually('the first n4 serves', 20_000, async () =>
        (await health(first.clientPort))?.mode === 'serving' ? true : undefined,
      );
      await removeMember(firstId);
      assert.deepEqual(await exitWithin(first, 10_000), { code: 0, signal: null });
    } finally {
      first.child.kill('SIGKILL');
    }
    const secondId = await addLearner(peerUrl);
    assert.notEqual(secondId, firstId, 'the same peer URL gets a new id');
    const second = await startJoiner('n4', peerUrl);
    try {
      const read = await eventually('the second n4 serves a read', 20_000, async () => {
        if ((await health(second.clientPort))?.mode !== 'serving') return undefined;
        const r = await post(second.clientPort, '/v3/kv/range', {
          key: b64('before-join'),
          serializable: true,
        });
        return r.status === 200 && (r.body['kvs'] as unknown[] | undefined)?.length === 1
          ? r
          : undefined;
      });
      assert.ok(read !== undefined);
      assert.match(
        second.stderr.join('\n'),
        /learned this member's id from the cluster/,
        'the new process asked the cluster who it is',
      );
      const listed = await post(second.clientPort, '/v3/cluster/member/list', {});
      const own = (listed.body['members'] as { ID: string; name: string }[]).find(
        (m) => m.ID === secondId,
      );
      assert.equal(own?.name, 'n4');
      await removeMember(secondId);
      assert.deepEqual(await exitWithin(second, 10_000), { code: 0, signal: null });
    } finally {
      second.child.kill('SIGKILL');
    }
  });

  test('a removed member that missed the notice is told by the first peer it dials, and stops', async () => {
    // n5 listens on its own port but the others reach it through a relay: cut while n5 is
    // stopped, it keeps the leader's removal notice from ever arriving.
    const [listenPort] = (await freePorts(1)) as [number];
    const relay = await startRelay(listenPort);
    const peerUrl = `http://127.0.0.1:${relay.port}`;
    const id = await addLearner(peerUrl);
    const n5 = await startJoiner('n5', peerUrl, listenPort);
    try {
      await eventually('n5 serves', 20_000, async () =>
        (await health(n5.clientPort))?.mode === 'serving' ? true : undefined,
      );
      n5.child.kill('SIGSTOP');
      relay.cut();
      await removeMember(id);
      // Every member lets go of a removed one after a second; give them two.
      await sleep(2_000);
      n5.child.kill('SIGCONT');
      assert.deepEqual(await exitWithin(n5, 15_000), { code: 0, signal: null });
      const said = n5.stderr.join('\n');
      assert.match(said, /a peer says this member was removed from the cluster/);
      assert.doesNotMatch(said, /the leader says this member was removed/);
    } finally {
      n5.child.kill('SIGKILL');
      await relay.close();
    }
    await waitForLeader(cluster, 10_000);
  });

  test('a founder is listed at --initial-advertise-peer-urls; founding flags that disagree exit 2, as etcd', async () => {
    const [clientPort, peerPort, otherPort] = (await freePorts(3)) as [number, number, number];
    const advertised = `http://localhost:${peerPort}`;
    // Given by environment variable, and no --initial-cluster: etcd's default is this member
    // alone at its advertised URLs. It listens on 127.0.0.1 and advertises a host name.
    const env = { CHORUS_INITIAL_ADVERTISE_PEER_URLS: advertised };
    const args = (dataDir: string, initialCluster?: string): string[] => {
      const base = serverArgs('solo', dataDir, clientPort, peerPort, '');
      base.splice(base.indexOf('--initial-cluster'), 2);
      return initialCluster === undefined ? base : [...base, '--initial-cluster', initialCluster];
    };
    const peerUrlsListed = async (): Promise<string[][]> => {
      const listed = await post(clientPort, '/v3/cluster/member/list', {});
      return (listed.body['members'] as { peerURLs: string[] }[]).map((m) => m.peerURLs);
    };
    const serveThenStop = async (started: ReturnType<typeof spawnChorus>): Promise<string[][]> => {
      try {
        await eventually('solo serves', 20_000, async () =>
          (await health(clientPort))?.mode === 'serving' ? true : undefined,
        );
        const urls = await peerUrlsListed();
        started.child.kill('SIGTERM');
        assert.deepEqual(await started.exited, { code: 0, signal: null });
        return urls;
      } finally {
        started.child.kill('SIGKILL');
      }
    };
    const dataDir = join(cluster.root, 'solo');
    assert.deepEqual(await serveThenStop(spawnChorus(args(dataDir), env)), [[advertised]]);

    // A restart does not check them (etcd checks only when bootstrapping): its member table
    // holds its URLs, whatever --initial-cluster says now.
    const otherUrl = `http://127.0.0.1:${otherPort}`;
    assert.deepEqual(await serveThenStop(spawnChorus(args(dataDir, `solo=${otherUrl}`), env)), [
      [advertised],
    ]);

    const wrongDir = join(cluster.root, 'solo-wrong');
    const wrong = spawnChorus(args(wrongDir, `solo=${otherUrl}`), env);
    try {
      assert.deepEqual(await exitWithin(wrong, 15_000), { code: 2, signal: null });
    } finally {
      wrong.child.kill('SIGKILL');
    }
    assert.match(
      wrong.stderr.join('\n'),
      new RegExp(
        `--initial-cluster has solo=${otherUrl} but missing from --initial-advertise-peer-urls=${advertised}`,
      ),
    );
    assert.equal(fs.existsSync(join(wrongDir, 'version.json')), false, 'no identity recorded');
  });

  test('a joiner started before any member it names is reachable asks again, and joins once one is', async () => {
    // --initial-cluster names n1 only at a relay's port, where nothing listens yet.
    const n1 = cluster.members[0]!;
    const [relayPort, peerPort] = (await freePorts(2)) as [number, number];
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const id = await addLearner(peerUrl);
    const n8 = await startJoiner('n8', peerUrl, peerPort, `n1=http://127.0.0.1:${relayPort}`, [
      '--initial-advertise-peer-urls',
      peerUrl,
    ]);
    let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
    try {
      const retried = /cannot learn this member's id yet; asking again/;
      await eventually('two failed rounds logged', 10_000, () =>
        Promise.resolve(n8.stderr.filter((l) => retried.test(l)).length >= 2 ? true : undefined),
      );
      assert.equal(n8.child.exitCode, null, 'still asking');
      relay = await startRelay(n1.peerPort, relayPort);
      await eventually('n8 serves', 20_000, async () =>
        (await health(n8.clientPort))?.mode === 'serving' ? true : undefined,
      );
      assert.match(n8.stderr.join('\n'), /learned this member's id from the cluster/);
      // Its name is published through the log once it runs.
      const own = await eventually('n8 is listed by name', 10_000, async () => {
        const listed = await post(port, '/v3/cluster/member/list', {});
        const members = listed.body['members'] as {
          ID: string;
          name?: string;
          peerURLs: string[];
        }[];
        const found = members.find((m) => m.ID === id);
        return found?.name === 'n8' ? found : undefined;
      });
      assert.deepEqual(own.peerURLs, [peerUrl]);
      await removeMember(id);
      assert.deepEqual(await exitWithin(n8, 10_000), { code: 0, signal: null });
    } finally {
      n8.child.kill('SIGKILL');
      await relay?.close();
    }
  });

  test('a member nobody added fails at once; one that can reach nobody gives up after --join-timeout', async () => {
    const [peerPort] = (await freePorts(1)) as [number];
    const startedMs = Date.now();
    const unlisted = await startJoiner('n6', `http://127.0.0.1:${peerPort}`);
    try {
      // The members have seen a leader: their "not listed" is definitive, whatever the
      // (default, 30 s) --join-timeout.
      assert.deepEqual(await exitWithin(unlisted, 15_000), { code: 1, signal: null });
      assert.ok(Date.now() - startedMs < 10_000, `exited after ${Date.now() - startedMs} ms`);
    } finally {
      unlisted.child.kill('SIGKILL');
    }
    assert.doesNotMatch(unlisted.stderr.join('\n'), /asking again/);
    assert.match(
      unlisted.stderr.join('\n'),
      new RegExp(
        `no member of the cluster lists this member's peer URL http://127.0.0.1:${peerPort}`,
      ),
    );
    assert.match(unlisted.stderr.join('\n'), /member add <name> --peer-urls=/);

    const [clientPort, ownPort, deadPort] = (await freePorts(3)) as [number, number, number];
    const alone = spawnChorus([
      ...serverArgs(
        'n7',
        join(cluster.root, 'n7'),
        clientPort,
        ownPort,
        `n1=http://127.0.0.1:${deadPort},n7=http://127.0.0.1:${ownPort}`,
      ),
      '--initial-cluster-state',
      'existing',
      '--join-timeout',
      '1500',
    ]);
    try {
      assert.deepEqual(await exitWithin(alone, 15_000), { code: 1, signal: null });
    } finally {
      alone.child.kill('SIGKILL');
    }
    const said = alone.stderr.join('\n');
    assert.match(
      said,
      /cannot learn this member's id: no member in --initial-cluster answered \(asked in \d+ rounds over --join-timeout 1500 ms; last round: n1 at http:\/\/127\.0\.0\.1:\d+: cannot reach/,
    );
    assert.ok(
      alone.stderr.filter((l) => /asking again/.test(l)).length >= 2,
      'each failed round is logged',
    );
    assert.equal(
      fs.existsSync(join(cluster.root, 'n7', 'version.json')),
      false,
      'no identity recorded for a member that could not join',
    );
  });
});
