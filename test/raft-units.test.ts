// Goal: the small pure modules under the Raft core keep their contracts: quorum arithmetic for
// majority and joint configurations (thesis §4.3), follower progress and its in-flight window
// (flow control), and the in-memory log (§5.3 append/conflict rules, fast-backtracking hint,
// §7 compaction and restore).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeId, type NodeId } from '../src/core/ids.js';
import { jointIndex, jointVote, majorityIndex, majorityVote } from '../src/raft/quorum.js';
import { Inflights, Progress } from '../src/raft/progress.js';
import { RaftLog } from '../src/raft/log.js';
import type { Entry, Snapshot } from '../src/raft/types.js';

const ids = (...xs: number[]): Set<NodeId> => new Set(xs.map((x) => nodeId(String(x))));
const acks = (m: Record<number, number>) => (id: NodeId) => m[Number(id)] ?? 0;
const votes = (m: Record<number, boolean>): Map<NodeId, boolean> =>
  new Map(Object.entries(m).map(([k, v]) => [nodeId(k), v]));

function entries(...terms: number[]): Entry[] {
  return terms.map((term, i) => ({ term, index: i + 1, type: 'normal', data: new Uint8Array(0) }));
}

function logWith(...terms: number[]): RaftLog {
  const log = new RaftLog();
  log.append(entries(...terms));
  log.stableTo(log.lastIndex(), log.lastTerm());
  return log;
}

test('majorityIndex is the highest index a majority holds', () => {
  assert.equal(majorityIndex(ids(1), acks({ 1: 7 })), 7);
  assert.equal(majorityIndex(ids(1, 2, 3), acks({ 1: 5, 2: 4, 3: 3 })), 4);
  assert.equal(majorityIndex(ids(1, 2, 3, 4), acks({ 1: 5, 2: 4, 3: 3, 4: 2 })), 3);
  assert.equal(majorityIndex(ids(1, 2, 3, 4, 5), acks({ 1: 9, 2: 9, 3: 1 })), 1);
  assert.equal(majorityIndex(ids(), acks({})), Infinity);
});

test('jointIndex needs a majority of both halves; an empty outgoing half is ignored', () => {
  const a = acks({ 1: 10, 2: 10, 3: 1, 4: 1, 5: 1 });
  assert.equal(jointIndex(ids(1, 2, 3), ids(), a), 10);
  assert.equal(jointIndex(ids(1, 2, 3), ids(3, 4, 5), a), 1);
  assert.equal(jointIndex(ids(), ids(), a), 0);
});

test('majorityVote: won, lost, pending', () => {
  const v = ids(1, 2, 3);
  assert.equal(majorityVote(v, votes({ 1: true, 2: true })), 'won');
  assert.equal(majorityVote(v, votes({ 1: true })), 'pending');
  assert.equal(majorityVote(v, votes({ 1: true, 2: false })), 'pending');
  assert.equal(majorityVote(v, votes({ 1: false, 2: false })), 'lost');
  assert.equal(majorityVote(ids(1, 2, 3, 4), votes({ 1: true, 2: true })), 'pending');
  assert.equal(
    majorityVote(ids(1, 2, 3, 4), votes({ 1: true, 2: true, 3: false, 4: false })),
    'lost',
  );
  assert.equal(majorityVote(ids(), votes({})), 'won');
});

test('jointVote: a loss in either half loses; a win needs both', () => {
  const inc = ids(1, 2, 3);
  const out = ids(3, 4, 5);
  assert.equal(jointVote(inc, out, votes({ 1: true, 2: true, 3: true, 4: true })), 'won');
  assert.equal(jointVote(inc, out, votes({ 1: true, 2: true })), 'pending');
  assert.equal(jointVote(inc, out, votes({ 1: true, 2: true, 4: false, 5: false })), 'lost');
  assert.equal(jointVote(inc, ids(), votes({ 1: true, 3: true })), 'won');
});

test('Inflights: bounded by count and bytes, freed in order', () => {
  const f = new Inflights(3, 100);
  f.add(1, 10);
  f.add(2, 10);
  assert.equal(f.full(), false);
  f.add(3, 10);
  assert.equal(f.full(), true);
  assert.throws(() => f.add(4, 10));
  f.freeTo(2);
  assert.equal(f.count, 1);
  assert.equal(f.full(), false);
  const g = new Inflights(10, 25);
  g.add(1, 20);
  g.add(2, 20);
  assert.equal(g.full(), true, 'bytes at or past the bound');
  g.freeTo(1);
  assert.equal(g.full(), false);
  g.reset();
  assert.equal(g.count, 0);
});

