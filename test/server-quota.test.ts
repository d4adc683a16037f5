// Goal: a space quota, as etcd's --quota-backend-bytes: a live 3-member cluster refuses the
// write that would pass it with etcd's "database space exceeded", raises NOSPACE through the
// log so every member lists it and refuses writes that take space (reads, deletes and
// compactions still work), and `alarm disarm` — etcdctl's when installed, and chorus's own —
// lets writes through again once room is made. Clients here: the `etcd3` npm package,
// etcdctl, chorus's CLI.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import {
  chorusInProcess,
  etcdctlEnv,
  etcdctlMissing,
  runProcess,
  startCluster,
  stopCluster,
  type Cluster,
} from './server-helpers.js';

const quotaBytes = 200_000;
const value = 'x'.repeat(2_000);
const spaceExceeded = /etcdserver: mvcc: database space exceeded/;

describe('a cluster with a 200 KB space quota', { timeout: 60_000 }, () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster(3, ['--quota-backend-bytes', String(quotaBytes)]);
  });

  after(async () => {
    if (cluster !== undefined) await stopCluster(cluster);
  });

  /**
   * A client for one step: etcd3's circuit breaker opens after a few refused requests (as it
   * would against etcd), failing everything after them on that client.
   */
  const etcd3 = async <T>(step: (client: Etcd3) => Promise<T>): Promise<T> => {
    const client = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
    try {
      return await step(client);
    } finally {
      client.close();
    }
  };

  const alarmsOn = async (endpoint: string): Promise<string[]> => {
    const listed = await chorusInProcess('alarm', 'list', '--endpoints', endpoint);
    assert.equal(listed.code, 0, listed.err.join('\n'));
    return listed.out;
  };

  test('filling it raises NOSPACE everywhere; room and a disarm let writes through again', async () => {
    let written = 0;
    let refusal: Error | undefined;
    await etcd3(async (client) => {
      for (; written < 1_000 && refusal === undefined; written++) {
        try {
          await client.put(`q/${written}`).value(value);
        } catch (error) {
          refusal = error as Error;
        }
      }
    });
    assert.ok(refusal !== undefined, 'a 200 KB quota refuses writes before 2 MB');
    assert.match(refusal.message, spaceExceeded);
    // 2 KB values: about 100 fit, less the overhead each revision counts for.
    assert.ok(written > 50 && written < 100, `${written} puts`);

    // Each member that refused a write raised its own alarm, as in etcd (the refusal comes
    // before its alarm commits); replicated, every member lists the same ones.
    const raised = await agreedAlarms(cluster.endpoints, alarmsOn);
    assert.ok(raised.length >= 1 && raised.length <= 3, raised.join('\n'));
    for (const line of raised) assert.match(line, /^memberID:\d+ alarm:NOSPACE $/);
    // With the alarm applied everywhere, writes that take space are refused whoever gets
    // them (and a member that had not refused one yet may raise its own).
    await etcd3(async (client) => {
      await assert.rejects(client.put('q/more').value('small').exec(), spaceExceeded);
      const lease = client.lease(30, { autoKeepAlive: false });
      lease.on('lost', () => {});
      await assert.rejects(lease.grant(), spaceExceeded);
    });
    await etcd3(async (client) => {
      assert.equal(await client.get('q/0').string(), value);
      // Room: delete everything and compact; the alarm stays until it is disarmed.
      const deleted = await client.delete().prefix('q/').exec();
      assert.equal(Number(deleted.deleted), written - 1);
      const revision = (await client.get('q/0').exec()).header.revision;
      await client.kv.compact({ revision, physical: false });
      // Below the quota now, but the alarm is a replicated fact: writes wait for the disarm.
      await assert.rejects(client.put('q/after-compaction').value('x').exec(), spaceExceeded);
    });
    const active = await agreedAlarms(cluster.endpoints, alarmsOn);
    const disarmed = await chorusInProcess(
      'alarm',
      'disarm',
      '--endpoints',
      cluster.endpoints.join(','),
    );
    assert.equal(disarmed.code, 0, disarmed.err.join('\n'));
    assert.deepEqual(disarmed.out.sort(), active, 'every alarm cleared');
    assert.deepEqual(await agreedAlarms(cluster.endpoints, alarmsOn, 'none'), []);
    await etcd3(async (client) => {
      await client.put('q/again').value(value);
      assert.equal(await client.get('q/again').string(), value);
    });
  });

  test(
    'etcdctl: refused puts, alarm list, endpoint status (the alarm, the size in use), disarm',
    { skip: etcdctlMissing },
    async () => {
      const endpoints = `--endpoints=${cluster.endpoints.join(',')}`;
      let refused = false;
      for (let i = 0; i < 1_000 && !refused; i++) {
        const put = await runProcess('etcdctl', [endpoints, 'put', `e/${i}`, value], {
          env: etcdctlEnv,
        });
        refused = put.code !== 0;
        if (refused) assert.match(put.stderr, spaceExceeded);
      }
      assert.ok(refused);
      const list = await runProcess('etcdctl', [endpoints, 'alarm', 'list'], { env: etcdctlEnv });
      assert.match(list.stdout, /^memberID:\d+ alarm:NOSPACE/);
      const status = await runProcess('etcdctl', [endpoints, 'endpoint', 'status', '-w', 'json'], {
        env: etcdctlEnv,
      });
      const statuses = JSON.parse(status.stdout) as {
        Status: { dbSizeInUse: number; errors?: string[] };
      }[];
      for (const s of statuses) {
        assert.ok(s.Status.dbSizeInUse > quotaBytes * 0.9, `in use ${s.Status.dbSizeInUse}`);
        assert.match((s.Status.errors ?? []).join(), /alarm:NOSPACE/);
      }
      const del = await runProcess('etcdctl', [endpoints, 'del', '--prefix', 'e/'], {
        env: etcdctlEnv,
      });
      assert.equal(del.code, 0, del.stderr);
      // As with etcd, deleting is not enough: the history holds the values until compacted.
      const got = await runProcess('etcdctl', [endpoints, 'get', 'e/0', '-w', 'json'], {
        env: etcdctlEnv,
      });
      const revision = (JSON.parse(got.stdout) as { header: { revision: number } }).header.revision;
      const compacted = await runProcess('etcdctl', [endpoints, 'compaction', String(revision)], {
        env: etcdctlEnv,
      });
      assert.equal(compacted.code, 0, compacted.stderr);
      const disarm = await runProcess('etcdctl', [endpoints, 'alarm', 'disarm'], {
        env: etcdctlEnv,
      });
      assert.equal(disarm.code, 0, disarm.stderr);
      assert.match(disarm.stdout, /alarm:NOSPACE/);
      const put = await runProcess('etcdctl', [endpoints, 'put', 'e/after', 'ok'], {
        env: etcdctlEnv,
      });
      assert.equal(put.code, 0, put.stderr);
    },
  );
});

/**
 * The alarm list, sorted, once every member lists the same set — a non-empty one for
 * 'some', an empty one for 'none' (members apply an alarm a moment apart); fails after 5 s.
 */
async function agreedAlarms(
  endpoints: string[],
  list: (endpoint: string) => Promise<string[]>,
  want: 'some' | 'none' = 'some',
): Promise<string[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const lists = await Promise.all(endpoints.map(async (e) => (await list(e)).sort().join('\n')));
    const agreed = lists.every((l) => l === lists[0]) && (lists[0] === '') === (want === 'none');
    if (agreed) return lists[0] === '' ? [] : lists[0]!.split('\n');
    if (Date.now() > deadline)
      assert.fail(`members list different alarms after 5 s: ${JSON.stringify(lists)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
