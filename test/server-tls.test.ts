// Goal: the client port speaks TLS as etcd's does (--cert-file, --key-file,
// --trusted-ca-file, --client-cert-auth), so that clients configured for a secured etcd
// work against Chorus unchanged. A live 3-process cluster with https:// client URLs and
// client certificates required, driven by clients nobody here wrote (the etcd3 npm client
// on grpc-js, etcdctl on Go's gRPC, Node's https for the gateway) and by `chorus` itself;
// clients without a certificate, with one from another CA, or without TLS are refused, and
// the members keep serving. The certificates are testdata/tls (scripts/gen-test-certs.sh).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { loadEtcdProto } from '../src/server/proto.js';
import {
  chorusInProcess,
  etcdctlEnv,
  etcdctlMissing,
  eventually,
  exitWithin,
  freePorts,
  health,
  httpsRequest,
  runProcess,
  serverArgs,
  spawnChorus,
  startCluster,
  stopCluster,
  testTls,
  type Cluster,
  type Member,
} from './server-helpers.js';

const tls = testTls;
const read = (path: string): Buffer => fs.readFileSync(path);

describe(
  'TLS on the client port: 3 processes, client certificates required',
  { timeout: 120_000 },
  () => {
    let cluster: Cluster;
    let urls: string[];

    before(async () => {
      cluster = await startCluster(3, [], { client: true });
      urls = cluster.endpoints.map((e) => `https://${e}`);
    });

    after(async () => {
      if (cluster !== undefined) await stopCluster(cluster);
    });

    /** An etcd3 client of the cluster with the test CA and the test client certificate. */
    const certifiedClient = (): Etcd3 =>
      new Etcd3({
        hosts: urls,
        credentials: {
          rootCertificate: read(tls.ca),
          certChain: read(tls.clientCert),
          privateKey: read(tls.clientKey),
        },
      });

    /** The cluster still serves a TLS client with the right certificate: a write and a read. */
    async function stillServes(key: string): Promise<void> {
      const client = certifiedClient();
      try {
        await client.put(key).value('ok');
        assert.equal(await client.get(key).string(), 'ok');
      } finally {
        client.close();
      }
    }

    test('the etcd3 client with a client certificate: KV, txn, watch and a lease', async () => {
      const client = certifiedClient();
      try {
        await client.put('tls/a').value('1');
        assert.equal(await client.get('tls/a').string(), '1');
        const swapped = await client
          .if('tls/a', 'Value', '==', '1')
          .then(client.put('tls/a').value('2'))
          .commit();
        assert.equal(swapped.succeeded, true);
        const watcher = await client.watch().key('tls/w').create();
        const seen = new Promise<string>((resolve) =>
          watcher.on('put', (kv) => resolve(kv.value.toString())),
        );
        await client.put('tls/w').value('watched');
        assert.equal(await seen, 'watched');
        await watcher.cancel();
        const lease = client.lease(10);
        await lease.put('tls/leased').value('x');
        assert.equal(await client.get('tls/leased').string(), 'x');
        await lease.revoke();
        assert.equal(await client.get('tls/leased').string(), null);
      } finally {
        client.close();
      }
    });

    test('refused: no client certificate, one from another CA, and plaintext gRPC', async () => {
      const refusedWith = async (credentials: grpc.ChannelCredentials): Promise<grpc.status> => {
        const pb = grpc.loadPackageDefinition(loadEtcdProto()) as unknown as {
          etcdserverpb: { KV: new (a: string, c: grpc.ChannelCredentials) => grpc.Client };
        };
        const client = new pb.etcdserverpb.KV(cluster.endpoints[0]!, credentials) as grpc.Client & {
          Range: (
            r: object,
            o: grpc.CallOptions,
            cb: (e: grpc.ServiceError | null) => void,
          ) => void;
        };
        try {
          return await new Promise((resolve) =>
            client.Range({ key: Buffer.from('tls/a') }, { deadline: Date.now() + 3000 }, (error) =>
              resolve(error === null ? grpc.status.OK : error.code),
            ),
          );
        } finally {
          client.close();
        }
      };
      const noCert = await refusedWith(grpc.credentials.createSsl(read(tls.ca)));
      const otherCa = await refusedWith(
        grpc.credentials.createSsl(
          read(tls.ca),
          read(tls.otherClientKey),
          read(tls.otherClientCert),
        ),
      );
      const plaintext = await refusedWith(grpc.credentials.createInsecure());
      const rightCert = await refusedWith(
        grpc.credentials.createSsl(read(tls.ca), read(tls.clientKey), read(tls.clientCert)),
      );
      assert.notEqual(noCert, grpc.status.OK);
      assert.notEqual(otherCa, grpc.status.OK);
      assert.notEqual(plaintext, grpc.status.OK);
      assert.equal(rightCert, grpc.status.OK);
      // The member says why, and keeps serving.
      await eventually('a logged handshake failure', 5000, () =>
        Promise.resolve(
          cluster.members[0]!.stderr.some((l) => l.includes('client TLS handshake failed'))
            ? true
            : undefined,
        ),
      );
      await stillServes('tls/after-refusals');
    });

    test('ALPN: h2 for gRPC clients, HTTP/1.1 for clients that offer both (curl, browsers)', async () => {
      const negotiated = (offered: string[]): Promise<string | false | null> =>
        new Promise((resolve, reject) => {
          const socket = tlsConnect(
            {
              host: '127.0.0.1',
              port: cluster.members[0]!.clientPort,
              ca: read(tls.ca),
              cert: read(tls.clientCert),
              key: read(tls.clientKey),
              ALPNProtocols: offered,
            },
            () => {
              resolve(socket.alpnProtocol);
              socket.destroy();
            },
          );
          socket.on('error', reject);
        });
      assert.equal(await negotiated(['h2']), 'h2');
      assert.equal(await negotiated(['h2', 'http/1.1']), 'http/1.1');
    });

    test('the JSON gateway and /health over https; no certificate, no answer', async () => {
      const port = cluster.members[1]!.clientPort;
      const put = await httpsRequest(port, 'POST', '/v3/kv/put', tls, {
        body: JSON.stringify({
          key: Buffer.from('tls/gw').toString('base64'),
          value: Buffer.from('g').toString('base64'),
        }),
      });
      assert.equal(put.status, 200, put.body);
      const range = await httpsRequest(port, 'POST', '/v3/kv/range', tls, {
        body: JSON.stringify({ key: Buffer.from('tls/gw').toString('base64') }),
      });
      const kvs = (JSON.parse(range.body) as { kvs: { value: string }[] }).kvs;
      assert.equal(Buffer.from(kvs[0]!.value, 'base64').toString(), 'g');
      const health = JSON.parse((await httpsRequest(port, 'GET', '/health', tls)).body) as {
        health: string;
      };
      assert.equal(health.health, 'true');
      await assert.rejects(httpsRequest(port, 'GET', '/health', tls, { clientCert: false }));
    });

    test('chorus with --cacert, --cert and --key; without a certificate it fails', async () => {
      const flags = ['--endpoints', urls.join(','), '--cacert', tls.ca];
      const mine = ['--cert', tls.clientCert, '--key', tls.clientKey];
      const put = await chorusInProcess('put', 'tls/cli', 'c', ...flags, ...mine);
      assert.equal(put.code, 0, put.err.join('\n'));
      const get = await chorusInProcess('get', 'tls/cli', ...flags, ...mine);
      assert.deepEqual(get.out, ['tls/cli', 'c']);
      const refused = await chorusInProcess('get', 'tls/cli', ...flags, '--dial-timeout', '1s');
      assert.equal(refused.code, 1);
      const mixed = await chorusInProcess(
        'get',
        'k',
        '--endpoints',
        `${urls[0]},http://${cluster.endpoints[1]}`,
      );
      assert.equal(mixed.code, 2);
      assert.match(mixed.err.join('\n'), /mixes https:\/\/ with plain endpoints/);
    });

    test('etcdctl 3.4 with --cacert, --cert and --key', { skip: etcdctlMissing }, async () => {
      const etcdctl = (...args: string[]): ReturnType<typeof runProcess> =>
        runProcess(
          'etcdctl',
          [`--endpoints=${urls.join(',')}`, '--dial-timeout=3s', '--command-timeout=10s', ...args],
          { env: etcdctlEnv, timeoutMs: 20_000 },
        );
      const certs = [`--cacert=${tls.ca}`, `--cert=${tls.clientCert}`, `--key=${tls.clientKey}`];
      const put = await etcdctl(...certs, 'put', 'tls/ctl', 'v');
      assert.equal(put.code, 0, put.stderr);
      const get = await etcdctl(...certs, 'get', 'tls/ctl', '--print-value-only');
      assert.equal(get.stdout.trim(), 'v');
      // endpoint status dials each endpoint with its URL as :authority (src/server/authority.ts).
      const status = await etcdctl(...certs, 'endpoint', 'status', '-w', 'json');
      assert.equal(status.code, 0, status.stderr);
      assert.equal((JSON.parse(status.stdout) as unknown[]).length, 3);
      const refused = await etcdctl(`--cacert=${tls.ca}`, 'get', 'tls/ctl');
      assert.notEqual(refused.code, 0);
      await stillServes('tls/after-etcdctl');
    });
  },
);

