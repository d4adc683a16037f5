// Goal: the MVCC store and the etcd request semantics on top of it (src/kv/mvcc.ts,
// src/kv/apply.ts) answer exactly like a deliberately naive model — a full map per revision,
// transactions run op by op on a copy — through any sequence of puts, deletes, nested
// transactions, ranges at any revision with limits, sorts and filters, compactions, watch
// catch-up, clones, snapshot round-trips and hashes. Focused tests below pin etcd's
// documented edge cases. fast-check prints the seed and path of a failure; replay it with
// CHORUS_FC_SEED=<seed> CHORUS_FC_PATH=<path> node scripts/test.js kv-model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BadInputError } from '../src/core/errors.js';
import { concatBytes, Pieces } from '../src/core/bytes.js';
import { encode } from '../src/core/codec.js';
import { seededRandom } from '../src/core/prng.js';
import { applyDeleteRange, applyPut, applyRange, applyTxn } from '../src/kv/apply.js';
import { KvError } from '../src/kv/errors.js';
import {
  MvccStore,
  fromBinary,
  mvccLimits,
  spanOf,
  toBinary,
  type EventFilter,
  type MvccOptions,
  type WriteEvents,
} from '../src/kv/mvcc.js';
import type {
  Compare,
  KeyValue,
  KvEvent,
  RangeRequest,
  RangeResult,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  TxnResult,
} from '../src/kv/types.js';

/** A fixed seed keeps CI deterministic; CHORUS_FC_SEED (and CHORUS_FC_PATH) replay another. */
const fcOptions = process.env['CHORUS_FC_SEED']
  ? {
      seed: Number(process.env['CHORUS_FC_SEED']),
      path: process.env['CHORUS_FC_PATH'] ?? '',
      endOnFailure: true,
    }
  : { seed: 20261127 };

/** Tiny nodes and log chunks, so short runs split nodes and cross chunk boundaries. */
const small: MvccOptions = { nodeEntriesMax: 4, logChunkEntries: 3 };

// ---------------------------------------------------------------------------------------
// Plain forms: keys and values as latin1 strings, so results compare with deepEqual

const bin = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const str = (b: Uint8Array): string => String.fromCharCode(...b);
const leaseExists = (id: number): boolean => id === 1 || id === 2;
/** Byte equality (msgpackr's output carries extra own properties that deepEqual would see). */
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;

interface Kv {
  key: string;
  value: string;
  create: number;
  mod: number;
  version: number;
  lease: number;
}
interface Event {
  type: 'put' | 'delete';
  kv: Kv;
  prevKv?: Kv;
}

const plainKv = (kv: KeyValue): Kv => ({
  key: str(kv.key),
  value: str(kv.value),
  create: kv.createRevision,
  mod: kv.modRevision,
  version: kv.version,
  lease: kv.lease,
});
const plainEvent = (e: KvEvent): Event =>
  e.prevKv === undefined
    ? { type: e.type, kv: plainKv(e.kv) }
    : { type: e.type, kv: plainKv(e.kv), prevKv: plainKv(e.prevKv) };
const plainRange = (r: RangeResult): unknown => ({
  kvs: r.kvs.map(plainKv),
  more: r.more,
  count: r.count,
});
function plainResponse(r: ResponseOp): unknown {
  if ('range' in r) return { range: plainRange(r.range) };
  if ('put' in r) return { put: r.put.prevKv ? { prevKv: plainKv(r.put.prevKv) } : {} };
  if ('deleteRange' in r)
    return {
      deleteRange: { deleted: r.deleteRange.deleted, prevKvs: r.deleteRange.prevKvs.map(plainKv) },
    };
  return { txn: plainTxn(r.txn) };
}
const plainTxn = (t: TxnResult): unknown => ({
  succeeded: t.succeeded,
  responses: t.responses.map(plainResponse),
});

type Outcome = { error: string } | { result: unknown; revision: number; events: Event[] };

/** The spans a write's events are selected by: every key, and around the keys written. */
function spansAround(written: readonly string[]): [string, string | undefined][] {
  const keys = [...new Set(written)].sort();
  const spans: [string, string | undefined][] = [['\x00', '\x00']];
  keys.forEach((k, i) => {
    spans.push([k, undefined], [k, '\x00'], [k, k + '\x00'], [k + '\x00', '\x00']);
    for (const end of keys.slice(i + 1, i + 3)) spans.push([k, end], [end, k]);
  });
  return spans;
}

const filters: EventFilter[] = [
  { noPut: false, noDelete: false, prevKv: true },
  { noPut: false, noDelete: false, prevKv: false },
  { noPut: true, noDelete: false, prevKv: true },
  { noPut: false, noDelete: true, prevKv: false },
];

/**
 * The events of a write, checked against each other: selecting them by any span and filter
 * (first, while they are still unbuilt) gives what filtering all of them gives.
 */
function writtenEvents(events: WriteEvents, keys: readonly string[]): Event[] {
  const selected = spansAround(keys).flatMap(([lo, end]) =>
    filters.map((filter) => ({
      lo,
      end,
      filter,
      got: events.select(spanOf(bin(lo), end === undefined ? undefined : bin(end)), filter),
    })),
  );
  const all = events.all().map(plainEvent);
  assert.equal(all.length, events.length);
  for (const { lo, end, filter, got } of selected) {
    const want = all
      .filter(
        (e) => inSpan(e.kv.key, lo, end) && !(e.type === 'put' ? filter.noPut : filter.noDelete),
      )
      .map((e) => (filter.prevKv ? e : { type: e.type, kv: e.kv }));
    assert.deepEqual(got.map(plainEvent), want, `select [${lo}, ${end}) ${JSON.stringify(filter)}`);
  }
  return all;
}

function outcome<T>(
  run: () => { result: T; revision: number; events: WriteEvents },
  plain: (t: T) => unknown,
  keys: readonly string[] = [],
): Outcome {
  try {
    const { result, revision, events } = run();
    return { result: plain(result), revision, events: writtenEvents(events, keys) };
  } catch (error) {
    if (error instanceof KvError) return { error: error.kvCode };
    throw error;
  }
}

