// Goal: a member killed with -9 leaves a stale lock and loses no acknowledged write: the
// restarted process takes the lock over, recovers its WAL and serves the same data at the
// same revision; SIGINT stops it with exit code 0 as SIGTERM does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  eventually,
  health,
  serverArgs,
  spawnChorus,
  startCluster,
  stopCluster,
} from './server-helpers.js';

async function post(port: number, path: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  assert.equal(response.status, 200, path);
  return (await response.json()) as Record<string, unknown>;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

test(
  'kill -9, restart on the same data directory, nothing acknowledged is lost',
  { timeout: 30_000 },
  async () => {
    const cluster = await startCluster(1);
    const m = cluster.members[0]!;
    try {
      let revision = '';
      for (let i = 0; i < 20; i++) {
        const put = await post(m.clientPort, '/v3/kv/put', {
          key: b64(`k${i}`),
          value: b64(`v${i}`),
        });
        revision = (put['header'] as Record<string, string>)['revision']!;
      }
      m.child.kill('SIGKILL');
      assert.equal((await m.exited).signal, 'SIGKILL');

      const again = spawnChorus(
        serverArgs(m.name, m.dataDir, m.clientPort, m.peerPort, cluster.initialCluster),
      );
      Object.assign(m, again);
      await eventually('the restarted member serves', 15_000, async () =>
        (await health(m.clientPort))?.mode === 'serving' ? true : undefined,
      );
      assert.ok(
        again.stderr.some((l) => l.includes('took over a stale data directory lock')),
        again.stderr.join('\n'),
      );
      const range = await post(m.clientPort, '/v3/kv/range', {
        key: b64('k'),
        range_end: b64('l'),
      });
      assert.equal(range['count'], '20');
      assert.equal((range['header'] as Record<string, string>)['revision'], revision);

      m.child.kill('SIGINT');
      assert.equal((await m.exited).code, 0);
    } finally {
      await stopCluster(cluster);
    }
  },
);
