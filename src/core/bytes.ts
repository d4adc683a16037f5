/** Small byte helpers shared by framing, the WAL and protocols: little-endian u32 and joins. */

export function writeU32(target: Uint8Array, offset: number, value: number): void {
  target[offset] = value & 0xff;
  target[offset + 1] = (value >>> 8) & 0xff;
  target[offset + 2] = (value >>> 16) & 0xff;
  target[offset + 3] = value >>> 24;
}

export function readU32(source: Uint8Array, offset: number): number {
  return (
    (source[offset]! |
      (source[offset + 1]! << 8) |
      (source[offset + 2]! << 16) |
      (source[offset + 3]! << 24)) >>>
    0
  );
}

/** One array holding `parts` in order (the part itself when there is only one). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let length = 0;
  for (const part of parts) length += part.length;
  const result = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    result.set(part, offset);
    offset += part.length;
  }
  return result;
}

/**
 * Copies `pieces` in order into `target` from `at`, at most `budget` bytes per call of the
 * returned function, which answers how many bytes that call copied (0 once all are).
 */
export function copierInSteps(
  pieces: readonly Uint8Array[],
  target: Uint8Array,
  at: number,
): (budget: number) => number {
  let piece = 0;
  let offset = 0; // within pieces[piece]
  return (budget) => {
    let copied = 0;
    while (copied < budget && piece < pieces.length) {
      const source = pieces[piece]!;
      const take = Math.min(budget - copied, source.length - offset);
      target.set(source.subarray(offset, offset + take), at);
      at += take;
      offset += take;
      copied += take;
      if (offset === source.length) {
        piece++;
        offset = 0;
      }
    }
    return copied;
  };
}

/**
 * Joins pieces into one buffer, at most `budget` bytes per call; the buffer once whole. A
 * single piece is the buffer itself.
 */
export function joinInSteps(
  pieces: readonly Uint8Array[],
): (budget: number) => Uint8Array | undefined {
  if (pieces.length === 1) return () => pieces[0];
  let length = 0;
  for (const piece of pieces) length += piece.length;
  const joined = new Uint8Array(length);
  const copy = copierInSteps(pieces, joined, 0);
  let at = 0;
  return (budget) => {
    at += copy(budget);
    return at === length ? joined : undefined;
  };
}

/**
 * Bytes held as the pieces they were made in, never joined: a periodic snapshot's data (a
 * 240 MB buffer allocated in one go made V8 run a full, non-incremental collection of the
 * whole heap, 0.4–0.6 s on every member at once). Read by ranges, like a Uint8Array.
 */
export class Pieces {
  readonly length: number;
  /** Offset of each piece's first byte. */
  private readonly starts: number[] = [];

  constructor(readonly pieces: readonly Uint8Array[]) {
    let length = 0;
    for (const piece of pieces) {
      this.starts.push(length);
      length += piece.length;
    }
    this.length = length;
  }

  /** Bytes [start, end): a view when they lie in one piece, a copy when they span several. */
  subarray(start = 0, end = this.length): Uint8Array {
    start = Math.max(0, Math.min(start, this.length));
    end = Math.max(start, Math.min(end, this.length));
    if (start === end) return new Uint8Array(0);
    let i = this.pieceAt(start);
    const first = this.pieces[i]!;
    const from = start - this.starts[i]!;
    if (end - this.starts[i]! <= first.length) return first.subarray(from, end - this.starts[i]!);
    const result = new Uint8Array(end - start);
    let at = 0;
    for (let offset = from; at < result.length; i++, offset = 0) {
      const piece = this.pieces[i]!;
      const take = Math.min(piece.length - offset, result.length - at);
      result.set(piece.subarray(offset, offset + take), at);
      at += take;
    }
    return result;
  }

  /** Bytes [start, end) as pieces that are views of these: nothing is copied. */
  slice(start = 0, end = this.length): Pieces {
    start = Math.max(0, Math.min(start, this.length));
    end = Math.max(start, Math.min(end, this.length));
    if (start === end) return new Pieces([]);
    const views: Uint8Array[] = [];
    for (let i = this.pieceAt(start); i < this.pieces.length && this.starts[i]! < end; i++) {
      const from = Math.max(start - this.starts[i]!, 0);
      const to = Math.min(end - this.starts[i]!, this.pieces[i]!.length);
      if (to > from) views.push(this.pieces[i]!.subarray(from, to));
    }
    return new Pieces(views);
  }

  /** The index of the piece holding byte `offset` (< length): the last start at or below it. */
  private pieceAt(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    // Empty pieces share a start with the next one: skip to the one that holds the byte.
    while (this.pieces[lo]!.length === 0) lo++;
    return lo;
  }
}

/** Bytes in one buffer or in pieces. */
export type ByteSource = Uint8Array | Pieces;

/** The bytes as one buffer (joined, when in pieces). */
export function joinedBytes(source: ByteSource): Uint8Array {
  return source instanceof Pieces ? concatBytes(source.pieces) : source;
}

/** Bytes [start, end) of the source, copying nothing (a view, or pieces of views). */
export function sliceBytes(source: ByteSource, start: number, end: number): ByteSource {
  return source instanceof Pieces ? source.slice(start, end) : source.subarray(start, end);
}

/** The bytes as a list of pieces. */
export function piecesOf(source: ByteSource): readonly Uint8Array[] {
  return source instanceof Pieces ? source.pieces : [source];
}