function errorOf(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    if (error instanceof KvError) return error.kvCode;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------
// Generated requests, in strings; `toX` turns them into the real requests

interface GRange {
  key: string;
  end: string | undefined;
  revision: number;
  limit: number;
  sortOrder: SortOrder | undefined;
  sortTarget: SortTarget | undefined;
  keysOnly: boolean;
  countOnly: boolean;
  minMod: number;
  maxMod: number;
  minCreate: number;
  maxCreate: number;
}
interface GPut {
  key: string;
  value: string;
  lease: number;
  prevKv: boolean;
  ignoreValue: boolean;
  ignoreLease: boolean;
}
interface GDel {
  key: string;
  end: string | undefined;
  prevKv: boolean;
}
interface GCompare {
  key: string;
  end: string | undefined;
  target: Compare['target'];
  result: Compare['result'];
  n: number;
  v: string;
}
type GOp =
  { t: 'range'; r: GRange } | { t: 'put'; r: GPut } | { t: 'del'; r: GDel } | { t: 'txn'; r: GTxn };
interface GTxn {
  compare: GCompare[];
  success: GOp[];
  failure: GOp[];
}

const withEnd = <T extends object>(o: T, end: string | undefined): T =>
  end === undefined ? o : { ...o, rangeEnd: bin(end) };

function toRange(g: GRange): RangeRequest {
  const r: RangeRequest = withEnd({ key: bin(g.key) }, g.end);
  if (g.revision !== 0) r.revision = g.revision;
  if (g.limit !== 0) r.limit = g.limit;
  if (g.sortOrder !== undefined) r.sortOrder = g.sortOrder;
  if (g.sortTarget !== undefined) r.sortTarget = g.sortTarget;
  if (g.keysOnly) r.keysOnly = true;
  if (g.countOnly) r.countOnly = true;
  if (g.minMod !== 0) r.minModRevision = g.minMod;
  if (g.maxMod !== 0) r.maxModRevision = g.maxMod;
  if (g.minCreate !== 0) r.minCreateRevision = g.minCreate;
  if (g.maxCreate !== 0) r.maxCreateRevision = g.maxCreate;
  return r;
}
const toPut = (g: GPut) => ({
  key: bin(g.key),
  value: bin(g.value),
  lease: g.lease,
  prevKv: g.prevKv,
  ignoreValue: g.ignoreValue,
  ignoreLease: g.ignoreLease,
});
const toDel = (g: GDel) => withEnd({ key: bin(g.key), prevKv: g.prevKv }, g.end);
function toCompare(g: GCompare): Compare {
  const base = withEnd({ key: bin(g.key), result: g.result }, g.end);
  switch (g.target) {
    case 'value':
      return { ...base, target: 'value', value: bin(g.v) };
    case 'version':
      return { ...base, target: 'version', version: g.n };
    case 'create':
      return { ...base, target: 'create', createRevision: g.n };
    case 'mod':
      return { ...base, target: 'mod', modRevision: g.n };
    case 'lease':
      return { ...base, target: 'lease', lease: g.n };
  }
}
function toOp(g: GOp): RequestOp {
  switch (g.t) {
    case 'range':
      return { range: toRange(g.r) };
    case 'put':
      return { put: toPut(g.r) };
    case 'del':
      return { deleteRange: toDel(g.r) };
    case 'txn':
      return { txn: toTxn(g.r) };
  }
}
const toTxn = (g: GTxn): TxnRequest => ({
  compare: g.compare.map(toCompare),
  success: g.success.map(toOp),
  failure: g.failure.map(toOp),
});

// Bytes 0x00 and 0x80/0xff check bytewise order (0xff sorts after 'c'); [0] as a key is legal.
const gKey = fc.string({
  unit: fc.constantFrom('\x00', 'a', 'b', 'c', '\x80', '\xff'),
  minLength: 1,
  maxLength: 2,
});
const gValue = fc.string({ unit: fc.constantFrom('x', 'y', '\x00', '\xff'), maxLength: 3 });
const gEnd = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constant('\x00') },
  { weight: 3, arbitrary: gKey },
);
const gRevision = fc.oneof(fc.constant(0), fc.integer({ min: -1, max: 45 }));
const gBound = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 40 }) },
);
const rarely = fc.oneof(
  { weight: 9, arbitrary: fc.constant(false) },
  { weight: 1, arbitrary: fc.constant(true) },
);
const gRange: fc.Arbitrary<GRange> = fc.record({
  key: gKey,
  end: gEnd,
  revision: gRevision,
  limit: fc.oneof(fc.constant(0), fc.integer({ min: -1, max: 4 })),
  sortOrder: fc.constantFrom(undefined, 'none', 'ascend', 'descend'),
  sortTarget: fc.constantFrom(undefined, 'key', 'version', 'create', 'mod', 'value'),
  keysOnly: rarely,
  countOnly: rarely,
  minMod: gBound,
  maxMod: gBound,
  minCreate: gBound,
  maxCreate: gBound,
});
const gPut: fc.Arbitrary<GPut> = fc
  .record({
    key: gKey,
    value: gValue,
    lease: fc.oneof(
      { weight: 8, arbitrary: fc.constant(0) },
      { weight: 3, arbitrary: fc.constantFrom(1, 2) },
      { weight: 1, arbitrary: fc.constant(3) },
    ),
    prevKv: fc.boolean(),
    ignoreValue: rarely,
    ignoreLease: rarely,
  })
  // Mostly well-formed ignore flags, so they reach the store instead of the shape check.
  .map((p) => ({
    ...p,
    value: p.ignoreValue && p.value.length < 2 ? '' : p.value,
    lease: p.ignoreLease && p.lease === 1 ? 0 : p.lease,
  }));
const gDel: fc.Arbitrary<GDel> = fc.record({ key: gKey, end: gEnd, prevKv: fc.boolean() });
const gCompare: fc.Arbitrary<GCompare> = fc.record({
  key: gKey,
  end: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: gEnd }),
  target: fc.constantFrom('value', 'version', 'create', 'mod', 'lease'),
  result: fc.constantFrom('equal', 'greater', 'less', 'not-equal'),
  n: fc.integer({ min: 0, max: 20 }),
  v: gValue,
});
const { txn: gTxn } = fc.letrec<{ txn: GTxn; op: GOp }>((tie) => ({
  txn: fc.record({
    compare: fc.array(gCompare, { maxLength: 3 }),
    success: fc.array(tie('op'), { maxLength: 4 }),
    failure: fc.array(tie('op'), { maxLength: 3 }),
  }),
  op: fc.oneof(
    { maxDepth: 2, depthIdentifier: 'txn' },
    fc.record({ t: fc.constant('range' as const), r: gRange }),
    fc.record({ t: fc.constant('put' as const), r: gPut }),
    fc.record({ t: fc.constant('del' as const), r: gDel }),
    fc.record({ t: fc.constant('txn' as const), r: tie('txn') }),
  ),
}));

type Command =
  | { c: 'put'; r: GPut }
  | { c: 'del'; r: GDel }
  | { c: 'txn'; r: GTxn }
  | { c: 'range'; r: GRange }
  | { c: 'compact'; pick: number }
  | { c: 'events'; pick: number; width: number; key: string; end: string | undefined }
  | { c: 'hash'; pick: number }
  | { c: 'snapshot' }
  | { c: 'clone'; r: GPut };

