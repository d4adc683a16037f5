// Goal: each model's sequential specification and the search around it behave as documented:
// set, FIFO queue and fencing-token mutex accept legal histories and name the violation in
// illegal ones; indeterminate and failed operations mean what the history format says; the
// time budget gives `unknown` from an injected clock; partitions by key are independent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJsonl } from '../src/check/formats.js';
import { toJsonl, type HistoryEvent, type Value } from '../src/check/history.js';
import { checkHistory, type CheckResult } from '../src/check/linearizability.js';
import { explainResult } from '../src/check/explain.js';
import { models, type ModelName } from '../src/check/models/index.js';

/** A compact history: [process, type, f, value, key?] per event, in real-time order. */
type Row = [number, HistoryEvent['type'], string, Value, string?];

function history(rows: readonly Row[]): HistoryEvent[] {
  return rows.map(([process, type, f, value, key], index) => ({
    process,
    type,
    f,
    value,
    ...(key === undefined ? {} : { key }),
    time: index,
    index,
  }));
}

function check(model: ModelName, rows: readonly Row[]): CheckResult {
  return checkHistory({ source: 'test', timeUnit: 'event', events: history(rows) }, models[model]);
}

function explained(model: ModelName, rows: readonly Row[]): string {
  return explainResult(check(model, rows), models[model]).join('\n');
}

test('set: reads see every completed add; a lost element is named', () => {
  const ok: Row[] = [
    [0, 'invoke', 'add', 1],
    [1, 'invoke', 'read', null],
    [0, 'ok', 'add', 1],
    [1, 'ok', 'read', []],
    [1, 'invoke', 'read', null],
    [1, 'ok', 'read', [1]],
  ];
  assert.equal(check('set', ok).verdict, 'linearizable');
  const lost: Row[] = [
    [0, 'invoke', 'add', 1],
    [0, 'ok', 'add', 1],
    [0, 'invoke', 'add', 2],
    [0, 'ok', 'add', 2],
    [1, 'invoke', 'read', null],
    [1, 'ok', 'read', [2]],
  ];
  assert.equal(check('set', lost).verdict, 'not-linearizable');
  assert.match(explained('set', lost), /it misses 1/);
});

test('queue: FIFO order, and a dequeue of nil only when empty', () => {
  const ok: Row[] = [
    [0, 'invoke', 'enqueue', 'a'],
    [0, 'ok', 'enqueue', 'a'],
    [0, 'invoke', 'enqueue', 'b'],
    [1, 'invoke', 'dequeue', null],
    [0, 'ok', 'enqueue', 'b'],
    [1, 'ok', 'dequeue', 'a'],
    [1, 'invoke', 'dequeue', null],
    [1, 'ok', 'dequeue', 'b'],
    [1, 'invoke', 'dequeue', null],
    [1, 'ok', 'dequeue', null],
  ];
  assert.equal(check('queue', ok).verdict, 'linearizable');
  const reordered: Row[] = [
    [0, 'invoke', 'enqueue', 'a'],
    [0, 'ok', 'enqueue', 'a'],
    [0, 'invoke', 'enqueue', 'b'],
    [0, 'ok', 'enqueue', 'b'],
    [1, 'invoke', 'dequeue', null],
    [1, 'ok', 'dequeue', 'b'],
  ];
  assert.equal(check('queue', reordered).verdict, 'not-linearizable');
  assert.match(explained('queue', reordered), /it returned "b" but the oldest value is "a"/);
});

