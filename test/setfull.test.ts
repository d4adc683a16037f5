// Goal: the set-full checker reports lost values, values missing on some node, failed adds
// that became visible and phantom values, and measures stable visibility latency.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSetFull, type SetAdd, type SetRead } from '../src/check/setfull.js';

const add = (value: number, outcome: SetAdd['outcome'], completeMs?: number): SetAdd => ({
  value,
  node: 'n1',
  invokeMs: 0,
  completeMs,
  outcome,
});
const read = (node: string, timeMs: number, values: number[]): SetRead => ({
  node,
  timeMs,
  values: new Set(values),
});

test('a clean history passes with stable latency from the last missing read', () => {
  const adds = [add(1, 'ok', 10), add(2, 'info'), add(3, 'fail', 5)];
  const reads = [read('n2', 20, []), read('n2', 40, [1]), read('n1', 30, [1, 2])];
  const result = checkSetFull(adds, reads, [read('n1', 100, [1, 2]), read('n2', 100, [1])]);
  assert.deepEqual(result.problems, []);
  assert.equal(result.ok, true);
  assert.deepEqual(result.stableLatencyMs, { median: 10, p99: 10, max: 10 });
});

test('lost, missing on some node, failed-but-visible and phantom values are each reported', () => {
  const adds = [add(1, 'ok', 1), add(2, 'ok', 1), add(3, 'fail', 1)];
  const result = checkSetFull(
    adds,
    [read('n1', 5, [3])],
    [read('n1', 9, [2, 99]), read('n2', 9, [])],
  );
  assert.equal(result.ok, false);
  assert.deepEqual(result.lost, [1]);
  assert.deepEqual(result.neverVisible, [{ value: 2, missingOn: ['n2'] }]);
  assert.deepEqual(result.failedButVisible, [3]);
  assert.deepEqual(result.phantom, [99]);
  assert.equal(result.problems.length, 4);
  assert.match(result.problems[0]!, /1 acknowledged values lost/);
});
