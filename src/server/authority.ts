/**
 * Accepts the `:authority` etcdctl 3.4 sends for Maintenance calls to an http:// endpoint.
 *
 * etcd's Go client dials each endpoint of `endpoint status`, `endpoint hashkv`, `--cluster`
 * and the like with gRPC's passthrough resolver and the endpoint URL as target, so the
 * request's `:authority` is the whole URL, "http://127.0.0.1:2379". That is not an authority
 * (RFC 3986 §3.2: no "/"), and nghttp2 — Node's HTTP/2, under grpc-js — resets such a stream
 * with PROTOCOL_ERROR before any JavaScript sees it; Node exposes no option to relax the
 * check (nghttp2's "no HTTP messaging" is not among Node's session options). etcd's server
 * (Go's HTTP/2) accepts it, and later etcd clients send the plain "127.0.0.1:2379".
 *
 * So the client port reads what a gRPC client sends before nghttp2 does: it follows the
 * HTTP/2 frames, decodes every header block with the client's HPACK table (hpack.ts), and
 * where `:authority` is a URL it puts in the URL's authority instead. A rewritten block is
 * re-encoded as literals that leave nghttp2's table alone; since nghttp2's table then no
 * longer matches the client's, every later block of that connection is re-encoded too.
 * Until the first rewrite, every byte passes unchanged, so a connection that never needs
 * one is exactly what nghttp2 would have read. Anything this reader does not understand
 * (a malformed frame or header block, one over the limits) ends the reading: before the
 * first rewrite the connection goes on untouched, nghttp2 seeing exactly the client's bytes
 * and answering as it always would; after it, the connection is closed, as nghttp2 would
 * close it on such an error.
 */
import type * as net from 'node:net';
import { Duplex } from 'node:stream';
import { HpackDecoder, HpackError, encodeLiterals, type HeaderField } from './hpack.js';

const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const frameHeaderBytes = 9;
const frameHeaders = 0x1;
const frameContinuation = 0x9;
const framePushPromise = 0x5;
const flagEndStream = 0x1;
const flagEndHeaders = 0x4;
const flagPadded = 0x8;
const flagPriority = 0x20;

export interface AuthorityLimits {
  /** SETTINGS_MAX_FRAME_SIZE the server advertised (nghttp2's and HTTP/2's default). */
  frameSizeMax: number;
  /** SETTINGS_HEADER_TABLE_SIZE the server advertised (the default). */
  headerTableSizeMax: number;
  /** Largest header block, in octets as sent, this reader buffers. */
  blockBytesMax: number;
  /** Largest header list (RFC 7541 §4.1 sizes) a block may decode to. */
  headerListSizeMax: number;
}

export const defaultAuthorityLimits: AuthorityLimits = {
  frameSizeMax: 16_384,
  headerTableSizeMax: 4_096,
  blockBytesMax: 1 << 20,
  headerListSizeMax: 1 << 20,
};

/** The authority of a URL sent as `:authority`, or undefined where it needs no fixing. */
export function authorityOfUrl(value: string): string | undefined {
  const match = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(value);
  if (match === null) return undefined;
  const authority = match[1]!;
  // The characters nghttp2 accepts in an authority (RFC 3986 §3.2).
  return /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]+$/.test(authority) ? authority : undefined;
}

/** Thrown where the reader cannot go on after having rewritten: close the connection. */
export class AuthorityRewriteError extends Error {
  override readonly name = 'AuthorityRewriteError';
}

interface PendingBlock {
  streamId: number;
  flags: number;
  /** The 5 octets of a HEADERS frame's priority fields, if it had them. */
  priority: Buffer | undefined;
  fragments: Buffer[];
  bytes: number;
  /** The frames as received, header and payload, to pass on unchanged. */
  raw: Buffer[];
}

/**
 * The inbound (client to server) half of one HTTP/2 connection. `push` takes the bytes as
 * they arrive and returns the bytes to hand on; it throws AuthorityRewriteError when the
 * connection must be closed.
 */
