/**
 * HPACK (RFC 7541), the header compression of HTTP/2: a decoder that keeps the sender's
 * dynamic table, and an encoder that writes literals only. Used by the client port to read
 * a gRPC client's header blocks and to rewrite one of them (see authority.ts); Node's own
 * HPACK lives inside nghttp2 and is not reachable from JavaScript.
 *
 * Names and values are latin1 strings: one character per octet, so any octet string
 * round-trips and a string's length is its size in octets.
 */

export class HpackError extends Error {
  override readonly name = 'HpackError';
}

export interface HeaderField {
  name: string;
  value: string;
  /** Sent as "never indexed" (§6.2.3): an intermediary must re-encode it so too. */
  sensitive: boolean;
}

/** RFC 7541 Appendix A. */
const staticTable: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** The first static index of each name, for the encoder. */
const staticNameIndex = new Map<string, number>();
staticTable.forEach(([name], i) => {
  if (!staticNameIndex.has(name)) staticNameIndex.set(name, i + 1);
});

/**
 * The length in bits of the Huffman code of each symbol 0..256 (256 is EOS), RFC 7541
 * Appendix B. The code is canonical: sorted by (length, symbol), each code is the previous
 * one plus one, shifted left by the growth in length. So the lengths define the codes.
 */
// prettier-ignore
const huffmanLengths = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
  28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5,
  6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6,
  7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23,
  23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22,
  22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22,
  23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27,
  27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25,
  24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const eos = 256;
const huffmanMaxBits = 30;

/**
 * Canonical decoding tables: for each length, the first code of that length, how many
 * symbols have it, and where they start in `huffmanSymbols` (sorted by length, symbol).
 */
const huffmanSymbols: number[] = [];
const huffmanFirst = new Array<number>(huffmanMaxBits + 1).fill(0);
const huffmanCount = new Array<number>(huffmanMaxBits + 1).fill(0);
const huffmanOffset = new Array<number>(huffmanMaxBits + 1).fill(0);
/** The code of each symbol, for tests and encoders. */
export const huffmanCodes: readonly { code: number; bits: number }[] = (() => {
  const codes = new Array<{ code: number; bits: number }>(huffmanLengths.length);
  let code = 0;
  let bits = 0;
  for (let length = 1; length <= huffmanMaxBits; length++) {
    code *= 2;
    huffmanFirst[length] = code;
    huffmanOffset[length] = huffmanSymbols.length;
    huffmanLengths.forEach((l, symbol) => {
      if (l !== length) return;
      huffmanSymbols.push(symbol);
      huffmanCount[length]!++;
      codes[symbol] = { code, bits: length };
      code++;
      bits = length;
    });
  }
  if (bits !== huffmanMaxBits || code !== 2 ** huffmanMaxBits) throw new Error('bad Huffman table');
  return codes;
})();

/** Decodes a Huffman-coded string (§5.2); padding must be the EOS prefix, under 8 bits. */
export function huffmanDecode(input: Uint8Array, start: number, end: number): string {
  // The shortest code has 5 bits.
  const out = Buffer.allocUnsafe(Math.floor(((end - start) * 8) / 5));
  let n = 0;
  let code = 0;
  let length = 0;
  for (let i = start; i < end; i++) {
    const byte = input[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((byte >> bit) & 1);
      length++;
      const index = code - huffmanFirst[length]!;
      if (index >= 0 && index < huffmanCount[length]!) {
        const symbol = huffmanSymbols[huffmanOffset[length]! + index]!;
        if (symbol === eos) throw new HpackError('Huffman string contains EOS');
        out[n++] = symbol;
        code = 0;
        length = 0;
      }
    }
  }
  if (length > 7 || code !== 2 ** length - 1) throw new HpackError('invalid Huffman padding');
  return out.toString('latin1', 0, n);
}

/** Entry size (§4.1): octets of name and value plus 32. */
function entrySize(name: string, value: string): number {
  return name.length + value.length + 32;
}

export interface DecodeLimits {
  /** Largest header list (sum of entry sizes) a block may decode to. */
  listSizeMax: number;
}

/**
 * The decoder half of one direction of an HTTP/2 connection: it must see every header
 * block of that direction, in order, to keep the dynamic table the sender assumes.
 */
export class HpackDecoder {
  /** Newest entry last. */
  private readonly entries: [string, string][] = [];
  private size = 0;
  private capacity: number;