test('mutex: one holder at a time and rising fencing tokens', () => {
  const ok: Row[] = [
    [0, 'invoke', 'acquire', null],
    [0, 'ok', 'acquire', 1],
    [1, 'invoke', 'acquire', null],
    [0, 'invoke', 'release', 1],
    [0, 'ok', 'release', 1],
    [1, 'ok', 'acquire', 2],
  ];
  assert.equal(check('mutex', ok).verdict, 'linearizable');
  const twoHolders: Row[] = [
    [0, 'invoke', 'acquire', null],
    [0, 'ok', 'acquire', 1],
    [1, 'invoke', 'acquire', null],
    [1, 'ok', 'acquire', 2],
  ];
  assert.equal(check('mutex', twoHolders).verdict, 'not-linearizable');
  assert.match(
    explained('mutex', twoHolders),
    /process 0 still holds the lock: two holders at once/,
  );
  const staleToken: Row[] = [
    [0, 'invoke', 'acquire', null],
    [0, 'ok', 'acquire', 5],
    [0, 'invoke', 'release', 5],
    [0, 'ok', 'release', 5],
    [1, 'invoke', 'acquire', null],
    [1, 'ok', 'acquire', 3],
  ];
  assert.equal(check('mutex', staleToken).verdict, 'not-linearizable');
  assert.match(explained('mutex', staleToken), /token 3 does not rise above 5/);
  // A holder that crashed mid-acquire may hold the lock forever: a later acquire is then illegal
  // only if the crashed acquire must have happened, which it need not.
  const crashed: Row[] = [
    [0, 'invoke', 'acquire', null],
    [0, 'info', 'acquire', null],
    [1, 'invoke', 'acquire', null],
    [1, 'ok', 'acquire', 1],
  ];
  assert.equal(check('mutex', crashed).verdict, 'linearizable');
});

test('register: indeterminate writes may land late or never; failed ones never', () => {
  const late: Row[] = [
    [0, 'invoke', 'write', 1],
    [0, 'info', 'write', null],
    [1, 'invoke', 'read', null],
    [1, 'ok', 'read', null],
    [1, 'invoke', 'read', null],
    [1, 'ok', 'read', 1],
  ];
  assert.equal(check('register', late).verdict, 'linearizable');
  const failed: Row[] = [
    [0, 'invoke', 'write', 1],
    [0, 'fail', 'write', null],
    [1, 'invoke', 'read', null],
    [1, 'ok', 'read', 1],
  ];
  assert.equal(check('register', failed).verdict, 'not-linearizable');
  const compareFailed: Row[] = [
    [0, 'invoke', 'cas', [null, 1]],
    [0, 'ok', 'cas', false],
  ];
  assert.equal(check('register', compareFailed).verdict, 'not-linearizable');
  assert.match(
    explained('register', compareFailed),
    /its compare failed, yet the register holds nil/,
  );
});

test('kv: keys are checked independently and each failing key is explained', () => {
  const rows: Row[] = [
    [0, 'invoke', 'put', 'x', 'a'],
    [0, 'ok', 'put', 'x', 'a'],
    [1, 'invoke', 'append', 'y', 'b'],
    [1, 'ok', 'append', 'y', 'b'],
    [2, 'invoke', 'get', null, 'b'],
    [2, 'ok', 'get', 'z', 'b'],
    [2, 'invoke', 'get', null, 'a'],
    [2, 'ok', 'get', 'x', 'a'],
  ];
  const result = check('kv', rows);
  assert.deepEqual(
    result.partitions.map((p) => [p.key, p.verdict]),
    [
      ['a', 'linearizable'],
      ['b', 'not-linearizable'],
    ],
  );
  assert.match(explainResult(result, models.kv).join('\n'), /key "b" is not linearizable/);
});

test('the time budget comes from the injected clock and gives unknown, never a guess', () => {
  const rows: Row[] = [];
  for (let p = 0; p < 24; p++) rows.push([p, 'invoke', 'write', p]);
  rows.push([99, 'invoke', 'read', null], [99, 'ok', 'read', 1000]);
  for (let p = 0; p < 24; p++) rows.push([p, 'ok', 'write', p]);
  let now = 0;
  const clock = (): number => (now += 1000);
  const result = checkHistory(
    { source: 'test', timeUnit: 'event', events: history(rows) },
    models.register,
    { clock, timeoutMs: 5000 },
  );
  assert.equal(result.verdict, 'unknown');
  assert.match(result.partitions[0]!.note!, /time budget ran out/);
});

test('jsonl round trip keeps every event', () => {
  const events = history([
    [0, 'invoke', 'cas', [1, 2], 'k'],
    [0, 'ok', 'cas', false, 'k'],
    [1, 'invoke', 'read', null],
  ]);
  const text = toJsonl(events);
  const back = parseJsonl(text, 'roundtrip');
  assert.deepEqual(
    back.events.map(({ line: _line, ...e }) => e),
    events,
  );
  assert.equal(back.timeUnit, 'ns');
});
