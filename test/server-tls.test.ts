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
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { loadEtcdProto } from '../src/server/proto.js';
import {
  chorusInProcess,
  etcdctlEnv,
  etcdctlMissing,
  eventually,
  httpsRequest,
  runProcess,
  startCluster,
  stopCluster,
  testTls,
  type Cluster,
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
      cluster = await startCluster(3, [], tls);
      urls = cluster.endpoints.map((e) => `https://${e}`);
    });

    after(async () => {
      if (cluster !== undefined) await stopCluster(cluster);
    });

    /** The cluster still serves a TLS client with the right certificate: a write and a read. */
    async function stillServes(key: string): Promise<void> {
      const client = new Etcd3({
        hosts: urls,
        credentials: {
          rootCertificate: read(tls.ca),
          certChain: read(tls.clientCert),
          privateKey: read(tls.clientKey),
        },
      });
      try {
        await client.put(key).value('ok');
        assert.equal(await client.get(key).string(), 'ok');
      } finally {
        client.close();
      }
    }

    test('the etcd3 client with a client certificate: KV, txn, watch and a lease', async () => {
      const client = new Etcd3({
        hosts: urls,
        credentials: {
          rootCertificate: read(tls.ca),
          certChain: read(tls.clientCert),
          privateKey: read(tls.clientKey),
        },
      });
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