const gCommand: fc.Arbitrary<Command> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ c: fc.constant('put' as const), r: gPut }) },
  { weight: 3, arbitrary: fc.record({ c: fc.constant('del' as const), r: gDel }) },
  { weight: 5, arbitrary: fc.record({ c: fc.constant('txn' as const), r: gTxn }) },
  { weight: 5, arbitrary: fc.record({ c: fc.constant('range' as const), r: gRange }) },
  { weight: 1, arbitrary: fc.record({ c: fc.constant('compact' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      c: fc.constant('events' as const),
      pick: fc.nat(),
      width: fc.integer({ min: 0, max: 50 }),
      key: gKey,
      end: gEnd,
    }),
  },
  { weight: 1, arbitrary: fc.record({ c: fc.constant('hash' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ c: 'snapshot' as const }) },
  { weight: 1, arbitrary: fc.record({ c: fc.constant('clone' as const), r: gPut }) },
);

// ---------------------------------------------------------------------------------------
// The naive model: every revision's whole map; nothing shared, nothing clever

type Snapshot = ReadonlyMap<string, Kv>;

class ModelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

const inSpan = (k: string, key: string, end: string | undefined): boolean =>
  end === undefined || end === '' ? k === key : end === '\x00' ? k >= key : k >= key && k < end;

class Model {
  /** states[r]: the whole store at revision r; revision 1 is the empty store. */
  states: Snapshot[] = [new Map(), new Map()];
  /** events[r]: the changes of revision r, in order. */
  events: Event[][] = [[], []];
  compacted = 0;
  /** Hashes seen, by "revision/compact revision": the same pair must hash alike forever. */
  hashes = new Map<string, number>();

  get revision(): number {
    return this.states.length - 1;
  }

  copy(): Model {
    const m = new Model();
    m.states = this.states.slice();
    m.events = this.events.slice();
    m.compacted = this.compacted;
    return m;
  }

  range(g: GRange, current: number, working: Snapshot): unknown {
    let rev = g.revision;
    if (rev > current) throw new ModelError('future-rev');
    if (rev <= 0) rev = current;
    if (rev < this.compacted) throw new ModelError('compacted');
    const state = rev > this.revision ? working : this.states[rev]!;
    const all = [...state.values()].filter((kv) => inSpan(kv.key, g.key, g.end));
    all.sort((a, b) => (a.key < b.key ? -1 : 1));
    if (g.countOnly) return { kvs: [], more: false, count: all.length };
    let kvs = all.filter(
      (kv) =>
        (g.maxMod === 0 || kv.mod <= g.maxMod) &&
        (g.minMod === 0 || kv.mod >= g.minMod) &&
        (g.maxCreate === 0 || kv.create <= g.maxCreate) &&
        (g.minCreate === 0 || kv.create >= g.minCreate),
    );
    const target = g.sortTarget ?? 'key';
    const filtered = g.minMod !== 0 || g.maxMod !== 0 || g.minCreate !== 0 || g.maxCreate !== 0;
    const requested = g.sortOrder ?? 'none';
    // etcd decides to fetch everything from the order as requested: with order 'none' it
    // reads limit + 1 keys in key order and sorts only those.
    if (
      !filtered &&
      g.limit > 0 &&
      (requested === 'none' || (target === 'key' && requested === 'ascend'))
    )
      kvs = kvs.slice(0, g.limit + 1);
    const order = requested === 'none' ? (target === 'key' ? 'none' : 'ascend') : requested;
    if (order !== 'none') {
      const field = (kv: Kv): string | number =>
        target === 'key'
          ? kv.key
          : target === 'value'
            ? kv.value
            : target === 'version'
              ? kv.version
              : target === 'create'
                ? kv.create
                : kv.mod;
      const cmp = (a: Kv, b: Kv): number =>
        field(a) < field(b) ? -1 : field(a) > field(b) ? 1 : 0;
      kvs.sort(order === 'ascend' ? cmp : (a, b) => cmp(b, a));
    }
    let more = false;
    if (g.limit > 0 && kvs.length > g.limit) {
      kvs = kvs.slice(0, g.limit);
      more = true;
    }
    return {
      kvs: kvs.map((kv) => (g.keysOnly ? { ...kv, value: '' } : kv)),
      more,
      count: all.length,
    };
  }

  /** Runs ops one by one on a copy; any refusal throws before the copy is committed. */
  write(run: (w: ModelWrite) => unknown): Outcome {
    const w = new ModelWrite(this);
    let result: unknown;
    try {
      result = run(w);
    } catch (error) {
      if (error instanceof ModelError) return { error: error.code };
      throw error;
    }
    if (w.changed) {
      this.states.push(w.working);
      this.events.push(w.events);
    }
    return { result, revision: this.revision, events: w.events };
  }

  eventsBetween(from: number, to: number, key: string, end: string | undefined): Event[] {
    if (from < this.compacted) throw new ModelError('compacted');
    if (to > this.revision) throw new ModelError('future-rev');
    const out: Event[] = [];
    for (let r = Math.max(from, 1); r <= to; r++) {
      let evs = this.events[r]!.filter((e) => inSpan(e.kv.key, key, end));
      if (r === this.compacted) {
        // Compaction at r keeps each key's last change of r, and nothing before it.
        evs = evs.filter((e, i) => !evs.slice(i + 1).some((later) => later.kv.key === e.kv.key));
        evs = evs.map((e) => ({ type: e.type, kv: e.kv }));
      }
      out.push(...evs);
    }
    return out;
  }
}

class ModelWrite {
  readonly pre: Snapshot;
  readonly working: Map<string, Kv>;
  changed = false;
  events: Event[] = [];

  constructor(readonly m: Model) {
    this.pre = m.states[m.revision]!;
    this.working = new Map(this.pre);
  }

  get next(): number {
    return this.m.revision + 1;
  }

  range(g: GRange): unknown {
    // etcd checks a transaction's read revisions against the store before the transaction.
    if (g.revision !== 0 && g.revision > this.m.revision) throw new ModelError('future-rev');
    if (g.revision !== 0 && g.revision < this.m.compacted) throw new ModelError('compacted');
    return this.m.range(g, this.changed ? this.next : this.m.revision, this.working);
  }

  put(g: GPut): unknown {
    if (g.lease !== 0 && !leaseExists(g.lease)) throw new ModelError('lease-not-found');
    const prev = this.working.get(g.key);
    if ((g.ignoreValue || g.ignoreLease) && prev === undefined)
      throw new ModelError('key-not-found');
    const kv: Kv = {
      key: g.key,
      value: g.ignoreValue ? prev!.value : g.value,
      create: prev?.create ?? this.next,
      mod: this.next,
      version: (prev?.version ?? 0) + 1,
      lease: g.ignoreLease ? prev!.lease : g.lease,
    };
    this.working.set(g.key, kv);
    this.changed = true;
    this.events.push(prev === undefined ? { type: 'put', kv } : { type: 'put', kv, prevKv: prev });
    return g.prevKv && prev !== undefined ? { prevKv: prev } : {};
  }

  del(g: GDel): unknown {
    const keys = [...this.working.keys()].filter((k) => inSpan(k, g.key, g.end)).sort();
    const prevs = keys.map((k) => this.working.get(k)!);
    for (const prev of prevs) {
      this.working.delete(prev.key);
      this.changed = true;
      const kv = { key: prev.key, value: '', create: 0, mod: this.next, version: 0, lease: 0 };
      this.events.push({ type: 'delete', kv, prevKv: prev });
    }
    return { deleted: keys.length, prevKvs: g.prevKv ? prevs : [] };
  }

  txn(g: GTxn): unknown {
    const ok = g.compare.every((c) => this.holds(c));
    const responses = (ok ? g.success : g.failure).map((op) => {
      switch (op.t) {
        case 'range':
          return { range: this.range(op.r) };
        case 'put':
          return { put: this.put(op.r) };
        case 'del':
          return { deleteRange: this.del(op.r) };
        case 'txn':
          return { txn: this.txn(op.r) };
      }
    });
    return { succeeded: ok, responses };
  }

  /** Compares see the store before the transaction, nested ones too. */
  private holds(c: GCompare): boolean {
    const kvs = [...this.pre.values()].filter((kv) => inSpan(kv.key, c.key, c.end));
    if (kvs.length === 0 && c.target === 'value') return false;
    const check = (kv: Kv | undefined): boolean => {
      const [mine, theirs] =
        c.target === 'value'
          ? [kv?.value ?? '', c.v]
          : [
              kv === undefined
                ? 0
                : c.target === 'version'
                  ? kv.version
                  : c.target === 'create'
                    ? kv.create
                    : c.target === 'mod'
                      ? kv.mod
                      : kv.lease,
              c.n,
            ];
      const order = mine < theirs ? -1 : mine > theirs ? 1 : 0;
      return c.result === 'equal'
        ? order === 0
        : c.result === 'not-equal'
          ? order !== 0
          : c.result === 'greater'
            ? order > 0
            : order < 0;
    };
    return kvs.length === 0 ? check(undefined) : kvs.every(check);
  }
}

/** etcd's request shape checks, in its order. */
function shapeError(g: GTxn, budget: number): string | undefined {
  const count = Math.max(g.compare.length, g.success.length, g.failure.length);
  if (count > budget) return 'too-many-ops';
  for (const op of [...g.success, ...g.failure]) {
    const e =
      op.t === 'put'
        ? putShapeError(op.r)
        : op.t === 'txn'
          ? shapeError(op.r, budget - count)
          : undefined;
    if (e !== undefined) return e;
  }
  return undefined;
}
const putShapeError = (g: GPut): string | undefined =>
  g.ignoreValue && g.value.length > 0
    ? 'value-provided'
    : g.ignoreLease && g.lease !== 0
      ? 'lease-provided'
      : undefined;

/** The keys a transaction names in its puts and deletes, nested ones included. */
function keysOf(g: GTxn): string[] {
  return [...g.success, ...g.failure].flatMap((op) =>
    op.t === 'put' ? [op.r.key] : op.t === 'del' ? [op.r.key] : op.t === 'txn' ? keysOf(op.r) : [],
  );
}

/** A necessary condition for 'duplicate-key': some key is put twice, or put and deleted. */
function mayOverlap(g: GTxn): boolean {
  const puts: string[] = [];
  const dels: GDel[] = [];
  const walk = (t: GTxn): void => {
    for (const op of [...t.success, ...t.failure]) {
      if (op.t === 'put') puts.push(op.r.key);
      else if (op.t === 'del') dels.push(op.r);
      else if (op.t === 'txn') walk(op.r);
    }
  };
  walk(g);
  return (
    new Set(puts).size < puts.length ||
    puts.some((k) =>
      dels.some((d) =>
        d.end === undefined || d.end === '' ? k === d.key : k >= d.key && k < d.end,
      ),
    )
  );
}

// ---------------------------------------------------------------------------------------
// The run

interface Pair {
  store: MvccStore;
  model: Model;
}

/** The store's whole readable history equals the model's, and its structure holds. */
function fullCheck({ store, model }: Pair): void {
  store.checkInvariants();
  assert.equal(store.revision, model.revision);
  assert.equal(store.compactRevision, model.compacted);
  for (let rev = Math.max(1, model.compacted); rev <= model.revision; rev++) {
    const got = applyRange(store, { key: bin('\x00'), rangeEnd: bin('\x00'), revision: rev });
    const want = [...model.states[rev]!.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
    assert.deepEqual(got.kvs.map(plainKv), want, `state at revision ${rev}`);
  }
  const events = store.eventsBetween(model.compacted, model.revision, bin('\x00'), bin('\x00'));
  assert.deepEqual(
    events.map(plainEvent),
    model.eventsBetween(model.compacted, model.revision, '\x00', '\x00'),
    'every retained event',
  );
}

function step(p: Pair, cmd: Command, clones: Pair[]): void {
  const { store, model } = p;
  switch (cmd.c) {
    case 'put': {
      const got = outcome(
        () => applyPut(store, toPut(cmd.r), leaseExists),
        (r) => (r.prevKv ? { prevKv: plainKv(r.prevKv) } : {}),
        [cmd.r.key],
      );
      const shape = putShapeError(cmd.r);
      assert.deepEqual(got, shape ? { error: shape } : model.write((w) => w.put(cmd.r)));
      return;
    }
    case 'del': {
      const got = outcome(
        () => applyDeleteRange(store, toDel(cmd.r)),
        (r) => ({ deleted: r.deleted, prevKvs: r.prevKvs.map(plainKv) }),
        [cmd.r.key, ...(cmd.r.end === undefined || cmd.r.end === '\x00' ? [] : [cmd.r.end])],
      );
      assert.deepEqual(
        got,
        model.write((w) => w.del(cmd.r)),
      );
      return;
    }
    case 'txn': {
      const before = store.revision;
      const got = outcome(
        () => applyTxn(store, toTxn(cmd.r), leaseExists),
        plainTxn,
        keysOf(cmd.r),
      );
      const shape = shapeError(cmd.r, 128);
      if (shape !== undefined) assert.deepEqual(got, { error: shape });
      else if ('error' in got && got.error === 'duplicate-key') {
        assert.ok(mayOverlap(cmd.r), 'duplicate-key only where a key is written twice');
        assert.equal(store.revision, before, 'a refused transaction changes nothing');
      } else
        assert.deepEqual(
          got,
          model.write((w) => w.txn(cmd.r)),
        );
      return;
    }
    case 'range': {
      let want: unknown;
      try {
        want = model.range(cmd.r, model.revision, model.states[model.revision]!);
      } catch (error) {
        if (!(error instanceof ModelError)) throw error;
        want = { error: error.code };
      }
      let got: unknown;
      try {
        const r = applyRange(store, toRange(cmd.r));
        assert.equal(r.revision, store.revision, 'header revision is the current one');
        got = plainRange(r);
      } catch (error) {
        if (!(error instanceof KvError)) throw error;
        got = { error: error.kvCode };
      }
      assert.deepEqual(got, want);
      return;
    }
    case 'compact': {
      const rev = cmd.pick % (model.revision + 2);
      const want =
        rev <= model.compacted ? 'compacted' : rev > model.revision ? 'future-rev' : undefined;
      assert.equal(
        errorOf(() => store.compact(rev)),
        want,
      );
      if (want === undefined) model.compacted = rev;
      return;
    }
    case 'events': {
      const from = cmd.pick % (model.revision + 2);
      const to =
        from + cmd.width > model.revision + 1
          ? model.revision + 1
          : Math.min(from + cmd.width, model.revision);
      let want: unknown;
      try {
        want = model.eventsBetween(from, to, cmd.key, cmd.end);
      } catch (error) {
        if (!(error instanceof ModelError)) throw error;
        want = error.code;
      }
      let got: unknown;
      try {
        got = store
          .eventsBetween(from, to, bin(cmd.key), cmd.end === undefined ? undefined : bin(cmd.end))
          .map(plainEvent);
      } catch (error) {
        if (!(error instanceof KvError)) throw error;
        got = error.kvCode;
      }
      assert.deepEqual(got, want);
      return;
    }
    case 'hash': {
      const rev = cmd.pick % (model.revision + 2);
      const want =
        rev > 0 && rev < model.compacted
          ? 'compacted'
          : rev > model.revision
            ? 'future-rev'
            : undefined;
      let hash: ReturnType<MvccStore['hashKv']> | undefined;
      assert.equal(
        errorOf(() => (hash = store.hashKv(rev))),
        want,
      );
      if (hash === undefined) return;
      assert.equal(hash.revision, rev === 0 ? model.revision : rev);
      assert.equal(hash.compactRevision, model.compacted);
      const id = `${hash.revision}/${hash.compactRevision}`;
      const seen = model.hashes.get(id);
      if (seen !== undefined) assert.equal(hash.hash, seen, `hash of ${id} changed`);
      model.hashes.set(id, hash.hash);
      return;
    }
    case 'snapshot': {
      const image = store.snapshot();
      // Restored from parts of three keys, each piece cut in two (parts span pieces), as a
      // follower rebuilds a store from a leader's chunks.
      const job = store.snapshotJob(3);
      while (!job.step());
      const halves = job
        .result()
        .flatMap((piece) => [
          piece.subarray(0, piece.length >> 1),
          piece.subarray(piece.length >> 1),
        ]);
      const restoring = MvccStore.restoreJob(new Pieces(halves), small);
      while (!restoring.step());
      const restored = restoring.result();
      assert.ok(sameBytes(restored.snapshot(), image), 'a restored store snapshots identically');
      assert.deepEqual(restored.hashKv(), store.hashKv());
      p.store = restored;
      fullCheck(p);
      return;
    }
    case 'clone': {
      const twin: Pair = { store: store.clone(), model: model.copy() };
      assert.deepEqual(twin.store.hashKv(), store.hashKv());
      const got = outcome(
        () => applyPut(twin.store, toPut(cmd.r), leaseExists),
        () => null,
      );
      const want = putShapeError(cmd.r);
      if (want !== undefined) assert.deepEqual(got, { error: want });
      else twin.model.write((w) => w.put(cmd.r));
      fullCheck(twin);
      fullCheck(p);
      clones.push(twin);
      return;
    }
  }
}

test('kv model: any command sequence answers like the naive per-revision model', () => {
  fc.assert(
    fc.property(fc.array(gCommand, { minLength: 10, maxLength: 80, size: 'max' }), (commands) => {
      const p: Pair = { store: new MvccStore(small), model: new Model() };
      const clones: Pair[] = [];
      for (const command of commands) {
        step(p, command, clones);
        p.store.checkInvariants();
      }
      fullCheck(p);
      for (const twin of clones) fullCheck(twin);
    }),
    { numRuns: 400, ...fcOptions },
  );
});

// ---------------------------------------------------------------------------------------
// Focused cases: etcd's documented behaviour, one at a time

const put = (s: MvccStore, key: string, value = '', lease = 0) =>
  applyPut(s, { key: bin(key), value: bin(value), lease }, leaseExists);
const get = (s: MvccStore, key: string, revision = 0) => {
  const kv = s.get(bin(key), revision);
  return kv === undefined ? undefined : plainKv(kv);
};
const codeOf = (run: () => unknown) => errorOf(run);
const all = { key: bin('\x00'), rangeEnd: bin('\x00') };

test('revisions: 1 on an empty store, +1 per changing write, shared by a transaction', () => {
  const s = new MvccStore();
  assert.equal(s.revision, 1);
  assert.equal(put(s, 'a', '1').revision, 2);
  assert.equal(
    applyDeleteRange(s, { key: bin('zz') }).revision,
    2,
    'deleting nothing changes nothing',
  );
  const t = applyTxn(
    s,
    {
      compare: [],
      success: [
        { put: { key: bin('b') } },
        { deleteRange: { key: bin('a') } },
        { range: { key: bin('a') } },
      ],
      failure: [],
    },
    leaseExists,
  );
  assert.equal(t.revision, 3);
  assert.deepEqual(
    t.events.all().map((e) => [e.type, str(e.kv.key), e.kv.modRevision]),
    [
      ['put', 'b', 3],
      ['delete', 'a', 3],
    ],
  );
  const read = t.result.responses[2]!;
  assert.ok('range' in read && read.range.count === 0, 'a range in the txn sees its own delete');
  const readOnly = applyTxn(
    s,
    { compare: [], success: [{ range: { key: bin('b') } }], failure: [] },
    leaseExists,
  );
  assert.equal(readOnly.revision, 3);
  assert.deepEqual(readOnly.events.all(), []);
});

test('versions: create and version follow generations; a delete restarts them', () => {
  const s = new MvccStore();
  put(s, 'k', '1'); // 2
  put(s, 'k', '2'); // 3
  assert.deepEqual(get(s, 'k'), { key: 'k', value: '2', create: 2, mod: 3, version: 2, lease: 0 });
  applyDeleteRange(s, { key: bin('k') }); // 4
  put(s, 'k', '3'); // 5
  assert.deepEqual(get(s, 'k'), { key: 'k', value: '3', create: 5, mod: 5, version: 1, lease: 0 });
  assert.deepEqual(get(s, 'k', 3), {
    key: 'k',
    value: '2',
    create: 2,
    mod: 3,
    version: 2,
    lease: 0,
  });
  assert.equal(get(s, 'k', 4), undefined);
});

test('ranges: single key, [key, end), from-key, all keys; bytewise order', () => {
  const s = new MvccStore();
  for (const k of ['a', 'b', 'b\x00', 'c', '\xff', '\x7f']) put(s, k);
  const keys = (r: RangeRequest) => applyRange(s, r).kvs.map((kv) => str(kv.key));
  assert.deepEqual(keys({ key: bin('b') }), ['b']);
  assert.deepEqual(
    keys({ key: bin('b'), rangeEnd: new Uint8Array(0) }),
    ['b'],
    'empty range end: one key',
  );
  assert.deepEqual(keys({ key: bin('b'), rangeEnd: bin('c') }), ['b', 'b\x00']);
  assert.deepEqual(keys({ key: bin('b'), rangeEnd: bin('\x00') }), [
    'b',
    'b\x00',
    'c',
    '\x7f',
    '\xff',
  ]);
  assert.deepEqual(keys(all), ['a', 'b', 'b\x00', 'c', '\x7f', '\xff']);
  assert.deepEqual(keys({ key: bin('c'), rangeEnd: bin('b') }), [], 'an inverted range is empty');
});

test('range: count ignores limit and revision filters (etcd counts before pruning)', () => {
  const s = new MvccStore();
  for (const k of ['a', 'b', 'c', 'd']) put(s, k, k); // mods 2..5
  const r = applyRange(s, { ...all, limit: 1, minModRevision: 4 });
  assert.deepEqual(
    r.kvs.map((kv) => str(kv.key)),
    ['c'],
  );
  assert.equal(r.more, true, 'c and d pass the filter; one returned');
  assert.equal(r.count, 4);
  const exact = applyRange(s, { ...all, limit: 2, minModRevision: 4 });
  assert.equal(exact.more, false, 'exactly the limit left after filtering: no more');
  const counted = applyRange(s, { ...all, countOnly: true, limit: 1 });
  assert.deepEqual([counted.kvs.length, counted.count, counted.more], [0, 4, false]);
  const bare = applyRange(s, { ...all, keysOnly: true, limit: 3 });
  assert.deepEqual(
    bare.kvs.map((kv) => [str(kv.key), kv.value.length, kv.modRevision]),
    [
      ['a', 0, 2],
      ['b', 0, 3],
      ['c', 0, 4],
    ],
  );
  assert.equal(bare.more, true);
});

test('range: sort target without order ascends; key with order none stays ascending', () => {
  const s = new MvccStore();
  put(s, 'a', '3');
  put(s, 'b', '1');
  put(s, 'c', '2');
  put(s, 'b', '1'); // b: version 2, mod 5
  const keys = (r: Partial<RangeRequest>) =>
    applyRange(s, { ...all, ...r }).kvs.map((kv) => str(kv.key));
  assert.deepEqual(keys({ sortTarget: 'value' }), ['b', 'c', 'a']);
  assert.deepEqual(keys({ sortTarget: 'mod', sortOrder: 'descend' }), ['b', 'c', 'a']);
  assert.deepEqual(keys({ sortTarget: 'version', sortOrder: 'descend', limit: 1 }), ['b']);
  assert.deepEqual(keys({ sortTarget: 'key', sortOrder: 'descend' }), ['c', 'b', 'a']);
  assert.deepEqual(keys({ sortTarget: 'create', sortOrder: 'none' }), ['a', 'b', 'c']);
  assert.deepEqual(keys({ sortTarget: 'version' }), ['a', 'c', 'b'], 'ties keep key order');
  // etcd quirk: with a limit and order none, it reads limit + 1 keys in key order, then sorts
  // those: the least value overall (z = 0) is missed.
  put(s, 'z', '0');
  assert.deepEqual(keys({ sortTarget: 'value', limit: 1 }), ['b']);
  assert.deepEqual(keys({ sortTarget: 'value', sortOrder: 'ascend', limit: 1 }), ['z']);
});

test('revisions read: the compact revision itself is readable, below is compacted, above is future', () => {
  const s = new MvccStore();
  put(s, 'a', '1'); // 2
  put(s, 'a', '2'); // 3
  put(s, 'a', '3'); // 4
  s.compact(3);
  assert.equal(get(s, 'a', 3)?.value, '2');
  assert.equal(
    codeOf(() => s.get(bin('a'), 2)),
    'compacted',
  );
  assert.equal(
    codeOf(() => s.get(bin('a'), 5)),
    'future-rev',
  );
  assert.equal(
    codeOf(() => s.compact(3)),
    'compacted',
  );
  assert.equal(
    codeOf(() => s.compact(2)),
    'compacted',
  );
  assert.equal(
    codeOf(() => s.compact(5)),
    'future-rev',
  );
  assert.equal(get(s, 'a', -1)?.value, '3', 'a negative revision reads the current one');
});

test('compaction keeps a tombstone at the compact revision, drops it at the next', () => {
  const s = new MvccStore();
  put(s, 'gone', 'x'); // 2
  put(s, 'kept', 'y'); // 3
  applyDeleteRange(s, { key: bin('gone') }); // 4
  s.compact(4);
  assert.equal(s.keyCount, 2, 'the tombstone at 4 stays for watchers from 4');
  const events = s.eventsBetween(4, 4, bin('gone'));
  assert.deepEqual(events.map(plainEvent), [
    { type: 'delete', kv: { key: 'gone', value: '', create: 0, mod: 4, version: 0, lease: 0 } },
  ]);
  assert.equal(
    codeOf(() => s.eventsBetween(3, 4, bin('gone'))),
    'compacted',
  );
  put(s, 'other'); // 5
  s.compact(5);
  assert.equal(s.keyCount, 2, 'gone left the index; kept and other remain');
  assert.equal(
    get(s, 'kept', 5)?.value,
    'y',
    'the newest put at or below the compact revision stays',
  );
  s.checkInvariants();
});

test('events: in sub-revision order with prevKv; none for creations', () => {
  const s = new MvccStore();
  put(s, 'a', '1'); // 2
  const t = applyTxn(
    s,
    {
      compare: [],
      success: [
        { put: { key: bin('a'), value: bin('2') } },
        { put: { key: bin('b'), value: bin('3') } },
        { deleteRange: { key: bin('c') } },
      ],
      failure: [],
    },
    leaseExists,
  );
  const want: Event[] = [
    {
      type: 'put',
      kv: { key: 'a', value: '2', create: 2, mod: 3, version: 2, lease: 0 },
      prevKv: { key: 'a', value: '1', create: 2, mod: 2, version: 1, lease: 0 },
    },
    { type: 'put', kv: { key: 'b', value: '3', create: 3, mod: 3, version: 1, lease: 0 } },
  ];
  assert.deepEqual(t.events.all().map(plainEvent), want);
  assert.deepEqual(
    s.eventsBetween(3, 3, bin('a'), bin('c')).map(plainEvent),
    want,
    'history replays the same',
  );
  assert.deepEqual(s.eventsBetween(2, 3, bin('b')).map(plainEvent), [want[1]], 'filtered by key');
  assert.equal(
    codeOf(() => s.eventsBetween(2, 4, bin('a'))),
    'future-rev',
  );
});

test('txn compares: missing keys compare as zero values, except value which always fails', () => {
  const s = new MvccStore();
  put(s, 'a', 'x');
  const holds = (c: Compare) =>
    applyTxn(s, { compare: [c], success: [], failure: [] }, leaseExists).result.succeeded;
  const missing = { key: bin('nope') };
  assert.equal(holds({ ...missing, target: 'version', version: 0, result: 'equal' }), true);
  assert.equal(holds({ ...missing, target: 'create', createRevision: 0, result: 'equal' }), true);
  assert.equal(holds({ ...missing, target: 'mod', modRevision: 1, result: 'less' }), true);
  assert.equal(holds({ ...missing, target: 'lease', lease: 0, result: 'equal' }), true);
  assert.equal(holds({ ...missing, target: 'value', value: bin(''), result: 'equal' }), false);
  assert.equal(holds({ ...missing, target: 'value', value: bin('q'), result: 'not-equal' }), false);
  assert.equal(holds({ key: bin('a'), target: 'value', value: bin('w'), result: 'greater' }), true);
  put(s, 'b', 'y');
  const both = { key: bin('a'), rangeEnd: bin('c') };
  assert.equal(
    holds({ ...both, target: 'version', version: 1, result: 'equal' }),
    true,
    'every key holds',
  );
  assert.equal(
    holds({ ...both, target: 'value', value: bin('x'), result: 'equal' }),
    false,
    'one key fails',
  );
});

test('txn: nested compares see the store before the transaction', () => {
  const s = new MvccStore();
  const nested: TxnRequest = {
    compare: [{ key: bin('a'), target: 'version', version: 0, result: 'equal' }],
    success: [{ put: { key: bin('b'), value: bin('a was missing') } }],
    failure: [],
  };
  const t = applyTxn(
    s,
    {
      compare: [],
      success: [{ put: { key: bin('a'), value: bin('1') } }, { txn: nested }],
      failure: [],
    },
    leaseExists,
  );
  assert.equal(t.revision, 2);
  assert.equal(get(s, 'b')?.value, 'a was missing');
});

test('txn: duplicate keys refused as etcd refuses them, and accepted where etcd accepts', () => {
  const s = new MvccStore();
  put(s, 'a', '1');
  const p = (key: string): RequestOp => ({ put: { key: bin(key) } });
  const d = (key: string, end?: string): RequestOp => ({
    deleteRange: end === undefined ? { key: bin(key) } : { key: bin(key), rangeEnd: bin(end) },
  });
  const t = (success: RequestOp[], failure: RequestOp[] = []): RequestOp => ({
    txn: { compare: [], success, failure },
  });
  const verdict = (success: RequestOp[]) =>
    codeOf(() => applyTxn(s, { compare: [], success, failure: [] }, leaseExists));
  assert.equal(verdict([p('k'), p('k')]), 'duplicate-key');
  assert.equal(verdict([p('k'), d('k')]), 'duplicate-key');
  assert.equal(verdict([d('a', 'z'), p('k')]), 'duplicate-key');
  assert.equal(verdict([t([p('k')]), p('k')]), 'duplicate-key');
  assert.equal(verdict([t([p('k')]), t([p('k')])]), 'duplicate-key');
  assert.equal(verdict([d('k'), t([p('k')])]), 'duplicate-key');
  assert.equal(verdict([t([d('k')]), t([p('k')])]), 'duplicate-key', 'an earlier nested delete');
  assert.equal(verdict([t([d('k')]), p('k')]), 'duplicate-key', 'a nested delete and a put here');
  assert.equal(verdict([t([p('k')], [p('k')])]), undefined, 'then and else are exclusive');
  assert.equal(verdict([d('a', 'z'), d('b', 'y'), d('k')]), undefined, 'deletes may overlap');
  assert.equal(
    verdict([t([p('k')]), t([d('k')])]),
    undefined,
    'etcd: a later nested delete goes unseen',
  );
  assert.equal(
    verdict([d('a', '\x00'), p('k')]),
    undefined,
    'etcd: a from-key delete conflicts with nothing',
  );
  assert.equal(s.revision, 6, 'the four accepted ones wrote; the refused ones did not');
});

test('txn: a put with ignore_value after a from-key delete removed the key is refused (etcd crashes)', () => {
  const s = new MvccStore();
  put(s, 'b', 'old');
  const req: TxnRequest = {
    compare: [],
    success: [
      { deleteRange: { key: bin('a'), rangeEnd: bin('\x00') } },
      { put: { key: bin('b'), ignoreValue: true } },
    ],
    failure: [],
  };
  assert.equal(
    codeOf(() => applyTxn(s, req, leaseExists)),
    'key-not-found',
  );
  assert.equal(s.revision, 2);
  assert.equal(get(s, 'b')?.value, 'old');
});

test('txn: too many operations, counted as etcd v3.6 counts them', () => {
  const s = new MvccStore();
  const ops = (n: number, prefix: string): RequestOp[] =>
    Array.from({ length: n }, (_, i) => ({ range: { key: bin(`${prefix}${i}`) } }));
  const nested = (n: number): RequestOp => ({
    txn: { compare: [], success: ops(n, 'n'), failure: [] },
  });
  const verdict = (req: TxnRequest) => codeOf(() => applyTxn(s, req, leaseExists));
  assert.equal(verdict({ compare: [], success: ops(128, 'k'), failure: [] }), undefined);
  assert.equal(verdict({ compare: [], success: ops(129, 'k'), failure: [] }), 'too-many-ops');
  assert.equal(verdict({ compare: [], success: [], failure: ops(129, 'k') }), 'too-many-ops');
  assert.equal(
    verdict({ compare: [], success: [...ops(99, 'k'), nested(28)], failure: [] }),
    undefined,
  );
  assert.equal(
    verdict({ compare: [], success: [...ops(99, 'k'), nested(29)], failure: [] }),
    'too-many-ops',
  );
});

test('put flags: prev_kv, ignore_value, ignore_lease and their errors, in etcd order', () => {
  const s = new MvccStore();
  const p = (r: Parameters<typeof applyPut>[1]) => applyPut(s, r, leaseExists);
  assert.equal(
    codeOf(() => p({ key: new Uint8Array(0) })),
    'empty-key',
  );
  assert.equal(
    codeOf(() => p({ key: bin('a'), value: bin('v'), ignoreValue: true })),
    'value-provided',
  );
  assert.equal(
    codeOf(() => p({ key: bin('a'), lease: 1, ignoreLease: true })),
    'lease-provided',
  );
  assert.equal(
    codeOf(() => p({ key: bin('a'), lease: 7, ignoreValue: true })),
    'lease-not-found',
    'lease before key',
  );
  assert.equal(
    codeOf(() => p({ key: bin('a'), ignoreValue: true })),
    'key-not-found',
  );
  p({ key: bin('a'), value: bin('v'), lease: 1 });
  assert.deepEqual(p({ key: bin('a'), ignoreValue: true, lease: 2 }).result, {});
  assert.deepEqual(get(s, 'a'), { key: 'a', value: 'v', create: 2, mod: 3, version: 2, lease: 2 });
  const r = p({ key: bin('a'), value: bin('w'), ignoreLease: true, prevKv: true });
  assert.deepEqual(r.result.prevKv && plainKv(r.result.prevKv), {
    key: 'a',
    value: 'v',
    create: 2,
    mod: 3,
    version: 2,
    lease: 2,
  });
  assert.equal(get(s, 'a')?.lease, 2);
  assert.equal(s.revision, 4, 'refused puts wrote nothing');
});

test('empty keys and a refused transaction leave the store untouched', () => {
  const s = new MvccStore();
  put(s, 'a', '1');
  const empty = new Uint8Array(0);
  assert.equal(
    codeOf(() => applyRange(s, { key: empty })),
    'empty-key',
  );
  assert.equal(
    codeOf(() => applyDeleteRange(s, { key: empty })),
    'empty-key',
  );
  const cmp: Compare = { key: empty, target: 'version', version: 0, result: 'equal' };
  assert.equal(
    codeOf(() => applyTxn(s, { compare: [cmp], success: [], failure: [] }, leaseExists)),
    'empty-key',
  );
  const late: TxnRequest = {
    compare: [],
    success: [{ put: { key: bin('a'), value: bin('2') } }, { put: { key: bin('b'), lease: 9 } }],
    failure: [],
  };
  assert.equal(
    codeOf(() => applyTxn(s, late, leaseExists)),
    'lease-not-found',
  );
  const future: TxnRequest = {
    compare: [],
    success: [{ put: { key: bin('x') } }, { range: { key: bin('a'), revision: 3 } }],
    failure: [],
  };
  assert.equal(
    codeOf(() => applyTxn(s, future, leaseExists)),
    'future-rev',
    'checked against the store before',
  );
  assert.equal(s.revision, 2);
  assert.equal(get(s, 'a')?.value, '1');
});

test('hashKv: equal after snapshot and restore, changed by a write, stable for an old revision', () => {
  const s = new MvccStore();
  put(s, 'a', '1');
  put(s, 'b', '2');
  applyDeleteRange(s, { key: bin('a') });
  const h4 = s.hashKv();
  assert.deepEqual(MvccStore.restore(s.snapshot()).hashKv(), h4);
  put(s, 'b', '3');
  assert.notEqual(s.hashKv().hash, h4.hash);
  assert.deepEqual(s.hashKv(4), h4);
  s.compact(3);
  assert.equal(
    codeOf(() => s.hashKv(2)),
    'compacted',
  );
  assert.equal(
    codeOf(() => s.hashKv(9)),
    'future-rev',
  );
  assert.deepEqual(MvccStore.restore(s.snapshot()).hashKv(4), s.hashKv(4));
});

test('restore refuses malformed snapshots with BadInputError', () => {
  assert.throws(() => MvccStore.restore(new Uint8Array([0xc1])), BadInputError);
  assert.throws(() => MvccStore.restore(encode({ format: 99 })), BadInputError);
  assert.throws(() => MvccStore.restore(encode([1, 2, 3])), BadInputError);
  const base = {
    format: 1,
    revision: 2,
    compactRevision: 0,
    keyLengths: [1],
    keyBytes: bin('a'),
    counts: [1],
    subs: [0],
    valueLengths: [1],
    valueBytes: bin('1'),
    leases: [0],
    creates: [2],
    versions: [1],
  };
  assert.doesNotThrow(() => MvccStore.restore(encode({ ...base, mains: [2] })));
  assert.throws(
    () => MvccStore.restore(encode({ ...base, mains: [3] })),
    BadInputError,
    'a revision above the store',
  );
  assert.throws(
    () => MvccStore.restore(encode({ ...base, mains: [2], versions: [2] })),
    BadInputError,
    'a creation at version 2',
  );
  assert.throws(
    () => MvccStore.restore(encode({ ...base, mains: [2], keyLengths: [1, 1], counts: [1, 1] })),
    BadInputError,
    'more keys than key bytes',
  );
  assert.throws(
    () => MvccStore.restore(encode({ ...base, mains: [2], valueLengths: [-1] })),
    BadInputError,
    'value bytes left over',
  );
  assert.throws(
    () =>
      MvccStore.restore(
        encode({
          ...base,
          mains: [2],
          valueBytes: bin(''),
          valueLengths: [-1],
          creates: [0],
          versions: [0],
        }),
      ),
    BadInputError,
    'a key whose only revision is a tombstone below nothing',
  );
});

test('binary strings: every byte round-trips, subarrays respect their offset', () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const s = toBinary(bytes);
  assert.equal(s.length, 256);
  assert.deepEqual([...fromBinary(s)], [...bytes]);
  assert.equal(toBinary(bytes.subarray(250, 253)), '\xfa\xfb\xfc');
  assert.ok(toBinary(bin('\x7f')) < toBinary(bin('\x80')), 'compares as unsigned bytes');
  const big = new Uint8Array(100_000).fill(0xab);
  assert.equal(toBinary(big).length, 100_000);
});

test('default-size nodes: 3,000 keys of churn, compactions and a clone agree with a Map', () => {
  const s = new MvccStore();
  const live = new Map<string, string>();
  const random = seededRandom(7);
  const next = () => random.int(1 << 30);
  const key = (n: number) => `key-${String(n % 3000).padStart(5, '0')}`;
  let twin: { store: MvccStore; live: Map<string, string> } | undefined;
  for (let i = 0; i < 20_000; i++) {
    const k = key(next());
    if (next() % 4 === 0) {
      applyDeleteRange(s, { key: bin(k) });
      live.delete(k);
    } else {
      put(s, k, `v${i}`);
      live.set(k, `v${i}`);
    }
    if (i % 5000 === 4999) s.compact(s.revision - 100);
    if (i === 10_000) twin = { store: s.clone(), live: new Map(live) };
  }
  s.checkInvariants();
  const state = (store: MvccStore) =>
    new Map(applyRange(store, all).kvs.map((kv) => [str(kv.key), str(kv.value)]));
  assert.deepEqual(state(s), live);
  twin!.store.checkInvariants();
  assert.deepEqual(state(twin!.store), twin!.live, 'the clone kept its own state');
  const restored = MvccStore.restore(s.snapshot());
  restored.checkInvariants();
  assert.deepEqual(state(restored), live);
  assert.deepEqual(restored.hashKv(), s.hashKv());
});

test('a snapshot taken in steps holds the state of its start, whatever is written meanwhile', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const store = new MvccStore({ nodeEntriesMax: 8 });
  for (let i = 0; i < 500; i++) {
    const txn = store.write();
    txn.put(enc(`k${i % 97}`), enc(`v${i}`), 0);
    if (i % 13 === 0) txn.deleteRange(enc(`k${(i * 7) % 97}`));
    txn.end();
  }
  store.compact(200);
  const before = store.hashKv();
  const whole = store.snapshot();
  const job = store.snapshotJob(7);
  let steps = 0;
  while (!job.step()) {
    steps++;
    const txn = store.write(); // the live store moves on between steps
    txn.put(enc(`k${steps % 97}`), enc('later'), 0);
    txn.end();
  }
  assert.ok(steps > 5, `taken in ${steps + 1} steps`);
  const restored = MvccStore.restore(concatBytes(job.result()));
  restored.checkInvariants();
  assert.deepEqual(restored.hashKv(), before);
  assert.deepEqual(restored.snapshot(), whole, 'the same store as a one-step snapshot');
  assert.notDeepEqual(store.hashKv(), before);
});

