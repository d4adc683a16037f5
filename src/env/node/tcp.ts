/**
 * The real node-to-node network: persistent framed TCP connections on node:net.
 *
 * Each node opens one outbound connection per peer, lazily on the first send, and only
 * ever writes on it; it reads what peers send on the connections they opened to it. So
 * between two nodes there are two connections, one per direction, and neither side has
 * to decide who dials whom. The first frame on a connection is a handshake naming the
 * sender and the intended receiver; until it arrives and checks out, the connection
 * carries nothing else.
 *
 * Every frame is [length u32 LE][CRC32C u32 LE][payload] (src/core/frame.ts). Sends are
 * framed at once into a per-peer queue of large chunks, and a flush hands whole chunks to
 * the socket: the first of a turn of the event loop once the callback that sent returns,
 * the rest at the turn's end, so the messages of one Raft Ready become one write, and under
 * load those of a whole turn. The queue is bounded in messages and bytes; overflow is dropped and
 * counted, as the Network contract allows (protocols tolerate loss). A lost connection
 * keeps its queue and is redialled with exponential backoff and jitter.
 *
 * A peer may have several addresses: a dial that fails moves on to the next one, and only a
 * round in which every address failed waits out the backoff.
 *
 * Two exceptions to one-way traffic, each on a connection of its own:
 * - A retired peer (removePeer: it left the membership) that dials us is answered with one
 *   retired notice before the connection closes (at most one per retiredNoticeEveryMs per
 *   peer; the dialler's backoff bounds the rest), so a node that missed being told it left
 *   learns it from whoever it tries to talk to, as etcd's peers answer a removed member
 *   with 410 Gone. The dialler reports the notice through onRetired.
 * - A query (queryPeer) asks a node one question before it knows who it is — a joining
 *   member asks for the member list to learn its own id. Its handshake names no node; the
 *   answer is one frame on the same connection, which then closes.
 *
 * Bad input on an inbound connection closes that connection alone, with a logged reason
 * and a counter; it never throws out of a socket callback.
 *
 * TLS (https:// peer URLs): with `tls`, this node accepts only TLS connections, and it dials
 * over TLS every address marked `tls`, presenting its certificate as a client; everything
 * above the socket is the same.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { assert } from '../../core/assert.js';
import { decode, encode } from '../../core/codec.js';
import {
  frameHeaderBytes,
  frameSizeBytesMax,
  handshakeTimeoutMs,
  peerQueueBytesMax,
  peerQueueMessagesMax,
  reconnectDelayMsMax,
  reconnectDelayMsMin,
  reconnectJitterRatio,
} from '../../core/constants.js';
import { ChorusError, describeError, TimeoutError } from '../../core/errors.js';
import { encodeFrame, FrameDecoder, writeFrameHeader } from '../../core/frame.js';
import { isNodeId, type NodeId } from '../../core/ids.js';
import type { Random } from '../../core/prng.js';
import type { Logger, Network } from '../env.js';

export interface TcpAddress {
  host: string;
  port: number;
  /** Dial over TLS (an https:// peer URL). */
  tls?: boolean;
}

/** A node's TLS towards its peers: as the server they dial, and as a client when it dials. */
export interface PeerTls {
  server: tls.TlsOptions;
  client: tls.ConnectionOptions;
}

/**
 * A socket to `address`, over TLS if the address says so (with `client`'s certificate and
 * CAs); `onOpen` runs once it may carry frames (after the TLS handshake).
 */
function dial(
  address: TcpAddress,
  client: tls.ConnectionOptions | undefined,
  onOpen: () => void,
): net.Socket {
  if (address.tls !== true) {
    const socket = net.connect({ host: address.host, port: address.port });
    socket.once('connect', onOpen);
    return socket;
  }
  // The host names the server (certificate check, SNI); an IP is checked against IP SANs.
  const socket = tls.connect({ ...client, host: address.host, port: address.port });
  socket.once('secureConnect', onOpen);
  return socket;
}

/** Every limit of the TCP network. Defaults come from src/core/constants.ts; tests shrink them. */
export interface TcpLimits {
  peerQueueMessagesMax: number;
  peerQueueBytesMax: number;
  handshakeTimeoutMs: number;
  reconnectDelayMsMin: number;
  reconnectDelayMsMax: number;
  reconnectJitterRatio: number;
  /** A dial that has not connected by then is abandoned (a black-holed peer would take minutes). */
  connectTimeoutMs: number;
  /** Inbound connections held at once; more are closed at accept (one per peer is normal). */
  inboundConnectionsMax: number;
  /** Size of the buffers frames are packed into; one socket write hands over one chunk. */
  writeChunkBytes: number;
}

export const tcpLimitsDefault: Readonly<TcpLimits> = {
  peerQueueMessagesMax,
  peerQueueBytesMax,
  handshakeTimeoutMs,
  reconnectDelayMsMin,
  reconnectDelayMsMax,
  reconnectJitterRatio,
  connectTimeoutMs: 5_000,
  inboundConnectionsMax: 1_024,
  writeChunkBytes: 64 * 1024,
};

