/**
 * History parsers: Chorus's own JSONL, Jepsen's etcd register logs and Porcupine's multi-key
 * kv logs. Parsers take text, never files (reading files is the CLI's job), validate every
 * line and reject bad input with `source:line: reason`.
 */
import { assertNever } from '../core/assert.js';
import { historyLineCharsMax } from './constants.js';
import type { EventType, History, HistoryEvent, ProcessId, Value } from './history.js';
import { badInput } from './history.js';

export const historyFormats = ['jsonl', 'jepsen-etcd', 'porcupine-kv'] as const;
export type HistoryFormat = (typeof historyFormats)[number];

export function parseHistory(text: string, format: HistoryFormat, source: string): History {
  switch (format) {
    case 'jsonl':
      return parseJsonl(text, source);
    case 'jepsen-etcd':
      return parseJepsenEtcd(text, source);
    case 'porcupine-kv':
      return parsePorcupineKv(text, source);
    default:
      return assertNever(format, 'history format');
  }
}

const eventTypes: ReadonlySet<string> = new Set<EventType>(['invoke', 'ok', 'fail', 'info']);

function lines(text: string, source: string): string[] {
  const result = text.split('\n');
  for (let i = 0; i < result.length; i++) {
    if (result[i]!.length > historyLineCharsMax) {
      throw badInput(source, i + 1, `line longer than ${historyLineCharsMax} characters`);
    }
  }
  return result;
}

function isValue(value: unknown, depth = 0): value is Value {
  if (depth > 32) return false;
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return true;
  if (typeof value === 'number') return Number.isFinite(value);
  return Array.isArray(value) && value.every((v) => isValue(v, depth + 1));
}

/**
 * JSONL: one object per line, `{process, type, f, key?, value, time?, index?}`. Blank lines
 * are skipped. Times are used when every event has one; otherwise time is the position.
 */
export function parseJsonl(text: string, source: string): History {
  const events: HistoryEvent[] = [];
  let allTimed = true;
  const all = lines(text, source);
  for (let i = 0; i < all.length; i++) {
    const raw = all[i]!.trim();
    if (raw === '') continue;
    const line = i + 1;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (cause) {
      throw badInput(
        source,
        line,
        `not JSON (${cause instanceof Error ? cause.message : String(cause)})`,
      );
    }
    const event = jsonlEvent(parsed, source, line, events.length);
    if (event.time < 0) allTimed = false;
    events.push(event);
  }
  if (!allTimed) for (const e of events) e.time = e.index;
  for (let i = 1; i < events.length; i++) {
    if (events[i]!.time < events[i - 1]!.time) {
      throw badInput(
        source,
        events[i]!.line,
        `time ${events[i]!.time} goes backwards (the previous event is at ${events[i - 1]!.time})`,
      );
    }
  }
  return { source, timeUnit: allTimed ? 'ns' : 'event', events };
}

function jsonlEvent(parsed: unknown, source: string, line: number, index: number): HistoryEvent {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw badInput(source, line, 'expected a JSON object {process, type, f, value}');
  }
  const o = parsed as Record<string, unknown>;
  const process = o['process'];
  if (!(typeof process === 'string' && process !== '') && !Number.isSafeInteger(process)) {
    throw badInput(source, line, 'process must be an integer or a non-empty string');
  }
  const type = o['type'];
  if (typeof type !== 'string' || !eventTypes.has(type)) {
    throw badInput(
      source,
      line,
      `type must be one of invoke, ok, fail, info (got ${JSON.stringify(type)})`,
    );
  }
  const f = o['f'];
  if (typeof f !== 'string' || f === '')
    throw badInput(source, line, 'f must be a non-empty string');
  const key = o['key'];
  if (key !== undefined && key !== null && typeof key !== 'string' && !Number.isSafeInteger(key)) {
    throw badInput(source, line, 'key must be a string or an integer');
  }
  const value = o['value'] === undefined ? null : o['value'];
  if (!isValue(value))
    throw badInput(
      source,
      line,
      'value must be JSON null, a boolean, a finite number, a string or a list',
    );
  const time = o['time'];
  if (time !== undefined && (typeof time !== 'number' || !Number.isFinite(time) || time < 0)) {
    throw badInput(source, line, 'time must be a non-negative number');
  }
  return {
    process: process as ProcessId,
    type: type as EventType,
    f,
    ...(typeof key === 'string' || typeof key === 'number' ? { key: String(key) } : {}),
    value,
    time: time === undefined ? -1 : time,
    index,
    line,
  };
}

