// Goal: the etcdctl-style commands of `chorus` work end to end against a real 3-process
// cluster on loopback: put/get (prefix, revisions, limits, sorting), del, txn read from stdin,
// watch until Ctrl-C, the lease commands, member list, endpoint status/health, move-leader,
// compaction, -w json in etcdctl's own dialect, and etcd's error text with exit code 1 (2 for
// bad usage). Most commands run in-process through `main`; txn (stdin) and watch (SIGINT)
// run as `node bin/chorus.js`, as a person would. The parsers and formatters the commands
// share are checked on their own first, without a cluster.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { main } from '../src/cli/main.js';
import { goDuration, humanBytes } from '../src/cli/client-print.js';
import { parseRequestLine, readTxn } from '../src/cli/kv.js';
import { goJsonStringify, goMessage } from '../src/client/gojson.js';
import {
  argify,
  goUnquote,
  leaseHex,
  parseCompare,
  parseLeaseId,
  rangeRequest,
} from '../src/client/requests.js';
import {
  chorusBin,
  etcdctlEnv,
  etcdctlMissing,
  eventually,
  freePorts,
  runProcess,
  startCluster,
  stopCluster,
  type Cluster,
  type Ran as ChildRun,
} from './server-helpers.js';

interface Ran {
  code: number;
  out: string[];
  err: string[];
}

/** `node bin/chorus.js …` with `input` on stdin; killed if it outlives `timeoutMs`. */
function runChild(args: string[], input: string, timeoutMs = 10_000): Promise<ChildRun> {
  return runProcess(process.execPath, [chorusBin, ...args], { input, timeoutMs });
}