/** The handshake is tiny; bounding it stops an unidentified connection from making us buffer a 4 MiB frame. */
export const handshakeBytesMax = 256;
const handshakeMagic = 'chorus';
const handshakeVersion = 1;
/** The magic of a query's handshake: no sender, a question instead of a receiver. */
const queryMagic = 'chorus-query';
/** The third element of a retired notice (a handshake's place holds the sender there). */
const retiredMark = 'retired';
/** Retired peers remembered (oldest forgotten first); each is one removed member. */
export const retiredPeersMax = 4096;
/** At most one retired notice per peer this often; other dials of it are closed unanswered. */
export const retiredNoticeEveryMs = 1_000;
/** Longest question a query may ask (its handshake stays under handshakeBytesMax). */
export const queryQuestionCharsMax = 64;

/** The payload of the first frame on every connection: who is dialling whom. */
export function encodeHandshake(from: NodeId, to: NodeId): Uint8Array {
  return encode([handshakeMagic, handshakeVersion, from, to]);
}

/** The one frame a node answers a retired peer's handshake with: "you, `to`, are retired". */
export function encodeRetiredNotice(to: NodeId): Uint8Array {
  return encode([handshakeMagic, handshakeVersion, retiredMark, to]);
}

function isRetiredNotice(payload: Uint8Array, self: NodeId): boolean {
  let value: unknown;
  try {
    value = decode(payload);
  } catch {
    return false;
  }
  if (!Array.isArray(value) || value.length !== 4) return false;
  const [magic, version, mark, to] = value as unknown[];
  return (
    magic === handshakeMagic && version === handshakeVersion && mark === retiredMark && to === self
  );
}

export function encodeQuery(question: string): Uint8Array {
  assert(question.length <= queryQuestionCharsMax, () => `question of ${question.length} chars`);
  return encode([queryMagic, handshakeVersion, question]);
}

export type TcpDropReason = 'queue-full' | 'too-large' | 'unknown-peer' | 'closed';

/** Why this side closed a connection (socket errors are counted as `socket:<errno code>`). */
export type TcpCloseReason =
  | 'frame-too-large'
  | 'checksum-mismatch'
  | 'truncated-frame'
  | 'bad-handshake'
  | 'bad-query'
  | 'handshake-timeout'
  | 'unexpected-data'
  | 'connect-timeout'
  | 'inbound-limit'
  | 'peer-closed'
  | 'retired-peer'
  | 'retired';

export interface TcpNetworkStats {
  /** Messages and frame bytes handed to a socket (not proof of delivery). */
  sentMessages: number;
  sentBytes: number;
  /** Messages and payload bytes delivered to the handler. */
  receivedMessages: number;
  receivedBytes: number;
  dropped: Record<TcpDropReason, number>;
  /** Connections closed for a reason other than our own close(), by reason. */
  connectionErrors: Record<string, number>;
  connectsStarted: number;
  connectsSucceeded: number;
  inboundAccepted: number;
  /** Queries answered, and retired notices sent to (and received from) peers. */
  queriesAnswered: number;
  retiredNoticesSent: number;
  retiredNoticesReceived: number;
}

export interface TcpNetworkOptions {
  self: NodeId;
  listen: TcpAddress;
  /** Each peer's address, or its addresses to dial in turn. */
  peers: ReadonlyMap<NodeId, TcpAddress | readonly TcpAddress[]>;
  log: Logger;
  /** Draws reconnect jitter. */
  random: Random;
  limits?: Partial<TcpLimits>;
  /** Accept TLS connections only, and dial `tls` addresses with this client side. */
  tls?: PeerTls;
}

/** The delay before redial number `attempt` (0-based): doubling from min to max, minus up to `ratio` of it. */
export function reconnectDelayMs(attempt: number, limits: TcpLimits, random: Random): number {
  assert(attempt >= 0, () => `attempt ${attempt}`);
  const base = Math.min(
    limits.reconnectDelayMsMax,
    limits.reconnectDelayMsMin * 2 ** Math.min(attempt, 30),
  );
  const delayMs = base * (1 - limits.reconnectJitterRatio * random.float());
  assert(delayMs >= 0 && delayMs <= limits.reconnectDelayMsMax, () => `delay ${delayMs}`);
  return delayMs;
}

/** What the peers and connections share with the network that owns them. */
interface Shared {
  readonly self: NodeId;
  readonly log: Logger;
  readonly random: Random;
  readonly limits: TcpLimits;
  readonly stats: TcpNetworkStats;
  /** This node's TLS client side, for addresses marked `tls` (setTls replaces it). */
  tlsClient: tls.ConnectionOptions | undefined;
  countError(reason: string): void;
  /** A peer told us we are retired (see the file comment). */
  retired(by: NodeId): void;
}