test('Progress: probe sends one at a time, replicate streams, snapshot pauses', () => {
  const pr = new Progress(5, 2, 1000);
  assert.equal(pr.state, 'probe');
  assert.equal(pr.paused(), false);
  pr.sentEntries(6, 10);
  assert.equal(pr.paused(), true, 'probe waits for an answer');
  assert.equal(pr.maybeUpdate(6), true);
  pr.becomeReplicate();
  assert.equal(pr.next, 7);
  pr.sentEntries(8, 10);
  pr.sentEntries(9, 10);
  assert.equal(pr.next, 10);
  assert.equal(pr.paused(), true, 'window of 2 is full');
  pr.inflights.freeTo(8);
  assert.equal(pr.paused(), false);
  assert.equal(pr.maybeUpdate(5), false, 'a stale ack is no news');
  const confState = {
    voters: [],
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  pr.becomeSnapshot({ metadata: { index: 20, term: 1, confState }, data: new Uint8Array(0) });
  assert.equal(pr.paused(), true);
  pr.becomeProbe();
  assert.equal(pr.next, 21, 'after a snapshot, probe resumes after its index');
  pr.checkInvariants();
});

test('Progress.maybeDecrease: stale rejections are ignored; the hint bounds the retry', () => {
  const pr = new Progress(11, 8, 1000);
  pr.match = 3;
  assert.equal(pr.maybeDecrease(7, 2), false, 'not the probe we sent (next-1 = 10)');
  assert.equal(pr.maybeDecrease(10, 5), true);
  assert.equal(pr.next, 6);
  assert.equal(pr.maybeDecrease(5, 0), true);
  assert.equal(pr.next, 4, 'never at or below match');
  const rep = new Progress(11, 8, 1000);
  rep.match = 6;
  rep.becomeReplicate();
  assert.equal(rep.maybeDecrease(5, 0), false, 'at or below match: stale');
  assert.equal(rep.maybeDecrease(9, 0), true);
  assert.equal(rep.next, 7);
});

test('RaftLog.maybeAppend: mismatch, duplicates, conflict truncation, commit bound', () => {
  const log = logWith(1, 1, 2, 2);
  assert.equal(log.maybeAppend(4, 3, 4, []), undefined, 'prev term mismatch');
  assert.equal(log.maybeAppend(5, 2, 4, []), undefined, 'prev beyond the end');
  const dup = entries(1, 1, 2).slice(1);
  assert.equal(log.maybeAppend(1, 1, 2, dup), 3);
  assert.equal(log.lastIndex(), 4, 'matching entries do not truncate');
  assert.equal(log.committed, 2);
  const conflicting: Entry[] = [{ term: 3, index: 3, type: 'normal', data: new Uint8Array(0) }];
  assert.equal(log.maybeAppend(2, 1, 9, conflicting), 3);
  assert.equal(log.lastIndex(), 3, 'the conflicting suffix is gone');
  assert.equal(log.term(3), 3);
  assert.equal(log.committed, 3, 'commit is capped at the last new entry');
  assert.equal(log.stable, 2, 'stability falls back to before the conflict');
  assert.throws(() =>
    log.maybeAppend(1, 1, 3, [{ term: 4, index: 2, type: 'normal', data: new Uint8Array(0) }]),
  );
});

test('RaftLog.findConflictByTerm: the last index at or below a term', () => {
  const log = logWith(1, 1, 2, 2, 4, 4);
  assert.equal(log.findConflictByTerm(6, 3), 4);
  assert.equal(log.findConflictByTerm(6, 4), 6);
  assert.equal(log.findConflictByTerm(6, 1), 2);
  assert.equal(log.findConflictByTerm(6, 0), 0);
  assert.equal(log.findConflictByTerm(10, 2), 4, 'past the end starts at the last index');
});

test('RaftLog.entriesWithin: the entries ending at an index that fit a count and a byte bound', () => {
  const log = new RaftLog();
  // Entries 1..6 of 10, 20, 30, 40, 50, 60 bytes.
  log.append(
    [10, 20, 30, 40, 50, 60].map((size, i) => ({
      term: 1,
      index: i + 1,
      type: 'normal' as const,
      data: new Uint8Array(size),
    })),
  );
  assert.equal(log.entriesWithin(6, 10, 1_000), 6, 'all of them');
  assert.equal(log.entriesWithin(6, 2, 1_000), 2, 'the count bound');
  assert.equal(log.entriesWithin(6, 10, 110), 2, '60 + 50 fit, 40 more does not');
  assert.equal(log.entriesWithin(6, 10, 59), 0, 'not even the last one');
  assert.equal(log.entriesWithin(3, 10, 1_000), 3, 'from an earlier index');
  log.stableTo(6, 1);
  log.commitTo(6);
  log.appliedTo(6);
  log.compact(4);
  assert.equal(log.entriesWithin(6, 10, 1_000), 2, 'only what the log still holds');
});

test('RaftLog.compact keeps the boundary term; restore replaces the log', () => {
  const log = logWith(1, 1, 2, 2, 3);
  log.commitTo(4);
  log.appliedTo(4);
  log.compact(3);
  assert.equal(log.firstIndex(), 4);
  assert.equal(log.term(3), 2);
  assert.equal(log.term(2), undefined);
  assert.equal(log.lastIndex(), 5);
  assert.throws(() => log.compact(5), 'beyond applied');
  log.compact(2);
  assert.equal(log.firstIndex(), 4, 'compacting below the boundary is a no-op');
  log.checkInvariants();
  const snapshot: Snapshot = {
    metadata: {
      index: 10,
      term: 5,
      confState: {
        voters: [],
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      },
    },
    data: new Uint8Array(0),
  };
  log.restore(snapshot);
  assert.equal(log.lastIndex(), 10);
  assert.equal(log.lastTerm(), 5);
  assert.equal(log.committed, 10);
  assert.equal(log.entries.length, 0);
  assert.equal(log.isUpToDate(10, 5), true);
  assert.equal(log.isUpToDate(11, 4), false);
});
