/**
 * Between the wire and the store: decoded etcd messages (as @grpc/proto-loader hands them
 * over with the options of proto.ts: camelCase, int64 as decimal strings, enums by name,
 * bytes as Buffers, every scalar present) become the request types of src/kv/, and kv
 * results become response messages.
 *
 * Everything here treats the message as untrusted: a field of the wrong type, an unknown
 * enum value (proto-loader passes those through as numbers) or an int64 beyond 2^53 is
 * refused with INVALID_ARGUMENT and a reason, never thrown as a TypeError.
 */
import { invalidArgument, StatusError } from './errors.js';
import { status as Status } from '@grpc/grpc-js';
import { kvLimits } from '../kv/types.js';
import type {
  Compare,
  CompareResult,
  DeleteRangeRequest,
  DeleteRangeResult,
  KeyValue,
  KvEvent,
  PutRequest,
  PutResult,
  RangeRequest,
  RangeResult,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  TxnResult,
  WatchCreateRequest,
} from '../kv/types.js';

/** A decoded protobuf message: fields by camelCase name. */
export type Wire = Record<string, unknown>;

/** How deep txns may nest inside txns (etcd bounds it by message size only). */
export const txnDepthMax = 16;

const int64Max = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * An int64 field as a JS number. Chorus's revisions, versions and lease ids all stay below
 * 2^53 (lease ids below 2^52), so a larger value cannot name anything that exists: it is
 * refused rather than rounded to a different number.
 */
export function int64(value: unknown, field: string): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return value;
  } else if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) {
    const big = BigInt(value);
    if (big <= int64Max && big >= -int64Max) return Number(big);
    throw invalidArgument(
      `etcdserver: ${field} ${value} is beyond 2^53, which Chorus does not support`,
    );
  }
  throw invalidArgument(`etcdserver: ${field} must be an integer`);
}

/** A uint64 (member ids) as a bigint. */
export function uint64(value: unknown, field: string): bigint {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'string' && /^\d{1,20}$/.test(value)) {
    const big = BigInt(value);
    if (big < 2n ** 64n) return big;
  }
  throw invalidArgument(`etcdserver: ${field} must be an unsigned 64-bit integer`);
}

function bytes(value: unknown, field: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value === undefined || value === null) return new Uint8Array(0);
  throw invalidArgument(`etcdserver: ${field} must be bytes`);
}

function bool(value: unknown): boolean {
  return value === true;
}

function message(value: unknown, field: string): Wire {
  if (value === undefined || value === null) return {};
  if (typeof value === 'object' && !Array.isArray(value)) return value as Wire;
  throw invalidArgument(`etcdserver: ${field} must be a message`);
}

function list(value: unknown, field: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value;
  throw invalidArgument(`etcdserver: ${field} must be a list`);
}

/** An enum by etcd's name; proto-loader hands an unknown number through as a number. */
function enumValue<T extends string>(
  value: unknown,
  names: Readonly<Record<string, T>>,
  message: string,
): T {
  if (typeof value === 'string' && Object.hasOwn(names, value)) return names[value]!;
  if (value === undefined || value === null) return Object.values(names)[0]!;
  throw new StatusError(Status.INVALID_ARGUMENT, message);
}

const optionalBytes = (value: unknown, field: string): { rangeEnd?: Uint8Array } => {
  const b = bytes(value, field);
  return b.length > 0 ? { rangeEnd: b } : {};
};

const sortOrders: Record<string, SortOrder> = {
  NONE: 'none',
  ASCEND: 'ascend',
  DESCEND: 'descend',
};
const sortTargets: Record<string, SortTarget> = {
  KEY: 'key',
  VERSION: 'version',
  CREATE: 'create',
  MOD: 'mod',
  VALUE: 'value',
};
const compareResults: Record<string, CompareResult> = {
  EQUAL: 'equal',
  GREATER: 'greater',
  LESS: 'less',
  NOT_EQUAL: 'not-equal',
};
const compareTargets: Record<string, Compare['target']> = {
  VERSION: 'version',
  CREATE: 'create',
  MOD: 'mod',
  VALUE: 'value',
  LEASE: 'lease',
};
const filterTypes: Record<string, 'noput' | 'nodelete'> = { NOPUT: 'noput', NODELETE: 'nodelete' };

