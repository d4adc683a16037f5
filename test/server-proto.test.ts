// Goal: Chorus's etcd v3 protos (proto/) are wire-compatible with etcd, checked mechanically
// against the rpc.proto that the etcd3 npm client ships: every message and enum of that copy
// that we define has the same field numbers, types, names and oneofs; every service method
// has the same request and response types and streaming flags; the only messages left out
// and the only fields added are the listed ones. Then bytes cross over: a request encoded
// with etcd3's definitions decodes with ours and the reverse, and a real etcd3 client talks
// over loopback gRPC to stub handlers served from our package definition.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { Etcd3 } from 'etcd3';
import {
  etcdProtoDir,
  etcdProtoEntry,
  etcdServiceNames,
  loadEtcdProto,
} from '../src/server/proto.js';

const require = createRequire(import.meta.url);
const etcd3RpcPath = require.resolve('etcd3/proto/rpc.proto');

// Messages of etcd3's copy we deliberately do not define: the auth store's records, which
// etcd keeps on disk and never sends to a client, and the lease checkpoints that etcd's
// members exchange through Raft. No service of the client API mentions any of them.
const omittedMessages = [
  '.authpb.Role',
  '.authpb.User',
  '.etcdserverpb.LeaseCheckpoint',
  '.etcdserverpb.LeaseCheckpointRequest',
  '.etcdserverpb.LeaseCheckpointResponse',
];

// What our protos have beyond etcd3's copy, which follows the etcd 3.5 API: the fields etcd
// 3.5 and 3.6 added since (a newer etcdctl sends or reads them) and one message they use.
const addedFields = [
  '.etcdserverpb.AuthUserAddRequest.hashedPassword',
  '.etcdserverpb.AuthUserChangePasswordRequest.hashedPassword',
  '.etcdserverpb.HashKVResponse.hash_revision',
  '.etcdserverpb.SnapshotResponse.version',
  '.etcdserverpb.StatusResponse.dbSizeQuota',
  '.etcdserverpb.StatusResponse.downgradeInfo',
  '.etcdserverpb.StatusResponse.storageVersion',
];
const addedMessages = ['.etcdserverpb.DowngradeInfo'];

function loadOurs(): protobuf.Root {
  const dir = etcdProtoDir();
  const root = new protobuf.Root();
  // Our imports name files relative to the proto directory, as protoc's -I does.
  root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(dir, target));
  root.loadSync(etcdProtoEntry, { keepCase: true });
  root.resolveAll();
  return root;
}

function loadEtcd3(): protobuf.Root {
  const root = new protobuf.Root().loadSync(etcd3RpcPath, { keepCase: true });
  root.resolveAll();
  return root;
}

interface Reflected {
  types: Map<string, protobuf.Type>;
  enums: Map<string, protobuf.Enum>;
  services: Map<string, protobuf.Service>;
}

function reflect(root: protobuf.Root): Reflected {
  const found: Reflected = { types: new Map(), enums: new Map(), services: new Map() };
  const visit = (ns: protobuf.NamespaceBase): void => {
    for (const child of ns.nestedArray) {
      if (child instanceof protobuf.Type) found.types.set(child.fullName, child);
      else if (child instanceof protobuf.Enum) found.enums.set(child.fullName, child);
      else if (child instanceof protobuf.Service) found.services.set(child.fullName, child);
      if (child instanceof protobuf.Namespace || child instanceof protobuf.Type) visit(child);
    }
  };
  visit(root);
  return found;
}

/** Everything about a field that decides its bytes on the wire, plus its name. */
function describeField(field: protobuf.Field): string {
  const type = field.resolvedType ? field.resolvedType.fullName : field.type;
  const rule = field.repeated ? 'repeated ' : '';
  const oneof = field.partOf ? ` (oneof ${field.partOf.name})` : '';
  return `${rule}${type} ${field.name} = ${field.id}${oneof}`;
}

function describeMethod(method: protobuf.Method): string {
  const request = method.resolvedRequestType?.fullName ?? method.requestType;
  const response = method.resolvedResponseType?.fullName ?? method.responseType;
  const stream = (on: boolean | undefined): string => (on === true ? 'stream ' : '');
  return `${method.name}(${stream(method.requestStream)}${request}) returns (${stream(method.responseStream)}${response})`;
}