/**
 * A chunk of packed frames. Bytes [0, start) are handed to the socket and must not change;
 * [start, end) are queued; [end, length) are free. Invariant: start <= end <= buffer.length,
 * and [start, end) holds exactly `messages` whole frames.
 */
interface Chunk {
  buffer: Buffer;
  start: number;
  end: number;
  messages: number;
}

/** Frames queued for one peer, packed into chunks as they are sent. */
class FrameQueue {
  private readonly chunks: Chunk[] = [];
  messages = 0;
  bytes = 0;

  constructor(private readonly chunkBytes: number) {}

  append(payload: Uint8Array): void {
    const frameBytes = frameHeaderBytes + payload.length;
    let tail = this.chunks[this.chunks.length - 1];
    if (tail === undefined || tail.buffer.length - tail.end < frameBytes) {
      tail = {
        buffer: Buffer.allocUnsafe(Math.max(this.chunkBytes, frameBytes)),
        start: 0,
        end: 0,
        messages: 0,
      };
      this.chunks.push(tail);
    }
    writeFrameHeader(tail.buffer, tail.end, payload);
    tail.buffer.set(payload, tail.end + frameHeaderBytes);
    tail.end += frameBytes;
    tail.messages += 1;
    this.messages += 1;
    this.bytes += frameBytes;
  }

  /** Removes and returns the oldest queued bytes (whole frames), or undefined when empty. */
  take(): { bytes: Buffer; messages: number } | undefined {
    for (;;) {
      const head = this.chunks[0];
      if (head === undefined) return undefined;
      const isTail = this.chunks.length === 1;
      if (head.start === head.end) {
        if (isTail) return undefined;
        this.chunks.shift();
        continue;
      }
      const taken = { bytes: head.buffer.subarray(head.start, head.end), messages: head.messages };
      this.messages -= head.messages;
      this.bytes -= taken.bytes.length;
      head.start = head.end;
      head.messages = 0;
      // A full or superseded chunk is done; the tail keeps filling its free space.
      if (!isTail || head.end === head.buffer.length) this.chunks.shift();
      assert(this.messages >= 0 && this.bytes >= 0, 'frame queue accounting');
      return taken;
    }
  }

  clear(): number {
    const dropped = this.messages;
    this.chunks.length = 0;
    this.messages = 0;
    this.bytes = 0;
    return dropped;
  }
}

type OutboundState = 'idle' | 'connecting' | 'open' | 'backoff' | 'closed';

/** The one outbound connection to a peer, its queue and its redial schedule. */
class OutboundPeer {
  private state: OutboundState = 'idle';
  private socket: net.Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Failed dials since the last successful connect; drives the backoff. */
  private attempts = 0;
  private awaitingDrain = false;
  private flushScheduled = false;
  /** A flush ran in this turn of the event loop: later sends wait for the turn's end. */
  private turnFlushed = false;
  /** True once the current socket's failure is counted, so its 'close' does not count again. */
  private failureCounted = false;
  private readonly queue: FrameQueue;
  private readonly log: Logger;
  /** The peer's addresses, dialled in turn; never empty. */
  private addresses: TcpAddress[];
  /** Index into `addresses` of the one dialled next (the one that last worked, first). */
  private current = 0;
  /** Dials since the last connect or backoff; a round ends once every address failed. */
  private dialsThisRound = 0;

  constructor(
    readonly id: NodeId,
    addresses: readonly TcpAddress[],
    private readonly shared: Shared,
  ) {
    assert(addresses.length > 0, () => `peer ${id} without an address`);
    this.addresses = addresses.map((a) => ({ ...a }));
    this.queue = new FrameQueue(shared.limits.writeChunkBytes);
    this.log = shared.log.child({ peer: id, direction: 'out' });
  }

  get address(): TcpAddress {
    return this.addresses[this.current]!;
  }

  /** New addresses take effect at the next dial; the same ones change nothing. */
  setAddresses(addresses: readonly TcpAddress[]): void {
    assert(addresses.length > 0, () => `peer ${this.id} without an address`);
    const same =
      addresses.length === this.addresses.length &&
      addresses.every(
        (a, i) => a.host === this.addresses[i]!.host && a.port === this.addresses[i]!.port,
      );
    if (same) return;
    this.addresses = addresses.map((a) => ({ ...a }));
    this.current = 0;
    this.dialsThisRound = 0;
  }

  queued(): { messages: number; bytes: number } {
    return { messages: this.queue.messages, bytes: this.queue.bytes };
  }

  enqueue(payload: Uint8Array): boolean {
    const { limits, stats } = this.shared;
    const frameBytes = frameHeaderBytes + payload.length;
    if (
      this.queue.messages + 1 > limits.peerQueueMessagesMax ||
      this.queue.bytes + frameBytes > limits.peerQueueBytesMax
    ) {
      stats.dropped['queue-full'] += 1;
      return false;
    }
    this.queue.append(payload);
    if (this.state === 'idle') this.connect();
    else if (this.state === 'open') this.scheduleFlush();
    return true;
  }