const emptyKey = (): StatusError => invalidArgument('etcdserver: key is not provided');

// --- requests -----------------------------------------------------------------------------

export function rangeRequest(w: Wire): RangeRequest {
  const key = bytes(w['key'], 'key');
  const rangeEnd = bytes(w['rangeEnd'], 'range_end');
  if (key.length === 0) throw emptyKey();
  const invalidSort = 'etcdserver: invalid sort option';
  const limit = int64(w['limit'] ?? 0, 'limit');
  if (limit < 0) throw invalidArgument('etcdserver: limit must not be negative');
  return {
    key,
    ...(rangeEnd.length > 0 ? { rangeEnd } : {}),
    limit,
    revision: int64(w['revision'] ?? 0, 'revision'),
    sortOrder: enumValue(w['sortOrder'], sortOrders, invalidSort),
    sortTarget: enumValue(w['sortTarget'], sortTargets, invalidSort),
    serializable: bool(w['serializable']),
    keysOnly: bool(w['keysOnly']),
    countOnly: bool(w['countOnly']),
    minModRevision: int64(w['minModRevision'] ?? 0, 'min_mod_revision'),
    maxModRevision: int64(w['maxModRevision'] ?? 0, 'max_mod_revision'),
    minCreateRevision: int64(w['minCreateRevision'] ?? 0, 'min_create_revision'),
    maxCreateRevision: int64(w['maxCreateRevision'] ?? 0, 'max_create_revision'),
  };
}

export function putRequest(w: Wire): PutRequest {
  const key = bytes(w['key'], 'key');
  if (key.length === 0) throw emptyKey();
  return {
    key,
    value: bytes(w['value'], 'value'),
    lease: int64(w['lease'] ?? 0, 'lease'),
    prevKv: bool(w['prevKv']),
    ignoreValue: bool(w['ignoreValue']),
    ignoreLease: bool(w['ignoreLease']),
  };
}

export function deleteRangeRequest(w: Wire): DeleteRangeRequest {
  const key = bytes(w['key'], 'key');
  const rangeEnd = bytes(w['rangeEnd'], 'range_end');
  if (key.length === 0) throw emptyKey();
  return { key, ...(rangeEnd.length > 0 ? { rangeEnd } : {}), prevKv: bool(w['prevKv']) };
}

function compare(w: Wire): Compare {
  const result = enumValue(w['result'], compareResults, 'etcdserver: invalid compare result');
  const target = enumValue(w['target'], compareTargets, 'etcdserver: invalid compare target');
  const key = bytes(w['key'], 'compare.key');
  const base = { result, key, ...optionalBytes(w['rangeEnd'], 'compare.range_end') };
  switch (target) {
    case 'version':
      return { ...base, target, version: int64(w['version'] ?? 0, 'compare.version') };
    case 'create':
      return {
        ...base,
        target,
        createRevision: int64(w['createRevision'] ?? 0, 'compare.create_revision'),
      };
    case 'mod':
      return {
        ...base,
        target,
        modRevision: int64(w['modRevision'] ?? 0, 'compare.mod_revision'),
      };
    case 'value':
      return { ...base, target, value: bytes(w['value'], 'compare.value') };
    case 'lease':
      return { ...base, target, lease: int64(w['lease'] ?? 0, 'compare.lease') };
  }
}

