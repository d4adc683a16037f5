/**
 * etcdctl's `-w json`: Go's encoding/json applied to etcd's gogoproto structs. That is not
 * the grpc-gateway's JSON (src/server/json.ts) but its own dialect, which scripts written for
 * etcdctl parse:
 * - a field is named by its json tag, which is the .proto name (`create_revision`, `ID`,
 *   `dbSize`, `remaining_TTL`), and left out when zero (`omitempty`);
 * - int64 and uint64 are JSON numbers, written exactly even beyond 2^53;
 * - bytes are standard base64; enums are their numbers (`"type":1` for a DELETE event);
 * - a oneof is a Go interface field without a tag, so it is named after the oneof in Go's
 *   CamelCase and holds the one member that is set: `"Response":{"response_put":{…}}`;
 * - strings escape <, > and & as \u003c, \u003e and \u0026, as Go does.
 *
 * The field list comes from the same .proto files the client speaks, read with protobufjs.
 */
import protobuf from 'protobufjs';
import { isAbsolute, join } from 'node:path';
import { etcdProtoDir, etcdProtoEntry } from '../server/proto.js';
import type { ResponseHeader } from './types.js';

/** A JSON number written exactly as given (an int64 is beyond a double's precision). */
export class GoNumber {
  constructor(readonly text: string) {
    if (!/^-?\d+$/.test(text)) throw new Error(`not an integer: ${JSON.stringify(text)}`);
  }
}

export type GoValue = GoNumber | string | boolean | null | GoValue[] | GoObject;
export interface GoObject {
  [key: string]: GoValue;
}

/** A value nested deeper than this is a txn in a txn in … beyond anything etcd accepts. */
const depthMax = 64;

let root: protobuf.Root | undefined;
function etcdRoot(): protobuf.Root {
  if (root === undefined) {
    const dir = etcdProtoDir();
    const loaded = new protobuf.Root();
    loaded.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(dir, target));
    loaded.loadSync(etcdProtoEntry, { keepCase: true });
    loaded.resolveAll();
    root = loaded;
  }
  return root;
}

const int64Types = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const int32Types = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);

/** `target_union` → `TargetUnion`: the Go name protoc gives a oneof's field. */
const goFieldName = (name: string): string =>
  name
    .split('_')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');

/**
 * A decoded message of `typeName` (e.g. 'etcdserverpb.RangeResponse', in proto-loader's
 * shape) as encoding/json writes its Go struct.
 */
export function goMessage(typeName: string, message: object): GoObject {
  return messageObject(etcdRoot().lookupType(typeName), message as Record<string, unknown>, 0);
}

function messageObject(type: protobuf.Type, message: Record<string, unknown>, depth: number) {
  if (depth > depthMax) throw new Error(`${type.name} nested deeper than ${depthMax}`);
  const out: GoObject = {};
  const oneofsDone = new Set<string>();
  for (const field of type.fieldsArray) {
    const oneof = field.partOf;
    if (oneof !== null) {
      // The interface field stands where the oneof's first member does; nil is `null`.
      if (oneofsDone.has(oneof.name)) continue;
      oneofsDone.add(oneof.name);
      out[goFieldName(oneof.name)] = oneofValue(oneof, message, depth);
      continue;
    }
    const value = fieldValue(field, message[protobuf.util.camelCase(field.name)], depth);
    if (value !== undefined) out[field.name] = value;
  }
  return out;
}

function oneofValue(oneof: protobuf.OneOf, message: Record<string, unknown>, depth: number) {
  for (const member of oneof.fieldsArray) {
    const raw = message[protobuf.util.camelCase(member.name)];
    if (raw === undefined || raw === null) continue;
    const value = fieldValue(member, raw, depth);
    return value === undefined ? {} : { [member.name]: value };
  }
  return null;
}

/** The JSON of one field, or undefined when encoding/json's omitempty leaves it out. */
function fieldValue(field: protobuf.Field, raw: unknown, depth: number): GoValue | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (field.repeated) {
    if (!Array.isArray(raw) || raw.length === 0) return undefined;
    return raw.map((item: unknown) => scalarOrMessage(field, item, depth) ?? null);
  }
  const value = scalarOrMessage(field, raw, depth);
  return value === undefined || isEmpty(value) ? undefined : value;
}

function scalarOrMessage(field: protobuf.Field, raw: unknown, depth: number): GoValue | undefined {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) {
    if (raw === null || typeof raw !== 'object') return undefined;
    return messageObject(resolved, raw as Record<string, unknown>, depth + 1);
  }
  if (resolved instanceof protobuf.Enum) {
    const number = typeof raw === 'number' ? raw : resolved.values[String(raw)];
    return number === undefined ? undefined : new GoNumber(String(number));
  }
  if (int64Types.has(field.type) || int32Types.has(field.type)) return new GoNumber(String(raw));
  if (field.type === 'bytes') return Buffer.from(raw as Uint8Array).toString('base64');
  if (field.type === 'bool') return raw === true;
  if (field.type === 'string') return String(raw);
  // double and float appear in no message the CLI prints.
  return new GoNumber(String(Math.trunc(Number(raw))));
}

/** omitempty: false, 0, "" and nothing else (an empty message is still `{}`). */
function isEmpty(value: GoValue): boolean {
  if (value instanceof GoNumber) return value.text === '0';
  return value === false || value === '';
}

/**
 * The fields of a *pb.ResponseHeader embedded in a Go struct (clientv3's lease responses):
 * encoding/json promotes them to the outer object, each with its omitempty.
 */
export function goEmbeddedHeader(header: ResponseHeader | null): GoObject {
  return header === null ? {} : goMessage('etcdserverpb.ResponseHeader', header);
}

/** A Go int64/uint64 field without omitempty. */
export const goInt = (value: string | number | bigint): GoNumber => new GoNumber(String(value));

/** encoding/json's output for `value`, on one line. */
export function goJsonStringify(value: GoValue): string {
  if (value instanceof GoNumber) return value.text;
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return goString(value);
  if (Array.isArray(value)) return `[${value.map(goJsonStringify).join(',')}]`;
  const members = Object.entries(value).map(([k, v]) => `${goString(k)}:${goJsonStringify(v)}`);
  return `{${members.join(',')}}`;
}

function goString(text: string): string {
  return JSON.stringify(text).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
