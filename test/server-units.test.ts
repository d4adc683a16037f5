// Goal: the node process's pure parts each do what etcd's do, without sockets: settings
// resolve flag > environment > config file > default and refuse bad values with a reason;
// `chorus server --help` documents every setting; int64s beyond 2^53 are refused; the JSON
// codec reads and writes etcd's grpc-gateway JSON; the streaming JSON splitter finds
// objects however the bytes are chunked; the data directory lock refuses a live owner and
// takes over from a dead one; errors map to etcd's gRPC codes and messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { ChorusError } from '../src/core/errors.js';
import { nodeId } from '../src/core/ids.js';
import { KvError } from '../src/kv/errors.js';
import { main } from '../src/cli/main.js';
import {
  ConfigError,
  envName,
  checkAdvertisedPeerUrls,
  fromEnvironment,
  namedMembers,
  parseInitialCluster,
  quotaBytesDefault,
  quotaBytesOf,
  readConfigFile,
  resolveConfig,
  settings,
  type ServerConfig,
} from '../src/server/config.js';
import { int64, txnRequest, uint64 } from '../src/server/convert.js';
import { loadClientTls, loadPeerTls } from '../src/server/tls.js';
import { lateObservation } from '../src/server/server.js';
import { testTls } from './server-helpers.js';
import {
  DataDirError,
  lockFileName,
  openDataDir,
  raftDirName,
  versionFileName,
} from '../src/server/datadir.js';
import { toStatus, StatusError } from '../src/server/errors.js';
import { addedMemberId, addedNodeId, clusterId, memberId } from '../src/server/ids.js';
import {
  decodeMembersAnswer,
  encodeMembersAnswer,
  learnIdentity,
  type JoinTiming,
} from '../src/server/join.js';
import type { Logger } from '../src/env/env.js';
import {
  ClusterMachine,
  encodeClusterCommand,
  encodeMemberContext,
  MemberTable,
} from '../src/server/membership.js';
import { encode } from '../src/core/codec.js';
import type { ConfChange } from '../src/raft/raft.js';
import type { Entry } from '../src/raft/types.js';
import { EtcdJson } from '../src/server/json.js';
import { JsonObjectSplitter } from '../src/server/json-stream.js';

const tmp = (): string => fs.mkdtempSync(join(tmpdir(), 'chorus-units-'));

test('settings: flag beats environment beats config file beats default', () => {
  const file = {
    name: 'n1',
    'initial-cluster': 'n1=http://h1:1,n2=http://h2:2',
    'snapshot-count': '7',
  };
  const environment = { 'snapshot-count': '8', 'heartbeat-interval': '20' };
  const flags = { 'snapshot-count': '9' };
  const config = resolveConfig(flags, environment, file);
  assert.equal(config.snapshotCount, 9);
  assert.equal(config.heartbeatIntervalMs, 20);
  assert.equal(config.name, 'n1');
  assert.equal(config.dataDir, 'n1.chorus');
  assert.equal(config.electionTimeoutMs, 1000);
  assert.equal(config.acceptUrlAuthority, true);
  assert.equal(
    resolveConfig({ 'accept-url-authority': 'false' }, {}, {}).acceptUrlAuthority,
    false,
  );
  assert.deepEqual(
    config.initialCluster.map((m) => [m.name, m.host, m.port]),
    [
      ['n1', 'h1', 1],
      ['n2', 'h2', 2],
    ],
  );
  assert.deepEqual(
    config.listenClient.map((a) => [a.host, a.port]),
    [['localhost', 2379]],
  );
  assert.deepEqual(fromEnvironment({ CHORUS_NAME: 'x', CHORUS_DATA_DIR: '/d', OTHER: 'y' }), {
    name: 'x',
    'data-dir': '/d',
  });
  assert.equal(envName('initial-cluster-state'), 'CHORUS_INITIAL_CLUSTER_STATE');
});