  close(): void {
    this.state = 'closed';
    clearTimeout(this.timer);
    this.timer = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    this.shared.stats.dropped.closed += this.queue.clear();
  }

  private connect(): void {
    assert(this.socket === undefined, 'connect with a live socket');
    this.state = 'connecting';
    this.failureCounted = false;
    this.dialsThisRound += 1;
    this.shared.stats.connectsStarted += 1;
    const socket = dial(this.address, this.shared.tlsClient, () => this.onConnect(socket));
    this.socket = socket;
    // Nothing but a retired notice may arrive on a connection we opened (see the file comment).
    const replies = new FrameDecoder(handshakeBytesMax);
    socket.setNoDelay(true);
    this.timer = setTimeout(
      () =>
        this.fail(
          socket,
          'connect-timeout',
          `no connection after ${this.shared.limits.connectTimeoutMs} ms`,
        ),
      this.shared.limits.connectTimeoutMs,
    );
    socket.on('data', (chunk: Buffer) => this.onReply(socket, replies, chunk));
    socket.on('drain', () => {
      this.awaitingDrain = false;
      this.flush();
    });
    socket.on('error', (error: NodeJS.ErrnoException) =>
      this.fail(socket, `socket:${error.code ?? 'error'}`, describeError(error)),
    );
    socket.on('close', () => this.onClose(socket));
  }

  private onConnect(socket: net.Socket): void {
    if (socket !== this.socket) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.state = 'open';
    this.attempts = 0;
    this.dialsThisRound = 0;
    this.shared.stats.connectsSucceeded += 1;
    this.log.debug('connected', { address: this.address });
    socket.write(encodeFrame(encodeHandshake(this.shared.self, this.id)));
    this.flush();
  }

  /**
   * Peers never write on a connection we opened, except one retired notice before they close
   * it; anything else is a protocol violation.
   */
  private onReply(socket: net.Socket, replies: FrameDecoder, chunk: Buffer): void {
    if (socket !== this.socket) return;
    const payloads = replies.push(chunk);
    const notice = payloads.find((p) => isRetiredNotice(p, this.shared.self));
    if (notice !== undefined) {
      this.shared.stats.retiredNoticesReceived += 1;
      this.fail(socket, 'retired', 'the peer says this node left the membership');
      this.shared.retired(this.id);
      return;
    }
    if (payloads.length > 0 || replies.error !== undefined)
      this.fail(socket, 'unexpected-data', 'peer wrote on our outbound connection');
  }

  /** Counts and logs why this side gives up on the connection; 'close' then schedules the redial. */
  private fail(socket: net.Socket, reason: string, detail: string): void {
    if (socket !== this.socket || this.failureCounted) return;
    this.failureCounted = true;
    this.shared.countError(reason);
    // A peer that is down fails every redial; say so once, not every few seconds.
    const level = this.attempts === 0 ? 'warn' : 'debug';
    this.log[level]('connection failed', {
      reason,
      detail,
      address: this.address,
      attempts: this.attempts,
    });
    socket.destroy();
  }

  private onClose(socket: net.Socket): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.awaitingDrain = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    if (wasOpen && !this.failureCounted) {
      this.shared.countError('peer-closed');
      this.log.info('connection closed by peer');
    }
    if (!wasOpen) this.current = (this.current + 1) % this.addresses.length;
    if (!wasOpen && this.dialsThisRound < this.addresses.length && this.queue.messages > 0) {
      // Another address of this peer is still untried in this round: dial it at once.
      this.connect();
      return;
    }
    this.dialsThisRound = 0;
    const delayMs = reconnectDelayMs(this.attempts, this.shared.limits, this.shared.random);
    this.attempts += 1;
    this.state = 'backoff';
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Lazy again: with nothing to say, wait for the next send to dial.
      if (this.queue.messages > 0) this.connect();
      else this.state = 'idle';
    }, delayMs);
  }

  /**
   * The first sends of a turn of the event loop go out once the callback that sent them
   * returns (a microtask): waiting for the turn's end (setImmediate) let the loop first run
   * the I/O completions already waiting, and a leader's appends reached the followers ~0.3 ms
   * later, on every write's critical path. Sends later in the same turn wait for its end and
   * share one write: under load, a turn runs many callbacks (a follower forwarding one
   * client request per callback), and a write each cost throughput and CPU.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.awaitingDrain) return;
    this.flushScheduled = true;
    if (this.turnFlushed) return;
    this.turnFlushed = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
    setImmediate(() => {
      this.turnFlushed = false;
      if (!this.flushScheduled) return;
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** What is queued goes out now (Network.flush); the scheduled flush then finds nothing. */
  flushNow(): void {
    if (!this.flushScheduled) return;
    this.flushScheduled = false;
    this.flush();
  }

  private flush(): void {
    const socket = this.socket;
    if (this.state !== 'open' || socket === undefined || this.awaitingDrain) return;
    for (;;) {
      const piece = this.queue.take();
      if (piece === undefined) return;
      this.shared.stats.sentMessages += piece.messages;
      this.shared.stats.sentBytes += piece.bytes.length;
      if (!socket.write(piece.bytes)) {
        // The socket buffer is full: hold the rest in our bounded queue until it drains.
        this.awaitingDrain = true;
        return;
      }
    }
  }
}