function requestOp(w: Wire, depth: number): RequestOp {
  if (w['requestRange'] !== undefined && w['requestRange'] !== null)
    return { range: rangeRequest(message(w['requestRange'], 'request_range')) };
  if (w['requestPut'] !== undefined && w['requestPut'] !== null)
    return { put: putRequest(message(w['requestPut'], 'request_put')) };
  if (w['requestDeleteRange'] !== undefined && w['requestDeleteRange'] !== null)
    return {
      deleteRange: deleteRangeRequest(message(w['requestDeleteRange'], 'request_delete_range')),
    };
  if (w['requestTxn'] !== undefined && w['requestTxn'] !== null)
    return { txn: txnRequest(message(w['requestTxn'], 'request_txn'), depth + 1) };
  throw invalidArgument('etcdserver: a txn operation names no request');
}

/**
 * etcd's checkTxnRequest: at most --max-txn-ops compares, and as many operations in each
 * branch, checked before anything is proposed.
 */
export function txnRequest(w: Wire, depth = 0): TxnRequest {
  if (depth > txnDepthMax)
    throw invalidArgument(`etcdserver: txns nested deeper than ${txnDepthMax}`);
  const compares = list(w['compare'], 'compare');
  const success = list(w['success'], 'success');
  const failure = list(w['failure'], 'failure');
  const max = kvLimits.maxTxnOps;
  if (compares.length > max || success.length > max || failure.length > max)
    throw invalidArgument('etcdserver: too many operations in txn request');
  return {
    compare: compares.map((c) => compare(message(c, 'compare'))),
    success: success.map((op) => requestOp(message(op, 'success'), depth)),
    failure: failure.map((op) => requestOp(message(op, 'failure'), depth)),
  };
}

export function watchCreateRequest(w: Wire): WatchCreateRequest {
  const filters = list(w['filters'], 'filters').map((f) =>
    enumValue(f, filterTypes, 'etcdserver: invalid watch filter'),
  );
  return {
    key: bytes(w['key'], 'key'),
    ...optionalBytes(w['rangeEnd'], 'range_end'),
    startRevision: int64(w['startRevision'] ?? 0, 'start_revision'),
    progressNotify: bool(w['progressNotify']),
    filters,
    prevKv: bool(w['prevKv']),
    watchId: int64(w['watchId'] ?? 0, 'watch_id'),
    fragment: bool(w['fragment']),
  };
}

// --- responses ----------------------------------------------------------------------------

/** etcdserverpb.ResponseHeader; ids are uint64 decimal strings. */
export interface Header {
  clusterId: string;
  memberId: string;
  revision: number;
  raftTerm: number;
}

export function keyValue(kv: KeyValue): Wire {
  return {
    key: kv.key,
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    value: kv.value,
    lease: kv.lease,
  };
}

export function event(e: KvEvent): Wire {
  return {
    type: e.type === 'put' ? 'PUT' : 'DELETE',
    kv: keyValue(e.kv),
    ...(e.prevKv === undefined ? {} : { prevKv: keyValue(e.prevKv) }),
  };
}

export function rangeResponse(header: Header, r: RangeResult): Wire {
  return { header, kvs: r.kvs.map(keyValue), more: r.more, count: r.count };
}

export function putResponse(header: Header, r: PutResult): Wire {
  return { header, ...(r.prevKv === undefined ? {} : { prevKv: keyValue(r.prevKv) }) };
}

export function deleteRangeResponse(header: Header, r: DeleteRangeResult): Wire {
  return { header, deleted: r.deleted, prevKvs: r.prevKvs.map(keyValue) };
}

function responseOp(header: Header, op: ResponseOp): Wire {
  if ('range' in op) return { responseRange: rangeResponse(header, op.range) };
  if ('put' in op) return { responsePut: putResponse(header, op.put) };
  if ('deleteRange' in op)
    return { responseDeleteRange: deleteRangeResponse(header, op.deleteRange) };
  return { responseTxn: txnResponse(header, op.txn) };
}

export function txnResponse(header: Header, r: TxnResult): Wire {
  return {
    header,
    succeeded: r.succeeded,
    responses: r.responses.map((op) => responseOp(header, op)),
  };
}