test('a snapshot step ends between keys: one leaf of long histories takes several steps', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const store = new MvccStore(); // 8 keys: one leaf
  const bound = mvccLimits.snapshotRevisionsPerStep;
  for (let i = 0; i < 8 * bound; i++) {
    const txn = store.write();
    txn.put(enc(`k${i % 8}`), enc(`v${i}`), 0);
    txn.end();
  }
  const job = store.snapshotJob(1_000_000);
  let steps = 1;
  while (!job.step()) steps++;
  // Each key has `bound` revisions, so each step holds exactly one key.
  assert.equal(steps, 8, `8 keys of ${bound} revisions in one leaf took ${steps} steps`);
  const restored = MvccStore.restore(concatBytes(job.result()));
  restored.checkInvariants();
  assert.deepEqual(restored.hashKv(), store.hashKv());
});

test('a snapshot step is bounded by revisions too: few keys with long histories take many steps', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const store = new MvccStore({ nodeEntriesMax: 8 });
  const revisions = 4 * mvccLimits.snapshotRevisionsPerStep;
  for (let i = 0; i < revisions; i++) {
    const txn = store.write();
    txn.put(enc(`k${i % 40}`), enc(`v${i}`), 0);
    txn.end();
  }
  const job = store.snapshotJob(1_000_000); // the bound on keys never ends a step here
  let steps = 1;
  while (!job.step()) steps++;
  assert.ok(steps >= 4, `${revisions} revisions of 40 keys took ${steps} steps`);
  const restored = MvccStore.restore(concatBytes(job.result()));
  restored.checkInvariants();
  assert.deepEqual(restored.hashKv(), store.hashKv());
});
