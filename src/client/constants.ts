/**
 * Every default and limit of the etcd v3 client, in one place. The defaults are etcdctl's,
 * so a command behaves as an etcd user expects.
 */

/** etcdctl's `--endpoints` default. */
export const defaultEndpoint = '127.0.0.1:2379';
/** etcdctl's `--dial-timeout`: how long to wait for one endpoint's connection. */
export const dialTimeoutMsDefault = 2_000;
/** etcdctl's `--command-timeout`: the deadline of a whole request, retries included. */
export const commandTimeoutMsDefault = 5_000;

/** More endpoints than this is a typo, not a cluster. */
export const endpointsMax = 64;
/** Responses as large as etcd's default client limit (math.MaxInt32 in etcd; 2 GiB - 1). */
export const receiveBytesMax = 2 ** 31 - 1;
/** etcd's --max-request-bytes default plus gRPC overhead: larger requests fail fast. */
export const sendBytesMax = 1.5 * 1024 * 1024 + 512 * 1024;

/** A txn from stdin may hold at most this many lines: etcd refuses more than 128 ops anyway. */
export const txnLinesMax = 10_000;
/** One line of a txn (a put with a large value still fits). */
export const txnLineBytesMax = 2 * 1024 * 1024;

/** A lease is renewed TTL / this after its last renewal, as etcd's client does. */
export const keepAliveDivisor = 3;
/** How often the keep-alive loop looks whether a renewal is due (etcd's retryConnWait). */
export const keepAliveIntervalMsMin = 500;

/** Pause before a broken watch or keep-alive stream is opened again elsewhere. */
export const streamReconnectDelayMs = 200;

/** Snapshot chunks the client accepts before it gives up on a stream that never ends. */
export const snapshotChunksMax = 10_000_000;