test('settings: bad values are refused with the flag named', () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ 'initial-cluster': 'other=http://h:1' }, /does not list this member/],
    [{ 'initial-cluster': 'default=h:1' }, /initial-cluster/],
    [{ 'listen-client-urls': 'https://127.0.0.1:2379' }, /TLS needs a certificate and key/],
    [{ 'listen-peer-urls': 'https://127.0.0.1:2380' }, /TLS needs .*--peer-cert-file/],
    [{ 'peer-key-file': 'k.pem' }, /--peer-cert-file and --peer-key-file go together/],
    [
      { 'peer-cert-file': 'c', 'peer-key-file': 'k', 'peer-client-cert-auth': 'true' },
      /--peer-client-cert-auth needs --peer-trusted-ca-file/,
    ],
    [{ 'listen-client-urls': 'ftp://127.0.0.1:2379' }, /use http:\/\/ or https:\/\/host:port/],
    [{ 'cert-file': 'c.pem' }, /--cert-file and --key-file go together/],
    [{ 'listen-metrics-urls': 'https://127.0.0.1:2381' }, /--listen-metrics-urls .*--cert-file/],
    [{ 'client-cert-auth': 'true' }, /need --cert-file and --key-file/],
    [
      {
        'listen-client-urls': 'https://h:1',
        'cert-file': 'c',
        'key-file': 'k',
        'client-cert-auth': 'true',
      },
      /--client-cert-auth needs --trusted-ca-file/,
    ],
    [{ 'listen-client-urls': 'http://127.0.0.1' }, /names no port/],
    [{ 'listen-peer-urls': 'http://a:1,http://b:2' }, /exactly one URL/],
    [{ 'initial-cluster-state': 'maybe' }, /'new' or 'existing'/],
    [{ 'heartbeat-interval': '100', 'election-timeout': '300' }, /at least 5 heartbeats/],
    [{ 'snapshot-count': '-1' }, /positive integer/],
    [{ name: 'bad name' }, /--name/],
    [{ 'log-level': 'loud' }, /--log-level/],
    [{ 'accept-url-authority': 'maybe' }, /--accept-url-authority must be true or false/],
    [{ 'initial-cluster': 'default=http://h:1,other=http://h:1' }, /lists http:\/\/h:1 twice/],
    [{ 'initial-cluster': 'default=http://h:1,=http://h:2' }, /without a name founds no cluster/],
    [{ 'initial-advertise-peer-urls': ' , ' }, /--initial-advertise-peer-urls names no URL/],
    [{ 'join-timeout': '-1' }, /--join-timeout must be a whole number/],
  ];
  for (const [flags, message] of bad) assert.throws(() => resolveConfig(flags, {}, {}), message);
});

test('settings: https:// client URLs with their TLS files; loadClientTls reads and checks them', () => {
  const flags = {
    'listen-client-urls': 'https://127.0.0.1:2379,http://127.0.0.1:2381',
    'advertise-client-urls': 'https://127.0.0.1:2379',
    'cert-file': testTls.serverCert,
    'key-file': testTls.serverKey,
    'trusted-ca-file': testTls.ca,
  };
  const config = resolveConfig(flags, {}, {});
  assert.deepEqual(config.listenClient, [
    { host: '127.0.0.1', port: 2379, tls: true },
    { host: '127.0.0.1', port: 2381, tls: false },
  ]);
  assert.deepEqual(config.advertiseClientUrls, ['https://127.0.0.1:2379']);
  assert.deepEqual(config.clientTls, {
    certFile: testTls.serverCert,
    keyFile: testTls.serverKey,
    trustedCaFile: testTls.ca,
    clientCertAuth: false,
  });
  const options = loadClientTls(config.clientTls);
  // As in etcd, a trusted CA file alone already requires client certificates.
  assert.equal(options.requestCert, true);
  assert.equal(options.rejectUnauthorized, true);
  assert.deepEqual(options.ALPNProtocols, ['http/1.1', 'h2']);
  const noCa = loadClientTls({
    certFile: testTls.serverCert,
    keyFile: testTls.serverKey,
    clientCertAuth: false,
  });
  assert.equal(noCa.requestCert, false);
  assert.throws(
    () => loadClientTls({ ...config.clientTls!, certFile: '/nonexistent/c.pem' }),
    /--cert-file \/nonexistent\/c.pem: ENOENT/,
  );
  const peers = resolveConfig(
    {
      'listen-peer-urls': 'https://127.0.0.1:2380',
      'initial-cluster': 'default=https://127.0.0.1:2380',
      'peer-cert-file': testTls.serverCert,
      'peer-key-file': testTls.serverKey,
      'peer-trusted-ca-file': testTls.ca,
      'peer-client-cert-auth': 'true',
    },
    {},
    {},
  );
  assert.deepEqual(peers.listenPeer, { host: '127.0.0.1', port: 2380, tls: true });
  assert.equal(peers.initialCluster[0]!.tls, true);
  const peerTls = loadPeerTls(peers.peerTls!);
  assert.equal(peerTls.server.rejectUnauthorized, true);
  assert.equal(peerTls.server.ALPNProtocols, undefined);
  assert.ok(peerTls.client.cert !== undefined && peerTls.client.ca !== undefined);
  // The other client's key is not the server certificate's.
  assert.throws(
    () => loadClientTls({ ...config.clientTls!, keyFile: testTls.otherClientKey }),
    (error: Error) =>
      error instanceof ConfigError && /--key-file .*other-client.key/.test(error.message),
  );
});

