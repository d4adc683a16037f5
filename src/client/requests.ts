/**
 * etcdctl's command-line vocabulary turned into etcd v3 requests: the same flags mean the
 * same request fields as in etcdctl (get_command.go, put_command.go, del_command.go,
 * txn_command.go) and clientv3's options (WithPrefix, WithFromKey, WithSort). Pure
 * functions: the CLI and the txn reader share them, and tests can call them directly.
 */
import { prefixEnd } from '../kv/keys.js';
import { ClientInputError } from './errors.js';
import type {
  Compare,
  CompareResult,
  CompareTarget,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  SortOrder,
  SortTarget,
} from './types.js';

const int64Max = 2n ** 63n - 1n;
const uint64Max = 2n ** 64n - 1n;

const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');
/** etcd's "every key from here on": a range end of one zero byte. */
const fromKeyEnd = (): Buffer => Buffer.from([0]);

export interface GetOptions {
  prefix?: boolean;
  fromKey?: boolean;
  rev?: string;
  limit?: string;
  keysOnly?: boolean;
  countOnly?: boolean;
  /** l (linearizable, the default) or s (serializable). */
  consistency?: string;
  sortBy?: string;
  order?: string;
  minModRev?: string;
  maxModRev?: string;
  minCreateRev?: string;
  maxCreateRev?: string;
}

/** A decimal int64 ≥ 0 given on the command line, as the wire's decimal string. */
export function parseCount(text: string, what: string): string {
  if (!/^\d+$/.test(text.trim()) || BigInt(text.trim()) > int64Max)
    throw new ClientInputError(`bad ${what} ${JSON.stringify(text)}: expected an integer ≥ 0`);
  return BigInt(text.trim()).toString();
}

const sortTargets: Record<string, SortTarget> = {
  CREATE: 'CREATE',
  KEY: 'KEY',
  MODIFY: 'MOD',
  VALUE: 'VALUE',
  VERSION: 'VERSION',
};

/** etcdctl get's flags → RangeRequest. */
export function rangeRequest(
  key: string,
  rangeEnd: string | undefined,
  o: GetOptions,
): RangeRequest {
  if (o.prefix === true && o.fromKey === true)
    throw new ClientInputError(
      '`--prefix` and `--from-key` cannot be set at the same time, choose one',
    );
  if (o.keysOnly === true && o.countOnly === true)
    throw new ClientInputError(
      '`--keys-only` and `--count-only` cannot be set at the same time, choose one',
    );
  if (rangeEnd !== undefined && (o.prefix === true || o.fromKey === true))
    throw new ClientInputError(
      'too many arguments, only accept one argument when `--prefix` or `--from-key` is set',
    );
  const consistency = o.consistency ?? 'l';
  if (consistency !== 'l' && consistency !== 's')
    throw new ClientInputError(`unknown consistency flag ${JSON.stringify(consistency)}`);

  const request: RangeRequest = keyRange(key, rangeEnd, o);
  if (consistency === 's') request.serializable = true;
  if (o.limit !== undefined) request.limit = parseCount(o.limit, 'limit');
  if (o.rev !== undefined) request.revision = parseCount(o.rev, 'revision');
  Object.assign(request, sortOf(o.sortBy, o.order));
  if (o.keysOnly === true) request.keysOnly = true;
  if (o.countOnly === true) request.countOnly = true;
  Object.assign(request, revisionBounds(o));
  return request;
}

/** --prefix, --from-key or an explicit range end; an empty key with either means "all". */
function keyRange(
  key: string,
  rangeEnd: string | undefined,
  o: { prefix?: boolean; fromKey?: boolean },
): { key: Buffer; rangeEnd?: Buffer } {
  if ((o.prefix === true || o.fromKey === true) && key === '')
    return { key: Buffer.from([0]), rangeEnd: fromKeyEnd() };
  if (o.prefix === true) return { key: utf8(key), rangeEnd: Buffer.from(prefixEnd(utf8(key))) };
  if (o.fromKey === true) return { key: utf8(key), rangeEnd: fromKeyEnd() };
  if (rangeEnd !== undefined) return { key: utf8(key), rangeEnd: utf8(rangeEnd) };
  return { key: utf8(key) };
}

function sortOf(
  sortBy: string | undefined,
  order: string | undefined,
): { sortTarget?: SortTarget; sortOrder?: SortOrder } {
  const orderName = (order ?? '').toUpperCase();
  if (orderName !== '' && orderName !== 'ASCEND' && orderName !== 'DESCEND')
    throw new ClientInputError(`bad sort order ${order}`);
  const targetName = (sortBy ?? '').toUpperCase();
  const target = targetName === '' ? 'KEY' : sortTargets[targetName];
  if (target === undefined) throw new ClientInputError(`bad sort target ${sortBy}`);
  let sortOrder: SortOrder = orderName === '' ? 'NONE' : orderName;
  // clientv3.WithSort: keys come back in ascending key order anyway, and an explicit order
  // would make the server read the whole range before applying the limit.
  if (target === 'KEY' && sortOrder === 'ASCEND') sortOrder = 'NONE';
  const out: { sortTarget?: SortTarget; sortOrder?: SortOrder } = {};
  if (target !== 'KEY') out.sortTarget = target;
  if (sortOrder !== 'NONE') out.sortOrder = sortOrder;
  return out;
}

