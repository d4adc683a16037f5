// Goal: a put travels and rests in the log in its compact array form, reads back exactly,
// and logs written before (puts as msgpack objects) still apply the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plain } from './codec-helpers.js';
import { Pieces } from '../src/core/bytes.js';
import { encode } from '../src/core/codec.js';
import { BadInputError } from '../src/core/errors.js';
import { LeaseTable } from '../src/kv/lease.js';
import { decodeKvCommand, encodeKvCommand, KvMachine, type KvCommand } from '../src/kv/machine.js';
import type { Entry } from '../src/raft/types.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

test('a put round-trips through its array form, flags and all', () => {
  const puts: KvCommand[] = [
    { t: 'put', r: { key: enc('a'), value: enc('v'), lease: 0, prevKv: false } },
    {
      t: 'put',
      r: { key: enc('b'), value: new Uint8Array(0), lease: 7, prevKv: true, ignoreValue: true },
    },
    { t: 'put', r: { key: enc('c'), value: enc('w'), lease: 0, ignoreLease: true } },
  ];
  for (const command of puts) {
    const data = encodeKvCommand(command);
    assert.equal(data[0]! & 0xf0, 0x90, 'a msgpack array');
    const r = (command as unknown as { r: Record<string, unknown> }).r;
    assert.deepEqual(plain(decodeKvCommand(data)), {
      t: 'put',
      r: {
        key: r['key'],
        value: r['value'],
        lease: r['lease'],
        prevKv: r['prevKv'] === true,
        ignoreValue: r['ignoreValue'] === true,
        ignoreLease: r['ignoreLease'] === true,
      },
    });
  }
  const del: KvCommand = { t: 'del', r: { key: enc('a') } };
  assert.deepEqual(plain(decodeKvCommand(encodeKvCommand(del))), del);
});

test('old and new forms of a put apply alike; a malformed array is refused', () => {
  const machine = new KvMachine(new LeaseTable(1));
  const put: KvCommand = { t: 'put', r: { key: enc('k'), value: enc('v1'), prevKv: true } };
  const newer: KvCommand = { t: 'put', r: { key: enc('k'), value: enc('v2'), prevKv: true } };
  const entries: Entry[] = [
    { index: 1, term: 1, type: 'normal', data: encode(put) },
    { index: 2, term: 1, type: 'normal', data: encodeKvCommand(newer) },
    { index: 3, term: 1, type: 'normal', data: encode([0, enc('k'), 'not bytes', 0, 0]) },
    { index: 4, term: 1, type: 'normal', data: encode([5, enc('k'), enc('v'), 0, 0]) },
  ];
  const [first, second, bad, unknown] = machine.apply(entries) as Record<string, unknown>[];
  assert.deepEqual(first, { ok: { revision: 2 } });
  const ok = second!['ok'] as { revision: number; prevKv: { value: Uint8Array } };
  assert.equal(ok.revision, 3);
  assert.deepEqual(plain(ok.prevKv.value), enc('v1'));
  assert.equal(bad!['error'], 'invalid-argument');
  assert.equal(unknown!['error'], 'invalid-argument');
  assert.equal(machine.revision(), 3);
});

test('a snapshot restores in steps from pieces; the old state serves until the last step', () => {
  const machine = new KvMachine(new LeaseTable(1), 2);
  const entries: Entry[] = Array.from({ length: 9 }, (_, i) => ({
    index: i + 1,
    term: 1,
    type: 'normal',
    data: encodeKvCommand({ t: 'put', r: { key: enc(`k${i % 5}`), value: enc(`v${i}`) } }),
  }));
  machine.apply(entries);
  const job = machine.snapshotJob();
  while (!job.step());
  // Pieces of 7 bytes: every part of the store spans several.
  const whole = Buffer.concat(job.result());
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < whole.length; at += 7) pieces.push(whole.subarray(at, at + 7));

  const follower = new KvMachine(new LeaseTable(1));
  follower.apply(entries.slice(0, 2));
  let restored = 0;
  follower.listener = {
    events: () => {},
    compacted: () => {},
    granted: () => {},
    revoked: () => {},
    restored: () => restored++,
  };
  const restoring = follower.restoreJob(new Pieces(pieces));
  let steps = 1;
  for (; !restoring.step(); steps++) {
    assert.equal(follower.revision(), 3, 'the old state until the last step');
    assert.equal(restored, 0);
  }
  assert.ok(steps >= 3, `${steps} steps: one per part of two keys, then the index`);
  assert.equal(restored, 1);
  assert.equal(follower.revision(), machine.revision());
  assert.deepEqual(follower.store.hashKv(), machine.store.hashKv());
  assert.ok(Buffer.from(follower.store.snapshot()).equals(machine.store.snapshot()));

  // Truncated, it fails with BadInputError in some step and leaves the old state whole.
  const other = new KvMachine(new LeaseTable(1));
  assert.throws(() => {
    const job = other.restoreJob(new Pieces(pieces.slice(0, -3)));
    while (!job.step());
  }, BadInputError);
  assert.equal(other.revision(), 1);
});

