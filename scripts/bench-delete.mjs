// Times one DeleteRange of a whole prefix applied by the state machine, as `etcdctl check
// perf --load=l` ends (65k-130k keys): the entry goes through KvMachine.apply with a watch hub
// listening, as on every member of a cluster. Each case loads a fresh store of N keys with
// 150-byte values, collects garbage, then times the apply of the delete alone.
//
// Usage: npm run build && node scripts/bench-delete.mjs [--keys N] [--runs R] [--base DIR]
// `--base DIR` also times another build (a `dist` directory, e.g. main's copied to
// /tmp/delbase/dist with package.json and node_modules beside it) in the same process, runs
// alternating, and prints the ratio of the medians. The warm-up runs of the two builds must
// then agree on everything observable: the outcome (prevKvs included), the events each
// watcher got, the state machine's snapshot bytes and the store's hash.
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '7' },
    base: { type: 'string' },
  },
});
const keyCount = Number(args.keys);
const runs = Number(args.runs);
const valueBytes = 150;
const leaseId = 7;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

async function build(label, dir) {
  const at = (path) => import(pathToFileURL(resolve(dir, path)).href);
  const [{ KvMachine }, { LeaseTable }, { WatchHub }, { encode }] = await Promise.all([
    at('src/kv/machine.js'),
    at('src/kv/lease.js'),
    at('src/kv/watch.js'),
    at('src/core/codec.js'),
  ]);
  return { label, KvMachine, LeaseTable, WatchHub, encode };
}

const bytes = (s) => new TextEncoder().encode(s);
const prefix = bytes('/etcdctl-check-perf/');
const prefixEnd = bytes('/etcdctl-check-perf0');

/** Deterministic pseudo-random bytes (xorshift), so every build sees the same keys. */
function filler(seed, n) {
  const out = new Uint8Array(n);
  let x = Math.imul(seed, 0x9e3779b1) | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const keys = Array.from({ length: keyCount }, (_, i) => {
  const key = new Uint8Array(prefix.length + 16);
  key.set(prefix);
  key.set(bytes(filler(i + 1, 8).reduce((s, b) => s + b.toString(16).padStart(2, '0'), '')), 20);
  return key;
});
const values = Array.from({ length: 64 }, (_, i) => filler(i + 1000, valueBytes));

/**
 * The cases: which watchers listen, whether the delete asks for prev_kv, whether some keys
 * are attached to a lease.
 */
const cases = [
  { name: 'no watcher', watchers: [] },
  {
    name: 'watchers elsewhere',
    watchers: [
      { key: bytes('/other/'), rangeEnd: bytes('/other0') },
      { key: bytes('/etcdctl-check-perf') },
    ],
  },
  { name: 'prev_kv asked', watchers: [], prevKv: true },
  { name: '1 key in 10 on a lease', watchers: [], leased: true },
  { name: 'watcher on the prefix', watchers: [{ key: prefix, rangeEnd: prefixEnd }] },
  {
    name: 'watcher on the prefix, prev_kv',
    watchers: [{ key: prefix, rangeEnd: prefixEnd, prevKv: true }],
  },
];

function entriesFor(impl, c) {
  const entries = [];
  let index = 1;
  const entry = (command) => ({
    index: index++,
    term: 1,
    type: 'normal',
    data: impl.encode(command),
  });
  if (c.leased) entries.push(entry({ t: 'grant', id: leaseId, ttl: 3600 }));
  for (let i = 0; i < keyCount; i++) {
    const lease = c.leased && i % 10 === 0 ? leaseId : 0;
    entries.push(entry({ t: 'put', r: { key: keys[i], value: values[i % 64], lease } }));
  }
  const del = entry({
    t: 'del',
    r: { key: prefix, rangeEnd: prefixEnd, ...(c.prevKv ? { prevKv: true } : {}) },
  });
  return { load: entries, del };
}

const digest = (value) =>
  createHash('sha256')
    .update(typeof value === 'string' ? value : Buffer.from(value))
    .digest('hex');
const plain = (v) =>
  JSON.stringify(v, (_, x) => (x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x));

/** One run: a fresh machine loaded with every key, then the timed delete. */
function once(impl, c, entries) {
  const machine = new impl.KvMachine(new impl.LeaseTable(1));
  const hub = new impl.WatchHub(machine);
  let delivered = 0;
  const got = c.watchers.map(() => []);
  c.watchers.forEach((w, i) =>
    hub.create(w, (r) => {
      delivered += r.events.length;
      got[i].push(...r.events);
      return true;
    }),
  );
  machine.listener = {
    events: (revision, events) => hub.notify(revision, events),
    compacted: () => undefined,
    granted: () => undefined,
    revoked: () => undefined,
    restored: () => undefined,
  };
  for (let i = 0; i < entries.load.length; i += 1000)
    machine.apply(entries.load.slice(i, i + 1000));
  delivered = 0;
  for (const list of got) list.length = 0;
  gc();
  const started = performance.now();
  const [outcome] = machine.apply([entries.del]);
  const ms = performance.now() - started;
  const deleted = outcome?.ok?.deleted;
  if (deleted !== keyCount) throw new Error(`${impl.label}: deleted ${deleted} keys`);
  if (outcome.ok.prevKvs.length > 0 !== (c.prevKv === true))
    throw new Error(`${impl.label}: prevKvs ${outcome.ok.prevKvs.length}`);
  const covering = c.watchers.some((w) => w.rangeEnd === prefixEnd);
  if (delivered !== (covering ? keyCount : 0))
    throw new Error(`${impl.label}: ${delivered} events delivered`);
  if (c.leased && machine.leases.get(leaseId).keys.size !== 0)
    throw new Error(`${impl.label}: keys left on the lease`);
  const observed = {
    outcome: digest(plain(outcome)),
    events: got.map((list) => digest(plain(list))),
    snapshot: digest(machine.snapshot()),
    hash: machine.store.hashKv(),
  };
  return { ms, observed };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const impls = [await build('this build', 'dist')];
if (args.base !== undefined) impls.unshift(await build('base', args.base));
console.log(
  `DeleteRange of ${keyCount.toLocaleString('en-US')} keys (${valueBytes}-byte values), ` +
    `median of ${runs} runs after one warm-up, ms`,
);
for (const c of cases) {
  const entries = impls.map((impl) => entriesFor(impl, c));
  const times = impls.map(() => []);
  for (let run = 0; run <= runs; run++) {
    const observed = impls.map((impl, i) => {
      const { ms, observed } = once(impl, c, entries[i]);
      if (run > 0) times[i].push(ms);
      return plain(observed);
    });
    if (run === 0 && observed.some((o) => o !== observed[0]))
      throw new Error(`${c.name}: the builds disagree:\n${observed.join('\n')}`);
  }
  const medians = times.map(median);
  const cells = impls.map((impl, i) => `${impl.label} ${medians[i].toFixed(1)}`);
  const ratio = impls.length === 2 ? `  ratio ${(medians[0] / medians[1]).toFixed(1)}x` : '';
  console.log(`${c.name.padEnd(32)} ${cells.join('  ')}${ratio}`);
}
