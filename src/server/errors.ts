/**
 * What a failed request tells its client: a gRPC status code and etcd's exact message, so a
 * client written for etcd (which matches on these messages) reacts to Chorus the same way.
 * The JSON gateway maps the same status to an HTTP status, as etcd's grpc-gateway does.
 */
import { status as Status } from '@grpc/grpc-js';
import { ChorusError } from '../core/errors.js';
import { KvError, kvErrors } from '../kv/errors.js';

/** A refusal decided in this layer, already in gRPC terms. */
export class StatusError extends Error {
  override name = 'StatusError';
  constructor(
    readonly code: Status,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const invalidArgument = (message: string): StatusError =>
  new StatusError(Status.INVALID_ARGUMENT, message);

export const unimplemented = (what: string): StatusError =>
  new StatusError(Status.UNIMPLEMENTED, `chorus: ${what} is not implemented yet`);

export const etcdMessages = {
  noLeader: 'etcdserver: no leader',
  timeout: 'etcdserver: request timed out',
  leaderChanged: 'etcdserver: leader changed',
  tooManyRequests: 'etcdserver: too many requests',
  stopped: 'etcdserver: server stopped',
  notLeader: 'etcdserver: not leader',
  badLeaderTransferee: 'etcdserver: bad leader transferee',
  leaderTransferTimeout: 'etcdserver: request timed out, leader transfer took too long',
  memberNotFound: 'etcdserver: member not found',
} as const;

export interface GrpcStatus {
  code: Status;
  details: string;
}

/**
 * Any error a request can meet → its status. An error that is neither a StatusError nor a
 * ChorusError is a bug somewhere below; it is reported as INTERNAL rather than crashing the
 * node for every other client (the caller logs it).
 */
export function toStatus(error: unknown): GrpcStatus {
  if (error instanceof StatusError) return { code: error.code, details: error.message };
  if (error instanceof KvError)
    return { code: error.grpcCode, details: kvErrors[error.kvCode].message };
  if (error instanceof ChorusError) return chorusStatus(error);
  return { code: Status.INTERNAL, details: 'chorus: internal error' };
}

function chorusStatus(error: ChorusError): GrpcStatus {
  switch (error.code) {
    case 'no-leader':
      return { code: Status.UNAVAILABLE, details: etcdMessages.noLeader };
    case 'timeout':
    case 'unreachable':
      return { code: Status.UNAVAILABLE, details: etcdMessages.timeout };
    case 'not-leader':
      return { code: Status.UNAVAILABLE, details: etcdMessages.leaderChanged };
    case 'proposal-dropped':
      if (/uncommitted|pending/.test(error.message))
        return { code: Status.RESOURCE_EXHAUSTED, details: etcdMessages.tooManyRequests };
      return { code: Status.UNAVAILABLE, details: etcdMessages.leaderChanged };
    case 'queue-full':
      return { code: Status.RESOURCE_EXHAUSTED, details: etcdMessages.tooManyRequests };
    case 'closed':
    case 'cancelled':
    case 'fatal':
    case 'disk-io':
    case 'disk-full':
      return { code: Status.UNAVAILABLE, details: etcdMessages.stopped };
    case 'bad-input':
    case 'frame-too-large':
      return { code: Status.INVALID_ARGUMENT, details: `etcdserver: ${error.message}` };
    case 'not-found':
      return { code: Status.NOT_FOUND, details: `etcdserver: ${error.message}` };
    case 'checksum-mismatch':
    case 'storage-corrupt':
      return { code: Status.DATA_LOSS, details: `etcdserver: ${error.message}` };
    case 'kv':
      return { code: Status.INVALID_ARGUMENT, details: error.message };
  }
}

/** grpc-gateway's mapping from gRPC status to HTTP status. */
export function httpStatusOf(code: Status): number {
  switch (code) {
    case Status.OK:
      return 200;
    case Status.CANCELLED:
      return 499;
    case Status.INVALID_ARGUMENT:
    case Status.FAILED_PRECONDITION:
    case Status.OUT_OF_RANGE:
      return 400;
    case Status.DEADLINE_EXCEEDED:
      return 504;
    case Status.NOT_FOUND:
      return 404;
    case Status.ALREADY_EXISTS:
    case Status.ABORTED:
      return 409;
    case Status.PERMISSION_DENIED:
      return 403;
    case Status.UNAUTHENTICATED:
      return 401;
    case Status.RESOURCE_EXHAUSTED:
      return 429;
    case Status.UNIMPLEMENTED:
      return 501;
    case Status.UNAVAILABLE:
      return 503;
    case Status.UNKNOWN:
    case Status.INTERNAL:
    case Status.DATA_LOSS:
      return 500;
  }
}