test('alarms: NOSPACE refuses what takes space, CORRUPT every write; both replicate by snapshot', () => {
  const machine = new KvMachine(new LeaseTable(1));
  let index = 0;
  const run = (command: KvCommand): Record<string, unknown> =>
    machine.apply([
      { index: ++index, term: 1, type: 'normal', data: encodeKvCommand(command) },
    ])[0] as Record<string, unknown>;
  const put = (key: string): KvCommand => ({ t: 'put', r: { key: enc(key), value: enc('v') } });
  const txn = (withPut: boolean): KvCommand => ({
    t: 'txn',
    r: {
      compare: [],
      success: [{ range: { key: enc('a') } }],
      // A put nested in the failure branch of an inner txn still takes space.
      failure: withPut
        ? [
            {
              txn: {
                compare: [],
                success: [],
                failure: [{ put: { key: enc('z'), value: enc('') } }],
              },
            },
          ]
        : [],
    },
  });
  assert.ok('ok' in run(put('a')));
  const raised = run({ t: 'alarm', activate: true, member: '7', alarm: 'NOSPACE' });
  assert.deepEqual((raised['ok'] as { alarms: unknown }).alarms, [
    { member: '7', alarm: 'NOSPACE' },
  ]);
  assert.equal(run(put('b'))['error'], 'no-space');
  assert.equal(run(txn(true))['error'], 'no-space');
  assert.equal(run({ t: 'grant', id: 5, ttl: 10 })['error'], 'no-space');
  assert.ok('ok' in run(txn(false)), 'a txn without puts applies');
  assert.ok('ok' in run({ t: 'del', r: { key: enc('a') } }), 'deletes make room');
  assert.ok('ok' in run({ t: 'compact', revision: machine.revision() }), 'so do compactions');
  assert.equal(machine.revision(), 3, 'refused writes took no revision');

  // The alarm travels in a snapshot; one taken without alarms has the old two-item form.
  const copy = new KvMachine(new LeaseTable(1));
  copy.restore(machine.snapshot());
  assert.deepEqual(copy.alarms, [{ member: '7', alarm: 'NOSPACE' }]);

  // Deactivating another member's alarm or another type changes nothing.
  const none = run({ t: 'alarm', activate: false, member: '8', alarm: 'NOSPACE' });
  assert.deepEqual((none['ok'] as { alarms: unknown }).alarms, []);
  run({ t: 'alarm', activate: false, member: '7', alarm: 'NOSPACE' });
  assert.deepEqual(machine.alarms, []);
  assert.ok('ok' in run(put('b')));
  const plainSnapshot = machine.snapshot();
  const back = new KvMachine(new LeaseTable(1));
  back.restore(plainSnapshot);
  assert.deepEqual(back.alarms, []);
  assert.equal(plainSnapshot[0], 0x92, 'a fixarray of two: [store, leases], as before alarms');

  run({ t: 'alarm', activate: true, member: '9', alarm: 'CORRUPT' });
  assert.equal(run({ t: 'del', r: { key: enc('b') } })['error'], 'corrupt');
  assert.equal(run({ t: 'compact', revision: machine.revision() })['error'], 'corrupt');
  assert.equal(
    run({ t: 'alarm', activate: true, member: '9', alarm: 'NONE' as 'NOSPACE' })['error'],
    'invalid-argument',
  );
});