  /** @param tableSizeMax SETTINGS_HEADER_TABLE_SIZE the receiver advertised. */
  constructor(private readonly tableSizeMax = 4096) {
    this.capacity = tableSizeMax;
  }

  /** The dynamic table's current size in octets (§4.1), for tests. */
  get tableSize(): number {
    return this.size;
  }

  /** Decodes one complete header block. Throws HpackError on anything malformed. */
  decode(block: Uint8Array, limits: DecodeLimits): HeaderField[] {
    const fields: HeaderField[] = [];
    let listSize = 0;
    let p = 0;
    const integer = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[p++]! & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (p >= block.length) throw new HpackError('truncated integer');
        const byte = block[p++]!;
        value += (byte & 0x7f) * 2 ** shift;
        shift += 7;
        if ((byte & 0x80) === 0) break;
        if (shift > 28) throw new HpackError('integer too large');
      }
      if (value > 0xffffffff) throw new HpackError('integer too large');
      return value;
    };
    const string = (): string => {
      if (p >= block.length) throw new HpackError('truncated string');
      const huffman = (block[p]! & 0x80) !== 0;
      const length = integer(7);
      if (length > block.length - p) throw new HpackError('truncated string');
      const start = p;
      p += length;
      return huffman
        ? huffmanDecode(block, start, p)
        : Buffer.from(block.buffer, block.byteOffset + start, length).toString('latin1');
    };
    const add = (name: string, value: string, sensitive: boolean): void => {
      listSize += entrySize(name, value);
      if (listSize > limits.listSizeMax) throw new HpackError('header list too large');
      fields.push({ name, value, sensitive });
    };
    while (p < block.length) {
      const first = block[p]!;
      if (first & 0x80) {
        // Indexed header field (§6.1).
        const [name, value] = this.entry(integer(7));
        add(name, value, false);
      } else if (first & 0x40) {
        // Literal with incremental indexing (§6.2.1).
        const index = integer(6);
        const name = index === 0 ? string() : this.entry(index)[0];
        const value = string();
        this.insert(name, value);
        add(name, value, false);
      } else if (first & 0x20) {
        // Dynamic table size update (§6.3): only at the start of a block (§4.2).
        if (fields.length > 0) throw new HpackError('table size update after a field');
        const capacity = integer(5);
        if (capacity > this.tableSizeMax) throw new HpackError('table size update too large');
        this.capacity = capacity;
        this.evict(0);
      } else {
        // Literal without indexing (§6.2.2) or never indexed (§6.2.3).
        const sensitive = (first & 0x10) !== 0;
        const index = integer(4);
        const name = index === 0 ? string() : this.entry(index)[0];
        add(name, string(), sensitive);
      }
    }
    return fields;
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError('index 0');
    if (index <= staticTable.length) return staticTable[index - 1]!;
    const entry = this.entries[this.entries.length - 1 - (index - staticTable.length - 1)];
    if (entry === undefined) throw new HpackError(`index ${index} beyond the table`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const size = entrySize(name, value);
    // An entry larger than the table empties it and is not added (§4.4).
    this.evict(Math.min(size, this.capacity + 1));
    if (size <= this.capacity) {
      this.entries.push([name, value]);
      this.size += size;
    }
  }

  /** Evicts the oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    let drop = 0;
    while (this.size + room > this.capacity && drop < this.entries.length) {
      const [name, value] = this.entries[drop++]!;
      this.size -= entrySize(name, value);
    }
    if (drop > 0) this.entries.splice(0, drop);
  }
}

/**
 * Encodes fields as literals that leave the receiver's dynamic table alone (§6.2.2, §6.2.3
 * for sensitive ones), names by static index where there is one, strings without Huffman.
 */
export function encodeLiterals(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  const integer = (value: number, prefixBits: number, first: number): void => {
    const mask = (1 << prefixBits) - 1;
    if (value < mask) {
      out.push(first | value);
      return;
    }
    out.push(first | mask);
    value -= mask;
    while (value >= 0x80) {
      out.push((value % 0x80) | 0x80);
      value = Math.floor(value / 0x80);
    }
    out.push(value);
  };
  const string = (s: string): void => {
    integer(s.length, 7, 0);
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
  };
  for (const field of fields) {
    const kind = field.sensitive ? 0x10 : 0x00;
    const index = staticNameIndex.get(field.name);
    if (index !== undefined) {
      integer(index, 4, kind);
    } else {
      integer(0, 4, kind);
      string(field.name);
    }
    string(field.value);
  }
  return Buffer.from(out);
}
