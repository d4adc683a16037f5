/**
 * A single read/write/compare-and-set register that starts as nil (null).
 * `cas` takes `[from, to]`; an `ok` completion with value `false` means the compare failed.
 */
import type { Operation, Value } from '../history.js';
import type { Model } from '../model.js';
import { casFailed, casPair, sameValue, show } from '../model.js';

function stateKey(state: Value): string {
  return typeof state === 'number' ? `n${state}` : JSON.stringify(state);
}

export const registerModel: Model<Value> = {
  name: 'register',
  functions: ['read', 'write', 'cas'],
  validate(op) {
    switch (op.f) {
      case 'read':
      case 'write':
        return undefined;
      case 'cas':
        return casPair(op.input) === undefined ? 'cas takes [from, to]' : undefined;
      default:
        return `the register model has no function ${JSON.stringify(op.f)} (read, write, cas)`;
    }
  },
  readOnly: (op) => op.f === 'read',
  initial: () => null,
  step(state, op) {
    if (op.f === 'write') return op.input;
    if (op.f === 'read')
      return op.output === undefined || sameValue(state, op.output) ? state : undefined;
    const [from, to] = casPair(op.input)!;
    const matches = sameValue(state, from);
    if (op.output === undefined) return matches ? to : state;
    if (casFailed(op)) return matches ? undefined : state;
    return matches ? to : undefined;
  },
  stateKey,
  describeState: (state) => `the register holds ${show(state)}`,
  describeOperation(op: Operation) {
    if (op.f === 'read') return `read → ${show(op.output)}`;
    if (op.f === 'write') return `write ${show(op.input)}`;
    const [from, to] = casPair(op.input)!;
    return `cas ${show(from)}→${show(to)}${casFailed(op) ? ' (compare failed)' : ''}`;
  },
  explain(state, op) {
    if (op.f === 'read')
      return `it returned ${show(op.output)} but the register holds ${show(state)}`;
    const [from] = casPair(op.input)!;
    return casFailed(op)
      ? `its compare failed, yet the register holds ${show(from)}, the expected value`
      : `it succeeded, yet the register holds ${show(state)}, not ${show(from)}`;
  },
};