/** One connection a peer opened to us: handshake first, then frames to deliver. */
class InboundConnection {
  peer: NodeId | undefined;
  /** Bytes before the handshake completes; never more than one handshake frame plus a chunk. */
  private early: Buffer = Buffer.alloc(0);
  private decoder: FrameDecoder | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closedReason: string | undefined;

  constructor(
    readonly socket: net.Socket,
    private readonly shared: Shared,
    /** Whether a dialler is a peer, a retired peer to answer with a notice, or neither. */
    private readonly admit: (id: NodeId) => 'peer' | 'notify-retired' | 'refuse',
    /** The answer to a query (see the file comment), or undefined when this node takes none. */
    private readonly answer: (question: string) => Uint8Array | undefined,
    private readonly onIdentified: (connection: InboundConnection) => void,
    private readonly deliver: (from: NodeId, payload: Uint8Array) => void,
    private readonly onGone: (connection: InboundConnection) => void,
  ) {
    socket.setNoDelay(true);
    this.timer = setTimeout(
      () =>
        this.reject(
          'handshake-timeout',
          `no handshake within ${shared.limits.handshakeTimeoutMs} ms`,
        ),
      shared.limits.handshakeTimeoutMs,
    );
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (error: NodeJS.ErrnoException) =>
      this.reject(`socket:${error.code ?? 'error'}`, describeError(error)),
    );
    socket.on('close', () => {
      clearTimeout(this.timer);
      this.onGone(this);
    });
  }

  /** Closes without counting an error (our own close(), or a newer connection from the same peer). */
  dispose(): void {
    this.closedReason ??= 'disposed';
    clearTimeout(this.timer);
    this.socket.destroy();
  }

  /** Closes this connection alone because of what the peer did. */
  reject(reason: string, detail: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    clearTimeout(this.timer);
    this.shared.countError(reason);
    this.shared.log.warn('closing inbound connection', {
      reason,
      detail,
      peer: this.peer,
      remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
    });
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closedReason !== undefined) return;
    if (this.decoder === undefined) this.onEarlyData(chunk);
    else this.onFrameData(this.decoder, chunk);
  }

  private onEarlyData(chunk: Buffer): void {
    this.early = this.early.length === 0 ? chunk : Buffer.concat([this.early, chunk]);
    if (this.early.length < frameHeaderBytes) return;
    const length = this.early.readUInt32LE(0);
    if (length > handshakeBytesMax) {
      return this.reject('bad-handshake', `first frame of ${length} bytes is no handshake`);
    }
    const frameBytes = frameHeaderBytes + length;
    if (this.early.length < frameBytes) return;
    const checker = new FrameDecoder(handshakeBytesMax);
    const [payload] = checker.push(this.early.subarray(0, frameBytes));
    if (checker.error !== undefined || payload === undefined) {
      return this.reject(
        checker.error?.code ?? 'bad-handshake',
        checker.error?.message ?? 'no frame',
      );
    }
    const verdict = this.checkHandshake(payload);
    if ('refusal' in verdict) return this.reject('bad-handshake', verdict.refusal);
    if ('retired' in verdict)
      return this.finishWith('retired-peer', encodeRetiredNotice(verdict.retired));
    if ('question' in verdict) return this.answerQuery(verdict.question);
    clearTimeout(this.timer);
    this.timer = undefined;
    this.peer = verdict.peer;
    this.onIdentified(this);
    const rest = this.early.subarray(frameBytes);
    this.early = Buffer.alloc(0);
    this.decoder = new FrameDecoder();
    if (rest.length > 0) this.onFrameData(this.decoder, rest);
  }

  /** The sender's id, a retired sender, a query, or why the handshake is refused. */
  private checkHandshake(
    payload: Uint8Array,
  ): { peer: NodeId } | { retired: NodeId } | { question: string } | { refusal: string } {
    let value: unknown;
    try {
      value = decode(payload);
    } catch (error) {
      return { refusal: describeError(error) };
    }
    if (Array.isArray(value) && value.length === 3 && value[0] === queryMagic) {
      const [, version, question] = value as unknown[];
      if (version !== handshakeVersion)
        return { refusal: `unsupported query version ${String(version)}` };
      if (typeof question !== 'string' || question.length > queryQuestionCharsMax)
        return { refusal: 'query without a question' };
      return { question };
    }
    if (!Array.isArray(value) || value.length !== 4)
      return { refusal: 'handshake is not a 4-element array' };
    const [magic, version, from, to] = value as unknown[];
    if (magic !== handshakeMagic) return { refusal: 'handshake magic mismatch' };
    if (version !== handshakeVersion)
      return { refusal: `unsupported handshake version ${String(version)}` };
    if (!isNodeId(from)) return { refusal: 'handshake sender is not a node id' };
    if (!isNodeId(to) || to !== this.shared.self) {
      return { refusal: `handshake is for ${JSON.stringify(to)}, this is ${this.shared.self}` };
    }
    switch (this.admit(from)) {
      case 'peer':
        return { peer: from };
      case 'notify-retired':
        return { retired: from };
      case 'refuse':
        return { refusal: `unknown peer ${from}` };
    }
  }

  private answerQuery(question: string): void {
    let reply: Uint8Array | undefined;
    try {
      reply = this.answer(question);
    } catch (error) {
      return this.reject(
        'bad-query',
        `answering ${JSON.stringify(question)}: ${describeError(error)}`,
      );
    }
    if (reply === undefined || reply.length > frameSizeBytesMax)
      return this.reject('bad-query', `no answer to ${JSON.stringify(question)}`);
    this.shared.stats.queriesAnswered += 1;
    this.finishWith(undefined, reply);
  }

  /**
   * Writes one last frame and closes: the answer to a query, or a retired notice (counted
   * under `reason`). The socket is destroyed if the dialler has not closed within the
   * handshake timeout.
   */
  private finishWith(reason: 'retired-peer' | undefined, payload: Uint8Array): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason ?? 'answered';
    clearTimeout(this.timer);
    if (reason !== undefined) {
      this.shared.countError(reason);
      this.shared.stats.retiredNoticesSent += 1;
      this.shared.log.info('told a retired peer it left the membership', {
        remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      });
    }
    this.socket.end(encodeFrame(payload));
    this.timer = setTimeout(() => this.socket.destroy(), this.shared.limits.handshakeTimeoutMs);
  }

  private onFrameData(decoder: FrameDecoder, chunk: Uint8Array): void {
    const peer = this.peer;
    assert(peer !== undefined, 'frames before handshake');
    const payloads = decoder.push(chunk);
    // Frames before a bad one passed their checksum, so they are delivered.
    for (const payload of payloads) {
      // A copy, so a message the handler keeps does not pin a whole socket read buffer.
      // Buffer.from copies small payloads into Node's 8 KiB pool: one allocation per slab, not
      // per message, which is three times faster than a Uint8Array of its own.
      this.deliver(peer, Buffer.from(payload));
      if (this.closedReason !== undefined) return;
    }
    if (decoder.error !== undefined) this.reject(decoder.error.code, decoder.error.message);
  }

  private onEnd(): void {
    const pending = this.decoder?.pendingBytes ?? this.early.length;
    if (pending > 0) {
      this.reject('truncated-frame', `connection ended inside a frame (${pending} bytes held)`);
    } else if (this.peer === undefined) {
      this.reject('bad-handshake', 'connection ended before a handshake');
    }
  }
}

