/**
 * The KV requests on top of the store, as etcd's server applies them (its v3rpc request
 * checks, then etcdserver/txn): pure and deterministic, so every replica that applies the
 * same request to the same store answers alike.
 *
 * A request is validated whole before anything is written: a refused request changes
 * nothing and raises a KvError. The checks run in etcd's order — shape (empty key, flags,
 * operation counts), then put/delete overlaps in a transaction, then compares, then the
 * chosen branch's revisions, leases and ignore-flag keys — so the first error reported is
 * the one etcd reports.
 */
import { assertNever } from '../core/assert.js';
import { KvError } from './errors.js';
import {
  emptyBytes,
  toBinary,
  type MvccStore,
  type MvccWriteTxn,
  type WriteEvents,
} from './mvcc.js';
import {
  kvLimits,
  type Bytes,
  type Compare,
  type DeleteRangeRequest,
  type DeleteRangeResult,
  type KeyValue,
  type PutRequest,
  type PutResult,
  type RangeRequest,
  type RangeResult,
  type RequestOp,
  type ResponseOp,
  type Revisioned,
  type TxnRequest,
  type TxnResult,
} from './types.js';

/** Whether a lease exists now (the caller's lease table). */
export type LeaseExists = (id: number) => boolean;

/** A write's outcome: its result, the store's revision after it, and the events for watchers. */
export interface Applied<T> {
  result: T;
  revision: number;
  events: WriteEvents;
}

/** etcd's Range; the revision is the store's current one (etcd's header), not the one read. */
export function applyRange(store: MvccStore, req: RangeRequest): RangeResult & Revisioned {
  checkRange(req);
  const { kvs, more, count } = store.range(req);
  return { kvs, more, count, revision: store.revision };
}

export function applyPut(
  store: MvccStore,
  req: PutRequest,
  leaseExists: LeaseExists,
): Applied<PutResult> {
  checkPut(req);
  checkLease(req, leaseExists);
  if ((req.ignoreValue || req.ignoreLease) && store.get(req.key) === undefined)
    throw new KvError('key-not-found');
  const txn = store.write();
  return applied(executePut(txn, req), txn);
}

export function applyDeleteRange(
  store: MvccStore,
  req: DeleteRangeRequest,
): Applied<DeleteRangeResult> {
  checkDelete(req);
  const txn = store.write();
  return applied(executeDelete(txn, req), txn);
}

/**
 * etcd's Txn: every compare — nested transactions' too — is evaluated against the store as
 * it was before the transaction; then the chosen operations run in order inside one write
 * transaction, so all its changes share one revision.
 */
export function applyTxn(
  store: MvccStore,
  req: TxnRequest,
  leaseExists: LeaseExists,
  maxTxnOps: number = kvLimits.maxTxnOps,
): Applied<TxnResult> {
  checkTxn(req, maxTxnOps);
  checkIntervals(req.success);
  checkIntervals(req.failure);
  const path = choosePath(store, req);
  checkChosen(store, req, path, leaseExists, []);
  const txn = store.write();
  return applied(executeTxn(txn, req, path), txn);
}

function applied<T>(result: T, txn: MvccWriteTxn): Applied<T> {
  const { revision, events } = txn.end();
  return { result, revision, events };
}

// ---------------------------------------------------------------------------------------
// Shape checks: etcd's v3rpc checkRangeRequest, checkPutRequest, checkTxnRequest...

function checkRange(req: RangeRequest): void {
  if (req.key.length === 0) throw new KvError('empty-key');
}

function checkPut(req: PutRequest): void {
  if (req.key.length === 0) throw new KvError('empty-key');
  if (req.ignoreValue && (req.value?.length ?? 0) !== 0) throw new KvError('value-provided');
  if (req.ignoreLease && (req.lease ?? 0) !== 0) throw new KvError('lease-provided');
}

function checkDelete(req: DeleteRangeRequest): void {
  if (req.key.length === 0) throw new KvError('empty-key');
}

/**
 * A transaction's operation count is the largest of its compares, successes and failures;
 * a nested transaction gets what its parent's count leaves of the budget (etcd v3.6).
 */
function checkTxn(req: TxnRequest, budget: number): void {
  const count = Math.max(req.compare.length, req.success.length, req.failure.length);
  if (count > budget) throw new KvError('too-many-ops');
  for (const c of req.compare) if (c.key.length === 0) throw new KvError('empty-key');
  for (const op of [...req.success, ...req.failure]) checkOp(op, budget - count);
}

