// The client port's HTTP/2 reader (src/server/authority.ts) and its HPACK (src/server/hpack.ts):
// RFC 7541's examples, header blocks over several frames, padding, priority, table size
// updates, huge headers, the limits, and a real HTTP/2 client (nghttp2's encoder, Huffman and
// dynamic table) talking through the reader to Node's HTTP/2 server.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import {
  AuthorityRewriteError,
  AuthorityRewriter,
  acceptUrlAuthority,
  authorityOfUrl,
  defaultAuthorityLimits,
  gateUrlAuthority,
} from '../src/server/authority.js';
import {
  HpackDecoder,
  HpackError,
  encodeLiterals,
  huffmanCodes,
  huffmanDecode,
  type HeaderField,
} from '../src/server/hpack.js';

const limits = { listSizeMax: 1 << 20 };
const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** [name, value] pairs of decoded fields. */
const pairs = (fields: HeaderField[]): [string, string][] => fields.map((f) => [f.name, f.value]);

function huffmanEncode(s: string): Buffer {
  let bits = 0n;
  let count = 0n;
  for (const ch of Buffer.from(s, 'latin1')) {
    const { code, bits: n } = huffmanCodes[ch]!;
    bits = (bits << BigInt(n)) | BigInt(code);
    count += BigInt(n);
  }
  const pad = (8n - (count % 8n)) % 8n;
  bits = (bits << pad) | ((1n << pad) - 1n);
  const out = Buffer.alloc(Number((count + pad) / 8n));
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(bits & 0xffn);
    bits >>= 8n;
  }
  return out;
}

/** HPACK integer with a prefix. */
function int(value: number, prefixBits: number, first: number): number[] {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return [first | value];
  const out = [first | mask];
  value -= mask;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  return [...out, value];
}
const str = (s: string): number[] => [...int(s.length, 7, 0), ...Buffer.from(s, 'latin1')];
/** Literal with incremental indexing, new name. */
const addNew = (name: string, value: string): number[] => [0x40, ...str(name), ...str(value)];
/** Literal with incremental indexing, name by index. */
const addIndexed = (index: number, value: string): number[] => [
  ...int(index, 6, 0x40),
  ...str(value),
];
const indexed = (index: number): number[] => int(index, 7, 0x80);
const sizeUpdate = (size: number): number[] => int(size, 5, 0x20);

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}
const HEADERS = 1;
const CONTINUATION = 9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}
function parseFrames(bytes: Buffer): Frame[] {
  assert.deepEqual(bytes.subarray(0, preface.length), preface);
  const frames: Frame[] = [];
  let p = preface.length;
  while (p < bytes.length) {
    const length = bytes.readUIntBE(p, 3);
    frames.push({
      type: bytes[p + 3]!,
      flags: bytes[p + 4]!,
      streamId: bytes.readUInt32BE(p + 5),
      payload: bytes.subarray(p + 9, p + 9 + length),
    });
    p += 9 + length;
  }
  assert.equal(p, bytes.length, 'whole frames');
  return frames;
}

/** Decodes the header blocks of `frames` as nghttp2 would, with one table across them. */
function decodeBlocks(frames: Frame[], decoder = new HpackDecoder()): [string, string][][] {
  const blocks: [string, string][][] = [];
  let parts: Buffer[] = [];
  for (const f of frames) {
    if (f.type !== HEADERS && f.type !== CONTINUATION) continue;
    let payload = f.payload;
    if (f.type === HEADERS) {
      if (f.flags & PADDED) payload = payload.subarray(1, payload.length - payload[0]!);
      if (f.flags & PRIORITY) payload = payload.subarray(5);
    }
    assert.ok(f.payload.length <= 16_384, 'no frame over the default max frame size');
    parts.push(payload);
    if (f.flags & END_HEADERS) {
      blocks.push(pairs(decoder.decode(Buffer.concat(parts), limits)));
      parts = [];
    }
  }
  return blocks;
}

/** Feeds `input` to a rewriter in pieces of `step` octets; returns what it handed on. */
function run(input: Buffer, step = input.length, rewriter = new AuthorityRewriter()): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < input.length; i += step)
    out.push(...rewriter.push(input.subarray(i, i + step)));
  return Buffer.concat(out);
}

