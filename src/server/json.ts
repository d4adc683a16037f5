/**
 * etcd's JSON encoding of its messages, as its grpc-gateway (jsonpb, OrigName) speaks it:
 * field names as in the .proto (`range_end`, `create_revision`, `ID`), int64 and uint64 as
 * decimal strings, bytes as base64, enums by name, and zero values left out on output. On
 * input both the .proto name and its lowerCamelCase JSON name are accepted, numbers are
 * accepted for 64-bit fields, and an unknown field or a value of the wrong type is refused.
 *
 * JSON becomes protobuf bytes here; the gateway hands those bytes to the same deserializer
 * and handlers gRPC uses, so both protocols share one validation and one behaviour.
 */
import protobuf from 'protobufjs';
import { isAbsolute, join } from 'node:path';
import { etcdProtoDir, etcdProtoEntry } from './proto.js';
import { invalidArgument } from './errors.js';

/** JSON nests no deeper than this (a txn in a txn in …). */
const jsonDepthMax = 64;

export class EtcdJson {
  private readonly root: protobuf.Root;
  private readonly jsonNames = new Map<protobuf.Type, Map<string, protobuf.Field>>();

  constructor() {
    const dir = etcdProtoDir();
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(dir, target));
    root.loadSync(etcdProtoEntry, { keepCase: true });
    root.resolveAll();
    this.root = root;
  }

  /** A JSON request → the protobuf bytes of `typeName` (e.g. 'etcdserverpb.PutRequest'). */
  encode(typeName: string, json: unknown): Uint8Array {
    const type = this.root.lookupType(typeName);
    const plain = this.fromJson(type, json, type.name, 0);
    return type.encode(type.fromObject(plain)).finish();
  }

  /** Protobuf bytes of `typeName` → etcd's JSON for it. */
  decode(typeName: string, bytes: Uint8Array): Record<string, unknown> {
    const type = this.root.lookupType(typeName);
    return this.toJson(type, type.decode(bytes) as unknown as Record<string, unknown>);
  }

  private fieldByName(type: protobuf.Type, key: string): protobuf.Field | undefined {
    let names = this.jsonNames.get(type);
    if (names === undefined) {
      names = new Map();
      for (const field of type.fieldsArray) {
        names.set(field.name, field);
        names.set(protobuf.util.camelCase(field.name), field);
      }
      this.jsonNames.set(type, names);
    }
    return names.get(key);
  }

  private fromJson(
    type: protobuf.Type,
    json: unknown,
    path: string,
    depth: number,
  ): Record<string, unknown> {
    if (depth > jsonDepthMax) throw invalidArgument(`${path}: nested deeper than ${jsonDepthMax}`);
    if (typeof json !== 'object' || json === null || Array.isArray(json))
      throw invalidArgument(`${path}: expected a JSON object`);
    const out: Record<string, unknown> = {};
    const oneofs = new Set<string>();
    for (const [key, value] of Object.entries(json)) {
      const field = this.fieldByName(type, key);
      if (field === undefined)
        throw invalidArgument(`${path}: unknown field ${JSON.stringify(key)} in ${type.name}`);
      if (value === null) continue;
      const at = `${path}.${key}`;
      if (field.partOf !== null) {
        if (oneofs.has(field.partOf.name))
          throw invalidArgument(`${path}: more than one field of oneof ${field.partOf.name}`);
        oneofs.add(field.partOf.name);
      }
      if (field.repeated) {
        if (!Array.isArray(value)) throw invalidArgument(`${at}: expected a JSON array`);
        out[field.name] = value.map((v, i) => this.valueFromJson(field, v, `${at}[${i}]`, depth));
      } else {
        out[field.name] = this.valueFromJson(field, value, at, depth);
      }
    }
    return out;
  }

  private valueFromJson(field: protobuf.Field, value: unknown, at: string, depth: number): unknown {
    const resolved = field.resolve().resolvedType;
    if (resolved instanceof protobuf.Type) return this.fromJson(resolved, value, at, depth + 1);
    if (resolved instanceof protobuf.Enum) {
      if (typeof value === 'string' && Object.hasOwn(resolved.values, value)) return value;
      if (typeof value === 'number' && Number.isInteger(value)) return value;
      throw invalidArgument(`${at}: not a value of ${resolved.name}`);
    }
    switch (field.type) {
      case 'int64':
      case 'sint64':
      case 'sfixed64':
        return integerText(value, at, -(2n ** 63n), 2n ** 63n - 1n);
      case 'uint64':
      case 'fixed64':
        return integerText(value, at, 0n, 2n ** 64n - 1n);
      case 'int32':
      case 'sint32':
      case 'sfixed32':
        return Number(integerText(value, at, -(2n ** 31n), 2n ** 31n - 1n));
      case 'uint32':
      case 'fixed32':
        return Number(integerText(value, at, 0n, 2n ** 32n - 1n));
      case 'bool':
        if (typeof value === 'boolean') return value;
        throw invalidArgument(`${at}: expected true or false`);
      case 'string':
        if (typeof value === 'string') return value;
        throw invalidArgument(`${at}: expected a string`);
      case 'bytes':
        if (typeof value === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(value))
          return Buffer.from(value, 'base64');
        throw invalidArgument(`${at}: expected base64 bytes`);
      case 'double':
      case 'float':
        if (typeof value === 'number') return value;
        throw invalidArgument(`${at}: expected a number`);
      default:
        throw invalidArgument(`${at}: unsupported field type ${field.type}`);
    }
  }

  private toJson(type: protobuf.Type, message: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const field of type.fieldsArray) {
      const value = message[field.name];
      if (field.repeated) {
        if (Array.isArray(value) && value.length > 0)
          out[field.name] = value.map((v) => this.valueToJson(field, v));
        continue;
      }
      if (value === undefined || value === null || !Object.hasOwn(message, field.name)) continue;
      const json = this.valueToJson(field, value);
      // A oneof member is sent even when zero: its presence is the information.
      if (field.partOf === null && isZero(json, field)) continue;
      out[field.name] = json;
    }
    return out;
  }

  private valueToJson(field: protobuf.Field, value: unknown): unknown {
    const resolved = field.resolve().resolvedType;
    if (resolved instanceof protobuf.Type)
      return this.toJson(resolved, value as Record<string, unknown>);
    if (resolved instanceof protobuf.Enum) return resolved.valuesById[value as number] ?? value;
    switch (field.type) {
      case 'int64':
      case 'sint64':
      case 'sfixed64':
      case 'uint64':
      case 'fixed64':
        return String(value);
      case 'bytes':
        return Buffer.from(value as Uint8Array).toString('base64');
      default:
        return value;
    }
  }
}

function isZero(json: unknown, field: protobuf.Field): boolean {
  if (field.resolvedType instanceof protobuf.Type) return false;
  if (field.resolvedType instanceof protobuf.Enum)
    return json === field.resolvedType.valuesById[0] || json === 0;
  return json === false || json === 0 || json === '0' || json === '';
}

function integerText(value: unknown, at: string, min: bigint, max: bigint): string {
  let big: bigint | undefined;
  if (typeof value === 'number' && Number.isSafeInteger(value)) big = BigInt(value);
  else if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) big = BigInt(value);
  if (big === undefined)
    throw invalidArgument(`${at}: expected an integer (a number or a decimal string)`);
  if (big < min || big > max) throw invalidArgument(`${at}: ${String(value)} is out of range`);
  return big.toString();
}