/** The Network of a real process. Call `start` to accept connections; `close` to stop. */
export class TcpNetwork implements Network {
  readonly self: NodeId;
  private readonly shared: Shared;
  private readonly log: Logger;
  private readonly listenAddress: TcpAddress;
  private readonly outbound = new Map<NodeId, OutboundPeer>();
  private peerIds: readonly NodeId[] = [];
  private readonly inbound = new Set<InboundConnection>();
  private readonly inboundByPeer = new Map<NodeId, InboundConnection>();
  private readonly server: net.Server;
  private bound: TcpAddress | undefined;
  private handler: (from: NodeId, payload: Uint8Array) => void = () => {};
  private retiredHandler: (by: NodeId) => void = () => {};
  private answerer: ((question: string) => Uint8Array | undefined) | undefined;
  /** Peers that left the membership, each with when it was last sent a notice (monotonic ms). */
  private readonly retired = new Map<NodeId, number>();
  private closed = false;

  constructor(options: TcpNetworkOptions) {
    this.self = options.self;
    this.log = options.log.child({ node: options.self, component: 'tcp' });
    const limits: TcpLimits = { ...tcpLimitsDefault, ...options.limits };
    assert(limits.reconnectDelayMsMin > 0, 'reconnectDelayMsMin must be positive');
    assert(limits.reconnectDelayMsMin <= limits.reconnectDelayMsMax, 'reconnect delay min > max');
    assert(
      limits.reconnectJitterRatio >= 0 && limits.reconnectJitterRatio <= 1,
      'jitter ratio in [0, 1]',
    );
    const stats: TcpNetworkStats = {
      sentMessages: 0,
      sentBytes: 0,
      receivedMessages: 0,
      receivedBytes: 0,
      dropped: { 'queue-full': 0, 'too-large': 0, 'unknown-peer': 0, closed: 0 },
      connectionErrors: {},
      connectsStarted: 0,
      connectsSucceeded: 0,
      inboundAccepted: 0,
      queriesAnswered: 0,
      retiredNoticesSent: 0,
      retiredNoticesReceived: 0,
    };
    this.shared = {
      self: options.self,
      log: this.log,
      random: options.random,
      limits,
      stats,
      tlsClient: options.tls?.client,
      countError: (reason) => {
        stats.connectionErrors[reason] = (stats.connectionErrors[reason] ?? 0) + 1;
      },
      retired: (by) => {
        if (!this.closed) this.retiredHandler(by);
      },
    };
    this.listenAddress = { ...options.listen };
    for (const [id, address] of options.peers) this.setPeer(id, address);
    if (options.tls === undefined) {
      this.server = net.createServer((socket) => this.onConnection(socket));
    } else {
      const serverOptions = { ...options.tls.server, handshakeTimeout: limits.handshakeTimeoutMs };
      this.server = tls.createServer(serverOptions, (socket) => this.onConnection(socket));
      // A peer without an acceptable certificate (or speaking plain TCP): that connection only.
      this.server.on('tlsClientError', (error: Error & { reason?: string }) => {
        this.shared.countError('tls-handshake');
        this.log.warn('peer TLS handshake failed', { error: error.reason ?? error.message.trim() });
      });
    }
  }