describe('hpack', () => {
  test('RFC 7541 C.4: requests with Huffman coding share the dynamic table', () => {
    const decoder = new HpackDecoder();
    const block = (hex: string): [string, string][] =>
      pairs(decoder.decode(Buffer.from(hex, 'hex'), limits));
    assert.deepEqual(block('828684418cf1e3c2e5f23a6ba0ab90f4ff'), [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
    ]);
    assert.equal(decoder.tableSize, 57);
    assert.deepEqual(block('828684be5886a8eb10649cbf').at(-1), ['cache-control', 'no-cache']);
    assert.equal(decoder.tableSize, 110);
    assert.deepEqual(block('828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf').slice(3), [
      [':authority', 'www.example.com'],
      ['custom-key', 'custom-value'],
    ]);
    assert.equal(decoder.tableSize, 164);
  });

  test('Huffman: every octet round-trips; EOS and bad padding are errors', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('latin1');
    const encoded = huffmanEncode(all);
    assert.equal(huffmanDecode(encoded, 0, encoded.length), all);
    assert.equal(huffmanDecode(Buffer.alloc(0), 0, 0), '');
    // 'a' is 00011: padded with 0s instead of 1s.
    assert.throws(() => huffmanDecode(Buffer.from([0b00011000]), 0, 1), HpackError);
    // A whole octet of padding.
    assert.throws(() => huffmanDecode(Buffer.from([0b00011111, 0xff]), 0, 2), HpackError);
    // EOS: thirty 1 bits.
    assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xfc]), 0, 4), HpackError);
  });

  test('eviction, size updates, oversized entries, and malformed blocks', () => {
    const decoder = new HpackDecoder(100);
    // Two entries of 32 + 2 + 10 = 44 fit in 100; a third evicts the oldest.
    decoder.decode(
      Buffer.from([...addNew('a1', 'x'.repeat(10)), ...addNew('a2', 'y'.repeat(10))]),
      limits,
    );
    decoder.decode(Buffer.from(addNew('a3', 'z'.repeat(10))), limits);
    assert.equal(decoder.tableSize, 88);
    assert.deepEqual(pairs(decoder.decode(Buffer.from([...indexed(62), ...indexed(63)]), limits)), [
      ['a3', 'z'.repeat(10)],
      ['a2', 'y'.repeat(10)],
    ]);
    assert.throws(() => decoder.decode(Buffer.from(indexed(64)), limits), /beyond the table/);
    // An entry larger than the table empties it.
    decoder.decode(Buffer.from(addNew('big', 'v'.repeat(80))), limits);
    assert.equal(decoder.tableSize, 0);
    // A size update at the start of a block, within the advertised maximum.
    decoder.decode(Buffer.from([...sizeUpdate(50), ...addNew('b', 'w')]), limits);
    assert.equal(decoder.tableSize, 34);
    decoder.decode(Buffer.from(sizeUpdate(0)), limits);
    assert.equal(decoder.tableSize, 0);
    assert.throws(() => decoder.decode(Buffer.from(sizeUpdate(101)), limits), /too large/);
    assert.throws(
      () => decoder.decode(Buffer.from([...indexed(2), ...sizeUpdate(10)]), limits),
      /after a field/,
    );
    assert.throws(() => decoder.decode(Buffer.from(indexed(0)), limits), /index 0/);
    assert.throws(() => decoder.decode(Buffer.from([0x00, 0x05, 0x61]), limits), /truncated/);
    assert.throws(
      () => decoder.decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), limits),
      /integer/,
    );
    // A header list over the limit, however small the block (indexed references).
    const bomb = new HpackDecoder();
    bomb.decode(Buffer.from(addNew('k', 'v'.repeat(4000))), limits);
    assert.throws(
      () => bomb.decode(Buffer.from(Array.from({ length: 300 }, () => indexed(62)).flat()), limits),
      /header list too large/,
    );
  });

  test('encodeLiterals: static names by index, never-indexed kept, the table untouched', () => {
    const fields: HeaderField[] = [
      { name: ':authority', value: '127.0.0.1:2379', sensitive: false },
      { name: 'x-custom', value: 'é\u00ff', sensitive: false },
      { name: 'authorization', value: 'secret', sensitive: true },
    ];
    const decoder = new HpackDecoder();
    const decoded = decoder.decode(encodeLiterals(fields), limits);
    assert.deepEqual(decoded, fields);
    assert.equal(decoder.tableSize, 0);
    const long = [{ name: 'x-long', value: 'q'.repeat(70_000), sensitive: false }];
    assert.deepEqual(new HpackDecoder().decode(encodeLiterals(long), limits), long);
  });
});

