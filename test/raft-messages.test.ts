// Goal: a Raft message from the network is checked field by field before it reaches the
// core, so a buggy or hostile peer gets its message dropped with a reason, never a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode } from '../src/core/codec.js';
import { nodeId } from '../src/core/ids.js';
import { malformedReason, type Message } from '../src/raft/messages.js';

const n1 = nodeId('n1');
const n2 = nodeId('n2');
const app: Message = {
  type: 'app',
  from: n1,
  to: n2,
  term: 3,
  index: 4,
  logTerm: 2,
  commit: 4,
  entries: [{ term: 3, index: 5, type: 'normal', data: new Uint8Array([1, 2]) }],
};
const snap: Message = {
  type: 'snap',
  from: n1,
  to: n2,
  term: 3,
  metadata: {
    index: 9,
    term: 2,
    confState: {
      voters: [n1, n2],
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    },
  },
  offset: 0,
  data: new Uint8Array(3),
  done: true,
};

test('well-formed messages pass after a msgpack round trip', () => {
  assert.equal(malformedReason(decode(encode(app)), n1), undefined);
  assert.equal(malformedReason(decode(encode(snap)), n1), undefined);
});

test('each malformed variant is named', () => {
  const cases: [unknown, RegExp][] = [
    [null, /not an object/],
    [{ ...app, type: 'nope' }, /unknown type/],
    [{ ...app, from: 'n3' }, /not the sender/],
    [{ ...app, term: -1 }, /bad term/],
    [{ ...app, term: 1.5 }, /bad term/],
    [{ ...app, entries: 'x' }, /bad app.entries/],
    [{ ...app, entries: [{ term: 1, index: 1, type: 'normal', data: 'x' }] }, /bad app.entries/],
    [{ ...app, commit: '4' }, /bad app.commit/],
    [{ ...snap, metadata: { index: 1, term: 1 } }, /bad snap.metadata/],
    [
      {
        type: 'vote',
        from: n1,
        to: n2,
        term: 1,
        pre: 'yes',
        lastIndex: 0,
        lastTerm: 0,
        transfer: false,
      },
      /bad vote.pre/,
    ],
  ];
  for (const [raw, reason] of cases) assert.match(malformedReason(raw, n1) ?? 'passed', reason);
});
