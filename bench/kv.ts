/**
 * The MVCC store, through the request layer (src/kv/apply.ts) as Raft would apply it:
 * - puts/s: new keys, 64-byte keys in random order, 256-byte values (goal >= 200,000),
 *   beside a same-run baseline: the same keys and values turned into strings and set in a
 *   plain Map (no history, no order, no copy-on-write) — the least a JS store can do;
 * - single-key ranges/s and 1,000-key ranges/s on that store;
 * - txns/s: a compare on the key's mod revision, then a put of it (a compare-and-swap);
 * - heap bytes per key: heapUsed before and after loading N keys of 64 B with 256 B values,
 *   each after a full GC. With `node --expose-gc` the bench uses global.gc; without it, it
 *   turns the flag on at run time (v8.setFlagsFromString) and takes gc from a fresh VM
 *   context, so `npm run bench -- kv` needs no flag. N is 1,000,000 unless CHORUS_BENCH_KV_KEYS
 *   says otherwise. Off-heap bytes (the revision log's typed arrays) are reported apart.
 * - watch events/s delivered to 1,000 watchers of one prefix (src/kv/watch.ts), as puts apply
 *   through the state machine (src/kv/machine.ts) and the hub fans each event out.
 * Each rate is the median of CHORUS_BENCH_RUNS runs (default 5) after one warm-up run.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { applyPut, applyRange, applyTxn } from '../src/kv/apply.js';
import { LeaseTable } from '../src/kv/lease.js';
import { KvMachine, type KvCommand } from '../src/kv/machine.js';
import { MvccStore, toBinary } from '../src/kv/mvcc.js';
import { WatchHub } from '../src/kv/watch.js';
import { encode } from '../src/core/codec.js';
import type { Entry } from '../src/raft/types.js';
import type { Benchmark } from './run.js';
import { median } from './stats.js';

const runs = Number(process.env['CHORUS_BENCH_RUNS'] ?? 5);
const memoryKeys = Number(process.env['CHORUS_BENCH_KV_KEYS'] ?? 1_000_000);
const keyBytes = 64;
const valueBytes = 256;
const noLeases = (): boolean => false;

/** Key i: "key/" and i zero-padded, then filler to 64 bytes; so key order is i order. */
function keyOf(i: number): Uint8Array {
  const key = new Uint8Array(keyBytes).fill(0x2e);
  const text = `key/${String(i).padStart(12, '0')}`;
  for (let j = 0; j < text.length; j++) key[j] = text.charCodeAt(j);
  return key;
}

function valueOf(i: number): Uint8Array {
  const value = new Uint8Array(valueBytes);
  for (let j = 0; j < valueBytes; j++) value[j] = (i * 31 + j) & 0xff;
  return value;
}

/** 0..n-1 in a fixed pseudo-random order (a full-period LCG walk), so inserts land anywhere. */
function shuffled(n: number): number[] {
  const order: number[] = [];
  let m = 1;
  while (m < n) m *= 2;
  for (let x = 0, i = 0; order.length < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) & (m - 1);
    if (x < n) order.push(x);
  }
  return order;
}

function rate(label: string, unit: string, run: () => { ops: number; ms: number }): number {
  run();
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) {
    const { ops, ms } = run();
    rates.push((ops * 1000) / ms);
  }
  const m = median(rates);
  const each = rates.map((r) => `${Math.round(r / 1000)}k`).join(' ');
  console.log(
    `${label.padEnd(22)} median ${Math.round(m).toLocaleString('en-US')} ${unit}/s (runs: ${each})`,
  );
  return m;
}

/** A store of n keys loaded through applyPut; also how long that took. */
function load(n: number): { store: MvccStore; ms: number } {
  const keys = shuffled(n).map(keyOf);
  const values = Array.from({ length: 16 }, (_, i) => valueOf(i));
  const store = new MvccStore();
  const started = performance.now();
  for (let i = 0; i < n; i++) applyPut(store, { key: keys[i]!, value: values[i & 15]! }, noLeases);
  return { store, ms: performance.now() - started };
}

/** The baseline: the same conversions into a plain Map. */
function loadMap(n: number): number {
  const keys = shuffled(n).map(keyOf);
  const values = Array.from({ length: 16 }, (_, i) => valueOf(i));
  const map = new Map<string, string>();
  const started = performance.now();
  for (let i = 0; i < n; i++) map.set(toBinary(keys[i]!), toBinary(values[i & 15]!));
  return performance.now() - started;
}

