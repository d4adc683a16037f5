/**
 * Request/response RPC and one-way messages over any Env: the real TCP network or the
 * simulator's. It reaches time only through env.timers, so a simulated run replays exactly.
 *
 * An Rpc endpoint owns the network's message handler and multiplexes it by method name.
 * Envelopes are msgpack arrays, the first element naming the kind:
 *
 *   [0, id, method, body]   request       [1, id, body]            reply
 *   [3, method, body]       one-way       [2, id, code, message]   error reply
 *
 * Every call ends exactly once, through its callback: a reply, a typed error reply from the
 * handler (RemoteError, with the remote ChorusError's code), TimeoutError at the deadline,
 * CancelledError, or ChorusError 'queue-full' / 'unreachable' / 'frame-too-large' / 'closed'
 * at once (on a later timer turn, never inside `call`). A reply after the call ended is
 * dropped and counted. A malformed envelope is dropped with a logged reason.
 *
 * Handlers answer through `respond` exactly once. A handler that throws a ChorusError
 * answers with it; any other exception is a bug and propagates (crash loudly).
 */
import { assert } from '../core/assert.js';
import { decode, encode } from '../core/codec.js';
import { frameSizeBytesMax } from '../core/constants.js';
import {
  CancelledError,
  ChorusError,
  TimeoutError,
  describeError,
  errorCodes,
  type ErrorCode,
} from '../core/errors.js';
import type { NodeId, TimerId } from '../core/ids.js';
import type { Logger, Network, Random, Timers } from '../env/env.js';
import {
  rpcDeadlineMsDefault,
  rpcDeadlineMsMax,
  rpcErrorMessageCharsMax,
  rpcInflightMax,
  rpcMethodNameCharsMax,
  rpcServingMax,
  rpcRequestIdsRemembered,
} from './constants.js';

/** The part of Env an RPC endpoint uses. */
export interface RpcEnv {
  readonly net: Network;
  readonly timers: Timers;
  readonly log: Logger;
  readonly random: Random;
}

export interface RpcLimits {
  inflightMax: number;
  servingMax: number;
  deadlineMsDefault: number;
}

/** The shape of AbortSignal that cancellation needs (AbortSignal itself fits). */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export interface CallOptions {
  /** Milliseconds until the call fails with TimeoutError; rpcDeadlineMsDefault when absent. */
  deadlineMs?: number;
  signal?: CancelSignal;
}

export type ReplyCallback = (error: ChorusError | undefined, body: unknown) => void;
/** Answers a request; call it exactly once. */
export type Respond = (error: ChorusError | undefined, body?: unknown) => void;
export type RequestHandler = (from: NodeId, body: unknown, respond: Respond) => void;
export type MessageHandler = (from: NodeId, body: unknown) => void;

/** A handler on another node answered with an error; `code` is the code it gave. */
export class RemoteError extends ChorusError {
  override name = 'RemoteError';
  constructor(
    code: ErrorCode,
    message: string,
    readonly from: NodeId,
  ) {
    super(code, message);
  }
}

export type RpcDropReason =
  | 'malformed'
  | 'unknown-method'
  | 'late-reply'
  | 'wrong-peer'
  | 'reply-unsent'
  | 'closed'
  | 'duplicate';

export interface RpcStats {
  calls: number;
  replies: number;
  remoteErrors: number;
  timeouts: number;
  cancelled: number;
  /** Calls refused before a request went out (queue-full, unreachable, too large, closed). */
  refused: number;
  requestsServed: number;
  messagesReceived: number;
  dropped: Record<RpcDropReason, number>;
}

const kindRequest = 0;
const kindReply = 1;
const kindError = 2;
const kindMessage = 3;

/** Codes a reply may carry; an unknown code (a newer peer) arrives as 'bad-input'. */
// Every code crosses the wire: a forwarded proposal's 'no-leader' or 'proposal-dropped' must
// reach the client as itself, not as an unknown code.
const wireErrorCodes: ReadonlySet<string> = new Set<string>(errorCodes);

interface PendingCall {
  readonly to: NodeId;
  readonly method: string;
  readonly done: ReplyCallback;
  readonly timer: TimerId;
  readonly signal: CancelSignal | undefined;
  readonly onAbort: () => void;
}