function checkOp(op: RequestOp, budget: number): void {
  if ('range' in op) checkRange(op.range);
  else if ('put' in op) checkPut(op.put);
  else if ('deleteRange' in op) checkDelete(op.deleteRange);
  else if ('txn' in op) checkTxn(op.txn, budget);
  // etcd answers an operation with no request in it with this error.
  else throw new KvError('key-not-found');
}

// ---------------------------------------------------------------------------------------
// Overlaps: etcd's checkIntervals, faithfully — quirks included

/** A deleted interval [lo, hi) in etcd's string terms: hi is the literal range end. */
interface Interval {
  lo: string;
  hi: string;
}

const hits = (dels: readonly Interval[], key: string): boolean =>
  dels.some((d) => d.lo <= key && key < d.hi);

/**
 * Refuses a transaction that writes one key twice: two puts, or a put inside a deleted
 * range, where either may be in a nested transaction (a key put in both branches of one
 * nested transaction is fine: only one runs). As in etcd: a delete's range end is taken
 * literally, so a from-key delete (range end [0]) conflicts with nothing; deletes may
 * overlap each other; and a nested transaction's deletes conflict only with puts of this
 * level and of nested transactions after it.
 */
function checkIntervals(ops: readonly RequestOp[]): { puts: Set<string>; dels: Interval[] } {
  const dels: Interval[] = [];
  for (const op of ops) {
    if (!('deleteRange' in op)) continue;
    const lo = toBinary(op.deleteRange.key);
    const end = op.deleteRange.rangeEnd;
    dels.push({ lo, hi: end === undefined || end.length === 0 ? lo + '\0' : toBinary(end) });
  }
  const puts = new Set<string>();
  for (const op of ops) {
    if (!('txn' in op)) continue;
    const then = checkIntervals(op.txn.success);
    const otherwise = checkIntervals(op.txn.failure);
    for (const key of then.puts) {
      if (puts.has(key) || hits(dels, key)) throw new KvError('duplicate-key');
      puts.add(key);
    }
    for (const key of otherwise.puts) {
      if ((puts.has(key) && !then.puts.has(key)) || hits(dels, key))
        throw new KvError('duplicate-key');
      puts.add(key);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (!('put' in op)) continue;
    const key = toBinary(op.put.key);
    if (puts.has(key) || hits(dels, key)) throw new KvError('duplicate-key');
    puts.add(key);
  }
  return { puts, dels };
}

// ---------------------------------------------------------------------------------------
// Compares: etcd's compareToPath, applyCompare, compareKV

/** Which branch each transaction takes: `nested[i]` for the chosen op i if it is a txn. */
interface Path {
  succeeded: boolean;
  nested: (Path | undefined)[];
}

function choosePath(store: MvccStore, req: TxnRequest): Path {
  const succeeded = req.compare.every((c) => compareHolds(store, c));
  const ops = succeeded ? req.success : req.failure;
  return {
    succeeded,
    nested: ops.map((op) => ('txn' in op ? choosePath(store, op.txn) : undefined)),
  };
}

/** Every key of the compare's range must satisfy it; no key compares as zero values. */
function compareHolds(store: MvccStore, c: Compare): boolean {
  // Only a value compare needs the values.
  const keysOnly = c.target !== 'value';
  const request: RangeRequest =
    c.rangeEnd === undefined
      ? { key: c.key, keysOnly }
      : { key: c.key, rangeEnd: c.rangeEnd, keysOnly };
  const { kvs } = store.range(request);
  if (kvs.length === 0) {
    // etcd: a value compare on a missing key always fails (no way to tell "" from missing).
    if (c.target === 'value') return false;
    return compareKv(c, undefined);
  }
  return kvs.every((kv) => compareKv(c, kv));
}

function compareKv(c: Compare, kv: KeyValue | undefined): boolean {
  const order = compareTarget(c, kv);
  switch (c.result) {
    case 'equal':
      return order === 0;
    case 'not-equal':
      return order !== 0;
    case 'greater':
      return order > 0;
    case 'less':
      return order < 0;
    default:
      return assertNever(c.result, 'compare result');
  }
}

function compareTarget(c: Compare, kv: KeyValue | undefined): number {
  switch (c.target) {
    case 'value':
      return compareBytes(kv?.value ?? emptyBytes, c.value);
    case 'version':
      return Math.sign((kv?.version ?? 0) - c.version);
    case 'create':
      return Math.sign((kv?.createRevision ?? 0) - c.createRevision);
    case 'mod':
      return Math.sign((kv?.modRevision ?? 0) - c.modRevision);
    case 'lease':
      return Math.sign((kv?.lease ?? 0) - c.lease);
    default:
      return assertNever(c, 'compare target');
  }
}

function compareBytes(a: Bytes, b: Bytes): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return Math.sign(a.length - b.length);
}

