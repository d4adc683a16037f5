/**
 * A FIFO queue: `enqueue` a value, `dequeue` returns the oldest one, or nil when empty
 * (so nil cannot be enqueued).
 */
import type { Operation, Value } from '../history.js';
import type { Model } from '../model.js';
import { sameValue, show } from '../model.js';

type QueueState = readonly Value[];

export const queueModel: Model<QueueState> = {
  name: 'queue',
  functions: ['enqueue', 'dequeue'],
  validate(op) {
    if (op.f === 'enqueue')
      return op.input === null
        ? 'nil cannot be enqueued (a dequeue of nil means empty)'
        : undefined;
    if (op.f === 'dequeue') return undefined;
    return `the queue model has no function ${JSON.stringify(op.f)} (enqueue, dequeue)`;
  },
  readOnly: () => false,
  initial: () => [],
  step(state, op) {
    if (op.f === 'enqueue') return [...state, op.input];
    if (op.output === undefined) return state.length === 0 ? state : state.slice(1);
    if (op.output === null) return state.length === 0 ? state : undefined;
    return state.length > 0 && sameValue(state[0], op.output) ? state.slice(1) : undefined;
  },
  stateKey: (state) => JSON.stringify(state),
  describeState: (state) => `the queue holds [${state.map(show).join(', ')}] (oldest first)`,
  describeOperation: (op: Operation) =>
    op.f === 'enqueue' ? `enqueue ${show(op.input)}` : `dequeue → ${show(op.output)}`,
  explain(state, op) {
    if (state.length === 0) return `it returned ${show(op.output)} but the queue is empty`;
    return op.output === null
      ? `it found the queue empty, but it holds ${state.length} value(s)`
      : `it returned ${show(op.output)} but the oldest value is ${show(state[0])}`;
  },
};
