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

/**
 * An item of `msgpackArray`: a value to encode, or a binary already in pieces (written as
 * one msgpack bin whose bytes are the pieces in order, without copying them).
 */
export type MsgpackItem = { value: unknown } | { binary: readonly Uint8Array[] };

/**
 * A msgpack array as pieces whose concatenation `decode` reads as the array of the items
 * (each binary as one Uint8Array). Large nested snapshots are framed this way so that no
 * layer copies the layer inside it; the one copy is whoever joins the pieces.
 */
export function msgpackArray(items: readonly MsgpackItem[]): Uint8Array[] {
  const pieces: Uint8Array[] = [msgpackHeader(items.length, [0x90, 16], 0xdc, 0xdd)];
  for (const item of items) {
    if ('value' in item) {
      pieces.push(encode(item.value));
      continue;
    }
    pieces.push(msgpackBinHeader(piecesLength(item.binary)));
    pieces.push(...item.binary);
  }
  return pieces;
}

/** The header of a msgpack bin of `length` bytes, in its shortest form (as msgpackr writes it). */
export function msgpackBinHeader(length: number): Uint8Array {
  return msgpackHeader(length, [0xc4, 0x100], 0xc5, 0xc6);
}

/** The header of a msgpack map of `count` entries (the keys and values follow it). */
export function msgpackMapHeader(count: number): Uint8Array {
  return msgpackHeader(count, [0x80, 16], 0xde, 0xdf);
}

export function piecesLength(pieces: readonly Uint8Array[]): number {
  let length = 0;
  for (const piece of pieces) length += piece.length;
  return length;
}

/**
 * A msgpack length header: the short form [code, limit] (a fix-type ORs the length into its
 * code when limit is 16; bin8 follows with one byte when limit is 256), else the 16- or
 * 32-bit form.
 */
function msgpackHeader(
  length: number,
  [shortCode, shortLimit]: [number, number],
  code16: number,
  code32: number,
): Uint8Array {
  if (length < shortLimit)
    return shortLimit === 16 ? Uint8Array.of(shortCode | length) : Uint8Array.of(shortCode, length);
  if (length < 0x10000) return Uint8Array.of(code16, length >>> 8, length & 0xff);
  return Uint8Array.of(
    code32,
    length >>> 24,
    (length >>> 16) & 0xff,
    (length >>> 8) & 0xff,
    length & 0xff,
  );
}
