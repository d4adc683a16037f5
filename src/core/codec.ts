/**
 * The msgpack codec of every message and record (msgpackr, a well-kept library).
 * Records are plain objects; `undefined` fields are not written.
 */
import { Packr } from 'msgpackr';
import { BadInputError } from './errors.js';

const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  int64AsType: 'number',
  mapsAsObjects: true,
});

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decodes untrusted bytes; malformed input is a BadInputError, never a crash. */
export function decode(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch (cause) {
    throw new BadInputError(`malformed msgpack (${bytes.length} bytes)`, { cause });
  }
}
