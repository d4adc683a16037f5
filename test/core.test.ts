// Goal: the core primitives keep their contracts: CRC32C matches the standard vector, the
// frame decoder survives any split of the stream and rejects bad frames, the PRNG is
// reproducible and its forks are independent, the codec rejects garbage with a typed error.
import { test } from 'node:test';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { crc32c } from '../src/core/crc32c.js';
import { encodeFrame, FrameDecoder } from '../src/core/frame.js';
import { seededRandom } from '../src/core/prng.js';
import { concatBytes, joinedBytes, joinInSteps, Pieces } from '../src/core/bytes.js';
import {
  decode,
  encode,
  msgpackArray,
  msgpackMapHeader,
  MsgpackReader,
} from '../src/core/codec.js';
import { BadInputError, ChorusError, describeError } from '../src/core/errors.js';
import { assert as check, AssertionError } from '../src/core/assert.js';

test('crc32c standard check value', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // 32 zero bytes: a published iSCSI test vector (RFC 3720 B.4).
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
});

test('crc32c continues across chunks', () => {
  const bytes = new TextEncoder().encode('the quick brown fox jumps over the lazy dog');
  const whole = crc32c(bytes);
  for (let cut = 0; cut <= bytes.length; cut++) {
    assert.equal(crc32c(bytes, cut, bytes.length, crc32c(bytes, 0, cut)), whole);
  }
});

test('frame decoder: one byte at a time yields the same frames', () => {
  const payloads = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(300).fill(7)];
  const stream = Buffer.concat(payloads.map(encodeFrame));
  const decoder = new FrameDecoder();
  const out: Uint8Array[] = [];
  for (const byte of stream) out.push(...decoder.push(new Uint8Array([byte])));
  assert.deepEqual(
    out.map((p) => [...p]),
    payloads.map((p) => [...p]),
  );
  assert.equal(decoder.error, undefined);
  assert.equal(decoder.pendingBytes, 0);
});

test('frame decoder rejects oversized length and bad checksum', () => {
  const big = new Uint8Array(8);
  new DataView(big.buffer).setUint32(0, 0xffffffff, true);
  const d1 = new FrameDecoder();
  assert.deepEqual(d1.push(big), []);
  assert.equal(d1.error?.code, 'frame-too-large');

  const frame = encodeFrame(new Uint8Array([9, 9, 9]));
  frame[9] = 0;
  const d2 = new FrameDecoder();
  assert.deepEqual(d2.push(frame), []);
  assert.equal(d2.error?.code, 'checksum-mismatch');
  // Once failed, the decoder yields nothing more, even for good frames.
  assert.deepEqual(d2.push(encodeFrame(new Uint8Array([1]))), []);
});

test('prng: same seed same stream, forks independent of parent draws', () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const xs = Array.from({ length: 100 }, () => a.u32());
  const ys = Array.from({ length: 100 }, () => b.u32());
  assert.deepEqual(xs, ys);
  assert.notDeepEqual(
    xs,
    Array.from({ length: 100 }, () => seededRandom(43).u32()),
  );
  const fresh = seededRandom(42).fork('net');
  const used = seededRandom(42);
  used.u32();
  assert.equal(used.fork('net').u32(), fresh.u32());
  assert.notEqual(seededRandom(42).fork('net').u32(), seededRandom(42).fork('disk').u32());
  assert.equal(seededRandom(42).fork('net').path, '42/net');
});

test('prng: uniform enough (chi-square over 16 buckets)', () => {
  const r = seededRandom(7);
  const buckets = new Array<number>(16).fill(0);
  const n = 160_000;
  for (let i = 0; i < n; i++) buckets[r.int(16)]!++;
  const expected = n / 16;
  const chi = buckets.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
  assert.ok(chi < 37.7, `chi-square ${chi} (p=0.001 critical value 37.7 at 15 dof)`);
});

test('codec round trip and typed error on garbage', () => {
  const value = { type: 'gossip', values: [[1, 'a']], n: 2 ** 40 };
  assert.deepEqual(decode(encode(value)), value);
  assert.throws(() => decode(new Uint8Array([0x92, 0x01])), BadInputError);
});

test('msgpack framed from pieces decodes as the encoded array, at every header size', () => {
  const bytesOf = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i & 0xff);
  for (const length of [0, 1, 255, 256, 65_535, 65_536, 70_000]) {
    const binary = bytesOf(length);
    // The binary split at a few points; the frame must not depend on the split.
    const pieces = [binary.subarray(0, length >> 1), binary.subarray(length >> 1)];
    const framed = Buffer.from(
      concatBytes(msgpackArray([{ value: { a: 1 } }, { binary: pieces }])),
    );
    assert.deepEqual(decode(framed), decode(encode([{ a: 1 }, binary])), `bin of ${length}`);
  }
  for (const count of [0, 15, 16, 65_536]) {
    const items = Array.from({ length: count }, (_, i) => i);
    const framed = concatBytes(msgpackArray(items.map((value) => ({ value }))));
    assert.deepEqual(decode(framed), items, `array of ${count}`);
  }
  const map = concatBytes([msgpackMapHeader(1), encode('k'), encode(7)]);
  assert.deepEqual(decode(map), { k: 7 });
});

test('joinInSteps copies at most the budget per call and joins the pieces in order', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 2, maxLength: 8 }),
      fc.integer({ min: 1, max: 50 }),
      (pieces, budget) => {
        const total = pieces.reduce((n, p) => n + p.length, 0);
        const join = joinInSteps(pieces);
        let calls = 1;
        let joined = join(budget);
        while (joined === undefined) {
          calls++;
          joined = join(budget);
        }
        assert.deepEqual(joined, concatBytes(pieces));
        assert.ok(calls <= Math.max(1, Math.ceil(total / budget)) + 1, `${calls} calls`);
      },
    ),
  );
});