function isMethodName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= rpcMethodNameCharsMax;
}

function isCallId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export class Rpc {
  private readonly limits: RpcLimits;
  private readonly log: Logger;
  private readonly requestHandlers = new Map<string, RequestHandler>();
  private readonly messageHandlers = new Map<string, MessageHandler>();
  /** Calls awaiting their reply. Invariant: size <= limits.inflightMax. */
  private readonly pending = new Map<number, PendingCall>();
  /** Requests handed to a handler and not yet answered. Invariant: 0 <= serving <= servingMax. */
  private serving = 0;
  /** Recent request ids per peer, to drop duplicated requests. Bounded per peer. */
  private readonly seenRequests = new Map<NodeId, { ids: Set<number>; order: number[] }>();
  private nextId: number;
  private closed = false;
  private readonly counters: RpcStats = {
    calls: 0,
    replies: 0,
    remoteErrors: 0,
    timeouts: 0,
    cancelled: 0,
    refused: 0,
    requestsServed: 0,
    messagesReceived: 0,
    dropped: {
      malformed: 0,
      'unknown-method': 0,
      'late-reply': 0,
      'wrong-peer': 0,
      'reply-unsent': 0,
      duplicate: 0,
      closed: 0,
    },
  };

  constructor(
    private readonly env: RpcEnv,
    limits: Partial<RpcLimits> = {},
  ) {
    this.limits = {
      inflightMax: rpcInflightMax,
      servingMax: rpcServingMax,
      deadlineMsDefault: rpcDeadlineMsDefault,
      ...limits,
    };
    assert(this.limits.inflightMax > 0 && this.limits.servingMax > 0, 'RPC limits positive');
    this.log = env.log.child({ component: 'rpc' });
    // A random first id, so replies meant for a previous incarnation of this node rarely match.
    this.nextId = env.random.fork('rpc-ids').int(2 ** 31);
    env.net.onMessage((from, payload) => this.onMessage(from, payload));
  }

  /** Registers the handler of requests to `method` (one per method). */
  handle(method: string, handler: RequestHandler): void {
    assert(isMethodName(method), () => `bad method name ${JSON.stringify(method)}`);
    assert(!this.requestHandlers.has(method), () => `handler for ${method} registered twice`);
    this.requestHandlers.set(method, handler);
  }

  /** Registers the handler of one-way messages to `method` (one per method). */
  on(method: string, handler: MessageHandler): void {
    assert(isMethodName(method), () => `bad method name ${JSON.stringify(method)}`);
    assert(
      !this.messageHandlers.has(method),
      () => `message handler for ${method} registered twice`,
    );
    this.messageHandlers.set(method, handler);
  }

  /** Sends a one-way message; false when the network dropped it at once. */
  notify(to: NodeId, method: string, body: unknown): boolean {
    assert(isMethodName(method), () => `bad method name ${JSON.stringify(method)}`);
    if (this.closed) return false;
    const bytes = encode([kindMessage, method, body]);
    if (bytes.length > frameSizeBytesMax) return false;
    return this.env.net.send(to, bytes);
  }

  /**
   * Calls `method` on `to`; `done` runs exactly once, never inside this call. Returns a
   * function that cancels the call (CancelledError), which does nothing once it has ended.
   */
  call(
    to: NodeId,
    method: string,
    body: unknown,
    done: ReplyCallback,
    options: CallOptions = {},
  ): () => void {
    assert(isMethodName(method), () => `bad method name ${JSON.stringify(method)}`);
    const deadlineMs = options.deadlineMs ?? this.limits.deadlineMsDefault;
    assert(
      deadlineMs >= 0 && deadlineMs <= rpcDeadlineMsMax,
      () => `deadline ${deadlineMs} ms outside [0, ${rpcDeadlineMsMax}]`,
    );
    const refusal = this.refusal(method, options.signal);
    if (refusal !== undefined) return this.refuse(done, refusal);
    const id = this.nextId++;
    const bytes = encode([kindRequest, id, method, body]);
    if (bytes.length > frameSizeBytesMax) {
      return this.refuse(
        done,
        new ChorusError(
          'frame-too-large',
          `request ${method} of ${bytes.length} bytes exceeds ${frameSizeBytesMax}`,
        ),
      );
    }
    const signal = options.signal;
    const onAbort = (): void => {
      this.finish(id, new CancelledError(`call ${method} to ${to} cancelled`), undefined);
    };
    const timer = this.env.timers.set(deadlineMs, () => {
      this.finish(
        id,
        new TimeoutError(`call ${method} to ${to}: no reply within ${deadlineMs} ms`),
        undefined,
      );
    });
    this.pending.set(id, { to, method, done, timer, signal, onAbort });
    signal?.addEventListener('abort', onAbort);
    this.counters.calls += 1;
    if (!this.env.net.send(to, bytes)) {
      // Fail now rather than at the deadline: the network said it will not even try.
      const entry = this.take(id);
      assert(entry !== undefined, 'pending call vanished during send');
      this.refuse(
        done,
        new ChorusError('unreachable', `call ${method}: network refused the message for ${to}`),
      );
      return () => {};
    }
    return onAbort;
  }

  /** `call` as a Promise, for code above the protocol layers. */
  callAsync(
    to: NodeId,
    method: string,
    body: unknown,
    options: CallOptions = {},
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.call(
        to,
        method,
        body,
        (error, reply) => (error ? reject(error) : resolve(reply)),
        options,
      );
    });
  }

  /** Calls awaiting a reply. */
  inflight(): number {
    return this.pending.size;
  }

  stats(): RpcStats {
    return { ...this.counters, dropped: { ...this.counters.dropped } };
  }

  /** Fails every pending call with 'closed' and stops answering. Does not close the network. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.pending.keys()]) {
      this.finish(id, new ChorusError('closed', 'RPC endpoint closed'), undefined);
    }
    this.env.net.onMessage(() => {});
  }

  /** Why a call must fail before it is sent, if it must. */
  private refusal(method: string, signal: CancelSignal | undefined): ChorusError | undefined {
    if (this.closed) return new ChorusError('closed', `call ${method}: RPC endpoint closed`);
    if (signal?.aborted === true)
      return new CancelledError(`call ${method} cancelled before it was sent`);
    if (this.pending.size >= this.limits.inflightMax) {
      return new ChorusError(
        'queue-full',
        `call ${method}: ${this.limits.inflightMax} calls already in flight`,
      );
    }
    return undefined;
  }

  private refuse(done: ReplyCallback, error: ChorusError): () => void {
    this.counters.refused += 1;
    this.env.timers.set(0, () => done(error, undefined));
    return () => {};
  }

  private take(id: number): PendingCall | undefined {
    const entry = this.pending.get(id);
    if (entry === undefined) return undefined;
    this.pending.delete(id);
    this.env.timers.cancel(entry.timer);
    entry.signal?.removeEventListener('abort', entry.onAbort);
    return entry;
  }

  private finish(id: number, error: ChorusError | undefined, body: unknown): void {
    const entry = this.take(id);
    if (entry === undefined) return;
    if (error instanceof TimeoutError) this.counters.timeouts += 1;
    else if (error instanceof CancelledError) this.counters.cancelled += 1;
    else if (error instanceof RemoteError) this.counters.remoteErrors += 1;
    else if (error === undefined) this.counters.replies += 1;
    entry.done(error, body);
  }

  private drop(reason: RpcDropReason, from: NodeId, detail: string): void {
    this.counters.dropped[reason] += 1;
    this.log.warn('dropped message', { reason, from, detail });
  }

  private onMessage(from: NodeId, payload: Uint8Array): void {
    if (this.closed) {
      this.counters.dropped.closed += 1;
      return;
    }
    let envelope: unknown;
    try {
      envelope = decode(payload);
    } catch (error) {
      return this.drop('malformed', from, describeError(error));
    }
    if (!Array.isArray(envelope)) return this.drop('malformed', from, 'envelope is not an array');
    const fields = envelope as unknown[];
    const kind = fields[0];
    if (
      kind === kindRequest &&
      fields.length === 4 &&
      isCallId(fields[1]) &&
      isMethodName(fields[2])
    ) {
      return this.onRequest(from, fields[1], fields[2], fields[3]);
    }
    if (kind === kindReply && fields.length === 3 && isCallId(fields[1])) {
      return this.onReply(from, fields[1], undefined, fields[2]);
    }
    if (
      kind === kindError &&
      fields.length === 4 &&
      isCallId(fields[1]) &&
      typeof fields[2] === 'string' &&
      typeof fields[3] === 'string'
    ) {
      return this.onReply(from, fields[1], this.remoteError(from, fields[2], fields[3]), undefined);
    }
    if (kind === kindMessage && fields.length === 3 && isMethodName(fields[1])) {
      return this.onOneWay(from, fields[1], fields[2]);
    }
    this.drop(
      'malformed',
      from,
      `envelope of kind ${JSON.stringify(kind)} with ${fields.length} fields`,
    );
  }

  private remoteError(from: NodeId, code: string, message: string): RemoteError {
    const text = message.slice(0, rpcErrorMessageCharsMax);
    if (wireErrorCodes.has(code)) return new RemoteError(code as ErrorCode, text, from);
    return new RemoteError(
      'bad-input',
      `unknown error code ${JSON.stringify(code.slice(0, 64))}: ${text}`,
      from,
    );
  }

  private onReply(from: NodeId, id: number, error: RemoteError | undefined, body: unknown): void {
    const entry = this.pending.get(id);
    if (entry === undefined) return this.drop('late-reply', from, `no call ${id} waiting`);
    if (entry.to !== from) return this.drop('wrong-peer', from, `call ${id} went to ${entry.to}`);
    this.finish(id, error, body);
  }

  private onOneWay(from: NodeId, method: string, body: unknown): void {
    const handler = this.messageHandlers.get(method);
    if (handler === undefined)
      return this.drop('unknown-method', from, `no message handler for ${method}`);
    this.counters.messagesReceived += 1;
    handler(from, body);
  }

  private onRequest(from: NodeId, id: number, method: string, body: unknown): void {
    // The network may duplicate a message: a request runs at most once. Executing a
    // duplicated request twice would apply a forwarded write twice, the second time outside
    // the caller's interval (the register campaign found this).
    if (this.seenBefore(from, id)) {
      this.counters.dropped.duplicate += 1;
      return;
    }
    const handler = this.requestHandlers.get(method);
    if (handler === undefined) {
      return this.reply(
        from,
        id,
        new ChorusError('not-found', `no handler for method ${method}`),
        undefined,
      );
    }
    if (this.serving >= this.limits.servingMax) {
      return this.reply(
        from,
        id,
        new ChorusError('queue-full', `${this.limits.servingMax} requests already being served`),
        undefined,
      );
    }
    this.serving += 1;
    let responded = false;
    const respond: Respond = (error, replyBody) => {
      assert(!responded, () => `handler of ${method} responded twice`);
      responded = true;
      this.serving -= 1;
      assert(this.serving >= 0, 'serving count below zero');
      this.counters.requestsServed += 1;
      this.reply(from, id, error, replyBody);
    };
    try {
      handler(from, body, respond);
    } catch (error) {
      // A typed error is an answer; anything else is a bug in the handler.
      if (!(error instanceof ChorusError) || responded) throw error;
      respond(error);
    }
  }

  /** Remembers the last rpcRequestIdsRemembered request ids per peer; true for a repeat. */
  private seenBefore(from: NodeId, id: number): boolean {
    let seen = this.seenRequests.get(from);
    if (seen === undefined) {
      seen = { ids: new Set(), order: [] };
      this.seenRequests.set(from, seen);
    }
    if (seen.ids.has(id)) return true;
    seen.ids.add(id);
    seen.order.push(id);
    if (seen.order.length > rpcRequestIdsRemembered) seen.ids.delete(seen.order.shift()!);
    return false;
  }

  private reply(to: NodeId, id: number, error: ChorusError | undefined, body: unknown): void {
    if (this.closed) {
      this.counters.dropped.closed += 1;
      return;
    }
    let bytes =
      error === undefined
        ? encode([kindReply, id, body])
        : encode([kindError, id, error.code, error.message.slice(0, rpcErrorMessageCharsMax)]);
    if (bytes.length > frameSizeBytesMax) {
      bytes = encode([
        kindError,
        id,
        'frame-too-large',
        `reply of ${bytes.length} bytes exceeds ${frameSizeBytesMax}`,
      ]);
    }
    if (!this.env.net.send(to, bytes))
      this.drop('reply-unsent', to, `reply to call ${id} refused by the network`);
  }
}
