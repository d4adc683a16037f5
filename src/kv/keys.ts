/** Byte-string keys: order and ranges as etcd defines them. */
import type { Bytes } from './types.js';

export function compareBytes(a: Bytes, b: Bytes): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** rangeEnd = [0] means "every key from `key` on". */
export const isFromKey = (rangeEnd: Bytes): boolean => rangeEnd.length === 1 && rangeEnd[0] === 0;

/** Whether `key` is in [start, rangeEnd), with etcd's from-key convention. */
export function inRange(key: Bytes, start: Bytes, rangeEnd: Bytes): boolean {
  if (compareBytes(key, start) < 0) return false;
  return isFromKey(rangeEnd) || compareBytes(key, rangeEnd) < 0;
}

/** The range end that selects every key with this prefix (etcd's GetPrefixRangeEnd). */
export function prefixEnd(prefix: Bytes): Bytes {
  const end = Uint8Array.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return new Uint8Array([0]);
}
