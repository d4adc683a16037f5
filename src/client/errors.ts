/**
 * What a failed request tells the person at the terminal. etcd's server errors already read
 * well ("etcdserver: mvcc: required revision is a future revision") and are shown as they
 * are, the way etcdctl shows them; any other gRPC status is shown as Go's gRPC prints it
 * ("rpc error: code = Unimplemented desc = …"), so nothing the server said is lost.
 */
import { status as Status } from '@grpc/grpc-js';

/** Go's names of the gRPC codes, as etcdctl prints them. */
const goCodeNames: Record<Status, string> = {
  [Status.OK]: 'OK',
  [Status.CANCELLED]: 'Canceled',
  [Status.UNKNOWN]: 'Unknown',
  [Status.INVALID_ARGUMENT]: 'InvalidArgument',
  [Status.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [Status.NOT_FOUND]: 'NotFound',
  [Status.ALREADY_EXISTS]: 'AlreadyExists',
  [Status.PERMISSION_DENIED]: 'PermissionDenied',
  [Status.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [Status.FAILED_PRECONDITION]: 'FailedPrecondition',
  [Status.ABORTED]: 'Aborted',
  [Status.OUT_OF_RANGE]: 'OutOfRange',
  [Status.UNIMPLEMENTED]: 'Unimplemented',
  [Status.INTERNAL]: 'Internal',
  [Status.UNAVAILABLE]: 'Unavailable',
  [Status.DATA_LOSS]: 'DataLoss',
  [Status.UNAUTHENTICATED]: 'Unauthenticated',
};

/** A request that failed: the gRPC status, or no endpoint could be reached at all. */
export class EtcdClientError extends Error {
  override name = 'EtcdClientError';
  constructor(
    /** The gRPC status code; UNAVAILABLE when no endpoint answered. */
    readonly code: Status,
    /** The server's own text (grpc `details`), or what went wrong locally. */
    readonly details: string,
    /** The endpoint that answered, or the last one tried. */
    readonly endpoint: string,
    options?: { cause?: unknown; local?: boolean },
  ) {
    // A local failure (no connection at all) is said plainly, not dressed as a gRPC status.
    super(options?.local === true ? details : describeStatus(code, details), options);
  }

  /** The server answered UNIMPLEMENTED: the RPC exists in etcd's API but not (yet) here. */
  get unimplemented(): boolean {
    return this.code === Status.UNIMPLEMENTED;
  }
}

/** etcd's errors as etcdctl prints them; everything else in Go's gRPC status format. */
export function describeStatus(code: Status, details: string): string {
  if (details.startsWith('etcdserver: ') || details.startsWith('etcdclient: ')) return details;
  // The deadline etcdctl sets itself (--command-timeout) reads like Go's context error.
  if (code === Status.DEADLINE_EXCEEDED) return 'context deadline exceeded';
  return `rpc error: code = ${goCodeNames[code] ?? String(code)} desc = ${details}`;
}

/** A grpc-js error (an Error with `code` and `details`) → EtcdClientError. */
export function fromGrpcError(error: unknown, endpoint: string): EtcdClientError {
  if (error instanceof EtcdClientError) return error;
  const e = error as { code?: unknown; details?: unknown; message?: unknown };
  const code = typeof e.code === 'number' ? (e.code as Status) : Status.UNKNOWN;
  const details =
    typeof e.details === 'string'
      ? e.details
      : typeof e.message === 'string'
        ? e.message
        : String(error);
  return new EtcdClientError(code, details, endpoint, { cause: error });
}

/**
 * A stream (watch, keep-alive) that ended this way lost its member, not its meaning: it may
 * be opened again elsewhere. Besides UNAVAILABLE, a member that shuts down may reset the
 * stream (CANCELLED, since this client cancels only streams it has finished with) or fail
 * it mid-frame (INTERNAL).
 */
export function streamBroken(error: EtcdClientError): boolean {
  return (
    error.code === Status.UNAVAILABLE ||
    error.code === Status.CANCELLED ||
    error.code === Status.INTERNAL
  );
}

/** Command-line input the client refuses before sending anything (a bad id, a bad txn line). */
export class ClientInputError extends Error {
  override name = 'ClientInputError';
}
