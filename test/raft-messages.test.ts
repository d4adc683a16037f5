// Goal: a Raft message from the network is checked field by field before it reaches the
// core, so a buggy or hostile peer gets its message dropped with a reason, never a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plain } from './codec-helpers.js';
import { decode, encode } from '../src/core/codec.js';
import { nodeId } from '../src/core/ids.js';
import { fromWire, malformedReason, toWire, type Message } from '../src/raft/messages.js';

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

test('the wire form reads back as the message, every field checked', () => {
  const vote: Message = {
    type: 'vote',
    from: n1,
    to: n2,
    term: 4,
    pre: true,
    lastIndex: 7,
    lastTerm: 3,
    transfer: false,
  };
  const conf: Message = {
    ...app,
    entries: [
      { term: 3, index: 5, type: 'conf-change', data: new Uint8Array([9]) },
      { term: 3, index: 6, type: 'normal', data: new Uint8Array(0) },
    ],
  };
  for (const m of [app, snap, vote, conf, { ...app, entries: [] }])
    assert.deepEqual(plain(fromWire(decode(encode(toWire(m))), n1)), m);
  // A member still sending message objects is understood.
  assert.deepEqual(plain(fromWire(decode(encode(app)), n1)), app);

  // app: [code, from, to, term, index, logTerm, entries, commit]
  const wire = toWire(app);
  const entries = wire[6] as unknown[];
  const withEntries = (flat: unknown[]): unknown[] => [...wire.slice(0, 6), flat, wire[7]];
  const cases: [unknown, RegExp][] = [
    [[99, ...wire.slice(1)], /unknown type code 99/],
    [['length', ...wire.slice(1)], /unknown type code/],
    [wire.slice(0, -1), /bad app: 7 items/],
    [[2, 'n3', ...wire.slice(2)], /not the sender/],
    [[...wire.slice(0, 3), -1, ...wire.slice(4)], /bad term/],
    [withEntries([...entries.slice(0, 2), 7, entries[3]]), /bad app.entries/],
    [withEntries([...entries.slice(0, 2), 'length', entries[3]]), /bad app.entries/],
    [withEntries([...entries.slice(0, 3), 'x']), /bad app.entries/],
    [withEntries(entries.slice(0, 3)), /bad app.entries/],
    [[...wire.slice(0, 7), '4'], /bad app.commit/],
    [{ ...app, term: 1.5 }, /bad term/],
  ];
  for (const [raw, reason] of cases) {
    const got = fromWire(raw, n1);
    assert.match(typeof got === 'string' ? got : 'passed', reason);
  }
});
