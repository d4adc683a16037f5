/** Helpers for tests of what msgpack carries. */

/** msgpackr reads bytes as Buffers: a value with every byte array as a plain Uint8Array. */
export function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}
