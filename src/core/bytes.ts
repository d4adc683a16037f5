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