describe('what the commands share, without a cluster', () => {
  test('txn comparisons in etcdctl syntax', () => {
    const mod = parseCompare('mod("k") > "0"');
    assert.deepEqual(
      { result: mod.result, target: mod.target, key: mod.key.toString(), rev: mod.modRevision },
      { result: 'GREATER', target: 'MOD', key: 'k', rev: '0' },
    );
    const value = parseCompare('value("a key")!="x\\ty"');
    assert.equal(value.result, 'NOT_EQUAL');
    assert.equal(value.value?.toString(), 'x\ty');
    assert.equal(parseCompare('ver("k") = "2"').version, '2');
    assert.equal(parseCompare('c("k") < "7"').createRevision, '7');
    assert.equal(parseCompare('lease("k") = "1f"').lease, '31');
    assert.throws(() => parseCompare('size("k") = "1"'), /unknown target size/);
    assert.throws(() => parseCompare('mod(k) = "1"'), /malformed comparison/);
    assert.throws(() => parseCompare('mod("k") = "one"'), /invalid txn compare request/);
    assert.throws(() => parseCompare('mod("k") >= "1"'), /malformed comparison/);
  });

  test('txn request lines reuse the flags of put, get and del', () => {
    const put = parseRequestLine('put k "two words" --prev-kv');
    assert.ok('requestPut' in put);
    assert.equal(put.requestPut.value?.toString(), 'two words');
    assert.equal(put.requestPut.prevKv, true);
    const get = parseRequestLine("get 'a b' --prefix --limit 3");
    assert.ok('requestRange' in get);
    assert.equal(get.requestRange.key.toString(), 'a b');
    assert.equal(get.requestRange.rangeEnd?.toString(), 'a c');
    assert.equal(get.requestRange.limit, '3');
    const del = parseRequestLine('del k z');
    assert.ok('requestDeleteRange' in del);
    assert.equal(del.requestDeleteRange.rangeEnd?.toString(), 'z');
    assert.throws(() => parseRequestLine('put k'), /invalid txn request/);
    assert.throws(() => parseRequestLine('frob k v'), /invalid txn request/);
  });

  test('a txn is three parts separated by blank lines; input may end early', async () => {
    const lines = (text: string): AsyncIterator<string> =>
      (Readable.from(text.split('\n')) as AsyncIterable<string>)[Symbol.asyncIterator]();
    const full = await readTxn(lines('mod("k") > "0"\n\nput k v\nget k\n\ndel k\n'));
    assert.deepEqual([full.compare.length, full.success.length, full.failure.length], [1, 2, 1]);
    const short = await readTxn(lines('\nput k v'));
    assert.deepEqual([short.compare.length, short.success.length, short.failure.length], [0, 1, 0]);
  });

  test('words, quotes and Go escapes as etcdctl reads them', () => {
    assert.deepEqual(argify(`put "a \\"q\\"" 'x y' plain`), ['put', 'a "q"', 'x y', 'plain']);
    assert.deepEqual([...goUnquote('"\\xff\\u00e9\\101\\n"')], [0xff, 0xc3, 0xa9, 0x41, 0x0a]);
    assert.throws(() => goUnquote('"\\q"'), /unknown escape/);
  });

  test('ids in hexadecimal; ranges as clientv3 builds them', () => {
    assert.equal(parseLeaseId('694d7a1b8c6f2a0b'), BigInt('0x694d7a1b8c6f2a0b').toString());
    assert.equal(leaseHex('255'), '00000000000000ff');
    assert.throws(() => parseLeaseId('ffffffffffffffff'), /bad lease ID/);
    assert.throws(() => parseLeaseId('xyz'), /bad lease ID/);
    const all = rangeRequest('', undefined, { prefix: true });
    assert.deepEqual([[...all.key], [...(all.rangeEnd ?? [])]], [[0], [0]]);
    const sorted = rangeRequest('k', undefined, { sortBy: 'modify', order: 'descend' });
    assert.deepEqual([sorted.sortTarget, sorted.sortOrder], ['MOD', 'DESCEND']);
    // Ascending by key is the server's natural order: clientv3 sends no sort at all.
    const natural = rangeRequest('k', undefined, { sortBy: 'KEY', order: 'ASCEND' });
    assert.deepEqual([natural.sortTarget, natural.sortOrder], [undefined, undefined]);
    assert.throws(() => rangeRequest('k', 'z', { prefix: true }), /too many arguments/);
  });

  test("-w json is Go's encoding/json of etcd's structs", () => {
    const header = {
      clusterId: '14841639068965178418',
      memberId: '10276657743932975437',
      revision: '2',
      raftTerm: '0',
    };
    const kv = {
      key: Buffer.from('foo'),
      createRevision: '2',
      modRevision: '2',
      version: '1',
      value: Buffer.from('<b>'),
      lease: '0',
    };
    const text = goJsonStringify(
      goMessage('etcdserverpb.RangeResponse', { header, kvs: [kv], more: false, count: '1' }),
    );
    // Written the way etcdctl 3.5 prints `get foo -w json`: exact uint64s, zero fields left
    // out, base64 bytes.
    assert.equal(
      text,
      '{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":2},' +
        '"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"PGI+"}],"count":1}',
    );
    const txn = goJsonStringify(
      goMessage('etcdserverpb.TxnResponse', {
        header,
        succeeded: true,
        responses: [{ response: 'responsePut', responsePut: { header, prevKv: null } }],
      }),
    );
    assert.match(txn, /"succeeded":true,"responses":\[\{"Response":\{"response_put":\{"header"/);
    const event = goJsonStringify(goMessage('mvccpb.Event', { type: 'DELETE', kv, prevKv: null }));
    assert.match(event, /^\{"type":1,"kv":/);
    assert.equal(goJsonStringify('<&>'), '"\\u003c\\u0026\\u003e"');
  });

  test("Go's durations and go-humanize's sizes", () => {
    assert.equal(goDuration(0n), '0s');
    assert.equal(goDuration(999n), '999ns');
    assert.equal(goDuration(1_500n), '1.5µs');
    assert.equal(goDuration(1_234_567n), '1.234567ms');
    assert.equal(goDuration(2_500_000_000n), '2.5s');
    assert.equal(goDuration(61_000_000_000n), '1m1s');
    assert.equal(humanBytes(5), '5 B');
    assert.equal(humanBytes(3336), '3.3 kB');
    assert.equal(humanBytes(20_480), '20 kB');
    assert.equal(humanBytes(1_500_000), '1.5 MB');
  });
});

describe('chorus client commands against a 3-process cluster', { timeout: 30_000 }, () => {
  let cluster: Cluster | undefined;
  let endpoints = '';

  before(async () => {
    cluster = await startCluster(3);
    endpoints = cluster.endpoints.join(',');
  });

  after(async () => {
    if (cluster !== undefined) await stopCluster(cluster);
  });

  /** `chorus <args> --endpoints <the cluster>` in-process. */
  async function run(...args: string[]): Promise<Ran> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main([...args, '--endpoints', endpoints], {
      out: (line) => out.push(line),
      err: (line) => err.push(line),
    });
    return { code, out, err };
  }

  async function ok(...args: string[]): Promise<string[]> {
    const r = await run(...args);
    assert.equal(r.code, 0, `chorus ${args.join(' ')}: ${r.err.join('\n')}`);
    return r.out;
  }

  async function revision(): Promise<number> {
    const [json] = await ok('get', 'any', '-w', 'json');
    return (JSON.parse(json!) as { header: { revision: number } }).header.revision;
  }

  test('put and get: prefix, revisions, limit, keys-only, count-only, sort', async () => {
    assert.deepEqual(await ok('put', 'fruit/apple', 'red'), ['OK']);
    const before = await revision();
    assert.deepEqual(await ok('put', 'fruit/apple', 'green', '--prev-kv'), [
      'OK',
      'fruit/apple',
      'red',
    ]);
    await ok('put', 'fruit/banana', 'yellow');
    await ok('put', 'fruity', 'not a fruit');

    assert.deepEqual(await ok('get', 'fruit/apple'), ['fruit/apple', 'green']);
    assert.deepEqual(await ok('get', 'fruit/apple', '--rev', String(before)), [
      'fruit/apple',
      'red',
    ]);
    assert.deepEqual(await ok('get', 'fruit/', '--prefix'), [
      'fruit/apple',
      'green',
      'fruit/banana',
      'yellow',
    ]);
    assert.deepEqual(await ok('get', 'fruit/', '--prefix', '--limit', '1'), [
      'fruit/apple',
      'green',
    ]);
    assert.deepEqual(await ok('get', 'fruit/apple', 'fruit/c'), [
      'fruit/apple',
      'green',
      'fruit/banana',
      'yellow',
    ]);
    assert.deepEqual(await ok('get', 'fruit', '--prefix', '--count-only'), ['3']);
    assert.deepEqual(await ok('get', 'fruit/', '--prefix', '--keys-only'), [
      'fruit/apple',
      '',
      'fruit/banana',
      '',
    ]);
    assert.deepEqual(
      await ok(
        'get',
        'fruit',
        '--prefix',
        '--sort-by',
        'KEY',
        '--order',
        'DESCEND',
        '--print-value-only',
      ),
      ['not a fruit', 'yellow', 'green'],
    );
    assert.deepEqual(await ok('get', 'fruit/apple', '--consistency', 's'), [
      'fruit/apple',
      'green',
    ]);
  });

  test('-w json: base64 keys and values, int64 as exact numbers, as etcdctl prints them', async () => {
    const [text] = await ok('get', 'fruit/', '--prefix', '--limit', '1', '-w', 'json');
    const json = JSON.parse(text!) as {
      header: { cluster_id: number; member_id: number; revision: number };
      kvs: { key: string; value: string; create_revision: number; version: number }[];
      more: boolean;
      count: number;
    };
    assert.equal(Buffer.from(json.kvs[0]!.key, 'base64').toString(), 'fruit/apple');
    assert.equal(Buffer.from(json.kvs[0]!.value, 'base64').toString(), 'green');
    assert.equal(json.kvs[0]!.version, 2);
    assert.equal(json.more, true);
    assert.equal(json.count, 2);
    assert.equal(typeof json.header.revision, 'number');
    // Member ids are uint64 beyond 2^53: the text holds every digit, unquoted.
    const [status] = await ok('endpoint', 'status', '-w', 'json');
    const memberIds = [...status!.matchAll(/"member_id":(\d+)/g)].map((m) => m[1]!);
    const [members] = await ok('member', 'list', '-w', 'json');
    for (const id of memberIds) assert.ok(members!.includes(`"ID":${id}`), `${id} in ${members}`);
    const [put] = await ok('put', 'j', 'v', '-w', 'json');
    assert.match(
      put!,
      /^\{"header":\{"cluster_id":\d+,"member_id":\d+,"revision":\d+,"raft_term":\d+\}\}$/,
    );
  });

  // etcdctl from Debian's etcd-client (3.4) when it is installed: the same commands against
  // the same member must print the same bytes. Only what does not change between the two
  // runs is compared (no TTLs, no Raft indexes, one endpoint so the headers agree).
  test('the same output as etcdctl, byte for byte', async (t) => {
    if (etcdctlMissing !== false) return t.skip(etcdctlMissing);
    const one = endpoints.split(',')[0]!;
    const etcdctl = (args: string[]): { status: number | null; stdout: string; stderr: string } => {
      const r = spawnSync('etcdctl', [`--endpoints=${one}`, ...args], {
        env: etcdctlEnv,
        encoding: 'utf8',
        timeout: 10_000,
      });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const chorus = async (
      args: string[],
    ): Promise<{ code: number; stdout: string; stderr: string }> => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main([...args, '--endpoints', one], {
        out: (l) => out.push(l),
        err: (l) => err.push(l),
      });
      return { code, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.join('\n') };
    };
    await ok('put', 'same/a', 'one <&> two');
    await ok('put', 'same/b', '', '--lease', '0');
    for (const args of [
      ['get', 'same/', '--prefix'],
      ['get', 'same/', '--prefix', '-w', 'json'],
      ['get', 'same/', '--prefix', '--keys-only', '--limit', '1', '-w', 'json'],
      ['member', 'list'],
      ['member', 'list', '-w', 'json'],
      ['member', 'list', '-w', 'table'],
      ['lease', 'timetolive', '1234'],
    ]) {
      const theirs = etcdctl(args);
      const ours = await chorus(args);
      assert.equal(theirs.status, 0, theirs.stderr);
      assert.equal(ours.code, 0, ours.stderr);
      assert.equal(ours.stdout, theirs.stdout, args.join(' '));
    }
    const future = ['get', 'same/a', '--rev', '999999'];
    const theirs = etcdctl(future);
    const ours = await chorus(future);
    // etcdctl also logs a JSON warning line first; its last line is the error.
    assert.equal(ours.stderr, theirs.stderr.trim().split('\n').pop());
    assert.deepEqual([ours.code, theirs.status], [1, 1]);
  });

  test('del: one key, a prefix with --prev-kv', async () => {
    await ok('put', 'veg/kale', 'k');
    await ok('put', 'veg/leek', 'l');
    await ok('put', 'veg/okra', 'o');
    assert.deepEqual(await ok('del', 'veg/kale'), ['1']);
    assert.deepEqual(await ok('del', 'veg/kale'), ['0']);
    assert.deepEqual(await ok('del', 'veg/', '--prefix', '--prev-kv'), [
      '2',
      'veg/leek',
      'l',
      'veg/okra',
      'o',
    ]);
    assert.deepEqual(await ok('get', 'veg/', '--prefix'), []);
  });

  test('txn from stdin: compares, success ops, failure ops', async () => {
    await ok('put', 'tx', 'v1');
    const input = [
      'mod("tx") > "0"',
      'value("tx") = "v1"',
      '',
      'put tx v2',
      'get tx',
      '',
      'put tx never',
      '',
    ];
    const success = await runChild(['txn', '--endpoints', endpoints], input.join('\n'));
    assert.equal(success.code, 0, success.stderr);
    assert.deepEqual(success.stdout.split('\n'), ['SUCCESS', '', 'OK', '', 'tx', 'v2', '']);
    // The same txn again: the value is now v2, so the failure branch runs.
    const failure = await runChild(
      ['txn', '-w', 'json', '--endpoints', endpoints],
      input.join('\n'),
    );
    assert.equal(failure.code, 0, failure.stderr);
    const json = JSON.parse(failure.stdout) as { succeeded?: boolean; responses: unknown[] };
    assert.equal(json.succeeded, undefined, 'false is left out, as encoding/json omits it');
    assert.deepEqual(Object.keys((json.responses[0] as { Response: object }).Response), [
      'response_put',
    ]);
    assert.deepEqual(await ok('get', 'tx'), ['tx', 'never']);
    const bad = await runChild(['txn', '--endpoints', endpoints], 'size("tx") = "1"\n');
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /^Error: malformed comparison: size\("tx"\) = "1" \(unknown target size\)\n$/,
    );
  });

  /** `chorus watch …` running until interrupted: its output so far; Ctrl-C and its exit code. */
  function startWatch(args: string[]): {
    stdout(): string;
    interrupt(): Promise<{ code: unknown; stderr: string }>;
    kill(): void;
  } {
    const child = spawn(process.execPath, [chorusBin, 'watch', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    return {
      stdout: () => stdout,
      interrupt: async () => {
        child.kill('SIGINT');
        const code = await Promise.race([
          exited,
          new Promise((r) => setTimeout(() => r('hung'), 5_000)),
        ]);
        return { code, stderr };
      },
      kill: () => {
        if (child.exitCode === null) child.kill('SIGKILL');
      },
    };
  }

  test('watch prints a put as it happens and stops on Ctrl-C with exit code 0', async () => {
    const from = (await revision()) + 1;
    // Starting at the next revision, the put is seen even if it lands before the watch is set.
    const watch = startWatch(['w/', '--prefix', '--rev', String(from), '--endpoints', endpoints]);
    try {
      await ok('put', 'w/one', 'hello');
      await ok('del', 'w/one');
      // Whole events: the output may arrive in pieces, the delete's key after its verb.
      await eventually('the watch prints both events', 10_000, () =>
        Promise.resolve(watch.stdout().includes('DELETE\nw/one\n\n') ? true : undefined),
      );
      assert.deepEqual(watch.stdout().split('\n'), [
        'PUT',
        'w/one',
        'hello',
        'DELETE',
        'w/one',
        '',
        '',
      ]);
      const { code, stderr } = await watch.interrupt();
      assert.equal(code, 0, stderr);
    } finally {
      watch.kill();
    }
  });

  test('lease grant, attach, keep-alive --once, timetolive, list, revoke', async () => {
    const [granted] = await ok('lease', 'grant', '60');
    const match = /^lease ([0-9a-f]{16}) granted with TTL\(60s\)$/.exec(granted!);
    assert.ok(match, granted);
    const id = match[1]!;
    await ok('put', 'leased', 'x', '--lease', id);
    assert.deepEqual(await ok('lease', 'keep-alive', id, '--once'), [
      `lease ${id} keepalived with TTL(60)`,
    ]);
    const [ttl] = await ok('lease', 'timetolive', id, '--keys');
    assert.match(
      ttl!,
      new RegExp(
        `^lease ${id} granted with TTL\\(60s\\), remaining\\(\\d+s\\), attached keys\\(\\[leased\\]\\)$`,
      ),
    );
    const list = await ok('lease', 'list');
    assert.ok(list.includes(id), list.join('\n'));
    assert.match(list[0]!, /^found \d+ leases$/);
    const [json] = await ok('lease', 'timetolive', id, '-w', 'json');
    const parsed = JSON.parse(json!) as { id: number; 'granted-ttl': number; keys: null };
    assert.equal(parsed['granted-ttl'], 60);
    assert.equal(parsed.keys, null);
    assert.equal(json!.match(/"id":(\d+)/)?.[1], BigInt(`0x${id}`).toString());

    assert.deepEqual(await ok('lease', 'revoke', id), [`lease ${id} revoked`]);
    assert.deepEqual(await ok('get', 'leased'), [], 'revoking deletes the attached key');
    assert.deepEqual(await ok('lease', 'timetolive', id), [`lease ${id} already expired`]);
    const again = await run('lease', 'keep-alive', id, '--once');
    assert.deepEqual(
      [again.code, again.err],
      [1, ['Error: etcdserver: requested lease not found']],
    );
    const revoke = await run('lease', 'revoke', id);
    assert.deepEqual(revoke.err, [
      'Error: failed to revoke lease (etcdserver: requested lease not found)',
    ]);
  });

  test('member list, endpoint status and health, per endpoint', async () => {
    const members = await ok('member', 'list');
    assert.equal(members.length, 3);
    for (const line of members)
      assert.match(
        line,
        /^[0-9a-f]+, started, n\d, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+, false$/,
      );

    const status = await ok('endpoint', 'status');
    assert.equal(status.length, 3);
    const eps = endpoints.split(',');
    status.forEach((line, i) => assert.ok(line.startsWith(`${eps[i]}, `), line));
    const leaders = status.filter((line) => line.split(', ')[4] === 'true');
    assert.equal(leaders.length, 1, status.join('\n'));

    const table = await ok('endpoint', 'status', '-w', 'table');
    assert.match(table[1]!, /\|\s+ENDPOINT\s+\|\s+ID\s+\|/);
    assert.equal(table.length, 3 + 4);

    const health = await ok('endpoint', 'health');
    assert.equal(health.length, 3);
    for (const line of health)
      assert.match(
        line,
        /^127\.0\.0\.1:\d+ is healthy: successfully committed proposal: took = [\d.]+(µs|ms|s)$/,
      );
    const [healthJson] = await ok('endpoint', 'health', '-w', 'json');
    const parsed = JSON.parse(healthJson!) as { endpoint: string; health: boolean }[];
    assert.deepEqual(
      parsed.map((h) => [h.endpoint, h.health]),
      eps.map((e) => [e, true]),
    );
  });

  test('errors: etcd text on stderr with exit 1; bad usage exit 2; failover past a dead endpoint', async () => {
    const future = await run('get', 'fruit/apple', '--rev', String((await revision()) + 1000));
    assert.deepEqual(future, {
      code: 1,
      out: [],
      err: ['Error: etcdserver: mvcc: required revision is a future revision'],
    });
    const usage = await run('get', 'k', '--consistency', 'x');
    assert.deepEqual([usage.code, usage.err], [2, ['Error: unknown consistency flag "x"']]);
    assert.equal((await run('get')).code, 2);
    assert.equal((await run('lease', 'revoke', 'not-hex')).code, 2);

    const [deadPort] = await freePorts(1);
    const dead = `127.0.0.1:${deadPort}`;
    const failover = await main(
      ['get', 'fruit/apple', '--endpoints', `${dead},${endpoints}`, '--dial-timeout', '300ms'],
      {
        out: () => undefined,
        err: (line) => assert.fail(line),
      },
    );
    assert.equal(failover, 0);
    const err: string[] = [];
    const none = await main(['get', 'k', '--endpoints', dead, '--dial-timeout', '300ms'], {
      out: () => undefined,
      err: (line) => err.push(line),
    });
    assert.deepEqual([none, err], [1, [`Error: cannot connect to ${dead} (--dial-timeout 0.3s)`]]);
  });

  test("compaction, then a read below it gets etcd's compacted error", async () => {
    await ok('put', 'old', '1');
    const at = await revision();
    await ok('put', 'old', '2');
    assert.deepEqual(await ok('compaction', String(at)), [`compacted revision ${at}`]);
    const below = await run('get', 'old', '--rev', String(at - 1));
    assert.deepEqual(below.err, ['Error: etcdserver: mvcc: required revision has been compacted']);
  });

  test('snapshot save writes a whole file that snapshot status verifies', async () => {
    const dir = fs.mkdtempSync(join(tmpdir(), 'chorus-cli-snapshot-'));
    try {
      const file = join(dir, 'snap.db');
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['snapshot', 'save', file, '--endpoints', endpoints.split(',')[0]!], {
        out: (l) => out.push(l),
        err: (l) => err.push(l),
      });
      assert.deepEqual(
        { code, out, err },
        {
          code: 0,
          out: [`Snapshot saved at ${file}`, 'Server version 3.5.0'],
          err: [],
        },
      );
      assert.ok(!fs.existsSync(`${file}.part`), 'no partial file is left');
      const status = await main(['snapshot', 'status', file], { out: () => {}, err: () => {} });
      assert.equal(status, 0);
      const many = await run('snapshot', 'save', file);
      assert.equal(many.code, 2, 'a snapshot comes from one member, named explicitly');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('move-leader hands leadership to a follower', async () => {
    const status = await ok('endpoint', 'status');
    const follower = status.map((l) => l.split(', ')).find((cols) => cols[4] === 'false')!;
    const [moved] = await ok('move-leader', follower[1]!);
    assert.match(moved!, new RegExp(`^Leadership transferred from [0-9a-f]+ to ${follower[1]}$`));
    const after = await ok('endpoint', 'status');
    const leader = after.map((l) => l.split(', ')).find((cols) => cols[4] === 'true');
    assert.equal(leader?.[1], follower[1]);
  });

  // Last, because it stops a member: a watch moves to another endpoint when its member goes
  // away, and resumes after the last revision it printed.
  test('watch survives the loss of the member serving it', async () => {
    const status = (await ok('endpoint', 'status')).map((line) => line.split(', '));
    const follower = status.find((cols) => cols[4] === 'false')!;
    const member = cluster!.members.find((m) => `127.0.0.1:${m.clientPort}` === follower[0])!;
    const others = cluster!.endpoints.filter((e) => e !== follower[0]);
    const watch = startWatch([
      'lost/',
      '--prefix',
      '--endpoints',
      [follower[0], ...others].join(','),
    ]);
    try {
      // The watch has no --rev here: keep putting until it has seen one, so it is surely set.
      await eventually('the watch sees a put through its first member', 10_000, async () => {
        await ok('put', 'lost/before', 'x');
        return watch.stdout().includes('lost/before') ? true : undefined;
      });
      member.child.kill('SIGTERM');
      await member.exited;
      const after = await main(['put', 'lost/after', 'y', '--endpoints', others.join(',')], {
        out: () => undefined,
        err: (line) => assert.fail(line),
      });
      assert.equal(after, 0);
      await eventually('the watch sees the put after its member stopped', 10_000, () =>
        Promise.resolve(watch.stdout().includes('lost/after') ? true : undefined),
      );
      assert.ok(watch.stdout().endsWith('PUT\nlost/after\ny\n'), watch.stdout());
      const { code, stderr } = await watch.interrupt();
      assert.equal(code, 0, stderr);
    } finally {
      watch.kill();
    }
  });
});