// etcd3 renames enum values in PascalCase (Put, NotEqual) where etcd writes PUT, NOT_EQUAL;
// only the numbers travel, so names are compared with case and underscores ignored.
const looseName = (name: string): string => name.replaceAll('_', '').toLowerCase();

interface Comparison {
  mismatches: string[];
  omitted: string[];
  added: string[];
  enumRenames: string[];
}

function compare(ours: Reflected, theirs: Reflected): Comparison {
  const result: Comparison = { mismatches: [], omitted: [], added: [], enumRenames: [] };
  for (const [name, their] of theirs.types) {
    const our = ours.types.get(name);
    if (our === undefined) {
      result.omitted.push(name);
      continue;
    }
    for (const theirField of their.fieldsArray) {
      const ourField = our.fieldsById[theirField.id];
      const want = describeField(theirField);
      const got = ourField === undefined ? 'nothing' : describeField(ourField);
      if (want !== got) result.mismatches.push(`${name}: etcd3 has ${want}, ours ${got}`);
    }
    for (const ourField of our.fieldsArray) {
      if (their.fieldsById[ourField.id] === undefined)
        result.added.push(`${name}.${ourField.name}`);
    }
  }
  for (const name of ours.types.keys()) if (!theirs.types.has(name)) result.added.push(name);
  for (const [name, their] of theirs.enums) {
    const our = ours.enums.get(name);
    if (our === undefined) {
      // An enum nested in an omitted message goes with it.
      if (!result.omitted.some((message) => name.startsWith(`${message}.`))) {
        result.mismatches.push(`${name}: enum missing`);
      }
      continue;
    }
    const numbers = (e: protobuf.Enum): string => JSON.stringify(Object.values(e.values));
    if (numbers(our) !== numbers(their)) {
      result.mismatches.push(`${name}: numbers ${numbers(their)} vs ours ${numbers(our)}`);
    }
    for (const [theirValue, id] of Object.entries(their.values)) {
      const ourValue = our.valuesById[id];
      if (ourValue === undefined || looseName(ourValue) !== looseName(theirValue)) {
        result.mismatches.push(`${name}: ${theirValue} = ${id}, ours ${ourValue ?? 'nothing'}`);
      } else if (ourValue !== theirValue) {
        result.enumRenames.push(`${name}.${ourValue}/${theirValue}`);
      }
    }
  }
  for (const [name, their] of theirs.services) {
    const our = ours.services.get(name);
    if (our === undefined) {
      result.mismatches.push(`${name}: service missing`);
      continue;
    }
    for (const theirMethod of their.methodsArray) {
      const ourMethod = our.methods[theirMethod.name];
      const want = describeMethod(theirMethod);
      const got = ourMethod === undefined ? 'nothing' : describeMethod(ourMethod);
      if (want !== got) result.mismatches.push(`${name}: etcd3 has ${want}, ours ${got}`);
    }
    for (const ourMethod of our.methodsArray) {
      if (their.methods[ourMethod.name] === undefined) {
        result.added.push(`${name}.${ourMethod.name}()`);
      }
    }
  }
  for (const name of ours.services.keys()) if (!theirs.services.has(name)) result.added.push(name);
  return result;
}

test('every message, enum and method of etcd3 that we define matches it on the wire', (t) => {
  const ours = reflect(loadOurs());
  const theirs = reflect(loadEtcd3());
  const result = compare(ours, theirs);
  assert.deepEqual(result.mismatches, []);
  assert.deepEqual(result.omitted.sort(), omittedMessages);
  assert.deepEqual(result.added.sort(), [...addedFields, ...addedMessages].sort());
  const services = [...ours.services.keys()].sort();
  assert.deepEqual(services, etcdServiceNames.map((s) => `.etcdserverpb.${s}`).sort());
  assert.ok(theirs.types.size > 90, `etcd3 copy has only ${theirs.types.size} messages`);
  t.diagnostic(`compared ${theirs.types.size - result.omitted.length} messages field by field`);
  t.diagnostic(`omitted from etcd3's copy: ${result.omitted.join(', ')}`);
  t.diagnostic(`added beyond etcd3's copy: ${result.added.join(', ')}`);
  t.diagnostic(`enum values etcd3 names differently: ${result.enumRenames.length}`);
});

