/**
 * A sequential specification: what one object does when operations are applied one at a
 * time. The checker asks whether some order of the history's operations, consistent with
 * real time, is a legal run of the model.
 */
import type { Operation, Value } from './history.js';

export interface Model<S> {
  readonly name: string;
  /** The functions it knows, for help and error messages. */
  readonly functions: readonly string[];
  /** Why an operation is malformed for this model, or undefined when it is well formed. */
  validate(op: Operation): string | undefined;
  /**
   * True when the operation cannot change the state. Such an operation with an unknown
   * outcome constrains nothing and is left out of the search.
   */
  readOnly(op: Operation): boolean;
  initial(): S;
  /**
   * The state after `op` takes effect in `state`, or undefined when it cannot take effect
   * there and return what it returned. `op.output` undefined means the outcome is unknown.
   * Must not mutate `state`: the search backtracks to it.
   */
  step(state: S, op: Operation): S | undefined;
  /** Equal states have equal keys; the search memoises on them. */
  stateKey(state: S): string;
  describeState(state: S): string;
  /** The operation in a few words: "write 3", "read → 4", "cas 3→0 (compare failed)". */
  describeOperation(op: Operation): string;
  /** Why `op` cannot take effect in `state`, in words. Called only when `step` refused. */
  explain(state: S, op: Operation): string;
}

/** Structural equality of JSON values. */
export function sameValue(a: Value | undefined, b: Value | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x: Value, i) => sameValue(x, b[i] as Value));
  }
  return false;
}

export function show(value: Value | undefined): string {
  if (value === undefined) return '?';
  if (value === null) return 'nil';
  return typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value);
}

/**
 * The `[from, to]` pair of a cas, or undefined when the input is not one. It is the input
 * itself, not a copy: the search calls this at every step, and a copy would be garbage.
 */
export function casPair(input: Value): readonly [Value, Value] | undefined {
  return Array.isArray(input) && input.length === 2
    ? (input as unknown as readonly [Value, Value])
    : undefined;
}

/** A cas completion of `false` means the compare found another value (it ran, it changed nothing). */
export function casFailed(op: Operation): boolean {
  return op.output === false;
}
