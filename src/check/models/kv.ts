/**
 * A map of string keys to string values, checked one key at a time (the checker partitions
 * by key). A missing key reads as "". `append` concatenates onto the current value; `cas`
 * takes `[from, to]` and an `ok` completion of `false` means the compare failed.
 */
import type { Operation, Value } from '../history.js';
import type { Model } from '../model.js';
import { casFailed, casPair, show } from '../model.js';

function text(value: Value | undefined): string | undefined {
  if (value === null) return '';
  return typeof value === 'string' ? value : undefined;
}

export const kvModel: Model<string> = {
  name: 'kv',
  functions: ['get', 'put', 'append', 'delete', 'cas'],
  validate(op) {
    if (op.key === undefined) return 'every kv operation needs a key';
    switch (op.f) {
      case 'get':
      case 'delete':
        return undefined;
      case 'put':
      case 'append':
        return typeof op.input === 'string' ? undefined : `${op.f} takes a string value`;
      case 'cas': {
        const pair = casPair(op.input);
        return pair !== undefined && text(pair[0]) !== undefined && typeof pair[1] === 'string'
          ? undefined
          : 'cas takes [from, to] strings';
      }
      default:
        return `the kv model has no function ${JSON.stringify(op.f)} (get, put, append, delete, cas)`;
    }
  },
  readOnly: (op) => op.f === 'get',
  initial: () => '',
  step(state, op) {
    switch (op.f) {
      case 'get':
        return op.output === undefined || text(op.output) === state ? state : undefined;
      case 'put':
        return op.input as string;
      case 'append':
        return state + (op.input as string);
      case 'delete':
        return '';
      default: {
        const [from, to] = casPair(op.input)!;
        const matches = text(from) === state;
        if (op.output === undefined) return matches ? (to as string) : state;
        if (casFailed(op)) return matches ? undefined : state;
        return matches ? (to as string) : undefined;
      }
    }
  },
  stateKey: (state) => state,
  describeState: (state) => `the key holds ${JSON.stringify(state)}`,
  describeOperation(op: Operation) {
    const key = `[${JSON.stringify(op.key)}]`;
    switch (op.f) {
      case 'get':
        return `get${key} → ${show(op.output)}`;
      case 'delete':
        return `delete${key}`;
      case 'cas': {
        const [from, to] = casPair(op.input)!;
        return `cas${key} ${show(from)}→${show(to)}${casFailed(op) ? ' (compare failed)' : ''}`;
      }
      default:
        return `${op.f}${key} ${show(op.input)}`;
    }
  },
  explain(state, op) {
    if (op.f === 'get')
      return `it returned ${show(op.output)} but the key holds ${JSON.stringify(state)}`;
    const [from] = casPair(op.input)!;
    return casFailed(op)
      ? `its compare failed, yet the key holds ${show(from)}, the expected value`
      : `it succeeded, yet the key holds ${JSON.stringify(state)}, not ${show(from)}`;
  },
};