function gcFunction(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed !== undefined) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function memory(n: number): void {
  const gc = gcFunction();
  gc();
  gc();
  const before = process.memoryUsage();
  const { store, ms } = load(n);
  gc();
  gc();
  const after = process.memoryUsage();
  const heap = (after.heapUsed - before.heapUsed) / n;
  const offHeap = (after.external - before.external) / n;
  const payload = keyBytes + valueBytes;
  console.log(
    `memory, ${n.toLocaleString('en-US')} keys   heap ${heap.toFixed(0)} B/key + off-heap ${offHeap.toFixed(0)} B/key ` +
      `(payload ${payload} B: overhead ${(heap + offHeap - payload).toFixed(0)} B/key); ` +
      `loaded at ${Math.round((n * 1000) / ms).toLocaleString('en-US')} puts/s, revision ${store.revision}`,
  );
}

/** Puts applied as Raft entries; 1,000 watchers of the prefix each receive every event. */
function watchFanOut(): void {
  const watchers = 1000;
  const puts = 2_000;
  const prefix = new TextEncoder().encode('key/');
  const end = new TextEncoder().encode('key0');
  const entries: Entry[] = Array.from({ length: puts }, (_, i) => {
    const command: KvCommand = { t: 'put', r: { key: keyOf(i % 1000), value: valueOf(i) } };
    return { index: i + 1, term: 1, type: 'normal', data: encode(command) };
  });
  rate('watch events, 1,000 watchers', 'events', () => {
    const machine = new KvMachine(new LeaseTable(1));
    const hub = new WatchHub(machine);
    let delivered = 0;
    for (let w = 0; w < watchers; w++)
      hub.create({ key: prefix, rangeEnd: end }, (r) => ((delivered += r.events.length), true));
    machine.listener = {
      events: (revision, events) => hub.notify(revision, events),
      compacted: () => undefined,
      granted: () => undefined,
      revoked: () => undefined,
      restored: () => undefined,
    };
    const started = performance.now();
    machine.apply(entries);
    const ms = performance.now() - started;
    if (delivered !== watchers * puts) throw new Error(`delivered ${delivered} events`);
    return { ops: delivered, ms };
  });
}

export const kvBench: Benchmark = {
  name: 'kv: MVCC store puts, ranges, txns and memory per key',
  run() {
    const puts = 200_000;
    const base = rate('baseline: Map.set', 'puts', () => ({ ops: puts, ms: loadMap(puts) }));
    const putRate = rate('puts (new keys)', 'puts', () => ({ ops: puts, ms: load(puts).ms }));
    console.log(`puts / baseline = ${(putRate / base).toFixed(2)}`);

    const size = 100_000;
    const loaded = load(size).store;
    const keys = Array.from({ length: size }, (_, i) => keyOf(i));
    const probes = shuffled(size);
    const single = 200_000;
    rate('single-key ranges', 'ranges', () => {
      const started = performance.now();
      for (let i = 0; i < single; i++) applyRange(loaded, { key: keys[probes[i % size]!]! });
      return { ops: single, ms: performance.now() - started };
    });
    const wide = 500;
    rate('1,000-key ranges', 'ranges', () => {
      const started = performance.now();
      for (let i = 0; i < wide; i++) {
        const from = probes[i]! % (size - 1000);
        const result = applyRange(loaded, { key: keys[from]!, rangeEnd: keys[from + 1000]! });
        if (result.kvs.length !== 1000) throw new Error('a 1,000-key range returned another count');
      }
      return { ops: wide, ms: performance.now() - started };
    });
    const txns = 100_000;
    const value = valueOf(7);
    rate('txns (compare + put)', 'txns', () => {
      const started = performance.now();
      for (let i = 0; i < txns; i++) {
        const key = keys[probes[i % size]!]!;
        const current = loaded.get(key)!;
        const { result } = applyTxn(
          loaded,
          {
            compare: [{ key, target: 'mod', modRevision: current.modRevision, result: 'equal' }],
            success: [{ put: { key, value } }],
            failure: [],
          },
          noLeases,
        );
        if (!result.succeeded) throw new Error('compare-and-swap failed');
      }
      return { ops: txns, ms: performance.now() - started };
    });

    watchFanOut();
    memory(memoryKeys);
    return Promise.resolve();
  },
};