describe(
  'TLS between members: https:// peer URLs, peer certificates required',
  { timeout: 120_000 },
  () => {
    let cluster: Cluster;

    before(async () => {
      cluster = await startCluster(3, [], { client: true, peer: true });
    });

    after(async () => {
      if (cluster !== undefined) await stopCluster(cluster);
    });

    const b64 = (text: string): string => Buffer.from(text).toString('base64');

    /** POST to a member's JSON gateway over TLS; the parsed answer. */
    async function post(
      port: number,
      path: string,
      body: object,
    ): Promise<Record<string, unknown>> {
      const answer = await httpsRequest(port, 'POST', path, tls, { body: JSON.stringify(body) });
      assert.equal(answer.status, 200, answer.body);
      return JSON.parse(answer.body) as Record<string, unknown>;
    }

    /** The value a member holds for `key`, read locally (serializable), or undefined. */
    async function localValue(port: number, key: string): Promise<string | undefined> {
      const r = await post(port, '/v3/kv/range', { key: b64(key), serializable: true });
      const kvs = r['kvs'] as { value: string }[] | undefined;
      return kvs?.[0] === undefined ? undefined : Buffer.from(kvs[0].value, 'base64').toString();
    }

    test('writes replicate over TLS; a member added at an https:// peer URL joins and catches up', async () => {
      const [first, , third] = cluster.members as [Member, Member, Member];
      await post(first.clientPort, '/v3/kv/put', { key: b64('peer/a'), value: b64('1') });
      await eventually('the write on every member', 10_000, async () =>
        (await localValue(third.clientPort, 'peer/a')) === '1' ? true : undefined,
      );
      const [clientPort, peerPort] = (await freePorts(2)) as [number, number];
      const peerUrl = `https://127.0.0.1:${peerPort}`;
      const added = await post(first.clientPort, '/v3/cluster/member/add', { peerURLs: [peerUrl] });
      const id = (added['member'] as { ID: string }).ID;
      const joiner = spawnChorus([
        ...serverArgs(
          'n4',
          join(cluster.root, 'n4'),
          clientPort,
          peerPort,
          `${cluster.initialCluster},n4=${peerUrl}`,
          {
            client: true,
            peer: true,
          },
        ),
        '--initial-cluster-state',
        'existing',
      ]);
      try {
        // It asked the cluster who it is (a query over TLS), then replicated the log.
        await eventually('n4 holds the write', 30_000, async () =>
          (await health(clientPort, tls))?.mode === 'serving' &&
          (await localValue(clientPort, 'peer/a')) === '1'
            ? true
            : undefined,
        );
        assert.match(joiner.stderr.join('\n'), /learned this member's id from the cluster/);
        await post(first.clientPort, '/v3/cluster/member/remove', { ID: id });
        assert.deepEqual(await exitWithin(joiner, 10_000), { code: 0, signal: null });
      } finally {
        joiner.child.kill('SIGKILL');
      }
    });

    test('a peer port refuses plain TCP and a certificate from another CA, and goes on', async () => {
      const port = cluster.members[1]!.peerPort;
      const closedWithoutAnswer = (socket: net.Socket): Promise<number> =>
        new Promise((resolve) => {
          let received = 0;
          socket.on('data', (d: Buffer) => (received += d.length));
          socket.on('error', () => {});
          socket.on('close', () => resolve(received));
          setTimeout(() => socket.destroy(), 5000);
        });
      const plain = net.connect({ host: '127.0.0.1', port });
      plain.on('connect', () => plain.write(Buffer.from('chorus handshake in the clear')));
      assert.equal(await closedWithoutAnswer(plain), 0);
      const intruder = tlsConnect({
        host: '127.0.0.1',
        port,
        ca: read(tls.ca),
        cert: read(tls.otherClientCert),
        key: read(tls.otherClientKey),
      });
      assert.equal(await closedWithoutAnswer(intruder), 0);
      await eventually('the refusals counted in /metrics', 5000, async () => {
        const metrics = await httpsRequest(cluster.members[1]!.clientPort, 'GET', '/metrics', tls);
        const counted = /chorus_tls_handshake_failures_total\{[^}]*side="peer"[^}]*\} (\d+)/.exec(
          metrics.body,
        );
        return counted !== null && Number(counted[1]) >= 2 ? true : undefined;
      });
      await eventually('the refusals logged', 5000, () =>
        Promise.resolve(
          cluster.members[1]!.stderr.filter((l) => l.includes('peer TLS handshake failed'))
            .length >= 2
            ? true
            : undefined,
        ),
      );
      await post(cluster.members[1]!.clientPort, '/v3/kv/put', {
        key: b64('peer/b'),
        value: b64('2'),
      });
      await eventually('the write after the refusals on every member', 10_000, async () =>
        (await localValue(cluster.members[2]!.clientPort, 'peer/b')) === '2' ? true : undefined,
      );
    });
  },
);

