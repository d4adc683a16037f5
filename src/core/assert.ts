/**
 * Assertions that stay on in production. A failed assertion is a bug in Chorus, never an
 * operating error: it throws AssertionError and the process is expected to crash loudly.
 */

export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === 'string' ? message : message());
  }
}

/** Ends an exhaustive switch: the compiler proves this is unreachable. */
export function assertNever(value: never, what = 'value'): never {
  throw new AssertionError(`unexpected ${what}: ${JSON.stringify(value)}`);
}

export function assertInteger(value: number, what: string): void {
  assert(Number.isSafeInteger(value), () => `${what} must be a safe integer, got ${value}`);
}