  /** Starts accepting connections; `done` gets the listen error, if any. */
  start(done: (error: Error | undefined) => void): void {
    assert(!this.closed && this.bound === undefined, 'start once, before close');
    const onError = (error: Error): void => done(error);
    this.server.once('error', onError);
    this.server.listen(this.listenAddress.port, this.listenAddress.host, () => {
      this.server.off('error', onError);
      this.server.on('error', (error) =>
        this.log.error('server error', { error: describeError(error) }),
      );
      const address = this.server.address();
      assert(address !== null && typeof address === 'object', 'server has an address');
      this.bound = {
        host: address.address,
        port: address.port,
        ...(this.server instanceof tls.Server ? { tls: true } : {}),
      };
      this.log.info('listening', { ...this.bound });
      done(undefined);
    });
  }

  /**
   * New certificates, keys and CAs (rotated files): connections accepted or dialled from now
   * on use them; open ones keep theirs. Only for a network started with `tls`.
   */
  setTls(options: PeerTls): void {
    assert(this.server instanceof tls.Server, 'setTls on a network without TLS');
    this.server.setSecureContext(options.server);
    this.shared.tlsClient = options.client;
  }

  /** The bound address once started (the real port when asked for port 0). */
  get listening(): TcpAddress | undefined {
    return this.bound === undefined ? undefined : { ...this.bound };
  }

  /**
   * Adds a peer or changes its addresses (the next dial uses them). A peer with several
   * addresses is dialled at each in turn until one connects.
   */
  setPeer(id: NodeId, address: TcpAddress | readonly TcpAddress[]): void {
    assert(isNodeId(id), () => `peer id ${String(id)}`);
    if (id === this.self) return;
    const addresses = Array.isArray(address) ? address : [address as TcpAddress];
    this.retired.delete(id);
    const peer = this.outbound.get(id);
    if (peer !== undefined) {
      peer.setAddresses(addresses);
      return;
    }
    this.outbound.set(id, new OutboundPeer(id, addresses, this.shared));
    this.peerIds = [...this.outbound.keys()];
  }

  /**
   * Retires a peer (it left the membership), known before or not: its queue is dropped, its
   * outbound connection closed, and its inbound connection closed; a later handshake from it
   * is answered with a retired notice (rate-limited), then closed.
   */
  removePeer(id: NodeId): void {
    if (id === this.self) return;
    if (!this.retired.has(id)) {
      if (this.retired.size >= retiredPeersMax)
        this.retired.delete(this.retired.keys().next().value!);
      this.retired.set(id, -Infinity);
    }
    const peer = this.outbound.get(id);
    if (peer === undefined) return;
    peer.close();
    this.outbound.delete(id);
    this.peerIds = [...this.outbound.keys()];
    const inbound = this.inboundByPeer.get(id);
    if (inbound !== undefined) {
      inbound.dispose();
      this.inbound.delete(inbound);
      this.inboundByPeer.delete(id);
    }
  }

  /** Sets the handler told when a peer says this node is retired (it left the membership). */
  onRetired(handler: (by: NodeId) => void): void {
    this.retiredHandler = handler;
  }

  /** Sets how this node answers queries (queryPeer); undefined refuses the question. */
  answerQueries(answer: (question: string) => Uint8Array | undefined): void {
    this.answerer = answer;
  }

  peers(): readonly NodeId[] {
    return this.peerIds;
  }

  send(to: NodeId, payload: Uint8Array): boolean {
    const { dropped } = this.shared.stats;
    if (this.closed) {
      dropped.closed += 1;
      return false;
    }
    const peer = this.outbound.get(to);
    if (peer === undefined) {
      dropped['unknown-peer'] += 1;
      return false;
    }
    if (payload.length > frameSizeBytesMax) {
      dropped['too-large'] += 1;
      return false;
    }
    return peer.enqueue(payload);
  }

  onMessage(handler: (from: NodeId, payload: Uint8Array) => void): void {
    this.handler = handler;
  }