test('the comparison catches a renumbered field, a changed type and a changed streaming flag', () => {
  // A check that cannot fail proves nothing: break a copy of ours in three ways.
  const ours = loadOurs();
  const put = ours.lookupType('etcdserverpb.PutRequest');
  put.remove(put.fields.lease!);
  put.add(new protobuf.Field('lease', 9, 'int64'));
  const member = ours.lookupType('etcdserverpb.Member');
  member.remove(member.fields.ID!);
  member.add(new protobuf.Field('ID', 1, 'int64'));
  ours.lookupService('etcdserverpb.Lease').methods.LeaseKeepAlive!.responseStream = false;
  ours.resolveAll();
  const result = compare(reflect(ours), reflect(loadEtcd3()));
  assert.deepEqual(result.mismatches, [
    '.etcdserverpb.PutRequest: etcd3 has int64 lease = 3, ours nothing',
    '.etcdserverpb.Member: etcd3 has uint64 ID = 1, ours int64 ID = 1',
    '.etcdserverpb.Lease: etcd3 has LeaseKeepAlive(stream .etcdserverpb.LeaseKeepAliveRequest) returns (stream .etcdserverpb.LeaseKeepAliveResponse), ours LeaseKeepAlive(stream .etcdserverpb.LeaseKeepAliveRequest) returns (.etcdserverpb.LeaseKeepAliveResponse)',
  ]);
  assert.ok(result.added.includes('.etcdserverpb.PutRequest.lease'));
});

test('a PutRequest encoded with etcd3 protos decodes with ours', () => {
  const theirType = loadEtcd3().lookupType('etcdserverpb.PutRequest');
  const ourType = loadOurs().lookupType('etcdserverpb.PutRequest');
  // A lease id above 2^53 checks that 64-bit values survive whole.
  const sent = {
    key: Buffer.from('config/a'),
    value: Buffer.from([0, 1, 2, 255]),
    lease: '7587863210716196361',
    prev_kv: true,
    ignore_value: false,
    ignore_lease: true,
  };
  const bytes = theirType.encode(theirType.fromObject(sent)).finish();
  const received = ourType.toObject(ourType.decode(bytes), {
    longs: String,
    bytes: Buffer,
    defaults: true,
  });
  assert.deepEqual(received, sent);
});