function revisionBounds(o: GetOptions): Partial<RangeRequest> {
  const bounds: Partial<RangeRequest> = {};
  const pairs = [
    ['minModRevision', 'maxModRevision', o.minModRev, o.maxModRev, 'mod'],
    ['minCreateRevision', 'maxCreateRevision', o.minCreateRev, o.maxCreateRev, 'create'],
  ] as const;
  for (const [minField, maxField, minText, maxText, what] of pairs) {
    const min = minText === undefined ? 0n : BigInt(parseCount(minText, `min ${what} revision`));
    const max = maxText === undefined ? 0n : BigInt(parseCount(maxText, `max ${what} revision`));
    if (max > 0n && min > max)
      throw new ClientInputError(`min ${what} revision (${min}) > max ${what} revision (${max})`);
    if (min > 0n) bounds[minField] = min.toString();
    if (max > 0n) bounds[maxField] = max.toString();
  }
  return bounds;
}

export interface PutOptions {
  /** Hexadecimal, as etcdctl prints lease ids; "0" for none. */
  lease?: string;
  prevKv?: boolean;
  ignoreValue?: boolean;
  ignoreLease?: boolean;
}

export function putRequest(key: string, value: string | undefined, o: PutOptions): PutRequest {
  if (o.ignoreValue === true && value !== undefined)
    throw new ClientInputError("put command needs only 1 argument when 'ignore-value' is set");
  if (o.ignoreValue !== true && value === undefined)
    throw new ClientInputError('put command needs 1 argument and input from stdin or 2 arguments');
  const request: PutRequest = { key: utf8(key) };
  if (value !== undefined) request.value = utf8(value);
  const lease = parseLeaseId(o.lease ?? '0');
  if (lease !== '0') request.lease = lease;
  if (o.prevKv === true) request.prevKv = true;
  if (o.ignoreValue === true) request.ignoreValue = true;
  if (o.ignoreLease === true) request.ignoreLease = true;
  return request;
}

export interface DelOptions {
  prefix?: boolean;
  fromKey?: boolean;
  prevKv?: boolean;
}

export function deleteRangeRequest(
  key: string,
  rangeEnd: string | undefined,
  o: DelOptions,
): DeleteRangeRequest {
  if (o.prefix === true && o.fromKey === true)
    throw new ClientInputError(
      '`--prefix` and `--from-key` cannot be set at the same time, choose one',
    );
  if (rangeEnd !== undefined && (o.prefix === true || o.fromKey === true))
    throw new ClientInputError(
      'too many arguments, only accept one argument when `--prefix` or `--from-key` is set',
    );
  const request: DeleteRangeRequest = keyRange(key, rangeEnd, o);
  if (o.prevKv === true) request.prevKv = true;
  return request;
}

/** A lease id in hexadecimal (etcdctl's form) → the int64's decimal string. */
export function parseLeaseId(text: string): string {
  return parseHexId(text, int64Max, 'lease ID');
}

/** A member id in hexadecimal → the uint64's decimal string. */
export function parseMemberId(text: string): string {
  return parseHexId(text, uint64Max, 'member ID');
}

function parseHexId(text: string, max: bigint, what: string): string {
  const hex = text.trim().replace(/^0x/i, '');
  if (!/^[0-9a-fA-F]{1,16}$/.test(hex) || BigInt(`0x${hex}`) > max)
    throw new ClientInputError(`bad ${what} ${JSON.stringify(text)}, expecting ID in Hex`);
  return BigInt(`0x${hex}`).toString();
}

/** A lease id as etcdctl prints it: %016x. */
export const leaseHex = (id: string): string => BigInt(id).toString(16).padStart(16, '0');
/** A member id as etcdctl prints it: %x. */
export const memberHex = (id: string): string => BigInt(id).toString(16);

// ---- txn --------------------------------------------------------------------------------

const compareOps: Record<string, CompareResult> = {
  '=': 'EQUAL',
  '!=': 'NOT_EQUAL',
  '>': 'GREATER',
  '<': 'LESS',
};

const compareTargets: Record<string, CompareTarget> = {
  ver: 'VERSION',
  version: 'VERSION',
  c: 'CREATE',
  create: 'CREATE',
  m: 'MOD',
  mod: 'MOD',
  val: 'VALUE',
  value: 'VALUE',
  lease: 'LEASE',
};

/**
 * One comparison of etcdctl's txn syntax: `target("key") op "value"`, where target is
 * ver|version, c|create, m|mod, val|value or lease, op is =, !=, > or <, both key and value
 * are Go-quoted strings, and a lease is compared by its hexadecimal id. Spaces around the
 * operator are optional here (etcdctl requires them).
 */
