// Leases: the replicated table and the leader's clock (src/kv/lease.ts), in isolation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KvError } from '../src/kv/errors.js';
import { LeaseClock, LeaseTable } from '../src/kv/lease.js';

const options = { stallMs: 5000, revokesPerTick: 2, revokeRetryMs: 500, checkpointDriftMs: 1000 };

test('grant raises the TTL to the minimum and refuses a duplicate id or a huge TTL', () => {
  const table = new LeaseTable(2);
  assert.equal(table.grant(7, 1), 2);
  assert.equal(table.grant(8, 10), 10);
  assert.throws(
    () => table.grant(7, 5),
    (e: KvError) => e.kvCode === 'lease-exists',
  );
  assert.throws(
    () => table.grant(9, 1e10),
    (e: KvError) => e.kvCode === 'lease-ttl-too-large',
  );
  assert.throws(
    () => table.grant(0, 5),
    (e: KvError) => e.kvCode === 'invalid-argument',
  );
  assert.deepEqual(table.ids(), [7, 8]);
});

test('revoke returns the attached keys, sorted, and forgets the lease', () => {
  const table = new LeaseTable(1);
  table.grant(1, 5);
  table.attach(1, 'b');
  table.attach(1, 'a');
  table.attach(1, 'c');
  table.detach(1, 'c');
  assert.deepEqual(table.revoke(1), ['a', 'b']);
  assert.equal(table.exists(1), false);
  assert.throws(
    () => table.revoke(1),
    (e: KvError) => e.kvCode === 'lease-not-found',
  );
});

test('snapshot and restore keep keys and checkpoints', () => {
  const table = new LeaseTable(1);
  table.grant(3, 5);
  table.attach(3, 'k');
  table.checkpoint(3, 1234);
  const copy = new LeaseTable(1);
  copy.restore(table.snapshot());
  assert.deepEqual(copy.snapshot(), table.snapshot());
  assert.equal(copy.get(3)?.remainingMs, 1234);
});

test('the leader expires a lease only after its TTL, and keep-alives push it back', () => {
  const table = new LeaseTable(1);
  table.grant(1, 2);
  const clock = new LeaseClock(table, options);
  clock.promote(0);
  assert.deepEqual(clock.tick(1000).revoke, []);
  assert.equal(clock.keepAlive(1, 1500), 2);
  assert.deepEqual(clock.tick(1600).revoke, []);
  assert.deepEqual(clock.tick(3400).revoke, []);
  assert.deepEqual(clock.tick(3500).revoke, [1]);
  // Proposed once; proposed again only after the retry interval.
  assert.deepEqual(clock.tick(3600).revoke, []);
  assert.deepEqual(clock.tick(4000).revoke, [1]);
  assert.throws(
    () => clock.keepAlive(1, 4000),
    (e: KvError) => e.kvCode === 'lease-not-found',
  );
});

test('a new leader starts each lease from its checkpointed remainder, not a full TTL', () => {
  const table = new LeaseTable(1);
  table.grant(1, 10);
  table.grant(2, 10);
  table.checkpoint(1, 3000);
  const clock = new LeaseClock(table, options);
  clock.promote(50_000);
  assert.equal(clock.remainingMs(1, 50_000), 3000);
  assert.equal(clock.remainingMs(2, 50_000), 10_000, 'never checkpointed: the full TTL');
  assert.deepEqual(clock.tick(50_500).revoke, []);
  assert.deepEqual(clock.tick(53_000).revoke, [1]);
});

test('a keep-alive is checkpointed at the next tick; remainders are checkpointed as they fall', () => {
  const table = new LeaseTable(1);
  table.grant(1, 10);
  const clock = new LeaseClock(table, options);
  clock.promote(0);
  assert.deepEqual(clock.tick(100).checkpoint, [], 'promotion recorded the remainder');
  assert.deepEqual(clock.tick(1200).checkpoint, [[1, 8800]]);
  assert.deepEqual(clock.tick(1300).checkpoint, []);
  clock.keepAlive(1, 1350);
  assert.deepEqual(clock.tick(1400).checkpoint, [[1, 9950]]);
});

test('a stall (ticks far apart) moves every deadline back instead of expiring them all', () => {
  const table = new LeaseTable(1);
  table.grant(1, 2);
  table.grant(2, 2);
  const clock = new LeaseClock(table, options);
  clock.promote(0);
  clock.tick(500);
  // The process was paused for 10 s: nobody could reach it to keep leases alive.
  assert.deepEqual(clock.tick(10_500).revoke, []);
  assert.deepEqual(clock.tick(11_000).revoke, []);
  assert.deepEqual(clock.tick(12_100).revoke, [1, 2]);
});

test('revocations per tick are bounded', () => {
  const table = new LeaseTable(1);
  for (let id = 1; id <= 5; id++) table.grant(id, 1);
  const clock = new LeaseClock(table, options);
  clock.promote(0);
  assert.deepEqual(clock.tick(900).revoke, []);
  assert.deepEqual(clock.tick(1000).revoke, [1, 2]);
  assert.deepEqual(clock.tick(1100).revoke, [3, 4]);
  assert.deepEqual(clock.tick(1200).revoke, [5]);
});

test('only a leader serves keep-alives; demotion forgets every deadline', () => {
  const table = new LeaseTable(1);
  table.grant(1, 5);
  const clock = new LeaseClock(table, options);
  assert.throws(() => clock.keepAlive(1, 0));
  clock.promote(0);
  clock.demote();
  assert.equal(clock.remainingMs(1, 0), undefined);
  assert.deepEqual(clock.tick(100_000), { revoke: [], checkpoint: [] });
});