export class AuthorityRewriter {
  private readonly decoder: HpackDecoder;
  /** What has been received and not yet handed on or consumed. */
  private input: Buffer = Buffer.alloc(0);
  private state: 'preface' | 'frame' | 'transparent' = 'preface';
  /** Octets of the current non-header frame's payload still to pass on as they come. */
  private passing = 0;
  private block: PendingBlock | undefined;
  /** Whether a block was re-encoded: nghttp2's table no longer matches the client's. */
  private diverged = false;
  private rewrites = 0;

  constructor(private readonly limits: AuthorityLimits = defaultAuthorityLimits) {
    this.decoder = new HpackDecoder(limits.headerTableSizeMax);
  }

  /** Header blocks rewritten so far. */
  get rewritten(): number {
    return this.rewrites;
  }

  push(chunk: Buffer): Buffer[] {
    if (this.state === 'transparent') return [chunk];
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      // giveUp (called below) may have switched to transparent.
      if (this.isTransparent()) {
        if (this.input.length > 0) out.push(this.input);
        this.input = Buffer.alloc(0);
        return out;
      }
      if (this.state === 'preface') {
        const n = Math.min(this.input.length, preface.length);
        if (!this.input.subarray(0, n).equals(preface.subarray(0, n))) {
          this.giveUp(out, 'no HTTP/2 preface');
          continue;
        }
        if (this.input.length < preface.length) return out;
        out.push(this.take(preface.length));
        this.state = 'frame';
        continue;
      }
      if (this.passing > 0) {
        if (this.input.length === 0) return out;
        const n = Math.min(this.passing, this.input.length);
        out.push(this.take(n));
        this.passing -= n;
        continue;
      }
      if (this.input.length < frameHeaderBytes) return out;
      const length = this.input.readUIntBE(0, 3);
      const type = this.input[3]!;
      const flags = this.input[4]!;
      const streamId = this.input.readUInt32BE(5) & 0x7fffffff;
      if (this.block !== undefined && type !== frameContinuation) {
        this.giveUp(out, 'a header block interrupted');
        continue;
      }
      if (type !== frameHeaders && type !== frameContinuation) {
        if (type === framePushPromise) {
          // Only a server may push: nghttp2 ends the connection.
          this.giveUp(out, 'PUSH_PROMISE from a client');
          continue;
        }
        out.push(this.take(frameHeaderBytes));
        this.passing = length;
        continue;
      }
      if (length > this.limits.frameSizeMax) {
        this.giveUp(out, 'frame over SETTINGS_MAX_FRAME_SIZE');
        continue;
      }
      if (this.input.length < frameHeaderBytes + length) return out;
      const frame = this.take(frameHeaderBytes + length);
      const problem = this.headerFrame(frame, type, flags, streamId, out);
      if (problem !== undefined) this.giveUp(out, problem, frame);
    }
  }

  /** Takes one HEADERS or CONTINUATION frame; returns what is wrong with it, if anything. */
  private headerFrame(
    frame: Buffer,
    type: number,
    flags: number,
    streamId: number,
    out: Buffer[],
  ): string | undefined {
    let payload = frame.subarray(frameHeaderBytes);
    if (streamId === 0) return 'header frame on stream 0';
    if (type === frameHeaders) {
      let priority: Buffer | undefined;
      if (flags & flagPadded) {
        if (payload.length < 1) return 'padded HEADERS too short';
        const padding = payload[0]!;
        if (padding >= payload.length) return 'padding beyond the frame';
        payload = payload.subarray(1, payload.length - padding);
      }
      if (flags & flagPriority) {
        if (payload.length < 5) return 'HEADERS too short for priority';
        priority = payload.subarray(0, 5);
        payload = payload.subarray(5);
      }
      this.block = { streamId, flags, priority, fragments: [], bytes: 0, raw: [] };
    } else if (this.block === undefined || this.block.streamId !== streamId) {
      return 'CONTINUATION without its HEADERS';
    }
    const block = this.block;
    block.raw.push(frame);
    block.fragments.push(payload);
    block.bytes += payload.length;
    if (block.bytes > this.limits.blockBytesMax) return 'header block too large';
    if ((flags & flagEndHeaders) === 0) return undefined;
    this.block = undefined;
    let fields: HeaderField[];
    try {
      fields = this.decoder.decode(Buffer.concat(block.fragments), {
        listSizeMax: this.limits.headerListSizeMax,
      });
    } catch (error) {
      if (error instanceof HpackError) {
        // The frames are handed on by giveUp if nothing was rewritten yet.
        this.block = block;
        return `header block: ${error.message}`;
      }
      throw error;
    }
    let changed = false;
    for (const field of fields) {
      if (field.name !== ':authority') continue;
      const authority = authorityOfUrl(field.value);
      if (authority === undefined) continue;
      field.value = authority;
      changed = true;
    }
    if (!changed && !this.diverged) {
      out.push(...block.raw);
      return undefined;
    }
    if (changed) this.rewrites++;
    this.diverged = true;
    out.push(...this.encodeBlock(block, encodeLiterals(fields)));
    return undefined;
  }

  /** HEADERS then CONTINUATION frames carrying `encoded`, none over the frame size. */
  private encodeBlock(block: PendingBlock, encoded: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    const priority = block.priority ?? Buffer.alloc(0);
    let offset = 0;
    let first = true;
    do {
      const room = this.limits.frameSizeMax - (first ? priority.length : 0);
      const piece = encoded.subarray(offset, offset + room);
      offset += piece.length;
      const last = offset >= encoded.length;
      const payload = first ? Buffer.concat([priority, piece]) : piece;
      let flags = last ? flagEndHeaders : 0;
      if (first) flags |= block.flags & (flagEndStream | flagPriority);
      const header = Buffer.alloc(frameHeaderBytes);
      header.writeUIntBE(payload.length, 0, 3);
      header[3] = first ? frameHeaders : frameContinuation;
      header[4] = flags;
      header.writeUInt32BE(block.streamId, 5);
      frames.push(header, payload);
      first = false;
    } while (offset < encoded.length);
    return frames;
  }

  /**
   * Stops reading frames. Before any rewrite, the connection goes on untouched: what was
   * held back (a partial header block, and `frame`) is handed on with the rest.
   */
  private giveUp(out: Buffer[], why: string, frame?: Buffer): void {
    if (this.diverged) throw new AuthorityRewriteError(why);
    const held = this.block?.raw ?? [];
    if (frame !== undefined && !held.includes(frame)) held.push(frame);
    out.push(...held);
    this.block = undefined;
    this.state = 'transparent';
  }

  private isTransparent(): boolean {
    return this.state === 'transparent';
  }

  private take(n: number): Buffer {
    const taken = this.input.subarray(0, n);
    this.input = this.input.subarray(n);
    return taken;
  }
}

