// The etcd v3 wire definitions, loaded for @grpc/grpc-js. The .proto files live in proto/ at
// the package root (docs/etcd-api.md lists what they declare); this module finds them and
// fixes, once for every server and test, how protobuf values appear to JavaScript.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';

/** The file that declares the services, relative to the proto directory. */
export const etcdProtoEntry = 'etcdserverpb/rpc.proto';

/** The etcd v3 services, by their names inside the `etcdserverpb` package. */
export const etcdServiceNames = ['KV', 'Watch', 'Lease', 'Cluster', 'Maintenance', 'Auth'] as const;
export type EtcdServiceName = (typeof etcdServiceNames)[number];

/**
 * How decoded messages look to handlers, and what they may hand back:
 * - keepCase false: fields are camelCase (`rangeEnd`, `prevKv`, `createRevision`), like the
 *   types of src/kv/. Only `_x` becomes `X`, so `ID`, `TTL` and `peerURLs` keep their case.
 * - longs String: every int64/uint64 (revisions, lease and member ids) is a decimal string.
 *   etcd's lease and member ids are random 64-bit numbers, beyond a double's 2^53.
 * - enums String: enum values are etcd's names (`PUT`, `DESCEND`, `NOT_EQUAL`). On the wire
 *   they are numbers, so clients that name them differently still agree.
 * - defaults true: an absent scalar reads as its zero value, never undefined, as in Go.
 * - oneofs true: a oneof also sets a field naming its present member, e.g. `request:
 *   'requestPut'` on a RequestOp, so a handler switches on one string.
 * - bytes Buffer: keys and values are Buffers, never base64 strings.
 */
export const etcdProtoOptions = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  bytes: Buffer,
} as const satisfies Options;

/**
 * The directory holding the .proto files. It is found through the package's own name (the
 * `./proto/*` entry of package.json's exports) rather than a path relative to this file,
 * which sits at src/server/ in the source tree and at dist/src/server/ once compiled: module
 * resolution finds the package root from both, and from an installed copy too. `from` is
 * the module to resolve from; tests pass other locations to check exactly that.
 */
export function etcdProtoDir(from: string | URL = import.meta.url): string {
  const require = createRequire(from);
  const entryPath = require.resolve(`chorus/proto/${etcdProtoEntry}`);
  return join(entryPath, '..', '..');
}

/**
 * Parses the etcd v3 protos into a package definition for `grpc.loadPackageDefinition` or
 * `server.addService`. Parsing takes tens of milliseconds: call it once per process.
 */
export function loadEtcdProto(): PackageDefinition {
  return loadSync(etcdProtoEntry, { ...etcdProtoOptions, includeDirs: [etcdProtoDir()] });
}