test('gRPC method paths and (de)serializers agree with the ones etcd3 builds', () => {
  const ours = loadEtcdProto();
  // etcd3 loads its copy with these options (lib/connection-pool.js).
  const theirs = loadSync(etcd3RpcPath, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  for (const service of etcdServiceNames) {
    const name = `etcdserverpb.${service}`;
    const ourMethods = Object.values(ours[name] ?? {}) as MethodDefinition<unknown, unknown>[];
    const theirMethods = Object.values(theirs[name] ?? {}) as MethodDefinition<unknown, unknown>[];
    assert.deepEqual(
      ourMethods.map((m) => [m.path, m.requestStream, m.responseStream]),
      theirMethods.map((m) => [m.path, m.requestStream, m.responseStream]),
    );
  }
  const put = (ours['etcdserverpb.KV'] as Record<string, MethodDefinition<unknown, unknown>>).Put!;
  assert.equal(put.path, '/etcdserverpb.KV/Put');

  // Client to server: a transaction as etcd3 sends it, as a Chorus handler will see it.
  const txn = (def: typeof ours) =>
    (def['etcdserverpb.KV'] as Record<string, MethodDefinition<object, object>>).Txn!;
  const request = txn(theirs).requestSerialize({
    compare: [{ key: Buffer.from('k'), target: 'Mod', result: 'Less', mod_revision: '7' }],
    success: [{ request_put: { key: Buffer.from('k'), value: Buffer.from('v') } }],
    failure: [{ request_range: { key: Buffer.from('k') } }],
  });
  const seen = txn(ours).requestDeserialize(request) as {
    compare: Record<string, unknown>[];
    success: Record<string, unknown>[];
    failure: Record<string, unknown>[];
  };
  assert.equal(seen.compare[0]!.target, 'MOD');
  assert.equal(seen.compare[0]!.result, 'LESS');
  assert.equal(seen.compare[0]!.targetUnion, 'modRevision');
  assert.equal(seen.compare[0]!.modRevision, '7');
  assert.equal(seen.success[0]!.request, 'requestPut');
  assert.deepEqual((seen.success[0]!.requestPut as { value: Buffer }).value, Buffer.from('v'));
  assert.equal(seen.failure[0]!.request, 'requestRange');

  // Server to client: a watch response with a delete event, as etcd3 will read it.
  const watch = (def: typeof ours) =>
    (def['etcdserverpb.Watch'] as Record<string, MethodDefinition<object, object>>).Watch!;
  const response = watch(ours).responseSerialize({
    header: { revision: '12' },
    watchId: '3',
    events: [{ type: 'DELETE', kv: { key: Buffer.from('k'), modRevision: '12' } }],
  });
  const read = watch(theirs).responseDeserialize(response) as {
    header: { revision: string };
    watch_id: string;
    events: { type: string; kv: { key: Buffer; mod_revision: string } }[];
  };
  assert.equal(read.header.revision, '12');
  assert.equal(read.watch_id, '3');
  assert.equal(read.events[0]!.type, 'Delete');
  assert.equal(read.events[0]!.kv.mod_revision, '12');
});

interface PutSeen {
  key: Buffer;
  value: Buffer;
  lease: string;
  prevKv: boolean;
}

test(
  'the etcd3 client talks to stub handlers served from our definitions',
  { timeout: 30_000 },
  async () => {
    const definition = loadEtcdProto();
    const etcdserverpb = grpc.loadPackageDefinition(definition).etcdserverpb as grpc.GrpcObject;
    const service = (name: string): grpc.ServiceDefinition =>
      (etcdserverpb[name] as grpc.ServiceClientConstructor).service;
    const header = { clusterId: '1', memberId: '2', revision: '5', raftTerm: '3' };
    const puts: PutSeen[] = [];
    const server = new grpc.Server();
    server.addService(service('KV'), {
      Put: (call: grpc.ServerUnaryCall<PutSeen, unknown>, done: grpc.sendUnaryData<unknown>) => {
        puts.push(call.request);
        done(null, { header });
      },
      Range: (_call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => {
        const kv = { key: Buffer.from('k'), value: Buffer.from('v'), modRevision: '5' };
        done(null, { header, kvs: [kv], count: '1' });
      },
    });
    // No handlers at all: grpc-js answers every Auth call with UNIMPLEMENTED.
    server.addService(service('Auth'), {});
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      );
    });
    const address = `127.0.0.1:${port}`;
    const client = new Etcd3({ hosts: address });
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const putResponse = await client.put('k').value('v');
      assert.equal(putResponse.header.revision, '5');
      assert.equal(puts.length, 1);
      assert.deepEqual(puts[0]!.key, Buffer.from('k'));
      assert.deepEqual(puts[0]!.value, Buffer.from('v'));
      assert.equal(puts[0]!.lease, '0');
      assert.equal(puts[0]!.prevKv, false);
      assert.equal(await client.get('k').string(), 'v');

      const authenticate = (
        definition['etcdserverpb.Auth'] as Record<string, MethodDefinition<object, object>>
      ).Authenticate!;
      assert.equal(authenticate.path, '/etcdserverpb.Auth/Authenticate');
      const code = await new Promise<grpc.status | undefined>((resolve) => {
        raw.makeUnaryRequest(
          authenticate.path,
          authenticate.requestSerialize,
          authenticate.responseDeserialize,
          { name: 'root', password: 'secret' },
          (error) => resolve(error?.code),
        );
      });
      assert.equal(code, grpc.status.UNIMPLEMENTED);
    } finally {
      raw.close();
      client.close();
      server.forceShutdown();
    }
  },
);

test('the proto directory is found from the source and the compiled module alike', () => {
  // The tests run from dist/test/, so the package root is two levels up.
  assert.ok(import.meta.url.includes('/dist/test/'), import.meta.url);
  const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
  const protoDir = join(packageRoot, 'proto');
  assert.ok(existsSync(join(protoDir, etcdProtoEntry)));
  assert.equal(etcdProtoDir(), protoDir);
  for (const from of ['src/server/proto.ts', 'dist/src/server/proto.js']) {
    assert.equal(etcdProtoDir(pathToFileURL(join(packageRoot, from))), protoDir, from);
  }
});
