/**
 * The etcd v3 messages as this client sees them: the shapes @grpc/proto-loader decodes with
 * the options of src/server/proto.ts (camelCase fields, int64 and uint64 as decimal strings,
 * bytes as Buffers, enums by etcd's names, absent scalars as zero values, a oneof also naming
 * its present member). Requests may leave out any field; a 64-bit field may be given as a
 * decimal string. Only the messages the CLI uses are declared.
 */

/** An int64 or uint64 on the wire: a decimal string, exact beyond 2^53. */
export type Int64 = string;

export interface ResponseHeader {
  clusterId: Int64;
  memberId: Int64;
  revision: Int64;
  raftTerm: Int64;
}

export interface KeyValue {
  key: Buffer;
  createRevision: Int64;
  modRevision: Int64;
  version: Int64;
  value: Buffer;
  lease: Int64;
}

export type SortOrder = 'NONE' | 'ASCEND' | 'DESCEND';
export type SortTarget = 'KEY' | 'VERSION' | 'CREATE' | 'MOD' | 'VALUE';

export interface RangeRequest {
  key: Buffer;
  rangeEnd?: Buffer;
  limit?: Int64;
  revision?: Int64;
  sortOrder?: SortOrder;
  sortTarget?: SortTarget;
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  minModRevision?: Int64;
  maxModRevision?: Int64;
  minCreateRevision?: Int64;
  maxCreateRevision?: Int64;
}
export interface RangeResponse {
  header: ResponseHeader | null;
  kvs: KeyValue[];
  more: boolean;
  count: Int64;
}

export interface PutRequest {
  key: Buffer;
  value?: Buffer;
  lease?: Int64;
  prevKv?: boolean;
  ignoreValue?: boolean;
  ignoreLease?: boolean;
}
export interface PutResponse {
  header: ResponseHeader | null;
  prevKv: KeyValue | null;
}

export interface DeleteRangeRequest {
  key: Buffer;
  rangeEnd?: Buffer;
  prevKv?: boolean;
}
export interface DeleteRangeResponse {
  header: ResponseHeader | null;
  deleted: Int64;
  prevKvs: KeyValue[];
}

export type CompareResult = 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';
export type CompareTarget = 'VERSION' | 'CREATE' | 'MOD' | 'VALUE' | 'LEASE';

/** A txn comparison; exactly one of the target fields is set, the one `target` names. */
export interface Compare {
  result: CompareResult;
  target: CompareTarget;
  key: Buffer;
  rangeEnd?: Buffer;
  version?: Int64;
  createRevision?: Int64;
  modRevision?: Int64;
  value?: Buffer;
  lease?: Int64;
}

export type RequestOp =
  | { requestRange: RangeRequest }
  | { requestPut: PutRequest }
  | { requestDeleteRange: DeleteRangeRequest }
  | { requestTxn: TxnRequest };

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

