// Goal: a put travels and rests in the log in its compact array form, reads back exactly,
// and logs written before (puts as msgpack objects) still apply the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plain } from './codec-helpers.js';
import { encode } from '../src/core/codec.js';
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
