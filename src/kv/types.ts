/**
 * The KV data model and API of Chorus: etcd v3's, field for field (etcdserverpb and mvccpb),
 * with camelCase names as @grpc/proto-loader produces them. Keys and values are bytes;
 * revisions, versions and lease ids are numbers (exact up to 2^53, far past any revision a
 * store reaches). An absent optional field means etcd's zero value.
 */

export type Bytes = Uint8Array;

/** mvccpb.KeyValue */
export interface KeyValue {
  key: Bytes;
  /** Revision of the last creation of this key (a delete ends a generation). */
  createRevision: number;
  /** Revision of the last modification. */
  modRevision: number;
  /** 1 at creation, +1 at every modification; a delete resets it. */
  version: number;
  value: Bytes;
  /** The attached lease id, 0 for none. */
  lease: number;
}

/** mvccpb.Event */
export interface KvEvent {
  type: 'put' | 'delete';
  /** For a delete: the key with modRevision = the delete's revision, other fields zero. */
  kv: KeyValue;
  prevKv?: KeyValue;
}

export type SortOrder = 'none' | 'ascend' | 'descend';
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';

/** etcdserverpb.RangeRequest */
export interface RangeRequest {
  key: Bytes;
  /**
   * Absent or empty: the single key. [key, rangeEnd) otherwise. rangeEnd = [0] with key = [0]:
   * every key; rangeEnd = [0]: every key >= key ("from key").
   */
  rangeEnd?: Bytes;
  /** 0: no limit. */
  limit?: number;
  /** 0 or absent: the current revision. */
  revision?: number;
  sortOrder?: SortOrder;
  sortTarget?: SortTarget;
  /** Served by the local replica without a read barrier. */
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  minModRevision?: number;
  maxModRevision?: number;
  minCreateRevision?: number;
  maxCreateRevision?: number;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** More keys matched than `limit` returned. */
  more: boolean;
  /** Keys in the range at the revision, before limit and before the revision filters (etcd). */
  count: number;
}

/** etcdserverpb.PutRequest */
export interface PutRequest {
  key: Bytes;
  value?: Bytes;
  lease?: number;
  prevKv?: boolean;
  /** Keep the current value (the key must exist; `value` must be empty). */
  ignoreValue?: boolean;
  /** Keep the current lease (the key must exist; `lease` must be 0). */
  ignoreLease?: boolean;
}

export interface PutResult {
  prevKv?: KeyValue;
}

/** etcdserverpb.DeleteRangeRequest */
export interface DeleteRangeRequest {
  key: Bytes;
  rangeEnd?: Bytes;
  prevKv?: boolean;
}

export interface DeleteRangeResult {
  deleted: number;
  prevKvs: KeyValue[];
}

export type CompareResult = 'equal' | 'greater' | 'less' | 'not-equal';

/** etcdserverpb.Compare: the target names the field compared and carries the operand. */
export type Compare = {
  result: CompareResult;
  key: Bytes;
  /** As in RangeRequest: compares every key of the range, all must hold. */
  rangeEnd?: Bytes;
} & (
  | { target: 'version'; version: number }
  | { target: 'create'; createRevision: number }
  | { target: 'mod'; modRevision: number }
  | { target: 'value'; value: Bytes }
  | { target: 'lease'; lease: number }
);

/** etcdserverpb.RequestOp */
export type RequestOp =
  | { range: RangeRequest }
  | { put: PutRequest }
  | { deleteRange: DeleteRangeRequest }
  | { txn: TxnRequest };

/** etcdserverpb.ResponseOp */
export type ResponseOp =
  | { range: RangeResult }
  | { put: PutResult }
  | { deleteRange: DeleteRangeResult }
  | { txn: TxnResult };

/** etcdserverpb.TxnRequest */
export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResult {
  succeeded: boolean;
  responses: ResponseOp[];
}

/** Every response carries the store's revision after the request (etcd's header.revision). */
export interface Revisioned {
  revision: number;
}

/** Limits of a request, as etcd has them. */
export const kvLimits = {
  /** etcd's --max-txn-ops default. */
  maxTxnOps: 128,
  /** etcd's --max-request-bytes default (1.5 MiB). */
  maxRequestBytes: 1.5 * 1024 * 1024,
  /** etcd's MaxLeaseTTL: 9,000,000,000 seconds. */
  maxLeaseTtlSeconds: 9_000_000_000,
} as const;

/** etcdserverpb.CompactionRequest */
export interface CompactionRequest {
  revision: number;
  /** etcd waits for the physical removal; Chorus removes at apply time, so always physical. */
  physical?: boolean;
}

/** etcdserverpb.LeaseGrantRequest: `id` 0 lets the leader choose. */
export interface LeaseGrantRequest {
  ttl: number;
  id?: number;
}

export interface LeaseGrantResult {
  id: number;
  /** The TTL granted, in seconds (raised to the minimum TTL when asked for less). */
  ttl: number;
}

export interface LeaseTimeToLiveResult {
  id: number;
  /** Remaining seconds; -1 when the lease does not exist (etcd's convention). */
  ttl: number;
  grantedTtl: number;
  keys: Bytes[];
}

/** etcdserverpb.WatchCreateRequest */
export interface WatchCreateRequest {
  key: Bytes;
  rangeEnd?: Bytes;
  /** 0: from the next revision. Older: replays history from there (if not compacted). */
  startRevision?: number;
  progressNotify?: boolean;
  filters?: ('noput' | 'nodelete')[];
  prevKv?: boolean;
  /** 0: the server assigns one. */
  watchId?: number;
  fragment?: boolean;
}