test('settings: --quota-backend-bytes — 0 the default within the heap, negative none, else as given', () => {
  assert.equal(resolveConfig({}, {}, {}).quotaBackendBytes, 0);
  assert.equal(resolveConfig({ 'quota-backend-bytes': '-1' }, {}, {}).quotaBackendBytes, -1);
  assert.throws(
    () => resolveConfig({ 'quota-backend-bytes': '2GB' }, {}, {}),
    /--quota-backend-bytes must be a whole number/,
  );
  const heap = 4 * 1024 ** 3;
  assert.deepEqual(quotaBytesOf(0, 16 * 1024 ** 3), { bytes: quotaBytesDefault });
  assert.deepEqual(quotaBytesOf(0, heap), { bytes: Math.floor(heap * 0.4) });
  assert.equal(quotaBytesOf(-1, heap).bytes, 0);
  assert.match(quotaBytesOf(-1, heap).warning ?? '', /disabled/);
  assert.deepEqual(quotaBytesOf(1_000_000, heap), { bytes: 1_000_000 });
  assert.match(quotaBytesOf(3 * 1024 ** 3, heap).warning ?? '', /more than half the heap limit/);
});

test("settings: --initial-advertise-peer-urls defaults to and defaults --initial-cluster, as etcd's", () => {
  const listed = resolveConfig(
    { name: 'a', 'initial-cluster': 'a=http://h:1,b=http://h:2' },
    {},
    {},
  );
  assert.deepEqual(listed.advertisePeerUrls, ['http://h:1'], 'what --initial-cluster gives it');
  const alone = resolveConfig({ name: 'a' }, { 'initial-advertise-peer-urls': 'http://H:9/' }, {});
  assert.deepEqual(alone.advertisePeerUrls, ['http://h:9'], 'normalized');
  assert.deepEqual(
    alone.initialCluster.map((m) => `${m.name}=${m.peerUrl}`),
    ['a=http://h:9'],
    'etcd: --initial-cluster defaults to this member at its advertised URLs',
  );
  assert.deepEqual(resolveConfig({}, {}, {}).advertisePeerUrls, ['http://localhost:2380']);
  assert.deepEqual(
    resolveConfig({}, fromEnvironment({ CHORUS_INITIAL_ADVERTISE_PEER_URLS: 'http://x:1' }), {})
      .advertisePeerUrls,
    ['http://x:1'],
  );
  assert.equal(resolveConfig({}, {}, {}).joinTimeoutMs, 30_000);
  assert.equal(resolveConfig({ 'join-timeout': '0' }, {}, {}).joinTimeoutMs, 0);

  // etcd's bootstrap check, in its words, both ways; order and duplicates do not matter.
  const cluster = parseInitialCluster('a=http://h:1,a=http://h:2,b=http://h:3');
  checkAdvertisedPeerUrls('a', cluster, ['http://h:2', 'http://h:1']);
  assert.throws(
    () => checkAdvertisedPeerUrls('a', cluster, ['http://h:1']),
    /^ConfigError: --initial-cluster has a=http:\/\/h:2 but missing from --initial-advertise-peer-urls=http:\/\/h:1$/,
  );
  assert.throws(
    () => checkAdvertisedPeerUrls('a', cluster, ['http://h:1', 'http://h:2', 'http://h:4']),
    /^ConfigError: --initial-advertise-peer-urls has http:\/\/h:4 but missing from --initial-cluster=a=http:\/\/h:1,a=http:\/\/h:2$/,
  );
});