export function parseCompare(line: string): Compare {
  const malformed = (why: string): ClientInputError =>
    new ClientInputError(`malformed comparison: ${line} (${why})`);
  const open = line.indexOf('(');
  if (open < 0) throw malformed('expected target("key")');
  const targetName = line.slice(0, open).trim();
  const target = compareTargets[targetName];
  if (target === undefined) throw malformed(`unknown target ${targetName}`);
  const key = readQuoted(line, open + 1);
  if (key === undefined) throw malformed('the key must be a quoted string');
  const rest = /^\s*\)\s*(!=|=|>|<)\s*/.exec(line.slice(key.end));
  if (rest === null) throw malformed('expected ) followed by =, !=, > or <');
  const valueAt = key.end + rest[0].length;
  const value = readQuoted(line, valueAt);
  if (value === undefined || line.slice(value.end).trim() !== '')
    throw malformed('the value must be one quoted string');
  const compare: Compare = { result: compareOps[rest[1]!]!, target, key: key.bytes };
  const text = value.bytes.toString('utf8');
  const integer = (): string => {
    if (!/^-?\d+$/.test(text)) throw new ClientInputError(`invalid txn compare request: ${line}`);
    return BigInt(text).toString();
  };
  switch (target) {
    case 'VERSION':
      compare.version = integer();
      break;
    case 'CREATE':
      compare.createRevision = integer();
      break;
    case 'MOD':
      compare.modRevision = integer();
      break;
    case 'VALUE':
      compare.value = value.bytes;
      break;
    case 'LEASE':
      compare.lease = parseLeaseId(text);
      break;
  }
  return compare;
}

/** A Go-quoted string ("…" with escapes, or `…` raw) starting at `at`, after spaces. */
function readQuoted(line: string, at: number): { bytes: Buffer; end: number } | undefined {
  let i = at;
  while (line[i] === ' ' || line[i] === '\t') i++;
  const quote = line[i];
  if (quote === '`') {
    const close = line.indexOf('`', i + 1);
    if (close < 0) return undefined;
    return { bytes: utf8(line.slice(i + 1, close)), end: close + 1 };
  }
  if (quote !== '"') return undefined;
  const match = /^"(?:[^"\\]|\\.)*"/.exec(line.slice(i));
  if (match === null) return undefined;
  return { bytes: goUnquote(match[0]), end: i + match[0].length };
}

const simpleEscapes: Record<string, number> = {
  a: 7,
  b: 8,
  f: 12,
  n: 10,
  r: 13,
  t: 9,
  v: 11,
  '\\': 92,
  '"': 34,
  "'": 39,
};

/** Go's strconv.Unquote of a double-quoted string, as bytes (\xff is one byte, as in Go). */
export function goUnquote(quoted: string): Buffer {
  if (quoted.length < 2 || !quoted.startsWith('"') || !quoted.endsWith('"'))
    throw new ClientInputError(`not a quoted string: ${quoted}`);
  const body = quoted.slice(1, -1);
  const parts: Buffer[] = [];
  let literal = '';
  const flush = (): void => {
    if (literal !== '') parts.push(utf8(literal));
    literal = '';
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      literal += c;
      continue;
    }
    const e = body[i + 1];
    if (e === undefined) throw new ClientInputError(`bad escape at the end of ${quoted}`);
    const simple = simpleEscapes[e];
    const hexOf = (n: number): number => {
      const digits = body.slice(i + 2, i + 2 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(digits))
        throw new ClientInputError(`bad \\${e} escape in ${quoted}`);
      i += 1 + n;
      return parseInt(digits, 16);
    };
    if (simple !== undefined) {
      flush();
      parts.push(Buffer.from([simple]));
      i++;
    } else if (e === 'x') {
      flush();
      parts.push(Buffer.from([hexOf(2)]));
    } else if (e === 'u' || e === 'U') {
      literal += String.fromCodePoint(hexOf(e === 'u' ? 4 : 8));
    } else if (/[0-7]/.test(e)) {
      const digits = body.slice(i + 1, i + 4);
      if (!/^[0-7]{3}$/.test(digits) || parseInt(digits, 8) > 255)
        throw new ClientInputError(`bad octal escape in ${quoted}`);
      flush();
      parts.push(Buffer.from([parseInt(digits, 8)]));
      i += 3;
    } else {
      throw new ClientInputError(`unknown escape \\${e} in ${quoted}`);
    }
  }
  flush();
  return Buffer.concat(parts);
}

/**
 * etcdctl's Argify: a txn request line → its words. "double quoted" words are Go-unquoted,
 * 'single quoted' ones taken as they are, and the rest split on white space.
 */
export function argify(line: string): string[] {
  const words = line.match(/"(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?/g) ?? [];
  return words.map((word) => {
    if (word.startsWith("'")) return word.slice(1, -1);
    if (word.startsWith('"')) return goUnquote(word).toString('utf8');
    return word;
  });
}
