/**
 * The multi-version key-value store of Chorus, with etcd v3's mvcc semantics: every write
 * transaction that changes something creates one main revision (its changes are ordered by
 * sub-revision), every key keeps its history so reads at any revision at or above the
 * compact revision work, and compaction drops the history nobody may read any more.
 *
 * Layout, chosen for memory (1M keys of 64 B with 256 B values must stay far below 1 KB of
 * overhead per key):
 * - keys and values are latin1 "binary strings" (one UTF-16 code unit per byte): V8 keeps
 *   them as one-byte strings (16 B of header, no separate buffer object), and `<` on them
 *   is bytewise comparison;
 * - the index is a B+tree of binary keys whose leaves hold each key's newest `Rev`; a
 *   `Rev` links to the key's previous one, so a key's history is an immutable list;
 * - a revision log lists (main, sub, key) of every change at or above the compact revision
 *   in revision order, so watch catch-up costs the events replayed, not the keys watched.
 *
 * `clone()` is O(1): nodes and log chunks carry the owner that may mutate them in place;
 * cloning gives both stores new owners, so either copies a shared node before changing it
 * (copy-on-write by path). A `Rev` is never mutated once linked, so histories are shared.
 */
import { assert, assertInteger } from '../core/assert.js';
import { concatBytes, joinedBytes, type ByteSource } from '../core/bytes.js';
import { decode, encode, msgpackArray, msgpackMapHeader, MsgpackReader } from '../core/codec.js';
import { crc32c } from '../core/crc32c.js';
import { BadInputError } from '../core/errors.js';
import type { StepJob } from '../core/job.js';
import { KvError } from './errors.js';
import type {
  Bytes,
  DeleteRangeResult,
  KeyValue,
  KvEvent,
  RangeRequest,
  RangeResult,
  SortOrder,
  SortTarget,
} from './types.js';

/** Limits of the store's structures; tests shrink them to reach every split and boundary. */
export const mvccLimits = {
  /** Keys per B+tree leaf and children per branch. */
  nodeEntriesMax: 64,
  /** Entries per revision-log chunk: the unit copied when a clone first appends. */
  logChunkEntries: 4096,
  /** The snapshot layout this code writes and reads. */
  snapshotFormat: 1,
  /**
   * Revisions one step of a snapshot job encodes (besides its bound on keys): without it, a
   * few keys with long histories made one step of the whole store — 100,000 puts over 1,000
   * keys took one 235 ms turn of the event loop on every node at once. A step runs in a turn
   * of its own, between the requests' I/O: at 5,000 a step took 10–30 ms here, and every
   * request in flight during a 200 MB snapshot waited for several of them (etcdctl check perf
   * --load=m's slowest request 1.3–1.7 s whenever the 100,000th entry fell inside its minute).
   * At 1,000 a step is 2–3 ms.
   */
  snapshotRevisionsPerStep: 1_000,
  /**
   * A write's changes in a sorted run up to this long are scanned whole when a watcher
   * selects its events; a longer run (a DeleteRange) is binary-searched for the watcher's
   * range. Scanning one or two keys costs less than searching them.
   */
  eventRunScannedMax: 8,
  /**
   * What one retained revision costs besides its key's and value's bytes, in `bytes` (the
   * store's size against a space quota): measured as V8 heap per revision — the Rev object,
   * its revision-log slot and the index's share — 112 bytes for 100,000 keys, 158 for
   * 300,000 keys with one revision each.
   */
  revisionOverheadBytes: 128,
} as const;

/** What a revision of a key of `keyBytes` with a value of `valueBytes` adds to `bytes`. */
export function revisionBytes(keyBytes: number, valueBytes: number): number {
  return keyBytes + valueBytes + mvccLimits.revisionOverheadBytes;
}

/** The bytes a key's history from `head` back counts for (revisionBytes of each revision). */
function historyBytes(key: Binary, head: Rev | undefined): number {
  let total = 0;
  for (let r = head; r !== undefined; r = r.prev)
    total += revisionBytes(key.length, r.value?.length ?? 0);
  return total;
}

export interface MvccOptions {
  nodeEntriesMax?: number;
  logChunkEntries?: number;
}

/** etcd's HashKV: a CRC32C over the key revisions visible in (compactRevision, revision]. */
export interface KvHash {
  hash: number;
  /** The revision hashed. */
  revision: number;
  compactRevision: number;
}

export interface WriteResult {
  /** The store's revision after the transaction: one more than before iff it changed. */
  revision: number;
  /** Every change, in sub-revision order; each event built when first asked for. */
  events: WriteEvents;
}

// ---------------------------------------------------------------------------------------
// Binary strings

type Binary = string;

/** The empty value; shared, and harmless to share because it has no bytes to change. */
export const emptyBytes: Bytes = new Uint8Array(0);

type Latin1Slice = (this: Uint8Array, start: number, end: number) => string;
// Node's Buffer converts five to ten times faster than any pure-JS loop (measured: 140 ns vs
// 1.9 µs for 256 bytes), which is most of a put's cost; elsewhere the portable loops serve.
const nodeBuffer = typeof Buffer === 'function' ? Buffer : undefined;
const latin1Slice = (nodeBuffer?.prototype as { latin1Slice?: Latin1Slice } | undefined)
  ?.latin1Slice;