/**
 * Jepsen etcd logs (2014): `INFO  jepsen.util - <proc>\t:<type>\t:<f>\t<value>`. Every other
 * line is noise. `:fail :cas` means the compare found another value: the cas ran and
 * observed that, so it becomes an `ok` cas whose value is `false`. A timed-out read and an
 * `:info` are indeterminate.
 */
export function parseJepsenEtcd(text: string, source: string): History {
  const events: HistoryEvent[] = [];
  const all = lines(text, source);
  const marker = 'jepsen.util - ';
  for (let i = 0; i < all.length; i++) {
    const raw = all[i]!;
    const at = raw.indexOf(marker);
    if (at < 0) continue;
    const line = i + 1;
    // Fields are tab-separated in most logs and space-separated in a few; a cas value has a space.
    const fields = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S.*?)\s*$/.exec(raw.slice(at + marker.length));
    if (fields === null) {
      throw badInput(
        source,
        line,
        'expected "<process> :<type> :<f> <value>" after "jepsen.util - "',
      );
    }
    const [, procText, typeText, fText, valueText] = fields as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    if (!/^\d{1,9}$/.test(procText))
      throw badInput(source, line, `process ${JSON.stringify(procText)} is not an integer`);
    const type = typeText.startsWith(':') ? typeText.slice(1) : '';
    if (!eventTypes.has(type))
      throw badInput(
        source,
        line,
        `type ${JSON.stringify(typeText)} is not :invoke, :ok, :fail or :info`,
      );
    const f = fText.startsWith(':') ? fText.slice(1) : '';
    if (f !== 'read' && f !== 'write' && f !== 'cas') {
      throw badInput(
        source,
        line,
        `function ${JSON.stringify(fText)} is not :read, :write or :cas`,
      );
    }
    const event = etcdEvent(Number(procText), type as EventType, f, valueText, source, line);
    events.push({
      process: event.process,
      type: event.type,
      f: event.f,
      value: event.value,
      index: events.length,
      time: events.length,
      line,
    });
  }
  if (events.length === 0)
    throw badInput(source, undefined, 'no "jepsen.util - " operation lines found');
  return { source, timeUnit: 'event', events };
}

function etcdEvent(
  process: number,
  type: EventType,
  f: 'read' | 'write' | 'cas',
  valueText: string,
  source: string,
  line: number,
): Pick<HistoryEvent, 'process' | 'type' | 'f' | 'value'> {
  if (valueText === ':timed-out') {
    if (type === 'invoke' || type === 'ok')
      throw badInput(source, line, `:${type} cannot be :timed-out`);
    return { process, type: 'info', f, value: null };
  }
  if (f === 'cas') {
    const match = /^\[(-?\d{1,15}) (-?\d{1,15})\]$/.exec(valueText);
    if (match === null)
      throw badInput(source, line, `cas value ${JSON.stringify(valueText)} is not [<from> <to>]`);
    const pair: Value = [Number(match[1]), Number(match[2])];
    if (type === 'fail') return { process, type: 'ok', f, value: false };
    return { process, type, f, value: type === 'ok' ? true : pair };
  }
  if (valueText === 'nil') {
    if (f === 'write') throw badInput(source, line, 'write of nil');
    return { process, type, f, value: null };
  }
  if (!/^-?\d{1,15}$/.test(valueText))
    throw badInput(source, line, `value ${JSON.stringify(valueText)} is not nil or an integer`);
  if (f === 'read' && type === 'invoke') throw badInput(source, line, 'a read is invoked with nil');
  return { process, type, f, value: Number(valueText) };
}