/** A decoded ResponseOp: `response` names the member that is set. */
export interface ResponseOp {
  response: 'responseRange' | 'responsePut' | 'responseDeleteRange' | 'responseTxn';
  responseRange?: RangeResponse | null;
  responsePut?: PutResponse | null;
  responseDeleteRange?: DeleteRangeResponse | null;
  responseTxn?: TxnResponse | null;
}
export interface TxnResponse {
  header: ResponseHeader | null;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface CompactionRequest {
  revision: Int64;
  physical?: boolean;
}
export interface CompactionResponse {
  header: ResponseHeader | null;
}

export interface WatchCreateRequest {
  key: Buffer;
  rangeEnd?: Buffer;
  startRevision?: Int64;
  progressNotify?: boolean;
  prevKv?: boolean;
  watchId?: Int64;
}
export type WatchRequest =
  | { createRequest: WatchCreateRequest }
  | { cancelRequest: { watchId: Int64 } }
  | { progressRequest: Record<string, never> };

export interface WatchEvent {
  type: 'PUT' | 'DELETE';
  kv: KeyValue | null;
  prevKv: KeyValue | null;
}
export interface WatchResponse {
  header: ResponseHeader | null;
  watchId: Int64;
  created: boolean;
  canceled: boolean;
  compactRevision: Int64;
  cancelReason: string;
  fragment: boolean;
  events: WatchEvent[];
}

export interface LeaseGrantRequest {
  TTL: Int64;
  ID?: Int64;
}
export interface LeaseGrantResponse {
  header: ResponseHeader | null;
  ID: Int64;
  TTL: Int64;
  error: string;
}
export interface LeaseRevokeRequest {
  ID: Int64;
}
export interface LeaseRevokeResponse {
  header: ResponseHeader | null;
}
export interface LeaseKeepAliveRequest {
  ID: Int64;
}
export interface LeaseKeepAliveResponse {
  header: ResponseHeader | null;
  ID: Int64;
  TTL: Int64;
}
export interface LeaseTimeToLiveRequest {
  ID: Int64;
  keys?: boolean;
}
export interface LeaseTimeToLiveResponse {
  header: ResponseHeader | null;
  ID: Int64;
  TTL: Int64;
  grantedTTL: Int64;
  keys: Buffer[];
}
export interface LeaseLeasesResponse {
  header: ResponseHeader | null;
  leases: { ID: Int64 }[];
}

export interface Member {
  ID: Int64;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}
export interface MemberAddRequest {
  peerURLs: string[];
  isLearner?: boolean;
}
export interface MemberAddResponse {
  header: ResponseHeader | null;
  member: Member | null;
  members: Member[];
}
export interface MemberIdRequest {
  ID: Int64;
}
export interface MembersResponse {
  header: ResponseHeader | null;
  members: Member[];
}
export interface MemberListRequest {
  linearizable?: boolean;
}

export interface AlarmRequest {
  action: 'GET' | 'ACTIVATE' | 'DEACTIVATE';
  memberID?: Int64;
  alarm?: 'NONE' | 'NOSPACE' | 'CORRUPT';
}
export interface AlarmResponse {
  header: ResponseHeader | null;
  alarms: { memberID: Int64; alarm: 'NONE' | 'NOSPACE' | 'CORRUPT' }[];
}

export interface StatusResponse {
  header: ResponseHeader | null;
  version: string;
  dbSize: Int64;
  leader: Int64;
  raftIndex: Int64;
  raftTerm: Int64;
  raftAppliedIndex: Int64;
  errors: string[];
  dbSizeInUse: Int64;
  isLearner: boolean;
  storageVersion: string;
  dbSizeQuota: Int64;
  downgradeInfo: { enabled: boolean; targetVersion: string } | null;
}

export interface MoveLeaderRequest {
  targetID: Int64;
}
export interface MoveLeaderResponse {
  header: ResponseHeader | null;
}

export interface SnapshotResponse {
  header: ResponseHeader | null;
  remainingBytes: Int64;
  blob: Buffer;
  version: string;
}

export type Empty = Record<string, never>;

/** Every unary method the client calls: "Service.Method" → [request, response]. */
export interface UnaryMethods {
  'KV.Range': [RangeRequest, RangeResponse];
  'KV.Put': [PutRequest, PutResponse];
  'KV.DeleteRange': [DeleteRangeRequest, DeleteRangeResponse];
  'KV.Txn': [TxnRequest, TxnResponse];
  'KV.Compact': [CompactionRequest, CompactionResponse];
  'Lease.LeaseGrant': [LeaseGrantRequest, LeaseGrantResponse];
  'Lease.LeaseRevoke': [LeaseRevokeRequest, LeaseRevokeResponse];
  'Lease.LeaseTimeToLive': [LeaseTimeToLiveRequest, LeaseTimeToLiveResponse];
  'Lease.LeaseLeases': [Empty, LeaseLeasesResponse];
  'Cluster.MemberAdd': [MemberAddRequest, MemberAddResponse];
  'Cluster.MemberRemove': [MemberIdRequest, MembersResponse];
  'Cluster.MemberPromote': [MemberIdRequest, MembersResponse];
  'Cluster.MemberList': [MemberListRequest, MembersResponse];
  'Maintenance.Alarm': [AlarmRequest, AlarmResponse];
  'Maintenance.Status': [Empty, StatusResponse];
  'Maintenance.MoveLeader': [MoveLeaderRequest, MoveLeaderResponse];
}
export type UnaryMethod = keyof UnaryMethods;

/**
 * Requests that change nothing: safe to send again to another member after an UNAVAILABLE,
 * whatever happened to the first try (etcd's client retries the same ones).
 */
export const readOnlyMethods: ReadonlySet<UnaryMethod> = new Set<UnaryMethod>([
  'KV.Range',
  'Lease.LeaseTimeToLive',
  'Lease.LeaseLeases',
  'Cluster.MemberList',
  'Maintenance.Alarm',
  'Maintenance.Status',
]);