test('Pieces reads any range as the joined bytes would (a view within a piece; slice copies nothing)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 20 }), { maxLength: 8 }),
      fc.integer({ min: -5, max: 200 }),
      fc.integer({ min: -5, max: 200 }),
      (parts, a, b) => {
        const joined = concatBytes(parts.length === 0 ? [new Uint8Array(0)] : parts);
        const pieces = new Pieces(parts);
        assert.equal(pieces.length, joined.length);
        const start = Math.max(0, Math.min(a, joined.length));
        const end = Math.max(start, Math.min(b, joined.length));
        const got = pieces.subarray(a, b);
        assert.deepEqual([...got], [...joined.subarray(start, end)]);
        const owner = parts.find((p) => got.length > 0 && p.buffer === got.buffer);
        if (owner !== undefined) assert.ok(got.byteOffset >= owner.byteOffset);
        assert.deepEqual([...pieces.subarray()], [...joined]);
        const slice = pieces.slice(a, b);
        assert.deepEqual([...joinedBytes(slice)], [...got]);
        for (const view of slice.pieces) assert.ok(parts.some((p) => p.buffer === view.buffer));
      },
    ),
  );
});

/** Splits bytes at random points into pieces (some empty). */
const inPieces = (bytes: Uint8Array, cuts: number[]): Pieces => {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...at, bytes.length]) {
    parts.push(bytes.slice(from, cut));
    from = cut;
  }
  return new Pieces(parts);
};

test('MsgpackReader reads values, headers and bins of bytes in pieces as decode does', () => {
  // msgpackr's own writer makes every form the reader must frame: fix/8/16/32-bit
  // lengths, nested arrays and maps, floats, negative and 64-bit integers.
  const value = fc.oneof(
    fc.jsonValue(),
    fc.uint8Array({ maxLength: 300 }),
    fc.double(),
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
    fc.string({ minLength: 30, maxLength: 300 }),
    fc.array(fc.integer(), { minLength: 16, maxLength: 70_000 }).map((a) => a.slice(0, 70_000)),
  );
  fc.assert(
    fc.property(
      fc.array(value, { maxLength: 6 }),
      fc.uint8Array({ maxLength: 70_000 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (values, bin, cuts) => {
        const bytes = concatBytes(
          msgpackArray([...values.map((v) => ({ value: v })), { binary: [bin] }]),
        );
        for (const source of [bytes, inPieces(bytes, cuts)]) {
          const reader = new MsgpackReader(source);
          assert.equal(reader.arrayHeader(), values.length + 1);
          // Equal when encoded again (a bin decodes as the type of the buffer it came from).
          for (const v of values) assert.deepEqual(encode(reader.value()), encode(v));
          assert.deepEqual([...joinedBytes(reader.binary())], [...bin]);
          assert.ok(reader.done());
        }
      },
    ),
    { numRuns: 60 },
  );
});

test('MsgpackReader refuses truncated, mistyped and malformed input with BadInputError', () => {
  const bytes = concatBytes(
    msgpackArray([{ value: { a: [1, 'x'] } }, { binary: [new Uint8Array(9)] }]),
  );
  for (let end = 1; end < bytes.length; end++) {
    const reader = new MsgpackReader(bytes.subarray(0, end), 'test');
    assert.throws(() => {
      reader.arrayHeader();
      reader.value();
      reader.binary();
    }, BadInputError);
  }
  assert.throws(() => new MsgpackReader(encode({ a: 1 })).arrayHeader(), /expected an array/);
  assert.throws(() => new MsgpackReader(encode([1])).mapHeader(), /expected a map/);
  assert.throws(() => new MsgpackReader(encode('s')).binary(), /expected a bin/);
  assert.throws(() => new MsgpackReader(Uint8Array.of(0xc1)).value(), /0xc1 begins no value/);
  assert.throws(() => new MsgpackReader(new Uint8Array(0)).value(), /truncated/);
  const map = new MsgpackReader(concatBytes([msgpackMapHeader(1), encode('k'), encode(2)]));
  assert.ok(map.atMap());
  assert.equal(map.mapHeader(), 1);
  assert.deepEqual([map.value(), map.value()], ['k', 2]);
});

test('errors chain cause and assertions throw', () => {
  const inner = new Error('EIO');
  const outer = new ChorusError('disk-io', 'write wal', { cause: inner });
  assert.equal(describeError(outer), 'ChorusError: write wal\n  caused by Error: EIO');
  assert.throws(() => check(false, 'broken'), AssertionError);
});

test('frame decoder: any split of a stream yields the same frames (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 50 }),
      (payloads, cuts) => {
        const stream = Buffer.concat(payloads.map(encodeFrame));
        const decoder = new FrameDecoder();
        const out: number[][] = [];
        let offset = 0;
        for (let i = 0; offset < stream.length; i++) {
          const size = cuts[i % cuts.length]!;
          for (const frame of decoder.push(stream.subarray(offset, offset + size)))
            out.push([...frame]);
          offset += size;
        }
        assert.deepEqual(
          out,
          payloads.map((p) => [...p]),
        );
        assert.equal(decoder.pendingBytes, 0);
      },
    ),
    { numRuns: 300 },
  );
});

test('frame decoder: a 1 MiB frame in 64 KiB pieces arrives whole', () => {
  const payload = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
  const stream = encodeFrame(payload);
  const decoder = new FrameDecoder();
  const frames: Uint8Array[] = [];
  for (let offset = 0; offset < stream.length; offset += 65_536) {
    frames.push(...decoder.push(stream.subarray(offset, offset + 65_536)));
  }
  assert.equal(frames.length, 1);
  assert.equal(crc32c(frames[0]!), crc32c(payload));
});
