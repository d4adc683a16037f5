/**
 * A grow-only set: `add` one element, `read` returns every element (a list, any order).
 * The state is the sorted list of the elements' JSON encodings, so equal sets have equal keys.
 */
import type { Operation, Value } from '../history.js';
import type { Model } from '../model.js';
import { show } from '../model.js';

type SetState = readonly string[];

function isScalar(value: Value): boolean {
  return value === null || typeof value !== 'object';
}

function sortedKeys(values: readonly Value[]): string[] {
  return [...new Set(values.map((v) => JSON.stringify(v)))].sort();
}

function sameSet(state: SetState, output: Value): boolean {
  if (!Array.isArray(output)) return false;
  const read = sortedKeys(output);
  return read.length === state.length && read.every((k, i) => k === state[i]);
}

export const setModel: Model<SetState> = {
  name: 'set',
  functions: ['add', 'read'],
  validate(op) {
    if (op.f === 'add') return isScalar(op.input) ? undefined : 'add takes one scalar element';
    if (op.f === 'read') {
      return op.output === undefined || (Array.isArray(op.output) && op.output.every(isScalar))
        ? undefined
        : 'a read returns a list of scalar elements';
    }
    return `the set model has no function ${JSON.stringify(op.f)} (add, read)`;
  },
  readOnly: (op) => op.f === 'read',
  initial: () => [],
  step(state, op) {
    if (op.f === 'read')
      return op.output === undefined || sameSet(state, op.output) ? state : undefined;
    const element = JSON.stringify(op.input);
    if (state.includes(element)) return state;
    return [...state, element].sort();
  },
  stateKey: (state) => state.join('\u0001'),
  describeState: (state) => `the set holds {${state.join(', ')}}`,
  describeOperation: (op: Operation) =>
    op.f === 'add'
      ? `add ${show(op.input)}`
      : `read → {${Array.isArray(op.output) ? op.output.map(show).join(', ') : '?'}}`,
  explain(state, op) {
    const read = Array.isArray(op.output) ? sortedKeys(op.output) : [];
    const missing = state.filter((k) => !read.includes(k));
    const extra = read.filter((k) => !state.includes(k));
    const parts = [
      ...(missing.length > 0 ? [`it misses ${missing.join(', ')}`] : []),
      ...(extra.length > 0 ? [`it has ${extra.join(', ')}, which was not added yet`] : []),
    ];
    return `the read does not match the set {${state.join(', ')}}: ${parts.join('; ')}`;
  },
};