describe('authority rewriting on the client port', () => {
  test('authorityOfUrl: a URL gives its authority; anything else is left alone', () => {
    assert.equal(authorityOfUrl('http://127.0.0.1:2379'), '127.0.0.1:2379');
    assert.equal(authorityOfUrl('https://[::1]:2379/'), '[::1]:2379');
    assert.equal(authorityOfUrl('http://host:1/some/path'), 'host:1');
    assert.equal(authorityOfUrl('127.0.0.1:2379'), undefined);
    assert.equal(authorityOfUrl('localhost'), undefined);
    assert.equal(authorityOfUrl('http://'), undefined);
    assert.equal(authorityOfUrl('http://a b'), undefined);
  });

  // etcdctl's first request on a Maintenance connection, as captured from etcdctl 3.4.23
  // (Go's encoder): `:authority` "http://127.0.0.1:23792" is added to the dynamic table.
  const etcdctlBlock = Buffer.from(
    '8386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e09975f175f8b1d75d0620d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f8613ef3e06816f408d25062d495875996ee5b1063d5f03332e34',
    'hex',
  );

  test("etcdctl's request: the authority rewritten, the later blocks re-encoded, DATA untouched", () => {
    // The second request refers to the first one's table entries: Go's encoder added seven,
    // :authority second, so it is now 62 + 5.
    const second = new HpackDecoder();
    const first = pairs(second.decode(etcdctlBlock, limits));
    const authorityIndex = 67;
    assert.deepEqual(first[3], [':authority', 'http://127.0.0.1:23792']);
    // Adding :path first moves the authority one further.
    const secondBlock = Buffer.from([
      0x83,
      0x86,
      ...addIndexed(4, '/x'),
      ...indexed(authorityIndex + 1),
    ]);
    assert.deepEqual(pairs(second.decode(secondBlock, limits)).at(-1), first[3]);
    const data = frame(0, END_STREAM, 1, Buffer.from('0000000000', 'hex'));
    const input = Buffer.concat([
      preface,
      frame(4, 0, 0, Buffer.alloc(0)),
      frame(HEADERS, END_HEADERS, 1, etcdctlBlock),
      data,
      frame(HEADERS, END_HEADERS | END_STREAM, 3, secondBlock),
    ]);
    for (const step of [input.length, 1, 7]) {
      const rewriter = new AuthorityRewriter();
      const frames = parseFrames(run(input, step, rewriter));
      assert.equal(rewriter.rewritten, 2);
      assert.deepEqual(
        frames.map((f) => [f.type, f.flags, f.streamId]),
        [
          [4, 0, 0],
          [HEADERS, END_HEADERS, 1],
          [0, END_STREAM, 1],
          [HEADERS, END_HEADERS | END_STREAM, 3],
        ],
      );
      assert.deepEqual(frames[2]!.payload, data.subarray(9));
      const [a, b] = decodeBlocks(frames);
      assert.deepEqual(
        a,
        first.map(([n, v]) => [n, n === ':authority' ? '127.0.0.1:23792' : v]),
      );
      assert.deepEqual(b!.at(-1), [':authority', '127.0.0.1:23792']);
    }
  });

  test('a connection without a URL authority passes byte for byte, even once rewriting began elsewhere in the block stream', () => {
    const blocks = [
      Buffer.from([0x83, 0x86, 0x84, ...addNew(':authority', '127.0.0.1:2379')]),
      Buffer.from([0x83, 0x86, 0x84, ...indexed(62), ...addNew('x-a', 'v')]),
    ];
    const input = Buffer.concat([
      preface,
      frame(HEADERS, END_HEADERS, 1, blocks[0]!),
      frame(HEADERS, END_HEADERS, 3, blocks[1]!),
    ]);
    assert.deepEqual(run(input, 1), input);
    assert.deepEqual(run(input), input);
  });

  test('CONTINUATION, padding and priority in, frames within the frame size out', () => {
    const big = 'v'.repeat(40_000);
    const block = Buffer.from([
      ...sizeUpdate(1000),
      0x83,
      ...addNew(':authority', 'http://example.com:2379'),
      // Not indexed: it would not fit the 1000-octet table and would empty it.
      0x00,
      ...str('x-big'),
      ...str(big),
    ]);
    const priority = Buffer.from([0x80, 0, 0, 3, 15]);
    const pad = 7;
    const head = Buffer.concat([
      Buffer.from([pad]),
      priority,
      block.subarray(0, 10_000),
      Buffer.alloc(pad),
    ]);
    const input = Buffer.concat([
      preface,
      frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, head),
      frame(CONTINUATION, 0, 5, block.subarray(10_000, 26_000)),
      frame(CONTINUATION, END_HEADERS, 5, block.subarray(26_000)),
      // A later block that refers to the rewritten one's entries.
      frame(HEADERS, END_HEADERS, 7, Buffer.from([0x83, ...indexed(62)])),
    ]);
    for (const step of [input.length, 1000, 1]) {
      const frames = parseFrames(run(input, step));
      assert.equal(frames[0]!.type, HEADERS);
      assert.equal(frames[0]!.flags, PRIORITY | END_STREAM);
      assert.deepEqual(frames[0]!.payload.subarray(0, 5), priority);
      assert.ok(frames.slice(1, -2).every((f) => f.type === CONTINUATION && f.flags === 0));
      assert.equal(frames.at(-2)!.flags, END_HEADERS);
      const [first, second] = decodeBlocks(frames);
      assert.deepEqual(first, [
        [':method', 'POST'],
        [':authority', 'example.com:2379'],
        ['x-big', big],
      ]);
      assert.deepEqual(second, [
        [':method', 'POST'],
        [':authority', 'example.com:2379'],
      ]);
    }
  });

  test('what it cannot read, it hands on unchanged before a rewrite, and fails the connection after', () => {
    const interrupted = Buffer.concat([
      preface,
      frame(HEADERS, 0, 1, Buffer.from([0x83])),
      frame(6, 0, 0, Buffer.alloc(8)),
      frame(CONTINUATION, END_HEADERS, 1, Buffer.from([0x86])),
    ]);
    assert.deepEqual(run(interrupted), interrupted);
    const badHpack = Buffer.concat([
      preface,
      frame(HEADERS, END_HEADERS, 1, Buffer.from(indexed(70))),
      frame(HEADERS, END_HEADERS, 3, Buffer.from(addNew(':authority', 'http://a:1'))),
    ]);
    assert.deepEqual(run(badHpack, 3), badHpack);
    const tooBig = Buffer.concat([
      preface,
      frame(HEADERS, 0, 1, Buffer.alloc(16_000, 0x82)),
      frame(CONTINUATION, END_HEADERS, 1, Buffer.alloc(16_000, 0x82)),
    ]);
    const small = new AuthorityRewriter({ ...defaultAuthorityLimits, blockBytesMax: 20_000 });
    assert.deepEqual(run(tooBig, 5000, small), tooBig);
    const notHttp2 = Buffer.from('PRI * HTTP/1.1\r\n\r\n');
    assert.deepEqual(run(notHttp2), notHttp2);

    const rewritten = Buffer.concat([
      preface,
      frame(HEADERS, END_HEADERS, 1, Buffer.from(addNew(':authority', 'http://a:1'))),
    ]);
    for (const after of [
      frame(HEADERS, END_HEADERS, 3, Buffer.from(indexed(99))),
      frame(CONTINUATION, END_HEADERS, 3, Buffer.from([0x82])),
      frame(HEADERS, END_HEADERS, 3, Buffer.alloc(16_385)),
      frame(5, END_HEADERS, 2, Buffer.alloc(4)),
    ]) {
      const rewriter = new AuthorityRewriter();
      run(rewritten, rewritten.length, rewriter);
      assert.throws(() => rewriter.push(after), AuthorityRewriteError);
    }
  });

  test("Node's HTTP/2 client through the reader to Node's HTTP/2 server: every header arrives", async () => {
    const server = http2.createServer();
    const seen: http2.IncomingHttpHeaders[] = [];
    server.on('stream', (stream, headers) => {
      seen.push(headers);
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    const front = net.createServer((socket) =>
      server.emit('connection', acceptUrlAuthority(socket)),
    );
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const port = (front.address() as net.AddressInfo).port;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const request = (headers: http2.OutgoingHttpHeaders): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = client.request(headers);
          req.on('response', (h) => resolve(h[':status']!));
          req.on('error', reject);
          req.resume();
          req.end();
        });
      const sent: http2.OutgoingHttpHeaders[] = [];
      for (let i = 0; i < 60; i++) {
        const headers: http2.OutgoingHttpHeaders = {
          ':path': `/p/${i}`,
          // Every third request carries etcdctl's kind of authority; the table churns.
          ':authority': i % 3 === 0 ? `http://127.0.0.1:${port}` : `127.0.0.1:${port}`,
          'x-n': String(i),
          'x-value': `v${i}`.repeat(1 + (i % 13) * 40),
          'x-bytes': Buffer.from(
            Array.from({ length: 94 }, (_, j) => 33 + ((j + i) % 94)),
          ).toString(),
        };
        if (i === 30) headers['x-huge'] = 'h'.repeat(50_000);
        sent.push(headers);
        assert.equal(await request(headers), 200);
      }
      assert.equal(seen.length, sent.length);
      seen.forEach((got, i) => {
        const want = sent[i]!;
        assert.equal(got[':authority'], `127.0.0.1:${port}`);
        for (const name of ['x-n', 'x-value', 'x-bytes', 'x-huge', ':path'])
          assert.equal(got[name], want[name], `${name} of request ${i}`);
      });
    } finally {
      client.close();
      front.close();
      server.close();
    }
  });

  test('the gate removes the first empty SETTINGS acknowledgement only, and tells its verdict', () => {
    const SETTINGS = 4;
    const ack = frame(SETTINGS, 1, 0, Buffer.alloc(0));
    const clientSettings = frame(SETTINGS, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]));
    const plain = frame(HEADERS, END_HEADERS, 1, Buffer.from(addNew(':authority', 'a:1')));
    const url = frame(HEADERS, END_HEADERS, 1, Buffer.from(addNew(':authority', 'http://a:1')));
    const data = frame(0, 0, 1, Buffer.from('payload'));

    // Acknowledgement before the first request, every split of the input: direct.
    const input = Buffer.concat([preface, clientSettings, ack, plain, data, ack]);
    for (const step of [1, 5, 9, input.length]) {
      const rewriter = new AuthorityRewriter();
      rewriter.expectSettingsAck();
      const out: Buffer[] = [];
      let verdictAt = -1;
      for (let i = 0; i < input.length && verdictAt < 0; i += step) {
        out.push(...rewriter.push(input.subarray(i, i + step)));
        if (rewriter.verdict() !== undefined) verdictAt = i + step;
      }
      assert.equal(rewriter.verdict(), 'direct');
      out.push(...rewriter.handOff(), input.subarray(verdictAt));
      // nghttp2 sees the client's bytes less the acknowledgement of SETTINGS it never sent.
      assert.deepEqual(
        Buffer.concat(out),
        Buffer.concat([preface, clientSettings, plain, data, ack]),
        `step ${step}`,
      );
    }

    // The request first: no verdict until the acknowledgement came and was removed.
    const early = new AuthorityRewriter();
    early.expectSettingsAck();
    assert.deepEqual(
      early.push(Buffer.concat([preface, clientSettings, plain, data])).length > 0,
      true,
    );
    assert.equal(early.verdict(), undefined);
    assert.equal(early.push(ack).length, 0);
    assert.equal(early.verdict(), 'direct');

    // A URL authority: rewrite, and a partial block is not handed off.
    const rewriting = new AuthorityRewriter();
    rewriting.expectSettingsAck();
    rewriting.push(Buffer.concat([preface, clientSettings, url]));
    assert.equal(rewriting.verdict(), 'rewrite');
    assert.throws(() => rewriting.handOff(), AuthorityRewriteError);

    // Without expectSettingsAck every acknowledgement passes.
    assert.deepEqual(
      run(Buffer.concat([preface, ack, plain])),
      Buffer.concat([preface, ack, plain]),
    );
  });

  test('gateUrlAuthority: plain clients reach HTTP/2 directly, URL authorities and idle ones through the rewriter', async () => {
    const server = http2.createServer();
    server.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(String(headers[':authority']));
    });
    const routed: string[] = [];
    const front = net.createServer({ pauseOnConnect: true }, (socket) =>
      gateUrlAuthority(
        socket,
        (connection, path) => {
          routed.push(path);
          server.emit('connection', connection);
        },
        300,
      ),
    );
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const port = (front.address() as net.AddressInfo).port;
    const get = (client: http2.ClientHttp2Session, authority: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const req = client.request({ ':path': '/', ':authority': authority });
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => (body += chunk));
        req.on('end', () => resolve(body));
        req.on('error', reject);
        req.end();
      });
    const clients: http2.ClientHttp2Session[] = [];
    const connect = (): http2.ClientHttp2Session => {
      const client = http2.connect(`http://127.0.0.1:${port}`);
      clients.push(client);
      return client;
    };
    try {
      const plain = connect();
      for (let i = 0; i < 20; i++)
        assert.equal(await get(plain, `127.0.0.1:${port}`), `127.0.0.1:${port}`);
      const url = connect();
      for (let i = 0; i < 20; i++)
        assert.equal(await get(url, `http://127.0.0.1:${port}`), `127.0.0.1:${port}`);
      // A client that sends nothing past its preface for longer than the gate waits.
      const idle = connect();
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.equal(await get(idle, `127.0.0.1:${port}`), `127.0.0.1:${port}`);
      assert.deepEqual(routed, ['direct', 'rewritten', 'rewritten']);
    } finally {
      for (const client of clients) client.close();
      front.close();
      server.close();
    }
  });
});