test('settings: a YAML or JSON config file, keyed by flag name', () => {
  const dir = tmp();
  try {
    const yaml = join(dir, 'c.yaml');
    fs.writeFileSync(
      yaml,
      'name: a\nlisten-client-urls:\n  - http://127.0.0.1:1\n  - http://127.0.0.1:2\nsnapshot-count: 5\n',
    );
    assert.deepEqual(readConfigFile(yaml), {
      name: 'a',
      'listen-client-urls': 'http://127.0.0.1:1,http://127.0.0.1:2',
      'snapshot-count': '5',
    });
    fs.writeFileSync(
      yaml,
      'name: a\ninitial-advertise-peer-urls:\n  - http://h:1\n  - http://h:2\njoin-timeout: 500\n',
    );
    const fromFile = resolveConfig({}, {}, readConfigFile(yaml));
    assert.deepEqual(fromFile.advertisePeerUrls, ['http://h:1', 'http://h:2']);
    assert.equal(fromFile.joinTimeoutMs, 500);
    const json = join(dir, 'c.json');
    fs.writeFileSync(json, JSON.stringify({ name: 'b', 'election-timeout': 2000 }));
    assert.deepEqual(readConfigFile(json), { name: 'b', 'election-timeout': '2000' });
    fs.writeFileSync(json, JSON.stringify({ nmae: 'b' }));
    assert.throws(() => readConfigFile(json), /unknown setting "nmae"/);
    fs.writeFileSync(json, '{ not yaml: [');
    assert.throws(() => readConfigFile(json), ConfigError);
    assert.throws(() => readConfigFile(join(dir, 'missing.yaml')), /cannot read/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('chorus server --help documents every setting and its environment variable', async () => {
  const out: string[] = [];
  const code = await main(['server', '--help'], {
    out: (l) => out.push(l),
    err: (l) => out.push(l),
  });
  assert.equal(code, 0);
  const help = out.join('\n');
  for (const s of settings) {
    assert.ok(help.includes(`--${s.flag}`), `help lacks --${s.flag}`);
    assert.ok(help.includes(envName(s.flag)), `help lacks ${envName(s.flag)}`);
  }
  assert.ok(help.includes('--config-file'));
  const errors: string[] = [];
  const bad = await main(['server', '--initial-cluster-state', 'maybe'], {
    out: () => {},
    err: (l) => errors.push(l),
  });
  assert.equal(bad, 2);
  assert.match(errors.join('\n'), /initial-cluster-state/);
  // A boolean flag alone means true, as etcd's do: here the check that needs the CA runs.
  const bare: string[] = [];
  const alone = await main(['server', '--client-cert-auth', '--name', 'x'], {
    out: () => {},
    err: (l) => bare.push(l),
  });
  assert.equal(alone, 2);
  assert.match(bare.join('\n'), /--client-cert-auth and --trusted-ca-file need --cert-file/);
});

test('a late observation: blocked when the process used the time, starved when it did not', () => {
  assert.equal(lateObservation(400, 450, 500), undefined);
  assert.deepEqual(lateObservation(900, 950, 1000), {
    message: 'event loop was blocked',
    fields: { blockedMs: 900, cpuMs: 950 },
  });
  assert.match(
    lateObservation(900, 30, 1000)!.message,
    /ran late while the process got little CPU/,
  );
});

test('int64 fields: exact below 2^53, refused beyond', () => {
  assert.equal(int64('9007199254740991', 'x'), 2 ** 53 - 1);
  assert.equal(int64('-5', 'x'), -5);
  assert.equal(int64(7, 'x'), 7);
  for (const bad of ['9007199254740992', '-9007199254740992', '1e3', '', 'abc', 1.5, null]) {
    assert.throws(
      () => int64(bad, 'lease'),
      (e: unknown) => e instanceof StatusError && e.code === Status.INVALID_ARGUMENT,
    );
  }
  assert.equal(uint64('18446744073709551615', 'id'), 2n ** 64n - 1n);
  assert.throws(() => uint64('18446744073709551616', 'id'), StatusError);
});

test('txn requests: at most 128 operations per branch, nesting bounded', () => {
  const put = { requestPut: { key: Buffer.from('k') } };
  assert.equal(
    txnRequest({ compare: [], success: Array(128).fill(put), failure: [] }).success.length,
    128,
  );
  assert.throws(
    () => txnRequest({ compare: [], success: Array(129).fill(put), failure: [] }),
    /too many operations in txn request/,
  );
  let nested: Record<string, unknown> = { compare: [], success: [], failure: [] };
  for (let i = 0; i < 40; i++)
    nested = { compare: [], success: [{ requestTxn: nested }], failure: [] };
  assert.throws(() => txnRequest(nested), /nested deeper/);
});

test("JSON codec: etcd's grpc-gateway encoding both ways", () => {
  const json = new EtcdJson();
  const bytes = json.encode('etcdserverpb.PutRequest', {
    key: Buffer.from('foo').toString('base64'),
    value: 'YmFy',
    lease: '12',
    prevKv: true,
  });
  assert.deepEqual(json.decode('etcdserverpb.PutRequest', bytes), {
    key: 'Zm9v',
    value: 'YmFy',
    lease: '12',
    prev_kv: true,
  });
  // Zero values are left out (a PUT event's type, a false flag), int64 become strings.
  const event = json.encode('etcdserverpb.WatchResponse', {
    header: { revision: 5 },
    watch_id: '0',
    events: [{ type: 'PUT', kv: { key: 'YQ==', mod_revision: 5 } }],
  });
  assert.deepEqual(json.decode('etcdserverpb.WatchResponse', event), {
    header: { revision: '5' },
    events: [{ kv: { key: 'YQ==', mod_revision: '5' } }],
  });
  // A oneof member is kept even when zero: its presence is the information.
  const compare = json.encode('etcdserverpb.Compare', {
    key: 'YQ==',
    target: 'VERSION',
    version: 0,
  });
  assert.deepEqual(json.decode('etcdserverpb.Compare', compare), { key: 'YQ==', version: '0' });
  const refused: [string, unknown][] = [
    ['etcdserverpb.PutRequest', { key: 'YQ==', colour: 1 }],
    ['etcdserverpb.PutRequest', { key: 'not base64!' }],
    ['etcdserverpb.PutRequest', { key: 'YQ==', prev_kv: 'yes' }],
    ['etcdserverpb.PutRequest', { key: 'YQ==', lease: '1.5' }],
    ['etcdserverpb.PutRequest', { key: 'YQ==', lease: '99999999999999999999' }],
    ['etcdserverpb.PutRequest', []],
    ['etcdserverpb.RangeRequest', { key: 'YQ==', sort_order: 'SIDEWAYS' }],
    ['etcdserverpb.RequestOp', { request_put: {}, request_range: {} }],
  ];
  for (const [type, value] of refused)
    assert.throws(
      () => json.encode(type, value),
      (e: unknown) => e instanceof StatusError && e.code === Status.INVALID_ARGUMENT,
      JSON.stringify(value),
    );
});

test('JSON stream splitter: objects however the text is chunked', () => {
  const text = ' {"a":{"b":"}{"}} \n{"c":[1,{"d":"\\"}"}]}{}';
  const expected = ['{"a":{"b":"}{"}}', '{"c":[1,{"d":"\\"}"}]}', '{}'];
  const whole = new JsonObjectSplitter(1000);
  assert.deepEqual(whole.push(text), expected);
  assert.ok(whole.complete);
  const byChar = new JsonObjectSplitter(1000);
  const found: string[] = [];
  for (const c of text) found.push(...byChar.push(c));
  assert.deepEqual(found, expected);
  assert.throws(() => new JsonObjectSplitter(1000).push('[1]'), SyntaxError);
  assert.throws(() => new JsonObjectSplitter(10).push('{"aaaaaaaaaaaaaaa'), RangeError);
  const partial = new JsonObjectSplitter(1000);
  partial.push('{"a":');
  assert.equal(partial.complete, false);
});

test('data directory: a live owner is refused, a dead one taken over', () => {
  const dir = join(tmp(), 'member');
  const id = { nodeId: nodeId('n1'), memberId: '42' };
  try {
    const first = openDataDir(dir, 'n1', 'tok');
    assert.equal(first.fresh, true);
    assert.equal(first.identity, undefined, 'a fresh directory has no identity until recorded');
    assert.equal(fs.existsSync(join(dir, versionFileName)), false);
    assert.deepEqual(first.record(id), id);
    assert.ok(fs.existsSync(join(dir, versionFileName)));
    assert.throws(() => first.record(id), /once/);
    // This process holds it: a lock naming another live process (our parent) refuses.
    first.release();
    fs.writeFileSync(join(dir, lockFileName), `${process.ppid}\n`);
    assert.throws(
      () => openDataDir(dir, 'n1', 'tok'),
      new RegExp(`in use by another Chorus process \\(pid ${process.ppid}\\)`),
    );
    // A lock left by a process that is gone is stale.
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']);
    fs.writeFileSync(join(dir, lockFileName), `${dead.pid}\n`);
    const second = openDataDir(dir, 'n1', 'tok');
    assert.equal(second.tookOverFrom, dead.pid);
    assert.equal(fs.readFileSync(join(dir, lockFileName), 'utf8').trim(), String(process.pid));
    second.release();
    assert.equal(fs.existsSync(join(dir, lockFileName)), false);
    // Another member's directory, a newer format, and a foreign directory are refused.
    assert.throws(() => openDataDir(dir, 'n2', 'tok'), /belongs to member "n1"/);
    assert.throws(() => openDataDir(dir, 'n1', 'other'), /cluster token/);
    fs.writeFileSync(join(dir, versionFileName), JSON.stringify({ format: 99, name: 'n1' }));
    assert.throws(() => openDataDir(dir, 'n1', 'tok'), /newer than this binary/);
    // A directory with state keeps the identity it recorded; one written by format 1 (no
    // membership in its log) is refused.
    fs.writeFileSync(
      join(dir, versionFileName),
      JSON.stringify({ format: 2, name: 'n1', clusterToken: 'tok', ...id }),
    );
    fs.mkdirSync(join(dir, raftDirName));
    const kept = openDataDir(dir, 'n1', 'tok');
    assert.deepEqual(kept.identity, id);
    assert.equal(kept.fresh, false);
    kept.release();
    fs.writeFileSync(
      join(dir, versionFileName),
      JSON.stringify({ format: 1, name: 'n1', clusterToken: 'tok' }),
    );
    assert.throws(() => openDataDir(dir, 'n1', 'tok'), /format 1, written by an older Chorus/);
    const foreign = join(dir, '..', 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(join(foreign, 'data.db'), 'x');
    assert.throws(() => openDataDir(foreign, 'n1', 'tok'), DataDirError);
  } finally {
    fs.rmSync(join(dir, '..'), { recursive: true, force: true });
  }
});

test('ids: stable, distinct, and beyond 2^53 as etcd ids are', () => {
  assert.equal(memberId('t', 'n1'), memberId('t', 'n1'));
  assert.notEqual(memberId('t', 'n1'), memberId('t', 'n2'));
  assert.notEqual(memberId('t', 'n1'), memberId('u', 'n1'));
  assert.equal(clusterId('t', ['n1', 'n2']), clusterId('t', ['n2', 'n1']));
  assert.ok(memberId('t', 'n1') > 0n && memberId('t', 'n1') < 2n ** 64n);
  // An added member's id is new at each MemberAdd of the same URLs: time and a draw go in.
  const urls = ['http://d:2380'];
  const added = addedMemberId('t', urls, 1000, 1);
  assert.equal(added, addedMemberId('t', urls, 1000, 1));
  assert.notEqual(added, addedMemberId('t', urls, 1001, 1));
  assert.notEqual(added, addedMemberId('t', urls, 1000, 2));
  assert.notEqual(added, addedMemberId('t', urls, 1000, 1, 1));
  assert.match(addedNodeId(added), /^[0-9a-f]{16}$/);
});

/** Join rounds without real time: a wait advances the clock and runs its callback at once. */
function fakeTiming(): JoinTiming & { waits: number[] } {
  let now = 0;
  const waits: number[] = [];
  return {
    waits,
    nowMs: () => now,
    wait: (ms, then) => {
      waits.push(ms);
      now += ms;
      then();
    },
  };
}

/** A logger that keeps its warnings, with their fields. */
function warnings(): { log: Logger; said: string[] } {
  const said: string[] = [];
  const log: Logger = {
    debug: () => {},
    info: () => {},
    warn: (message, fields) => said.push(`${message} ${JSON.stringify(fields ?? {})}`),
    error: () => {},
    child: () => log,
  };
  return { log, said };
}

/** A member table of `n1` (peer port 1) and, if `withJoiner`, an unstarted member at `joinerPort`. */
function tableOf(withJoiner: boolean, joinerPort = 4): MemberTable {
  const table = new MemberTable();
  const members: [string, number][] = withJoiner
    ? [
        ['n1', 1],
        ['', joinerPort],
      ]
    : [['n1', 1]];
  for (const [i, [name, port]] of members.entries()) {
    table.applyConfChange({
      changes: [{ type: 'add-voter', node: nodeId(name === '' ? 'abcdef0123456789' : name) }],
      context: encodeMemberContext({
        id: String(100 + i),
        name,
        peerUrls: [`http://127.0.0.1:${port}`],
      }),
    });
  }
  return table;
}

interface Learned {
  text: string;
  /** Ports asked, one string per round. */
  rounds: string[];
  waits: number[];
  said: string[];
}

/**
 * Runs learnIdentity against fake members: `answer(port, round)` is what the member at that
 * port says in that round (1-based); undefined is a refused connection.
 */
function learn(
  config: ServerConfig,
  answer: (port: number, round: number) => Uint8Array | string | undefined,
): Promise<Learned> {
  const timing = fakeTiming();
  const { log, said } = warnings();
  const rounds: number[][] = [[]];
  return new Promise((resolve) =>
    learnIdentity(
      config,
      (address, done) => {
        const round = timing.waits.length + 1;
        while (rounds.length < round) rounds.push([]);
        rounds[round - 1]!.push(address.port);
        const a = answer(address.port, round);
        if (a === undefined) return done(new Error('ECONNREFUSED'), undefined);
        done(undefined, typeof a === 'string' ? new TextEncoder().encode(a) : a);
      },
      timing,
      log,
      (error, joined) =>
        resolve({
          text:
            error !== undefined
              ? error.message
              : `${joined!.identity.nodeId} ${joined!.identity.memberId} of ${joined!.members.length}`,
          rounds: rounds.map((r) => r.join(',')),
          waits: timing.waits,
          said,
        }),
    ),
  );
}

const joinerFlags = {
  name: 'n4',
  'initial-cluster':
    'n1=http://127.0.0.1:1,n2=http://127.0.0.1:2,n3=http://127.0.0.1:3,n4=http://127.0.0.1:4',
  'initial-cluster-state': 'existing',
  'initial-cluster-token': 'tok',
  'join-timeout': '2000',
};

test('join: a new member learns its id from the first member that lists its peer URL', async () => {
  const config = resolveConfig(joinerFlags, {}, {});
  const listing = encodeMembersAnswer('tok', tableOf(true), true);
  const found = await learn(config, (port) => (port === 2 ? listing : undefined));
  assert.equal(found.text, 'abcdef0123456789 101 of 2');
  assert.deepEqual(found.rounds, ['1,2'], 'one round, stopped at the first that lists it');
  assert.deepEqual(found.waits, []);

  // An empty list (a member that has replayed nothing yet) is no answer; the next is asked.
  const empty = encodeMembersAnswer('tok', new MemberTable(), true);
  const past = await learn(config, (port) =>
    port === 1 ? empty : port === 3 ? listing : undefined,
  );
  assert.equal(past.text, 'abcdef0123456789 101 of 2');
  assert.deepEqual(past.rounds, ['1,2,3']);

  // A settled member of this cluster that does not list it is definitive: no second round.
  const unlisted = await learn(config, (port) =>
    port === 1 ? encodeMembersAnswer('tok', tableOf(false), true) : port === 2 ? 'junk' : undefined,
  );
  assert.match(
    unlisted.text,
    /^no member of the cluster lists this member's peer URL http:\/\/127\.0\.0\.1:4/,
  );
  assert.match(unlisted.text, /member add <name> --peer-urls=http:\/\/127\.0\.0\.1:4/);
  assert.match(unlisted.text, /n2 at .*: an answer that is not a member list/);
  assert.deepEqual(unlisted.rounds, ['1,2,3']);
  assert.deepEqual(unlisted.waits, []);
  assert.equal(decodeMembersAnswer(listing)?.members.length, 2);
  assert.equal(decodeMembersAnswer(listing)?.settled, true);
});

test('join: rounds with backoff until a member can answer, bounded by --join-timeout', async () => {
  const config = resolveConfig(joinerFlags, {}, {});
  const listing = encodeMembersAnswer('tok', tableOf(true), true);

  // Nobody reachable: 250, 500, 1000 ms pauses, then the 250 ms left; a fifth round fails.
  const none = await learn(config, () => undefined);
  assert.deepEqual(none.waits, [250, 500, 1000, 250]);
  assert.deepEqual(none.rounds, ['1,2,3', '1,2,3', '1,2,3', '1,2,3', '1,2,3']);
  assert.match(
    none.text,
    /^cannot learn this member's id: no member in --initial-cluster answered \(asked in 5 rounds over --join-timeout 2000 ms; last round: n1 at http:\/\/127\.0\.0\.1:1: ECONNREFUSED/,
  );
  assert.equal(none.said.length, 4, 'each failed round but the last is logged');
  assert.match(
    none.said[0]!,
    /cannot learn this member's id yet; asking again .*"round":1,"retryInMs":250/,
  );

  // Peers that come up after three rounds: the fourth joins.
  const late = await learn(config, (port, round) =>
    round >= 4 && port === 3 ? listing : undefined,
  );
  assert.equal(late.text, 'abcdef0123456789 101 of 2');
  assert.equal(late.rounds.length, 4);

  // A member still starting (no leader seen) whose list predates the member add: asked again.
  const starting = encodeMembersAnswer('tok', tableOf(false), false);
  const settles = await learn(config, (port, round) =>
    port === 1 ? (round < 3 ? starting : listing) : undefined,
  );
  assert.equal(settles.text, 'abcdef0123456789 101 of 2');
  assert.deepEqual(settles.waits, [250, 500]);
  const stuck = await learn(config, (port) => (port === 1 ? starting : undefined));
  assert.match(stuck.text, /no member in --initial-cluster that answered had seen a leader yet/);
  assert.match(stuck.text, /n1 at .*: has not seen a leader since it started/);

  // Another cluster's member says nothing about this one: asked again, named at the end.
  const other = await learn(config, (port) =>
    port === 1 ? encodeMembersAnswer('other', tableOf(true), true) : undefined,
  );
  assert.match(other.text, /belongs to cluster token "other", not "tok"/);
  assert.equal(other.rounds.length, 5);

  // --join-timeout 0: one round, as before retries existed.
  const once = await learn(
    resolveConfig({ ...joinerFlags, 'join-timeout': '0' }, {}, {}),
    () => undefined,
  );
  assert.deepEqual(once.rounds, ['1,2,3']);
  assert.match(once.text, /asked in 1 round over --join-timeout 0 ms/);
});

test('join: the member is found by --initial-advertise-peer-urls; etcdctl-printed clusters are read', async () => {
  // Its advertised URL, not the one --initial-cluster gives it, is what the list is searched
  // for; its own --initial-cluster entry is never asked.
  const advertised = resolveConfig(
    { ...joinerFlags, 'initial-advertise-peer-urls': 'http://127.0.0.1:7' },
    {},
    {},
  );
  const at7 = encodeMembersAnswer('tok', tableOf(true, 7), true);
  const found = await learn(advertised, (port) => (port === 1 ? at7 : undefined));
  assert.equal(found.text, 'abcdef0123456789 101 of 2');
  assert.match(
    found.said.join('\n'),
    /--initial-cluster and --initial-advertise-peer-urls disagree/,
  );
  const notAt4 = await learn(advertised, (port) =>
    port === 1 ? encodeMembersAnswer('tok', tableOf(true, 4), true) : undefined,
  );
  assert.match(notAt4.text, /lists this member's peer URL http:\/\/127\.0\.0\.1:7 /);

  // etcdctl member add prints a member with several peer URLs once per URL, and an unstarted
  // member without a name: a joiner takes both, and asks every address.
  const printed = resolveConfig(
    {
      name: 'n4',
      'initial-cluster':
        'n1=http://127.0.0.1:1,n1=http://127.0.0.1:9,=http://127.0.0.1:5,n4=http://127.0.0.1:4',
      'initial-cluster-state': 'existing',
      'join-timeout': '0',
    },
    {},
    {},
  );
  assert.deepEqual(
    [...namedMembers(printed.initialCluster)].map(([n, ms]) => [n, ms.map((m) => m.port)]),
    [
      ['n1', [1, 9]],
      ['n4', [4]],
    ],
  );
  assert.deepEqual((await learn(printed, () => undefined)).rounds, ['1,9,5']);
});

test("errors: etcd's gRPC codes and exact messages", () => {
  assert.deepEqual(toStatus(new KvError('compacted', 'detail')), {
    code: Status.OUT_OF_RANGE,
    details: 'etcdserver: mvcc: required revision has been compacted',
  });
  assert.deepEqual(toStatus(new ChorusError('no-leader', 'x')), {
    code: Status.UNAVAILABLE,
    details: 'etcdserver: no leader',
  });
  assert.deepEqual(toStatus(new ChorusError('timeout', 'x')), {
    code: Status.UNAVAILABLE,
    details: 'etcdserver: request timed out',
  });
  assert.equal(
    toStatus(new ChorusError('proposal-dropped', 'too many uncommitted bytes (5)')).code,
    Status.RESOURCE_EXHAUSTED,
  );
  assert.equal(toStatus(new TypeError('bug')).code, Status.INTERNAL);
});

test('membership: the member table is built from conf changes and cluster commands alone', () => {
  const applied: Entry[][] = [];
  const inner = {
    apply: (entries: readonly Entry[]) => {
      applied.push([...entries]);
      return entries.map(() => 'kv');
    },
    snapshot: () => new Uint8Array([7]),
    restore: () => {},
  };
  let changes = 0;
  const table = new MemberTable();
  const machine = new ClusterMachine(inner, table, () => changes++);
  let index = 0;
  const conf = (change: ConfChange): Entry => ({
    term: 1,
    index: ++index,
    type: 'conf-change',
    data: encode(change),
  });
  const normal = (data: Uint8Array): Entry => ({ term: 1, index: ++index, type: 'normal', data });
  const founders = ['a', 'b', 'c'].map((name) =>
    conf({
      changes: [{ type: 'add-voter', node: nodeId(name) }],
      context: encodeMemberContext({
        id: memberId('tok', name).toString(),
        name,
        peerUrls: [`http://${name}:2380`],
        clusterId: '99',
      }),
    }),
  );
  assert.deepEqual(machine.apply(founders), [{ ok: true }, { ok: true }, { ok: true }]);
  assert.equal(table.clusterId, '99');
  assert.deepEqual(
    table
      .list()
      .map((m) => m.name)
      .sort(),
    ['a', 'b', 'c'],
  );
  assert.equal(applied.length, 0, 'conf changes never reach the KV machine');

  // A learner added by MemberAdd: named once it publishes; KV entries pass through in order.
  const id = addedMemberId('tok', ['http://d:2380'], 1_700_000_000_000, 7);
  const d = addedNodeId(id);
  const results = machine.apply([
    normal(encode({ t: 'put' })),
    conf({
      changes: [{ type: 'add-learner', node: d }],
      context: encodeMemberContext({ id: id.toString(), name: '', peerUrls: ['http://d:2380'] }),
    }),
    normal(
      encodeClusterCommand({ t: 'attributes', node: d, name: 'd', clientUrls: ['http://d:2379'] }),
    ),
    normal(new Uint8Array([0xc1, 0xff])),
  ]);
  assert.deepEqual(results.slice(0, 3), ['kv', { ok: true }, {}]);
  assert.deepEqual(results[3], { error: 'invalid-argument', detail: 'bad cluster command' });
  assert.equal(applied.length, 1);
  assert.deepEqual(table.byId(id), {
    id,
    node: d,
    name: 'd',
    peerUrls: ['http://d:2380'],
    clientUrls: ['http://d:2379'],
    isLearner: true,
  });

  // Promote d, remove a: a removed id is remembered, and survives a snapshot.
  machine.apply([conf({ changes: [{ type: 'add-voter', node: d }] })]);
  machine.apply([conf({ changes: [{ type: 'remove-node', node: nodeId('a') }] })]);
  assert.equal(table.byId(id)?.isLearner, false);
  assert.equal(table.wasRemoved(memberId('tok', 'a')), true);
  assert.equal(table.isRemoved(nodeId('a')), true);
  const copy = new MemberTable();
  new ClusterMachine(inner, copy, () => {}).restore(machine.snapshot());
  assert.deepEqual(copy.list(), table.list());
  assert.equal(copy.wasRemoved(memberId('tok', 'a')), true);
  assert.equal(copy.clusterId, '99');
  assert.ok(changes >= 4);
});