  flush(): void {
    for (const peer of this.outbound.values()) peer.flushNow();
  }

  /** Messages and bytes waiting for `to` (senders use it to pace themselves). */
  queued(to: NodeId): { messages: number; bytes: number } {
    return this.outbound.get(to)?.queued() ?? { messages: 0, bytes: 0 };
  }

  stats(): TcpNetworkStats {
    const stats = this.shared.stats;
    return {
      ...stats,
      dropped: { ...stats.dropped },
      connectionErrors: { ...stats.connectionErrors },
    };
  }

  get limits(): Readonly<TcpLimits> {
    return this.shared.limits;
  }

  /** Stops everything; `done` runs once the listening socket is closed. */
  close(done?: () => void): void {
    if (this.closed) {
      if (done) setImmediate(done);
      return;
    }
    this.closed = true;
    for (const peer of this.outbound.values()) peer.close();
    for (const connection of this.inbound) connection.dispose();
    this.inbound.clear();
    this.inboundByPeer.clear();
    if (this.bound === undefined) {
      if (done) setImmediate(done);
      return;
    }
    this.server.close(() => done?.());
  }

  private onConnection(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.shared.stats.inboundAccepted += 1;
    const connection = new InboundConnection(
      socket,
      this.shared,
      (id) => this.admit(id),
      (question) => this.answerer?.(question),
      (identified) => this.onIdentified(identified),
      (from, payload) => this.onFrame(from, payload),
      (gone) => this.onGone(gone),
    );
    this.inbound.add(connection);
    if (this.inbound.size > this.shared.limits.inboundConnectionsMax) {
      connection.reject(
        'inbound-limit',
        `more than ${this.shared.limits.inboundConnectionsMax} inbound connections`,
      );
    }
  }

  private admit(id: NodeId): 'peer' | 'notify-retired' | 'refuse' {
    if (this.outbound.has(id)) return 'peer';
    const noticeAtMs = this.retired.get(id);
    if (noticeAtMs === undefined) return 'refuse';
    const nowMs = performance.now();
    if (nowMs - noticeAtMs < retiredNoticeEveryMs) return 'refuse';
    this.retired.set(id, nowMs);
    return 'notify-retired';
  }

  private onIdentified(connection: InboundConnection): void {
    assert(connection.peer !== undefined, 'identified without a peer');
    // A peer redials only after losing its old connection, so a previous one is stale (half-open).
    const previous = this.inboundByPeer.get(connection.peer);
    if (previous !== undefined && previous !== connection) {
      this.log.debug('replacing stale inbound connection', { peer: connection.peer });
      previous.dispose();
    }
    this.inboundByPeer.set(connection.peer, connection);
  }

  private onGone(connection: InboundConnection): void {
    this.inbound.delete(connection);
    if (connection.peer !== undefined && this.inboundByPeer.get(connection.peer) === connection) {
      this.inboundByPeer.delete(connection.peer);
    }
  }

  private onFrame(from: NodeId, payload: Uint8Array): void {
    if (this.closed) return;
    this.shared.stats.receivedMessages += 1;
    this.shared.stats.receivedBytes += payload.length;
    this.handler(from, payload);
  }
}

export interface QueryOptions {
  /** The whole query, connect to answer, gives up after this. */
  timeoutMs: number;
  /** A longer answer is refused (the connection is closed). */
  replyBytesMax: number;
  /** The TLS client side, for an address marked `tls`. */
  tlsClient?: tls.ConnectionOptions;
}

/**
 * Asks the node at `address` one question on a connection of its own (see the file comment)
 * and hands back its answer, or why there is none: unreachable, closed without answering,
 * a bad frame, or no answer within the timeout.
 */
export function queryPeer(
  address: TcpAddress,
  question: string,
  options: QueryOptions,
  done: (error: ChorusError | undefined, answer: Uint8Array | undefined) => void,
): void {
  const where = `${address.host}:${address.port}`;
  const decoder = new FrameDecoder(options.replyBytesMax);
  const socket = dial(address, options.tlsClient, () =>
    socket.write(encodeFrame(encodeQuery(question))),
  );
  let finished = false;
  const finish = (error: ChorusError | undefined, answer?: Uint8Array): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.destroy();
    done(error, answer);
  };
  const timer = setTimeout(
    () => finish(new TimeoutError(`no answer from ${where} within ${options.timeoutMs} ms`)),
    options.timeoutMs,
  );
  socket.on('data', (chunk: Buffer) => {
    const [answer] = decoder.push(chunk);
    if (answer !== undefined) return finish(undefined, Uint8Array.from(answer));
    if (decoder.error !== undefined)
      finish(new ChorusError('unreachable', `bad answer from ${where}: ${decoder.error.message}`));
  });
  socket.on('error', (error) =>
    finish(new ChorusError('unreachable', `cannot reach ${where}: ${describeError(error)}`)),
  );
  socket.on('close', () =>
    finish(new ChorusError('unreachable', `${where} closed the connection without answering`)),
  );
}