test(
  'rotated certificate files take effect for new connections, without a restart',
  { timeout: 90_000 },
  async () => {
    const dir = fs.mkdtempSync(join(tmpdir(), 'chorus-tls-rotate-'));
    const certFile = join(dir, 'server.crt');
    const keyFile = join(dir, 'server.key');
    fs.copyFileSync(tls.serverCert, certFile);
    fs.copyFileSync(tls.serverKey, keyFile);
    const [clientPort, peerPort, metricsPort] = (await freePorts(3)) as [number, number, number];
    const member = spawnChorus([
      ...serverArgs(
        'r1',
        join(dir, 'data'),
        clientPort,
        peerPort,
        `r1=http://127.0.0.1:${peerPort}`,
      ),
      ...['--listen-client-urls', `https://127.0.0.1:${clientPort}`],
      ...['--cert-file', certFile, '--key-file', keyFile],
      ...['--listen-metrics-urls', `http://127.0.0.1:${metricsPort}`],
    ]);
    /** Whether /health answers a client that trusts only `ca`. */
    const trusted = (ca: string): Promise<boolean> =>
      httpsRequest(clientPort, 'GET', '/health', { ...tls, ca }, { clientCert: false }).then(
        (r) => r.status === 200,
        () => false,
      );
    try {
      await eventually('the member serves over TLS', 20_000, async () =>
        (await trusted(tls.ca)) ? true : undefined,
      );
      assert.equal(await trusted(tls.otherCa), false);
      // --listen-metrics-urls: /metrics and /health in the clear (a Prometheus without the
      // CA), and nothing else there.
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /chorus_raft_term/);
      assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/health`)).status, 200);
      const kv = await fetch(`http://127.0.0.1:${metricsPort}/v3/kv/range`, {
        method: 'POST',
        body: '{}',
      });
      assert.equal(kv.status, 404);
      // The key first: a check between the two writes sees a pair that does not load, logs it
      // and keeps the old one; the next check loads the whole new pair.
      fs.copyFileSync(tls.otherServerKey, keyFile);
      fs.copyFileSync(tls.otherServerCert, certFile);
      await eventually('the rotated certificate in use', 20_000, async () =>
        (await trusted(tls.otherCa)) ? true : undefined,
      );
      assert.equal(await trusted(tls.ca), false);
      assert.ok(member.stderr.some((l) => l.includes('TLS files reloaded')));
      // A broken file is refused and the certificate in use stays.
      fs.writeFileSync(certFile, 'not a certificate');
      await eventually('the broken file noticed', 20_000, () =>
        Promise.resolve(
          member.stderr.some((l) => l.includes('TLS files changed but cannot be used'))
            ? true
            : undefined,
        ),
      );
      assert.equal(await trusted(tls.otherCa), true);
    } finally {
      member.child.kill('SIGTERM');
      await exitWithin(member, 10_000);
      member.child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
