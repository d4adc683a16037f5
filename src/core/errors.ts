/**
 * Typed errors. Expected conditions (bad input, a full queue, a lost peer) are named
 * subclasses of ChorusError with a stable `code`; they chain the underlying `cause`.
 */

/** Every error code; the RPC layer carries exactly these across the wire. */
export const errorCodes = [
  'bad-input',
  'frame-too-large',
  'checksum-mismatch',
  'timeout',
  'cancelled',
  'unreachable',
  'queue-full',
  'closed',
  'disk-io',
  'disk-full',
  'not-found',
  'fatal',
  'proposal-dropped',
  'not-leader',
  'no-leader',
  'storage-corrupt',
  'kv',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

export class ChorusError extends Error {
  override name = 'ChorusError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** An expected failure passes through; anything else is a bug, so it is thrown again. */
export function asChorusError(error: unknown): ChorusError {
  if (error instanceof ChorusError) return error;
  throw error;
}

export class BadInputError extends ChorusError {
  override name = 'BadInputError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('bad-input', message, options);
  }
}

export class TimeoutError extends ChorusError {
  override name = 'TimeoutError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('timeout', message, options);
  }
}

export class CancelledError extends ChorusError {
  override name = 'CancelledError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('cancelled', message, options);
  }
}

export class DiskError extends ChorusError {
  override name = 'DiskError';
  constructor(
    code: 'disk-io' | 'disk-full' | 'not-found',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** Renders an error and every `cause` below it on one line each, for logs. */
export function describeError(error: unknown): string {
  const lines: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 8; depth++) {
    if (current instanceof Error) {
      lines.push(`${current.name}: ${current.message}`);
      current = current.cause;
    } else {
      lines.push(typeof current === 'string' ? current : JSON.stringify(current));
      current = undefined;
    }
  }
  return lines.join('\n  caused by ');
}

/**
 * The process must stop now (for example an fsync failed, so the page cache can no longer
 * be trusted). A real process exits; the simulator turns it into a crash of that node.
 */
export class FatalError extends ChorusError {
  override name = 'FatalError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('fatal', message, options);
  }
}
