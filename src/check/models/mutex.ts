/**
 * A mutex with fencing tokens. `acquire` returns a token (an integer; nil when the lock
 * service issues none); `release` gives the lock back and may name its token. Legal runs:
 * at most one holder at a time, only the holder releases, and every token is greater than
 * every token issued before it.
 */
import type { Operation, ProcessId, Value } from '../history.js';
import type { Model } from '../model.js';
import { show } from '../model.js';

interface MutexState {
  /** The process holding the lock, or null when it is free. */
  readonly holder: ProcessId | null;
  /** The holder's token, when known. */
  readonly token: number | null;
  /** The greatest token issued so far; tokens must rise above it. */
  readonly tokenMax: number;
}

function token(value: Value | undefined): number | null {
  return typeof value === 'number' ? value : null;
}

export const mutexModel: Model<MutexState> = {
  name: 'mutex',
  functions: ['acquire', 'release'],
  validate(op) {
    if (op.f !== 'acquire' && op.f !== 'release') {
      return `the mutex model has no function ${JSON.stringify(op.f)} (acquire, release)`;
    }
    const value = op.f === 'acquire' ? op.output : op.input;
    if (value === undefined || value === null || Number.isSafeInteger(value)) return undefined;
    return `${op.f} carries an integer fencing token or nil`;
  },
  readOnly: () => false,
  initial: () => ({ holder: null, token: null, tokenMax: -Infinity }),
  step(state, op) {
    if (op.f === 'acquire') {
      if (state.holder !== null) return op.output === undefined ? state : undefined;
      const issued = token(op.output);
      if (issued !== null && issued <= state.tokenMax) return undefined;
      return { holder: op.process, token: issued, tokenMax: issued ?? state.tokenMax };
    }
    const named = token(op.input);
    const mine =
      state.holder === op.process &&
      (named === null || state.token === null || named === state.token);
    if (!mine) return op.output === undefined ? state : undefined;
    return { holder: null, token: null, tokenMax: state.tokenMax };
  },
  stateKey: (state) => `${JSON.stringify(state.holder)}|${state.token}|${state.tokenMax}`,
  describeState: (state) =>
    state.holder === null
      ? `the lock is free${state.tokenMax > -Infinity ? ` (last token ${state.tokenMax})` : ''}`
      : `process ${String(state.holder)} holds the lock${state.token === null ? '' : ` with token ${state.token}`}`,
  describeOperation: (op: Operation) =>
    op.f === 'acquire'
      ? `acquire → token ${show(op.output)}`
      : `release${op.input === null ? '' : ` token ${show(op.input)}`}`,
  explain(state, op) {
    if (op.f === 'acquire') {
      if (state.holder !== null)
        return `process ${String(state.holder)} still holds the lock: two holders at once`;
      return `its token ${show(op.output)} does not rise above ${state.tokenMax}, already issued`;
    }
    if (state.holder === null) return 'the lock is not held';
    return state.holder === op.process
      ? `it names token ${show(op.input)} but the lock was granted with ${String(state.token)}`
      : `process ${String(state.holder)} holds the lock, not process ${String(op.process)}`;
  },
};
