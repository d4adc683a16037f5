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
 *
 * Reading every connection that way costs: the rewritten connection is a JavaScript stream
 * to Node's HTTP/2, which then writes one buffer at a time and finishes each write a turn
 * later. So gateUrlAuthority decides per connection: it answers the client's preface with an
 * empty SETTINGS frame of its own (gRPC clients send no request before the server's SETTINGS
 * arrive), reads until the client's first header block and its acknowledgement of those
 * SETTINGS — which it removes, nghttp2 having sent none — and then hands a connection whose
 * first request needs no rewrite to HTTP/2 directly, bytes put back, and any other through
 * the rewriter. A gRPC client gives every request of a connection the same `:authority`.
 */
import type * as net from 'node:net';
import { Duplex } from 'node:stream';
import { authorityGateMs } from './constants.js';
import { HpackDecoder, HpackError, encodeLiterals, type HeaderField } from './hpack.js';

const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const frameHeaderBytes = 9;
const frameHeaders = 0x1;
const frameContinuation = 0x9;
const framePushPromise = 0x5;
const frameSettings = 0x4;
const flagEndStream = 0x1;
const flagAck = 0x1;
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
  /** Header blocks read to their end. */
  private blocks = 0;
  /** Whether the next empty SETTINGS acknowledgement is to be removed (expectSettingsAck). */
  private ackPending = false;

  constructor(private readonly limits: AuthorityLimits = defaultAuthorityLimits) {
    this.decoder = new HpackDecoder(limits.headerTableSizeMax);
  }

  /** Header blocks rewritten so far. */
  get rewritten(): number {
    return this.rewrites;
  }

  /**
   * The server sent a SETTINGS frame nghttp2 did not: the client's acknowledgement of it,
   * the first it sends, is removed from what is handed on.
   */
  expectSettingsAck(): void {
    this.ackPending = true;
  }

  /**
   * What gateUrlAuthority does with the connection so far: 'rewrite' once a block was
   * rewritten; 'direct' once the first block passed unchanged and the acknowledgement was
   * removed, or the reader gave up untouched; undefined while it cannot tell yet.
   */
  verdict(): 'rewrite' | 'direct' | undefined {
    if (this.rewrites > 0) return 'rewrite';
    if (this.isTransparent()) return 'direct';
    return this.blocks > 0 && !this.ackPending ? 'direct' : undefined;
  }

  /**
   * Ends the reading before any rewrite: the bytes received and not yet handed on (a header
   * block in progress, a partial frame), for HTTP/2 to read first.
   */
  handOff(): Buffer[] {
    if (this.diverged)
      throw new AuthorityRewriteError('a rewritten connection cannot be handed off');
    const held = [...(this.block?.raw ?? []), this.input];
    this.block = undefined;
    this.input = Buffer.alloc(0);
    this.state = 'transparent';
    return held;
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
        if (type === frameSettings && flags & flagAck && length === 0 && this.ackPending) {
          this.take(frameHeaderBytes);
          this.ackPending = false;
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
    this.blocks++;
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
export function acceptUrlAuthority(
  socket: net.Socket,
  rewriter = new AuthorityRewriter(),
  received: readonly Buffer[] = [],
): Duplex {
  // Node's HTTP/2 sets no-delay on the sockets it owns; this one it does not see.
  socket.setNoDelay(true);
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
  for (const piece of received) connection.push(piece);
  return connection;
}

/** An empty SETTINGS frame: the server's connection preface, saying nothing. */
const emptySettings = Buffer.from([0, 0, 0, frameSettings, 0, 0, 0, 0, 0]);

/**
 * Sends a gRPC connection (its first bytes the HTTP/2 preface, put back) to HTTP/2 directly
 * if its first request's `:authority` needs no rewrite, else through the rewriter; see the
 * top of this file. A connection that has not told within `decideMs` is read through the
 * rewriter, which serves any connection.
 */
export function gateUrlAuthority(
  socket: net.Socket,
  /**
   * Gets the connection for HTTP/2: 'direct', the socket itself with what was read put back;
   * 'rewritten', the stream acceptUrlAuthority gives.
   */
  route: (connection: Duplex, path: 'direct' | 'rewritten') => void,
  decideMs = authorityGateMs,
): void {
  const rewriter = new AuthorityRewriter();
  rewriter.expectSettingsAck();
  const received: Buffer[] = [];
  const timer = setTimeout(() => settle('rewrite'), decideMs);
  const stop = (): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('close', stop);
  };
  const settle = (verdict: 'rewrite' | 'direct'): void => {
    stop();
    if (verdict === 'rewrite') {
      route(acceptUrlAuthority(socket, rewriter, received), 'rewritten');
      return;
    }
    socket.pause();
    socket.unshift(Buffer.concat([...received, ...rewriter.handOff()]));
    route(socket, 'direct');
  };
  const onData = (chunk: Buffer): void => {
    try {
      received.push(...rewriter.push(chunk));
    } catch {
      // Nothing is rewritten before a verdict: push cannot throw here; be safe anyway.
      stop();
      socket.destroy();
      return;
    }
    const verdict = rewriter.verdict();
    if (verdict !== undefined) settle(verdict);
  };
  const onError = (): void => {
    stop();
    socket.destroy();
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('close', stop);
  socket.write(emptySettings);
  socket.resume();
}
