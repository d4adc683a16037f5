/**
 * The errors of the KV API, named and worded as etcd names them, so a client that reacts to
 * etcd's messages reacts to Chorus's the same way. `grpc` is the status code etcd returns.
 */
import { ChorusError } from '../core/errors.js';

export const kvErrors = {
  'empty-key': { grpc: 3, message: 'etcdserver: key is not provided' },
  'key-not-found': { grpc: 3, message: 'etcdserver: key not found' },
  'value-provided': { grpc: 3, message: 'etcdserver: value is provided' },
  'lease-provided': { grpc: 3, message: 'etcdserver: lease is provided' },
  'too-many-ops': { grpc: 3, message: 'etcdserver: too many operations in txn request' },
  'duplicate-key': { grpc: 3, message: 'etcdserver: duplicate key given in txn request' },
  'request-too-large': { grpc: 3, message: 'etcdserver: request is too large' },
  compacted: { grpc: 11, message: 'etcdserver: mvcc: required revision has been compacted' },
  'future-rev': { grpc: 11, message: 'etcdserver: mvcc: required revision is a future revision' },
  'lease-not-found': { grpc: 5, message: 'etcdserver: requested lease not found' },
  'lease-exists': { grpc: 9, message: 'etcdserver: lease already exists' },
  'lease-ttl-too-large': { grpc: 11, message: 'etcdserver: too large lease TTL' },
  'invalid-argument': { grpc: 3, message: 'etcdserver: invalid argument' },
  'no-space': { grpc: 8, message: 'etcdserver: mvcc: database space exceeded' },
  corrupt: { grpc: 15, message: 'etcdserver: corrupt cluster' },
} as const;

export type KvErrorCode = keyof typeof kvErrors;

/** A request the KV state machine refuses; deterministic, so every replica refuses it alike. */
export class KvError extends ChorusError {
  override name = 'KvError';
  readonly kvCode: KvErrorCode;
  readonly grpcCode: number;

  constructor(code: KvErrorCode, detail?: string) {
    const known = kvErrors[code];
    super('kv', detail === undefined ? known.message : `${known.message} (${detail})`);
    this.kvCode = code;
    this.grpcCode = known.grpc;
  }
}