// ---------------------------------------------------------------------------------------
// The chosen branch, checked before anything is written: etcd's checkTxn

/** A write earlier in the transaction: a put of one key, or a deleted span. */
type Effect = { put: string } | { lo: string; hi: string | undefined; single: boolean };

function checkChosen(
  store: MvccStore,
  req: TxnRequest,
  path: Path,
  leaseExists: LeaseExists,
  effects: Effect[],
): void {
  const ops = path.succeeded ? req.success : req.failure;
  ops.forEach((op, i) => {
    if ('range' in op) checkRevision(store, op.range.revision ?? 0);
    else if ('put' in op) {
      checkLease(op.put, leaseExists);
      const key = toBinary(op.put.key);
      if (
        (op.put.ignoreValue || op.put.ignoreLease) &&
        !existsAfter(store, effects, op.put.key, key)
      )
        throw new KvError('key-not-found');
      effects.push({ put: key });
    } else if ('deleteRange' in op) {
      effects.push(deletedSpan(op.deleteRange));
    } else if ('txn' in op) {
      checkChosen(store, op.txn, path.nested[i]!, leaseExists, effects);
    }
  });
}

/** etcd's checkRange: a revision in a transaction is checked against the store before it. */
function checkRevision(store: MvccStore, revision: number): void {
  if (revision === 0) return;
  if (revision > store.revision) throw new KvError('future-rev');
  if (revision < store.compactRevision) throw new KvError('compacted');
}

function checkLease(req: PutRequest, leaseExists: LeaseExists): void {
  const lease = req.lease ?? 0;
  if (lease !== 0 && !leaseExists(lease)) throw new KvError('lease-not-found');
}

/**
 * Whether the key exists when the put runs. etcd checks the store before the transaction
 * only, then crashes on a put with ignore_value after a from-key delete (which its overlap
 * check lets through) removed the key; here that transaction is refused instead.
 */
function existsAfter(
  store: MvccStore,
  effects: readonly Effect[],
  bytes: Bytes,
  key: string,
): boolean {
  for (let i = effects.length - 1; i >= 0; i--) {
    const e = effects[i]!;
    if ('put' in e) {
      if (e.put === key) return true;
    } else if (e.single ? key === e.lo : key >= e.lo && (e.hi === undefined || key < e.hi)) {
      return false;
    }
  }
  return store.get(bytes) !== undefined;
}

function deletedSpan(req: DeleteRangeRequest): Effect {
  const lo = toBinary(req.key);
  const end = req.rangeEnd;
  if (end === undefined || end.length === 0) return { lo, hi: undefined, single: true };
  if (end.length === 1 && end[0] === 0) return { lo, hi: undefined, single: false };
  return { lo, hi: toBinary(end), single: false };
}

// ---------------------------------------------------------------------------------------
// Execution inside one write transaction; nothing here can refuse

function executeTxn(txn: MvccWriteTxn, req: TxnRequest, path: Path): TxnResult {
  const ops = path.succeeded ? req.success : req.failure;
  const responses = ops.map((op, i): ResponseOp => {
    if ('range' in op) return { range: txn.range(op.range) };
    if ('put' in op) return { put: executePut(txn, op.put) };
    if ('deleteRange' in op) return { deleteRange: executeDelete(txn, op.deleteRange) };
    return { txn: executeTxn(txn, op.txn, path.nested[i]!) };
  });
  return { succeeded: path.succeeded, responses };
}

function executePut(txn: MvccWriteTxn, req: PutRequest): PutResult {
  let value = req.value ?? emptyBytes;
  let lease = req.lease ?? 0;
  if (req.ignoreValue || req.ignoreLease) {
    const current = txn.get(req.key)!;
    if (req.ignoreValue) value = current.value;
    if (req.ignoreLease) lease = current.lease;
  }
  const prevKv = txn.put(req.key, value, lease);
  return req.prevKv && prevKv !== undefined ? { prevKv } : {};
}

function executeDelete(txn: MvccWriteTxn, req: DeleteRangeRequest): DeleteRangeResult {
  return txn.deleteRange(req.key, req.rangeEnd, req.prevKv === true);
}