/**
 * A gRPC connection as grpc-js should read it: the socket's inbound bytes pass through an
 * AuthorityRewriter, its outbound bytes go straight to the socket.
 */
export function acceptUrlAuthority(socket: net.Socket): Duplex {
  // Node's HTTP/2 sets no-delay on the sockets it owns; this one it does not see.
  socket.setNoDelay(true);
  const rewriter = new AuthorityRewriter();
  const connection = new Duplex({
    read: () => void socket.resume(),
    write: (chunk: Buffer, _encoding, callback) => {
      if (socket.write(chunk)) callback();
      else socket.once('drain', () => callback());
    },
    // nghttp2 writes a response as several buffers at once: one system call for them.
    writev: (chunks: { chunk: Buffer }[], callback) => {
      socket.cork();
      let flowing = true;
      for (const { chunk } of chunks) flowing = socket.write(chunk);
      socket.uncork();
      if (flowing) callback();
      else socket.once('drain', () => callback());
    },
    final: (callback) => {
      socket.end();
      callback();
    },
    destroy: (error, callback) => {
      socket.destroy();
      callback(error);
    },
  });
  socket.on('data', (chunk: Buffer) => {
    let out: Buffer[];
    try {
      out = rewriter.push(chunk);
    } catch (error) {
      connection.destroy(error as Error);
      return;
    }
    let more = true;
    for (const piece of out) more = connection.push(piece);
    if (!more) socket.pause();
  });
  socket.on('end', () => connection.push(null));
  socket.on('error', (error) => connection.destroy(error));
  socket.on('close', () => connection.destroy());
  return connection;
}
