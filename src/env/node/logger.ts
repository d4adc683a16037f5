/** The process logger: pino, JSON lines on stderr, level from CHORUS_LOG (default info). */
import { pino, type Logger as Pino } from 'pino';
import type { LogFields, Logger } from '../env.js';

class PinoLogger implements Logger {
  constructor(private readonly inner: Pino) {}
  debug(message: string, fields?: LogFields): void {
    this.inner.debug(fields ?? {}, message);
  }
  info(message: string, fields?: LogFields): void {
    this.inner.info(fields ?? {}, message);
  }
  warn(message: string, fields?: LogFields): void {
    this.inner.warn(fields ?? {}, message);
  }
  error(message: string, fields?: LogFields): void {
    this.inner.error(fields ?? {}, message);
  }
  child(fields: LogFields): Logger {
    return new PinoLogger(this.inner.child(fields));
  }
}

export function nodeLogger(
  fields: LogFields = {},
  level = process.env['CHORUS_LOG'] ?? 'info',
): Logger {
  return new PinoLogger(pino({ level, base: fields }, pino.destination(2)));
}
