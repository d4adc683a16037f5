/**
 * The msgpack codec of every message and record (msgpackr, a well-kept library).
 * Records are plain objects; `undefined` fields are not written.
 */
import { Packr } from 'msgpackr';
import { joinedBytes, sliceBytes, type ByteSource } from './bytes.js';
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

/**
 * Reads msgpack values one after another from bytes in one buffer or in pieces, without
 * joining them: the framing of a large nested snapshot (an array or map header, a bin's
 * extent) is read where it lies, each bin comes back as a slice of the source, and only a
 * value decoded whole is copied (when it spans pieces). Malformed or truncated input is a
 * BadInputError naming the offset.
 */
export class MsgpackReader {
  private at = 0;
  private readonly end: number;

  constructor(
    private readonly source: ByteSource,
    private readonly what = 'msgpack',
  ) {
    this.end = source.length;
  }

  /** Whether every byte has been read. */
  done(): boolean {
    return this.at >= this.end;
  }

  /** The next value's array header: how many items follow. */
  arrayHeader(): number {
    return this.header('array', 'an array');
  }

  /** The next value's map header: how many key–value pairs follow. */
  mapHeader(): number {
    return this.header('map', 'a map');
  }

  private header(want: string, named: string): number {
    const [kind, count, size] = this.head(this.at);
    if (kind !== want) return this.bad(`expected ${named}, found ${kind}`);
    this.at += size;
    return count;
  }

  /** Whether the next value is a map (read nothing). */
  atMap(): boolean {
    return this.head(this.at)[0] === 'map';
  }

  /** The next value, a bin: its bytes as a slice of the source (nothing copied). */
  binary(): ByteSource {
    const [kind, length, size] = this.head(this.at);
    if (kind !== 'bin') return this.bad(`expected a bin, found ${kind}`);
    const start = this.at + size;
    this.need(start + length);
    this.at = start + length;
    return sliceBytes(this.source, start, start + length);
  }

  /** The next value, decoded. */
  value(): unknown {
    const start = this.at;
    const end = this.skip(start);
    this.at = end;
    return decode(joinedBytes(sliceBytes(this.source, start, end)));
  }

  /** The offset just past the value at `at` (its items too, for an array or a map). */
  private skip(at: number): number {
    let pending = 1;
    while (pending > 0) {
      const [kind, n, size] = this.head(at);
      pending--;
      at += size;
      if (kind === 'array') pending += n;
      else if (kind === 'map') pending += 2 * n;
      else at += n;
      this.need(at);
    }
    return at;
  }

  /**
   * The header at `at`: its kind, then for an array or map the item count and for any other
   * value the bytes after the header (payload); and the header's own size.
   */
  private head(at: number): [kind: string, n: number, size: number] {
    this.need(at + 1);
    const b = joinedBytes(sliceBytes(this.source, at, Math.min(at + 9, this.end)));
    const c = b[0]!;
    const uint = (width: number): number => {
      if (b.length < 1 + width) return this.bad('truncated header');
      let n = 0;
      for (let i = 1; i <= width; i++) n = n * 256 + b[i]!;
      return n;
    };
    // A length of 1 << (c - first) bytes (2 << for arrays and maps) follows the code.
    const sized = (kind: string, first: number, unit: number): [string, number, number] => {
      const width = unit << (c - first);
      return [kind, uint(width), 1 + width];
    };
    if (c <= 0x7f || c >= 0xe0) return ['int', 0, 1];
    if (c <= 0x8f) return ['map', c & 0x0f, 1];
    if (c <= 0x9f) return ['array', c & 0x0f, 1];
    if (c <= 0xbf) return ['str', c & 0x1f, 1];
    if (c === 0xc0) return ['nil', 0, 1];
    if (c === 0xc2 || c === 0xc3) return ['bool', 0, 1];
    if (c >= 0xc4 && c <= 0xc6) return sized('bin', 0xc4, 1);
    if (c >= 0xc7 && c <= 0xc9) {
      const [, length, size] = sized('ext', 0xc7, 1);
      return ['ext', length + 1, size]; // the type byte, then the data
    }
    if (c === 0xca || c === 0xcb) return ['float', c === 0xca ? 4 : 8, 1];
    if (c >= 0xcc && c <= 0xcf) return ['int', 1 << (c - 0xcc), 1];
    if (c >= 0xd0 && c <= 0xd3) return ['int', 1 << (c - 0xd0), 1];
    if (c >= 0xd4 && c <= 0xd8) return ['ext', 1 + (1 << (c - 0xd4)), 1];
    if (c >= 0xd9 && c <= 0xdb) return sized('str', 0xd9, 1);
    if (c >= 0xdc && c <= 0xdd) return sized('array', 0xdc, 2);
    if (c >= 0xde) return sized('map', 0xde, 2);
    return this.bad(`byte 0x${c.toString(16)} begins no value`);
  }

  private need(end: number): void {
    if (end > this.end) this.bad('truncated');
  }

  private bad(problem: string): never {
    throw new BadInputError(`${this.what}: ${problem} at byte ${this.at}`);
  }
}