/** Bytes as a binary string (one char per byte, so `<` compares bytewise). */
export function toBinary(bytes: Uint8Array): Binary {
  if (latin1Slice !== undefined) return latin1Slice.call(bytes, 0, bytes.length);
  let out = '';
  for (let i = 0; i < bytes.length; i += 4096) {
    out += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return out;
}

/** A fresh Uint8Array of a binary string's bytes (may view a pooled slab, never shared). */
export function fromBinary(s: Binary): Uint8Array {
  if (s.length === 0) return new Uint8Array(0);
  if (nodeBuffer !== undefined) {
    const b = nodeBuffer.from(s, 'latin1');
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  }
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

type Latin1Write = (this: Uint8Array, s: string, offset: number, length: number) => number;
const latin1Write = (nodeBuffer?.prototype as { latin1Write?: Latin1Write } | undefined)
  ?.latin1Write;

/**
 * Turns many binary strings into byte arrays that view one shared slab: one allocation per
 * range result instead of one per key and value (a 1,000-key range costs a third as much).
 */
class SlabWriter {
  private readonly slab: Uint8Array;
  private offset = 0;

  constructor(totalBytes: number) {
    this.slab =
      nodeBuffer !== undefined ? nodeBuffer.allocUnsafe(totalBytes) : new Uint8Array(totalBytes);
  }

  bytes(s: Binary): Uint8Array {
    const at = this.offset;
    if (latin1Write !== undefined) latin1Write.call(this.slab, s, at, s.length);
    else for (let i = 0; i < s.length; i++) this.slab[at + i] = s.charCodeAt(i);
    this.offset += s.length;
    return new Uint8Array(this.slab.buffer, this.slab.byteOffset + at, s.length);
  }

  /** The whole slab, once every string is written. */
  all(): Uint8Array {
    assert(this.offset === this.slab.length, 'slab filled exactly');
    return new Uint8Array(this.slab.buffer, this.slab.byteOffset, this.slab.length);
  }
}

/** A key range as binary strings: one key, [lo, hi), or every key >= lo (hi undefined). */
export interface KeySpan {
  readonly lo: Binary;
  readonly hi: Binary | undefined;
  readonly single: boolean;
}

/** etcd's range convention: rangeEnd absent or empty: one key; [0]: every key >= key. */
export function spanOf(key: Bytes, rangeEnd: Bytes | undefined): KeySpan {
  const lo = toBinary(key);
  if (rangeEnd === undefined || rangeEnd.length === 0) return { lo, hi: undefined, single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { lo, hi: undefined, single: false };
  return { lo, hi: toBinary(rangeEnd), single: false };
}

export function inSpan(span: KeySpan, key: Binary): boolean {
  if (span.single) return key === span.lo;
  return key >= span.lo && (span.hi === undefined || key < span.hi);
}

// ---------------------------------------------------------------------------------------
// Key histories

/**
 * One revision of one key: a put, or a tombstone (value undefined; lease, create and
 * version 0). Immutable: clones and historical readers share it.
 */
class Rev {
  constructor(
    readonly main: number,
    readonly sub: number,
    readonly value: Binary | undefined,
    readonly lease: number,
    /** The main revision that created this generation of the key. */
    readonly create: number,
    readonly version: number,
    /** The key's previous revision; undefined where its retained history begins. */
    readonly prev: Rev | undefined,
  ) {}

  withPrev(prev: Rev | undefined): Rev {
    return new Rev(this.main, this.sub, this.value, this.lease, this.create, this.version, prev);
  }
}

/** The put visible at `atRev`: the newest revision at or below it, unless a tombstone. */
function visibleAt(head: Rev | undefined, atRev: number): Rev | undefined {
  let r = head;
  while (r !== undefined && r.main > atRev) r = r.prev;
  return r?.value === undefined ? undefined : r;
}

function keyValueOf(key: Bytes, r: Rev, keysOnly = false): KeyValue {
  return {
    key,
    createRevision: r.create,
    modRevision: r.main,
    version: r.version,
    value: keysOnly ? emptyBytes : fromBinary(r.value!),
    lease: r.lease,
  };
}

/**
 * The prevKv of the event of `r`: the key's value just before this change — none for a
 * creation, or where compaction dropped it (an event at the compact revision). etcd's
 * watcher reads revision r.main - 1 instead; the two differ only for a key written twice in
 * one revision, and there the value replaced is the one lease bookkeeping needs.
 */
function prevKvOf(key: Bytes, r: Rev): KeyValue | undefined {
  return r.prev?.value === undefined ? undefined : keyValueOf(key, r.prev);
}

function eventOf(key: Bytes, r: Rev, prevKv: KeyValue | undefined): KvEvent {
  const kv: KeyValue =
    r.value === undefined
      ? { key, createRevision: 0, modRevision: r.main, version: 0, value: emptyBytes, lease: 0 }
      : keyValueOf(key, r);
  return prevKv === undefined
    ? { type: r.value === undefined ? 'delete' : 'put', kv }
    : { type: r.value === undefined ? 'delete' : 'put', kv, prevKv };
}

/**
 * A key's history after compaction at `atRev`, as etcd's keyIndex.compact leaves it:
 * everything above atRev, plus the newest revision at or below it if that is a put or a
 * tombstone exactly at atRev (kept so a watch from atRev still sees the delete; etcd
 * #18274). Returns `head` itself when nothing changes, undefined when nothing remains.
 */
function compactHistory(head: Rev, atRev: number): Rev | undefined {
  const newer: Rev[] = [];
  let r: Rev | undefined = head;
  while (r !== undefined && r.main > atRev) {
    newer.push(r);
    r = r.prev;
  }
  if (r === undefined) return head;
  const dropBoundary = r.value === undefined && r.main < atRev;
  if (!dropBoundary && r.prev === undefined) return head;
  let acc = dropBoundary ? undefined : r.withPrev(undefined);
  for (let i = newer.length - 1; i >= 0; i--) acc = newer[i]!.withPrev(acc);
  return acc;
}

/** Why `head` is not a well-formed history under (compacted, revision], or undefined. */
function historyProblem(head: Rev, compacted: number, revision: number): string | undefined {
  const chain: Rev[] = [];
  for (let r: Rev | undefined = head; r !== undefined; r = r.prev) chain.push(r);
  chain.reverse();
  for (let i = 0; i < chain.length; i++) {
    const r = chain[i]!;
    const before = chain[i - 1];
    if (
      !Number.isSafeInteger(r.main) ||
      !Number.isSafeInteger(r.sub) ||
      r.sub < 0 ||
      r.sub > 0xffffffff
    )
      return 'bad revision';
    if (r.main > revision) return `revision ${r.main} above the store's ${revision}`;
    if (
      before !== undefined &&
      (before.main > r.main || (before.main === r.main && before.sub >= r.sub))
    )
      return 'revisions out of order';
    if (i > 0 && r.main <= compacted) return `history below the compact revision ${compacted}`;
    if (i === 0 && r.value === undefined && r.main < compacted) return 'compacted tombstone kept';
    if (r.value === undefined) {
      if (r.lease !== 0 || r.create !== 0 || r.version !== 0) return 'tombstone with fields';
      // A delete follows a put, unless compaction at exactly its revision kept it alone.
      if (before?.value === undefined && !(i === 0 && r.main === compacted))
        return 'tombstone of nothing';
    } else if (before?.value !== undefined) {
      if (r.create !== before.create || r.version !== before.version + 1)
        return 'version does not follow';
    } else if (before !== undefined || r.main > compacted) {
      if (r.create !== r.main || r.version !== 1) return 'creation without version 1';
    } else if (r.version < 1 || r.create < 1 || r.create > r.main) {
      return 'bad retained put';
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// The index: a copy-on-write B+tree from binary key to the key's newest Rev

type Owner = object;

class Leaf {
  constructor(
    public owner: Owner,
    readonly keys: Binary[],
    readonly heads: Rev[],
  ) {}
}

class Branch {
  constructor(
    public owner: Owner,
    /** seps[i] is the least key under children[i + 1]; seps.length = children.length - 1. */
    readonly seps: Binary[],
    readonly children: TreeNode[],
  ) {}
}

type TreeNode = Leaf | Branch;

/** The first position in [from, to) of sorted `a` whose key is >= `key` (`to` if none). */
function lowerBound(a: readonly Binary[], key: Binary, from = 0, to = a.length): number {
  let lo = from;
  let hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upperBound(a: readonly Binary[], key: Binary): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function copyNode(node: TreeNode, owner: Owner): TreeNode {
  return node instanceof Leaf
    ? new Leaf(owner, node.keys.slice(), node.heads.slice())
    : new Branch(owner, node.seps.slice(), node.children.slice());
}

class KeyIndex {
  constructor(
    private root: TreeNode,
    private owner: Owner,
    /** Keys in the index, tombstoned ones included (they stay until compaction). */
    public size: number,
    private readonly entriesMax: number,
  ) {}

  static empty(entriesMax: number): KeyIndex {
    const owner = {};
    return new KeyIndex(new Leaf(owner, [], []), owner, 0, entriesMax);
  }

  /** Builds from sorted, distinct keys: full leaves, for the least memory. */
  static build(keys: Binary[], heads: Rev[], entriesMax: number): KeyIndex {
    const owner = {};
    const leaves: Leaf[] = [];
    for (let i = 0; i < keys.length; i += entriesMax) {
      leaves.push(new Leaf(owner, keys.slice(i, i + entriesMax), heads.slice(i, i + entriesMax)));
    }
    return new KeyIndex(buildTree(leaves, owner, entriesMax), owner, keys.length, entriesMax);
  }

  /** Shares every node with the copy; both sides copy a node before their first change. */
  clone(): KeyIndex {
    this.owner = {};
    return new KeyIndex(this.root, {}, this.size, this.entriesMax);
  }

  get(key: Binary): Rev | undefined {
    let node = this.root;
    while (node instanceof Branch) node = node.children[upperBound(node.seps, key)]!;
    const i = lowerBound(node.keys, key);
    return node.keys[i] === key ? node.heads[i] : undefined;
  }

  // The write position found by seek() and used by set(): a key is written in two steps so
  // the caller can build the new head from the old one without a closure per write.
  private readonly path: Branch[] = [];
  private readonly slots: number[] = [];
  private leaf: Leaf | undefined;
  private slot = 0;
  private found = false;

  /**
   * Finds where the key goes, copying shared nodes on the way down; returns its head. The
   * next call on this index must be set().
   */
  seek(key: Binary): Rev | undefined {
    const owner = this.owner;
    if (this.root.owner !== owner) this.root = copyNode(this.root, owner);
    let node = this.root;
    let depth = 0;
    while (node instanceof Branch) {
      const slot = upperBound(node.seps, key);
      let child = node.children[slot]!;
      if (child.owner !== owner) node.children[slot] = child = copyNode(child, owner);
      this.path[depth] = node;
      this.slots[depth] = slot;
      depth++;
      node = child;
    }
    this.path.length = depth;
    this.slots.length = depth;
    const i = lowerBound(node.keys, key);
    this.leaf = node;
    this.slot = i;
    this.found = node.keys[i] === key;
    return this.found ? node.heads[i] : undefined;
  }

  /**
   * Sets the head of the key the last seek() found, inserting the key if it was absent.
   * Returns the index's own copy of the key, for the log to share rather than duplicate.
   */
  set(key: Binary, head: Rev): Binary {
    const leaf = this.leaf;
    assert(leaf !== undefined, 'set() follows seek()');
    this.leaf = undefined;
    if (this.found) {
      leaf.heads[this.slot] = head;
      return leaf.keys[this.slot]!;
    }
    leaf.keys.splice(this.slot, 0, key);
    leaf.heads.splice(this.slot, 0, head);
    this.size++;
    if (leaf.keys.length > this.entriesMax) this.split(leaf, this.slot, this.path, this.slots);
    return key;
  }

  /**
   * Splits an overfull leaf and every overfull branch above it. An insertion at the end
   * of a node splits it unevenly (full left, one entry right), so ascending loads — the
   * usual kind — leave full nodes instead of half-full ones.
   */
  private split(leaf: Leaf, inserted: number, path: Branch[], slots: number[]): void {
    const n = leaf.keys.length;
    const at = inserted === n - 1 ? n - 1 : n >>> 1;
    let right: TreeNode = new Leaf(this.owner, leaf.keys.splice(at), leaf.heads.splice(at));
    let sep = right.keys[0]!;
    for (let level = path.length - 1; level >= 0; level--) {
      const parent = path[level]!;
      const slot = slots[level]!;
      parent.seps.splice(slot, 0, sep);
      parent.children.splice(slot + 1, 0, right);
      const count = parent.children.length;
      if (count <= this.entriesMax) return;
      const cut = slot + 1 === count - 1 ? count - 1 : count >>> 1;
      const children = parent.children.splice(cut);
      const seps = parent.seps.splice(cut);
      sep = parent.seps.pop()!;
      right = new Branch(this.owner, seps, children);
    }
    this.root = new Branch(this.owner, [sep], [this.root, right]);
  }

  /** Calls `visit` for each key of the span in ascending order until it returns false. */
  forEach(span: KeySpan, visit: (key: Binary, head: Rev) => boolean): void {
    if (span.single) {
      const head = this.get(span.lo);
      if (head !== undefined) visit(span.lo, head);
      return;
    }
    visitNode(this.root, span.lo, span.hi, visit);
  }

  /**
   * Appends the keys live at `atRev` in the span, with their visible revisions, to `keys`
   * and `revs` — at most `max` of them (0: all); returns how many are live in the span.
   */
  collect(span: KeySpan, atRev: number, max: number, keys: Binary[], revs: Rev[]): number {
    if (span.single) {
      const r = visibleAt(this.get(span.lo), atRev);
      if (r === undefined) return 0;
      if (max === 0 || keys.length < max) {
        keys.push(span.lo);
        revs.push(r);
      }
      return 1;
    }
    return collectNode(this.root, span.lo, span.hi, atRev, max, keys, revs);
  }

  /**
   * Replaces the head of every live key of the span (one whose head is a put) with
   * `update(key, head)`, in key order; returns how many. Leaf by leaf, copying only the nodes
   * it changes that a clone shares: a DeleteRange of a whole prefix costs one pass over its
   * leaves, not one descent from the root per key. `update` must not touch this index.
   */
  updateLive(span: KeySpan, update: (key: Binary, head: Rev) => Rev): number {
    // The key just after lo in bytewise order ends a one-key span.
    const walk: LiveUpdate = {
      owner: this.owner,
      lo: span.lo,
      hi: span.single ? span.lo + '\0' : span.hi,
      update,
      count: 0,
      done: false,
    };
    this.root = updateLiveNode(this.root, walk);
    return walk.count;
  }

  forEachLeaf(visit: (leaf: Leaf) => void): void {
    const walk = (node: TreeNode): void => {
      if (node instanceof Leaf) visit(node);
      else for (const child of node.children) walk(child);
    };
    walk(this.root);
  }

  /**
   * Applies compactHistory to every key; rebuilds the branches only if a key changed.
   * Returns the bytes of the revisions dropped (historyBytes).
   */
  compact(atRev: number): number {
    const leaves: Leaf[] = [];
    let changed = false;
    let dropped = 0;
    this.forEachLeaf((leaf) => {
      let keys: Binary[] | undefined;
      let heads: Rev[] | undefined;
      for (let i = 0; i < leaf.keys.length; i++) {
        const head = leaf.heads[i]!;
        const kept = compactHistory(head, atRev);
        if (kept !== head) {
          const key = leaf.keys[i]!;
          dropped += historyBytes(key, head) - historyBytes(key, kept);
        }
        if (kept !== head && keys === undefined) {
          keys = leaf.keys.slice(0, i);
          heads = leaf.heads.slice(0, i);
        }
        if (keys !== undefined && kept !== undefined) {
          keys.push(leaf.keys[i]!);
          heads!.push(kept);
        }
      }
      if (keys === undefined) leaves.push(leaf);
      else {
        changed = true;
        leaves.push(new Leaf(this.owner, keys, heads!));
      }
    });
    if (!changed) return 0;
    this.root = buildTree(leaves, this.owner, this.entriesMax);
    this.size = leaves.reduce((sum, leaf) => sum + leaf.keys.length, 0);
    return dropped;
  }

  checkInvariants(): void {
    let count = 0;
    let last: Binary | undefined;
    const walk = (node: TreeNode, lo: Binary | undefined, hi: Binary | undefined): number => {
      if (node instanceof Leaf) {
        assert(node.keys.length === node.heads.length, 'leaf keys and heads align');
        assert(node.keys.length <= this.entriesMax, 'leaf within its capacity');
        for (const key of node.keys) {
          assert(last === undefined || last < key, 'keys strictly ascending');
          assert(
            (lo === undefined || key >= lo) && (hi === undefined || key < hi),
            'key within its separators',
          );
          last = key;
          count++;
        }
        return 0;
      }
      assert(node.children.length >= 1 && node.children.length <= this.entriesMax, 'branch size');
      assert(node.seps.length === node.children.length - 1, 'one separator between children');
      const depths = node.children.map((child, i) =>
        walk(child, i === 0 ? lo : node.seps[i - 1], i < node.seps.length ? node.seps[i] : hi),
      );
      assert(
        depths.every((d) => d === depths[0]),
        'leaves all at one depth',
      );
      return depths[0]! + 1;
    };
    walk(this.root, undefined, undefined);
    assert(count === this.size, () => `index size ${this.size} counts ${count} keys`);
  }
}

function visitNode(
  node: TreeNode,
  lo: Binary,
  hi: Binary | undefined,
  visit: (key: Binary, head: Rev) => boolean,
): boolean {
  if (node instanceof Leaf) {
    for (let i = lowerBound(node.keys, lo); i < node.keys.length; i++) {
      const key = node.keys[i]!;
      if (hi !== undefined && key >= hi) return false;
      if (!visit(key, node.heads[i]!)) return false;
    }
    return true;
  }
  for (let c = upperBound(node.seps, lo); c < node.children.length; c++) {
    if (c > 0 && hi !== undefined && node.seps[c - 1]! >= hi) return false;
    if (!visitNode(node.children[c]!, lo, hi, visit)) return false;
  }
  return true;
}

/** KeyIndex.collect below one node; -1 - count once a key at or past `hi` is reached. */
function collectNode(
  node: TreeNode,
  lo: Binary,
  hi: Binary | undefined,
  atRev: number,
  max: number,
  keys: Binary[],
  revs: Rev[],
): number {
  let count = 0;
  if (node instanceof Leaf) {
    for (let i = lowerBound(node.keys, lo); i < node.keys.length; i++) {
      const key = node.keys[i]!;
      if (hi !== undefined && key >= hi) return -1 - count;
      const r = visibleAt(node.heads[i], atRev);
      if (r === undefined) continue;
      count++;
      if (max === 0 || keys.length < max) {
        keys.push(key);
        revs.push(r);
      }
    }
    return count;
  }
  for (let c = upperBound(node.seps, lo); c < node.children.length; c++) {
    if (c > 0 && hi !== undefined && node.seps[c - 1]! >= hi) return -1 - count;
    const n = collectNode(node.children[c]!, lo, hi, atRev, max, keys, revs);
    if (n < 0) return n - count;
    count += n;
  }
  return count;
}

/** KeyIndex.updateLive's walk: its span, its callback, and how far it got. */
interface LiveUpdate {
  readonly owner: Owner;
  readonly lo: Binary;
  readonly hi: Binary | undefined;
  readonly update: (key: Binary, head: Rev) => Rev;
  count: number;
  /** A key at or past `hi` was reached. */
  done: boolean;
}

/** KeyIndex.updateLive below one node: returns the node, or its copy if it had to change one. */
function updateLiveNode(node: TreeNode, walk: LiveUpdate): TreeNode {
  const { owner, lo, hi } = walk;
  if (node instanceof Leaf) {
    const keys = node.keys;
    // Bounds found by search, not by comparing every key: a leaf inside the span is walked
    // without reading its keys' bytes.
    const from = keys.length > 0 && keys[0]! >= lo ? 0 : lowerBound(keys, lo);
    let to = keys.length;
    if (hi !== undefined && to > 0 && keys[to - 1]! >= hi) {
      to = lowerBound(keys, hi, from);
      walk.done = true;
    }
    let leaf = node;
    for (let i = from; i < to; i++) {
      const head = node.heads[i]!;
      if (head.value === undefined) continue;
      if (leaf.owner !== owner) leaf = new Leaf(owner, keys.slice(), node.heads.slice());
      leaf.heads[i] = walk.update(keys[i]!, head);
      walk.count++;
    }
    return leaf;
  }
  let branch = node;
  for (let c = upperBound(node.seps, lo); c < node.children.length && !walk.done; c++) {
    if (c > 0 && hi !== undefined && node.seps[c - 1]! >= hi) {
      walk.done = true;
      break;
    }
    const child = node.children[c]!;
    const updated = updateLiveNode(child, walk);
    if (updated === child) continue;
    if (branch.owner !== owner)
      branch = new Branch(owner, node.seps.slice(), node.children.slice());
    branch.children[c] = updated;
  }
  return branch;
}

/** Branch levels over `leaves` (in key order); neighbours that fit in one leaf are merged. */
function buildTree(leaves: Leaf[], owner: Owner, entriesMax: number): TreeNode {
  const merged: Leaf[] = [];
  for (const leaf of leaves) {
    if (leaf.keys.length === 0) continue;
    const last = merged[merged.length - 1];
    const small = entriesMax >>> 1;
    if (
      last !== undefined &&
      last.keys.length + leaf.keys.length <= entriesMax &&
      (last.keys.length < small || leaf.keys.length < small)
    ) {
      merged[merged.length - 1] = new Leaf(
        owner,
        last.keys.concat(leaf.keys),
        last.heads.concat(leaf.heads),
      );
    } else {
      merged.push(leaf);
    }
  }
  if (merged.length === 0) return new Leaf(owner, [], []);
  let level: TreeNode[] = merged;
  let mins: Binary[] = merged.map((leaf) => leaf.keys[0]!);
  while (level.length > 1) {
    const next: TreeNode[] = [];
    const nextMins: Binary[] = [];
    for (let i = 0; i < level.length; i += entriesMax) {
      next.push(
        new Branch(owner, mins.slice(i + 1, i + entriesMax), level.slice(i, i + entriesMax)),
      );
      nextMins.push(mins[i]!);
    }
    level = next;
    mins = nextMins;
  }
  return level[0]!;
}

// ---------------------------------------------------------------------------------------
// The revision log: (main, sub, key) of every change at or above the compact revision

class LogChunk {
  constructor(
    public owner: Owner,
    readonly mains: Float64Array,
    readonly subs: Uint32Array,
    readonly keys: Binary[],
  ) {}
}

class RevisionLog {
  private chunksOwner: Owner;
  /** Position of the first entry; positions count from chunks[0]'s first slot. */
  private start = 0;
  /** Position one past the last entry. */
  private end = 0;

  constructor(
    private owner: Owner,
    private chunks: LogChunk[],
    private readonly chunkEntries: number,
  ) {
    this.chunksOwner = owner;
  }

  clone(): RevisionLog {
    this.owner = {};
    const copy = new RevisionLog({}, this.chunks, this.chunkEntries);
    copy.start = this.start;
    copy.end = this.end;
    copy.chunksOwner = this.chunksOwner;
    return copy;
  }

  get length(): number {
    return this.end - this.start;
  }

  private ownChunks(): void {
    if (this.chunksOwner === this.owner) return;
    this.chunks = this.chunks.slice();
    this.chunksOwner = this.owner;
  }

  append(main: number, sub: number, key: Binary): void {
    const size = this.chunkEntries;
    const slot = this.end % size;
    if (slot === 0) {
      this.ownChunks();
      this.chunks.push(new LogChunk(this.owner, new Float64Array(size), new Uint32Array(size), []));
    }
    const last = this.chunks.length - 1;
    let chunk = this.chunks[last]!;
    if (chunk.owner !== this.owner) {
      this.ownChunks();
      chunk = new LogChunk(
        this.owner,
        chunk.mains.slice(),
        chunk.subs.slice(),
        chunk.keys.slice(0, slot),
      );
      this.chunks[last] = chunk;
    }
    chunk.mains[slot] = main;
    chunk.subs[slot] = sub;
    chunk.keys.push(key);
    this.end++;
  }

  private mainAt(p: number): number {
    return this.chunks[Math.floor(p / this.chunkEntries)]!.mains[p % this.chunkEntries]!;
  }

  /** The position of the first entry whose main revision is >= `main`. */
  private seek(main: number): number {
    let lo = this.start;
    let hi = this.end;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.mainAt(mid) < main) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Calls `visit` for each entry with from <= main <= to, in revision order. */
  forEach(from: number, to: number, visit: (main: number, sub: number, key: Binary) => void): void {
    const size = this.chunkEntries;
    for (let p = this.seek(from); p < this.end; p++) {
      const chunk = this.chunks[Math.floor(p / size)]!;
      const main = chunk.mains[p % size]!;
      if (main > to) return;
      visit(main, chunk.subs[p % size]!, chunk.keys[p % size]!);
    }
  }

  /** Forgets the entries below `main`, releasing whole chunks. */
  dropBefore(main: number): void {
    const p = this.seek(main);
    const whole = Math.floor(p / this.chunkEntries);
    if (whole > 0) {
      this.ownChunks();
      this.chunks.splice(0, whole);
    }
    this.start = p - whole * this.chunkEntries;
    this.end -= whole * this.chunkEntries;
  }

  checkInvariants(): void {
    let previous: [number, number] | undefined;
    this.forEach(0, Infinity, (main, sub) => {
      assert(
        previous === undefined || previous[0] < main || (previous[0] === main && previous[1] < sub),
        'revision log in revision order',
      );
      previous = [main, sub];
    });
  }
}

// ---------------------------------------------------------------------------------------
// The store

/** The state one store and its open write transaction share. */
class State {
  writing = false;
  constructor(
    public index: KeyIndex,
    public log: RevisionLog,
    /** The last committed revision; 1 for an empty store, as in etcd. */
    public revision: number,
    /** Reads below it fail; at most the revision. */
    public compacted: number,
    readonly options: Required<MvccOptions>,
    /** revisionBytes summed over every retained revision (MvccStore.bytes). */
    public bytes: number,
  ) {}
}

function optionsOf(options: MvccOptions): Required<MvccOptions> {
  const resolved = {
    nodeEntriesMax: options.nodeEntriesMax ?? mvccLimits.nodeEntriesMax,
    logChunkEntries: options.logChunkEntries ?? mvccLimits.logChunkEntries,
  };
  assert(resolved.nodeEntriesMax >= 4, 'a B+tree node holds at least 4 entries');
  assert(resolved.logChunkEntries >= 1, 'a log chunk holds at least 1 entry');
  return resolved;
}

export class MvccStore {
  private state: State;

  constructor(options: MvccOptions = {}) {
    const o = optionsOf(options);
    this.state = new State(
      KeyIndex.empty(o.nodeEntriesMax),
      new RevisionLog({}, [], o.logChunkEntries),
      1,
      0,
      o,
      0,
    );
  }

  private static of(state: State): MvccStore {
    const store = new MvccStore(state.options);
    store.state = state;
    return store;
  }

  /** The last committed revision (etcd's header revision). */
  get revision(): number {
    return this.state.revision;
  }

  /** Reads and watches below this revision fail with 'compacted'; 0 before any compaction. */
  get compactRevision(): number {
    return this.state.compacted;
  }

  /**
   * The store's size as a space quota counts it: every retained revision's key and value
   * bytes plus `revisionOverheadBytes` (a tombstone counts its key). Compaction lowers it at
   * once — the store is in memory, so there is nothing to defragment. Replicas that applied
   * the same log agree on it.
   */
  get bytes(): number {
    return this.state.bytes;
  }

  /** Keys held in the index, tombstoned ones included until compaction drops them. */
  get keyCount(): number {
    return this.state.index.size;
  }

  /** etcd's Range, filters, sort and limit included; reads committed revisions only. */
  range(req: RangeRequest): RangeResult {
    return rangeAt(this.state, req, this.state.revision);
  }

  /** The key at `revision` (0: current), or undefined. */
  get(key: Bytes, revision = 0): KeyValue | undefined {
    return rangeAt(this.state, { key, revision }, this.state.revision).kvs[0];
  }

  /** Opens the one write transaction; its changes become visible at end(). */
  write(): MvccWriteTxn {
    assert(!this.state.writing, 'one write transaction at a time');
    this.state.writing = true;
    return new WriteTxn(this.state);
  }

  /**
   * Drops the history below `revision`: per key, the revisions above it and the newest at
   * or below it are kept, unless that one is a tombstone below it (then the key's older
   * generations go; a key with nothing left leaves the index). etcd's errors: 'compacted'
   * at or below the compact revision, 'future-rev' above the current one.
   */
  compact(revision: number): void {
    const s = this.state;
    assert(!s.writing, 'no compaction inside a write transaction');
    assertInteger(revision, 'compact revision');
    if (revision <= s.compacted) throw new KvError('compacted');
    if (revision > s.revision) throw new KvError('future-rev');
    s.bytes -= s.index.compact(revision);
    s.log.dropBefore(revision);
    s.compacted = revision;
  }

  /**
   * Moves the revision `by` forward without changing any key (etcdutl's `snapshot restore
   * --bump-revision`): the next write gets revision + by + 1, and the revisions skipped hold
   * no events. Only for a store no replica serves yet: replicas must agree on every
   * revision, and this is no log entry.
   */
  bumpRevision(by: number): void {
    const s = this.state;
    assert(!s.writing, 'no bump inside a write transaction');
    assertInteger(by, 'revision bump');
    assert(by > 0 && Number.isSafeInteger(s.revision + by), 'a bump within safe integers');
    s.revision += by;
  }

  /**
   * The events of revisions [from, to] on the range, in revision order, each with the
   * prevKv a watcher with prev_kv gets. `from` below the compact revision is 'compacted' (a
   * watch from exactly the compact revision still works in etcd, and here).
   */
  eventsBetween(from: number, to: number, key: Bytes, rangeEnd?: Bytes): KvEvent[] {
    const s = this.state;
    assertInteger(from, 'from revision');
    assertInteger(to, 'to revision');
    if (from < s.compacted) throw new KvError('compacted');
    if (to > s.revision) throw new KvError('future-rev');
    const span = spanOf(key, rangeEnd);
    const events: KvEvent[] = [];
    s.log.forEach(from, to, (main, sub, k) => {
      if (!inSpan(span, k)) return;
      let r = s.index.get(k);
      while (r !== undefined && (r.main > main || (r.main === main && r.sub > sub))) r = r.prev;
      // A key written twice in one revision keeps only its last change after compaction at
      // that revision; the log may still list the first.
      if (r === undefined || r.main !== main || r.sub !== sub) return;
      const bytes = span.single ? key : fromBinary(k);
      events.push(eventOf(bytes, r, prevKvOf(bytes, r)));
    });
    return events;
  }

  /**
   * etcd's HashKV over the revisions etcd hashes — each key's revisions in (compact
   * revision, revision], plus its newest revision at or below `revision` if that is a put
   * kept by compaction — taken key by key in ascending order, oldest revision first (etcd
   * walks its revision-keyed bucket; any fixed order serves, since only replicas of Chorus
   * compare these hashes). `revision` 0 hashes the current revision.
   */
  hashKv(revision = 0): KvHash {
    const s = this.state;
    assertInteger(revision, 'hash revision');
    if (revision > 0 && revision < s.compacted) throw new KvError('compacted');
    if (revision > s.revision) throw new KvError('future-rev');
    const at = revision > 0 ? revision : s.revision;
    const hasher = new Hasher();
    const picked: Rev[] = [];
    s.index.forEach({ lo: '', hi: undefined, single: false }, (key, head) => {
      picked.length = 0;
      let r: Rev | undefined = head;
      while (r !== undefined && r.main > at) r = r.prev;
      const newest = r;
      for (; r !== undefined; r = r.prev) {
        if (r.main > s.compacted || (r === newest && r.value !== undefined)) picked.push(r);
      }
      for (let i = picked.length - 1; i >= 0; i--) hasher.add(key, picked[i]!);
      return true;
    });
    return { hash: hasher.crc, revision: at, compactRevision: s.compacted };
  }

  /** A copy sharing all structure, O(1); the two evolve independently from here. */
  clone(): MvccStore {
    const s = this.state;
    assert(!s.writing, 'no clone inside a write transaction');
    return MvccStore.of(
      new State(s.index.clone(), s.log.clone(), s.revision, s.compacted, s.options, s.bytes),
    );
  }

  /** Every key's whole retained history, the revision and the compact revision. */
  snapshot(): Uint8Array {
    const job = this.snapshotJob(Infinity);
    while (!job.step());
    return concatBytes(job.result());
  }

  /**
   * A snapshot taken in steps, so a large store does not stall the process: the state is
   * fixed now (an O(1) copy-on-write clone), and each `step()` encodes the next
   * `keysPerStep` keys; it returns true once every key is encoded, then `result()` holds the
   * pieces of a snapshot `restore` reads (their concatenation; the parts are not copied). Writes to this store meanwhile do not touch the clone.
   */
  snapshotJob(keysPerStep = 20_000): { step(): boolean; result(): Uint8Array[] } {
    const frozen = this.clone().state;
    const leaves: Leaf[] = [];
    frozen.index.forEachLeaf((leaf) => leaves.push(leaf));
    const parts: Uint8Array[] = [];
    // The next key to encode: leaves[next].keys[within].
    let next = 0;
    let within = 0;
    const step = (): boolean => {
      const keys: Binary[] = [];
      const chains: Rev[][] = [];
      let revisions = 0;
      // A step ends between keys (a leaf of keys with long histories is split between
      // steps); one key's history is never split between parts.
      while (
        next < leaves.length &&
        keys.length < keysPerStep &&
        revisions < mvccLimits.snapshotRevisionsPerStep
      ) {
        const leaf = leaves[next]!;
        if (within >= leaf.keys.length) {
          next++; // an empty leaf (an empty store's root)
          within = 0;
          continue;
        }
        const chain: Rev[] = [];
        for (let r: Rev | undefined = leaf.heads[within]; r !== undefined; r = r.prev)
          chain.push(r);
        keys.push(leaf.keys[within]!);
        chains.push(chain.reverse());
        revisions += chain.length;
        if (++within >= leaf.keys.length) {
          next++;
          within = 0;
        }
      }
      if (keys.length > 0 || parts.length === 0)
        parts.push(encode(imageOf(keys, chains, frozen.revision, frozen.compacted)));
      return next >= leaves.length;
    };
    const result = (): Uint8Array[] => {
      assert(next >= leaves.length, 'snapshot job not finished');
      // One part is the plain format; several are wrapped as { format, parts } (restore
      // reads both), framed around the parts rather than copying them.
      if (parts.length === 1) return [parts[0]!];
      return [
        msgpackMapHeader(2),
        encode('format'),
        encode(mvccLimits.snapshotFormat),
        encode('parts'),
        ...msgpackArray(parts.map((part) => ({ binary: [part] }))),
      ];
    };
    return { step, result };
  }

  /** The store a snapshot was taken of; malformed data is a BadInputError. */
  static restore(data: ByteSource, options: MvccOptions = {}): MvccStore {
    const job = MvccStore.restoreJob(data, options);
    while (!job.step());
    return job.result();
  }

  /**
   * The store a snapshot was taken of, rebuilt in steps: each step reads one part of the
   * snapshot (at most `snapshotRevisionsPerStep` revisions; a plain one-part snapshot is one
   * step), the last one builds the index and the revision log. The snapshot's bytes may be
   * in pieces (as received from a leader); they are never joined. Malformed data is a
   * BadInputError from the step that reads it.
   */
  static restoreJob(data: ByteSource, options: MvccOptions = {}): StepJob<MvccStore> {
    const o = optionsOf(options);
    const reader = new MsgpackReader(data, 'mvcc snapshot');
    // { format, parts: [bin…] } (snapshotJob's form for several parts), else one image.
    let parts = 1;
    let plain = true;
    if (reader.atMap() && reader.mapHeader() === 2) {
      if (reader.value() !== 'format' || reader.value() !== mvccLimits.snapshotFormat)
        throw new BadInputError('mvcc snapshot: unknown format');
      if (reader.value() !== 'parts') throw new BadInputError('mvcc snapshot: no parts');
      parts = reader.arrayHeader();
      plain = false;
    }
    if (parts === 0) throw new BadInputError('mvcc snapshot: no parts');
    let first: SnapshotImage | undefined;
    const keys: Binary[] = [];
    const heads: Rev[] = [];
    const logged: { main: number; sub: number; key: Binary }[] = [];
    let read = 0;
    let held = 0;
    let store: MvccStore | undefined;
    const readPart = (bytes: Uint8Array): void => {
      const image = parseImage(decode(bytes));
      first ??= image;
      if (image.revision !== first.revision || image.compactRevision !== first.compactRevision)
        throw new BadInputError('mvcc snapshot: parts of different revisions');
      let keyAt = 0;
      let valueAt = 0;
      let e = 0;
      for (let k = 0; k < image.counts.length; k++) {
        const key = toBinary(image.keyBytes.subarray(keyAt, (keyAt += image.keyLengths[k]!)));
        if (key.length === 0 || (keys.length > 0 && keys[keys.length - 1]! >= key))
          throw new BadInputError('mvcc snapshot: keys not strictly ascending and non-empty');
        let head: Rev | undefined;
        for (let n = image.counts[k]!; n > 0; n--, e++) {
          const length = image.valueLengths[e]!;
          const value =
            length < 0
              ? undefined
              : toBinary(image.valueBytes.subarray(valueAt, (valueAt += length)));
          const main = image.mains[e]!;
          head = new Rev(
            main,
            image.subs[e]!,
            value,
            image.leases[e]!,
            image.creates[e]!,
            image.versions[e]!,
            head,
          );
          if (main >= image.compactRevision) logged.push({ main, sub: head.sub, key });
          held += revisionBytes(key.length, length < 0 ? 0 : length);
        }
        const problem = historyProblem(head!, image.compactRevision, image.revision);
        if (problem !== undefined) throw new BadInputError(`mvcc snapshot: ${problem}`);
        keys.push(key);
        heads.push(head!);
      }
    };
    const step = (): boolean => {
      if (store !== undefined) return true;
      if (read < parts) {
        readPart(joinedBytes(plain ? data : reader.binary()));
        read++;
        return false;
      }
      if (!reader.done() && !plain) throw new BadInputError('mvcc snapshot: bytes after the parts');
      logged.sort((a, b) => a.main - b.main || a.sub - b.sub);
      const log = new RevisionLog({}, [], o.logChunkEntries);
      for (const entry of logged) log.append(entry.main, entry.sub, entry.key);
      const index = KeyIndex.build(keys, heads, o.nodeEntriesMax);
      store = MvccStore.of(new State(index, log, first!.revision, first!.compactRevision, o, held));
      return true;
    };
    const result = (): MvccStore => {
      assert(store !== undefined, 'restore job not finished');
      return store;
    };
    return { step, result };
  }

  /** Asserts every structural invariant; for tests, O(history). */
  checkInvariants(): void {
    const s = this.state;
    assert(!s.writing, 'no open write transaction');
    assert(s.compacted >= 0 && s.compacted <= s.revision, 'compact revision within [0, revision]');
    s.index.checkInvariants();
    s.log.checkInvariants();
    let expected = 0;
    let bytes = 0;
    s.index.forEach({ lo: '', hi: undefined, single: false }, (key, head) => {
      const problem = historyProblem(head, s.compacted, s.revision);
      assert(problem === undefined, () => `history: ${problem}`);
      bytes += historyBytes(key, head);
      for (let r: Rev | undefined = head; r !== undefined; r = r.prev) {
        if (r.main >= s.compacted) expected++;
      }
      return true;
    });
    assert(s.log.length >= expected, 'the log lists every retained change');
    assert(bytes === s.bytes, () => `bytes counted ${s.bytes}, held ${bytes}`);
  }
}

// ---------------------------------------------------------------------------------------
// Write transactions

/**
 * etcd's TxnWrite: changes take main revision `revision` + 1 with increasing sub
 * revisions; reads inside see them. Nothing in here refuses a request — apply.ts validates
 * first — so a transaction, once opened, always ends.
 */
export interface MvccWriteTxn {
  /** The revision reads inside see: the one being written once anything changed. */
  readonly revision: number;
  /** etcd's Range inside the transaction: it sees the transaction's own writes. */
  range(req: RangeRequest): RangeResult;
  /** The key as the transaction sees it. */
  get(key: Bytes): KeyValue | undefined;
  /**
   * Writes the key; returns its previous value inside this transaction (etcd's put
   * prevKv). The store keeps its own copy of the bytes; the event shares the caller's.
   */
  put(key: Bytes, value: Bytes, lease: number): KeyValue | undefined;
  /**
   * Deletes the live keys of the range; returns how many, and with `prevKvs` also the keys as
   * they were (etcd's prev_kv). Nothing is built per key unless asked: no KeyValue, and no
   * event until a reader of `end().events` selects it.
   */
  deleteRange(key: Bytes, rangeEnd?: Bytes, prevKvs?: boolean): DeleteRangeResult;
  /** Commits: the revision moves on by one iff anything changed. */
  end(): WriteResult;
}

/** Which of a revision's events a reader wants (a watcher's filters). */
export interface EventFilter {
  readonly noPut: boolean;
  readonly noDelete: boolean;
  /** Whether events carry their prevKv (built only then: it copies the old value). */
  readonly prevKv: boolean;
}

/**
 * The events of one write transaction, built only when asked for. A DeleteRange of a whole
 * prefix (etcdctl check perf ends with one over 65k-130k keys) used to build every event
 * with its prevKv as it applied, watched or not: a second of blocked event loop on every
 * member, long enough for the leader to miss its heartbeats. Here a change is its key and
 * its new revision, which the store keeps anyway; its event is built the first time a reader
 * whose range covers the key asks, then shared with every later one.
 */
export class WriteEvents {
  /** Each change's key (the index's own string) and new revision, in sub-revision order. */
  private readonly keys: Binary[] = [];
  private readonly revs: Rev[] = [];
  /**
   * Events built so far, by position: `bare` without prevKv; `full` with it, only for a change
   * that has one (a creation's event is its bare one). Both share the event's kv.
   */
  private readonly bare: (KvEvent | undefined)[] = [];
  private readonly full: (KvEvent | undefined)[] = [];
  /** Positions where keys stop ascending: the changes between two are sorted by key. */
  private readonly runStarts: number[] = [0];
  /** Positions of the changes that move a key off or onto a lease (most keys have none). */
  private readonly leaseChanges: number[] = [];

  get length(): number {
    return this.keys.length;
  }

  /** Records a put, with its event (built at once: it shares the caller's bytes). */
  addPut(key: Binary, r: Rev, event: KvEvent): void {
    const at = this.keys.length;
    if (at > 0 && key <= this.keys[at - 1]!) this.startRun();
    this.record(key, r);
    (event.prevKv === undefined ? this.bare : this.full)[at] = event;
  }

  /** Begins a DeleteRange's changes: addDeleted then adds them in ascending key order. */
  startDeletes(): void {
    this.startRun();
  }

  /** Records a tombstone; its key is above the last one's since startDeletes (one run). */
  addDeleted(key: Binary, tombstone: Rev): void {
    this.record(key, tombstone);
  }

  private startRun(): void {
    const at = this.keys.length;
    if (this.runStarts[this.runStarts.length - 1] !== at) this.runStarts.push(at);
  }

  private record(key: Binary, r: Rev): void {
    if (r.lease !== 0 || (r.prev?.value !== undefined && r.prev.lease !== 0))
      this.leaseChanges.push(this.keys.length);
    this.keys.push(key);
    this.revs.push(r);
  }

  /** Every event, each with its prevKv, in sub-revision order. */
  all(): KvEvent[] {
    const out: KvEvent[] = [];
    for (let i = 0; i < this.keys.length; i++) out.push(this.eventAt(i, true));
    return out;
  }

  /**
   * The events on the span's keys that pass the filter, in sub-revision order. A long run of
   * sorted changes (a DeleteRange) is searched for the span's start and read only while in
   * it, so a watcher elsewhere costs no event at all; a short one is read whole, which is
   * cheaper for the usual write of a few keys.
   */
  select(span: KeySpan, filter: EventFilter): KvEvent[] {
    const out: KvEvent[] = [];
    const starts = this.runStarts;
    for (let run = 0; run < starts.length; run++) {
      const start = starts[run]!;
      const end = starts[run + 1] ?? this.keys.length;
      const searched = end - start > mvccLimits.eventRunScannedMax;
      for (let i = searched ? lowerBound(this.keys, span.lo, start, end) : start; i < end; i++) {
        if (!inSpan(span, this.keys[i]!)) {
          if (searched) break; // sorted, and at or past the span's start: past its end now
          continue;
        }
        if (this.revs[i]!.value === undefined ? filter.noDelete : filter.noPut) continue;
        out.push(this.eventAt(i, filter.prevKv));
      }
    }
    return out;
  }

  /** Calls `visit` for each change of a key's lease: the one it leaves, the one it joins. */
  forEachLeaseChange(visit: (key: Binary, detached: number, attached: number) => void): void {
    for (const i of this.leaseChanges) {
      const r = this.revs[i]!;
      const detached = r.prev?.value === undefined ? 0 : r.prev.lease;
      visit(this.keys[i]!, detached, r.lease);
    }
  }

  /** Change i's event, with its prevKv if asked and it has one; built once, then shared. */
  private eventAt(i: number, withPrevKv: boolean): KvEvent {
    return (withPrevKv ? this.full[i] : this.bare[i]) ?? this.build(i, withPrevKv);
  }

  private build(i: number, withPrevKv: boolean): KvEvent {
    const r = this.revs[i]!;
    const full = this.full[i];
    const bare =
      this.bare[i] ??
      (this.bare[i] =
        full === undefined
          ? eventOf(fromBinary(this.keys[i]!), r, undefined)
          : { type: full.type, kv: full.kv });
    if (!withPrevKv || r.prev?.value === undefined) return bare;
    return (this.full[i] = {
      type: bare.type,
      kv: bare.kv,
      prevKv: keyValueOf(bare.kv.key, r.prev),
    });
  }
}

class WriteTxn implements MvccWriteTxn {
  private changes = 0;
  private open = true;
  private readonly events = new WriteEvents();
  private readonly begin: number;

  constructor(private readonly state: State) {
    this.begin = state.revision;
  }

  get revision(): number {
    return this.changes > 0 ? this.begin + 1 : this.begin;
  }

  range(req: RangeRequest): RangeResult {
    assert(this.open, 'write transaction still open');
    return rangeAt(this.state, req, this.revision);
  }

  get(key: Bytes): KeyValue | undefined {
    assert(this.open, 'write transaction still open');
    const head = this.state.index.get(toBinary(key));
    return head?.value === undefined ? undefined : keyValueOf(key, head);
  }

  put(key: Bytes, value: Bytes, lease: number): KeyValue | undefined {
    assert(this.open, 'write transaction still open');
    assertInteger(lease, 'lease');
    const k = toBinary(key);
    const v = toBinary(value);
    const main = this.begin + 1;
    const sub = this.changes++;
    const index = this.state.index;
    const head = index.seek(k);
    const live = head?.value === undefined ? undefined : head;
    const written = new Rev(
      main,
      sub,
      v,
      lease,
      live === undefined ? main : live.create,
      live === undefined ? 1 : live.version + 1,
      head,
    );
    const stored = index.set(k, written);
    this.state.log.append(main, sub, stored);
    this.state.bytes += revisionBytes(k.length, v.length);
    const kv: KeyValue = {
      key,
      createRevision: written.create,
      modRevision: main,
      version: written.version,
      value,
      lease,
    };
    const prevKv = prevKvOf(key, written);
    const event: KvEvent = prevKv === undefined ? { type: 'put', kv } : { type: 'put', kv, prevKv };
    this.events.addPut(stored, written, event);
    return prevKv;
  }

  deleteRange(key: Bytes, rangeEnd?: Bytes, prevKvs = false): DeleteRangeResult {
    assert(this.open, 'write transaction still open');
    const main = this.begin + 1;
    const log = this.state.log;
    const first = this.events.length;
    const keys: Binary[] = [];
    const before: Rev[] = [];
    this.events.startDeletes();
    const deleted = this.state.index.updateLive(spanOf(key, rangeEnd), (k, head) => {
      const tombstone = new Rev(main, this.changes++, undefined, 0, 0, 0, head);
      log.append(main, tombstone.sub, k);
      this.state.bytes += revisionBytes(k.length, 0);
      this.events.addDeleted(k, tombstone);
      if (prevKvs) {
        keys.push(k);
        before.push(head);
      }
      return tombstone;
    });
    assert(this.events.length === first + deleted, 'one change recorded per deleted key');
    if (!prevKvs) return { deleted, prevKvs: [] };
    const order = keys.map((_, i) => i);
    return { deleted, prevKvs: materialize(order, keys, before, undefined, false) };
  }

  end(): WriteResult {
    assert(this.open, 'write transaction ended once');
    this.open = false;
    this.state.writing = false;
    if (this.changes > 0) this.state.revision = this.begin + 1;
    return { revision: this.state.revision, events: this.events };
  }
}

// ---------------------------------------------------------------------------------------
// Range: etcd's mvcc rangeKeys followed by its executeRange (filter, sort, limit)

function rangeAt(state: State, req: RangeRequest, current: number): RangeResult {
  let rev = req.revision ?? 0;
  if (rev > current) throw new KvError('future-rev');
  if (rev <= 0) rev = current;
  if (rev < state.compacted) throw new KvError('compacted');
  const span = spanOf(req.key, req.rangeEnd);
  const limit = req.limit !== undefined && req.limit > 0 ? req.limit : 0;
  const target: SortTarget = req.sortTarget ?? 'key';
  const requestedOrder: SortOrder = req.sortOrder ?? 'none';
  const filtered = hasRevisionFilters(req);
  // Sorting or filtering needs every key first; otherwise one more than the limit tells
  // whether there are more. As in etcd, the decision looks at the order as requested: a
  // sort target with order 'none' (which sorts ascending below) still reads only limit + 1
  // keys, in key order, and sorts just those.
  const fetchMax =
    !isDefaultOrdering(target, requestedOrder) || filtered || limit === 0 ? 0 : limit + 1;

  const keys: Binary[] = [];
  const revs: Rev[] = [];
  const counted = state.index.collect(span, rev, req.countOnly ? 1 : fetchMax, keys, revs);
  const count = counted < 0 ? -1 - counted : counted;
  if (req.countOnly) return { kvs: [], more: false, count };

  let order = keys.map((_, i) => i);
  if (filtered) order = order.filter((i) => passesFilters(req, revs[i]!));
  const sortOrder = target !== 'key' && requestedOrder === 'none' ? 'ascend' : requestedOrder;
  if (!isDefaultOrdering(target, sortOrder)) {
    const compare = comparator(target, keys, revs);
    order.sort(sortOrder === 'descend' ? (a, b) => compare(b, a) : compare);
  }
  let more = false;
  if (limit > 0 && order.length > limit) {
    order = order.slice(0, limit);
    more = true;
  }
  return {
    kvs: materialize(order, keys, revs, span.single ? req.key : undefined, req.keysOnly === true),
    more,
    count,
  };
}

/** The KeyValues of the chosen entries, their bytes written into one slab. */
function materialize(
  order: readonly number[],
  keys: readonly Binary[],
  revs: readonly Rev[],
  singleKey: Bytes | undefined,
  keysOnly: boolean,
): KeyValue[] {
  let total = 0;
  for (const i of order) {
    if (singleKey === undefined) total += keys[i]!.length;
    if (!keysOnly) total += revs[i]!.value!.length;
  }
  const slab = new SlabWriter(total);
  return order.map((i) => {
    const r = revs[i]!;
    return {
      key: singleKey ?? slab.bytes(keys[i]!),
      createRevision: r.create,
      modRevision: r.main,
      version: r.version,
      value: keysOnly ? emptyBytes : slab.bytes(r.value!),
      lease: r.lease,
    };
  });
}

function isDefaultOrdering(target: SortTarget, order: SortOrder): boolean {
  return order === 'none' || (target === 'key' && order === 'ascend');
}

function hasRevisionFilters(req: RangeRequest): boolean {
  return (
    (req.minModRevision ?? 0) !== 0 ||
    (req.maxModRevision ?? 0) !== 0 ||
    (req.minCreateRevision ?? 0) !== 0 ||
    (req.maxCreateRevision ?? 0) !== 0
  );
}

/** etcd's pruneKVs: a zero bound is no bound. */
function passesFilters(req: RangeRequest, r: Rev): boolean {
  const maxMod = req.maxModRevision ?? 0;
  const minMod = req.minModRevision ?? 0;
  const maxCreate = req.maxCreateRevision ?? 0;
  const minCreate = req.minCreateRevision ?? 0;
  return (
    (maxMod === 0 || r.main <= maxMod) &&
    (minMod === 0 || r.main >= minMod) &&
    (maxCreate === 0 || r.create <= maxCreate) &&
    (minCreate === 0 || r.create >= minCreate)
  );
}

/**
 * Ascending order on the target. Array.prototype.sort is stable, so ties stay in key
 * order (etcd's sort.Sort leaves ties in an unspecified order; any fixed one is faithful).
 */
function comparator(
  target: SortTarget,
  keys: Binary[],
  revs: Rev[],
): (a: number, b: number) => number {
  const strings = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  switch (target) {
    case 'key':
      return (a, b) => strings(keys[a]!, keys[b]!);
    case 'value':
      return (a, b) => strings(revs[a]!.value!, revs[b]!.value!);
    case 'version':
      return (a, b) => revs[a]!.version - revs[b]!.version;
    case 'create':
      return (a, b) => revs[a]!.create - revs[b]!.create;
    case 'mod':
      return (a, b) => revs[a]!.main - revs[b]!.main;
  }
}

// ---------------------------------------------------------------------------------------
// Hashing and snapshots

/** CRC32C over each hashed revision: its numbers, then its key and value bytes. */
class Hasher {
  crc = crc32c(new Uint8Array([0x6b, 0x65, 0x79])); // "key", the bucket etcd hashes
  private readonly header = new Uint8Array(8 * 6 + 1);
  private readonly view = new DataView(this.header.buffer);
  private scratch = new Uint8Array(1024);

  add(key: Binary, r: Rev): void {
    const fields = [r.main, r.sub, r.create, r.version, r.lease, key.length];
    fields.forEach((n, i) => this.view.setFloat64(i * 8, n, true));
    this.header[48] = r.value === undefined ? 1 : 0;
    this.crc = crc32c(this.header, 0, this.header.length, this.crc);
    this.addString(key);
    if (r.value !== undefined) this.addString(r.value);
  }

  private addString(s: Binary): void {
    if (s.length > this.scratch.length) this.scratch = new Uint8Array(s.length * 2);
    for (let i = 0; i < s.length; i++) this.scratch[i] = s.charCodeAt(i);
    this.crc = crc32c(this.scratch, 0, s.length, this.crc);
  }
}

/**
 * The snapshot layout: keys ascending, each with its retained revisions oldest first, one
 * column per field; the bytes of all keys and of all values are concatenated.
 */
interface SnapshotImage {
  format: number;
  revision: number;
  compactRevision: number;
  keyLengths: number[];
  keyBytes: Uint8Array;
  /** Revisions per key. */
  counts: number[];
  mains: number[];
  subs: number[];
  /** -1 for a tombstone. */
  valueLengths: number[];
  valueBytes: Uint8Array;
  leases: number[];
  creates: number[];
  versions: number[];
}

/** The columnar image of some keys' histories (each chain oldest first). */
function imageOf(
  keys: readonly Binary[],
  chains: readonly Rev[][],
  revision: number,
  compactRevision: number,
): SnapshotImage {
  let keyBytes = 0;
  let valueBytes = 0;
  for (const key of keys) keyBytes += key.length;
  for (const chain of chains) for (const r of chain) valueBytes += r.value?.length ?? 0;
  const keySlab = new SlabWriter(keyBytes);
  const valueSlab = new SlabWriter(valueBytes);
  const image: SnapshotImage = {
    format: mvccLimits.snapshotFormat,
    revision,
    compactRevision,
    keyLengths: keys.map((key) => (keySlab.bytes(key), key.length)),
    keyBytes: keySlab.all(),
    counts: chains.map((chain) => chain.length),
    mains: [],
    subs: [],
    valueLengths: [],
    valueBytes: new Uint8Array(0),
    leases: [],
    creates: [],
    versions: [],
  };
  for (const chain of chains) {
    for (const r of chain) {
      image.mains.push(r.main);
      image.subs.push(r.sub);
      if (r.value !== undefined) valueSlab.bytes(r.value);
      image.valueLengths.push(r.value === undefined ? -1 : r.value.length);
      image.leases.push(r.lease);
      image.creates.push(r.create);
      image.versions.push(r.version);
    }
  }
  image.valueBytes = valueSlab.all();
  return image;
}

function parseImage(raw: unknown): SnapshotImage {
  const bad = (what: string): never => {
    throw new BadInputError(`mvcc snapshot: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null) return bad('not a map');
  const o = raw as Record<string, unknown>;
  if (o['format'] !== mvccLimits.snapshotFormat)
    return bad(`unknown format ${String(o['format'])}`);
  const ints = (name: string, min: number): number[] => {
    const a = o[name];
    if (!Array.isArray(a) || !a.every((n) => Number.isSafeInteger(n) && (n as number) >= min))
      return bad(name);
    return a as number[];
  };
  const int = (name: string): number => {
    const n = o[name];
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : bad(name);
  };
  const bytes = (name: string): Uint8Array => {
    const b = o[name];
    return b instanceof Uint8Array ? b : bad(name);
  };
  const image: SnapshotImage = {
    format: mvccLimits.snapshotFormat,
    revision: int('revision'),
    compactRevision: int('compactRevision'),
    keyLengths: ints('keyLengths', 1),
    keyBytes: bytes('keyBytes'),
    counts: ints('counts', 1),
    mains: ints('mains', 1),
    subs: ints('subs', 0),
    valueLengths: ints('valueLengths', -1),
    valueBytes: bytes('valueBytes'),
    leases: ints('leases', Number.MIN_SAFE_INTEGER),
    creates: ints('creates', 0),
    versions: ints('versions', 0),
  };
  if (image.revision < 1 || image.compactRevision > image.revision) bad('revisions');
  const sum = (a: number[]): number => a.reduce((total, n) => total + Math.max(n, 0), 0);
  if (image.keyLengths.length !== image.counts.length) bad('one length per key');
  if (sum(image.keyLengths) !== image.keyBytes.length) bad('key bytes');
  const total = sum(image.counts);
  const columns = [
    image.mains,
    image.subs,
    image.valueLengths,
    image.leases,
    image.creates,
    image.versions,
  ];
  if (columns.some((c) => c.length !== total)) bad('columns of unequal length');
  if (sum(image.valueLengths) !== image.valueBytes.length) bad('value bytes');
  return image;
}