/**
 * Porcupine kv logs: one EDN map per line,
 * `{:process 0, :type :invoke, :f :get|:put|:append, :key "k", :value nil|"v"}`.
 */
export function parsePorcupineKv(text: string, source: string): History {
  const events: HistoryEvent[] = [];
  const all = lines(text, source);
  for (let i = 0; i < all.length; i++) {
    const raw = all[i]!.trim();
    if (raw === '') continue;
    const line = i + 1;
    const map = parseEdnMap(raw, source, line);
    const process = map.get('process');
    if (typeof process !== 'number' || !Number.isSafeInteger(process))
      throw badInput(source, line, ':process must be an integer');
    const type = map.get('type');
    if (typeof type !== 'object' || type === null || !eventTypes.has(type.keyword)) {
      throw badInput(source, line, ':type must be :invoke, :ok, :fail or :info');
    }
    const f = map.get('f');
    if (typeof f !== 'object' || f === null || !['get', 'put', 'append'].includes(f.keyword)) {
      throw badInput(source, line, ':f must be :get, :put or :append');
    }
    const key = map.get('key');
    if (typeof key !== 'string') throw badInput(source, line, ':key must be a string');
    const value = map.get('value');
    if (value !== null && typeof value !== 'string')
      throw badInput(source, line, ':value must be nil or a string');
    events.push({
      process,
      type: type.keyword as EventType,
      f: f.keyword,
      key,
      value,
      time: events.length,
      index: events.length,
      line,
    });
  }
  return { source, timeUnit: 'event', events };
}

type EdnValue = null | number | string | { keyword: string };

/** The flat subset of EDN these logs use: keyword keys; nil, integers, strings and keywords. */
function parseEdnMap(raw: string, source: string, line: number): Map<string, EdnValue> {
  const fail = (reason: string): never => {
    throw badInput(source, line, reason);
  };
  if (!raw.startsWith('{') || !raw.endsWith('}')) fail('expected an EDN map {:key value, ...}');
  const map = new Map<string, EdnValue>();
  const body = raw.slice(1, -1);
  let i = 0;
  const skip = (): void => {
    while (i < body.length && (body[i] === ' ' || body[i] === ',' || body[i] === '\t')) i++;
  };
  const keyword = (): string => {
    const match = /^:([A-Za-z][\w.*+!?-]*)/.exec(body.slice(i));
    if (match === null) return fail(`expected a keyword at column ${i + 2}`);
    i += match[0].length;
    return match[1]!;
  };
  for (skip(); i < body.length; skip()) {
    const name = keyword();
    skip();
    if (i >= body.length) fail(`:${name} has no value`);
    let value: EdnValue;
    const c = body[i]!;
    if (c === '"') {
      const match = /^"((?:[^"\\]|\\.)*)"/.exec(body.slice(i));
      if (match === null) return fail(`unterminated string at column ${i + 2}`);
      value = match[1]!.replace(/\\(.)/g, (_, e: string) =>
        e === 'n' ? '\n' : e === 't' ? '\t' : e,
      );
      i += match[0].length;
    } else if (c === ':') {
      value = { keyword: keyword() };
    } else {
      const match = /^(nil|-?\d{1,15})(?=[\s,]|$)/.exec(body.slice(i));
      if (match === null) return fail(`unexpected value at column ${i + 2}`);
      value = match[1] === 'nil' ? null : Number(match[1]);
      i += match[0].length;
    }
    if (map.has(name)) fail(`:${name} appears twice`);
    map.set(name, value);
  }
  return map;
}
