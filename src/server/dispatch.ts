/**
 * One door for every client request, whichever protocol brought it: finds the handler,
 * turns any error into a status, counts and times the request, and keeps the open streams
 * so a stopping server can end them. A handler that throws something other than a
 * StatusError or ChorusError has a bug: the request gets INTERNAL, the error is logged, and
 * the node keeps serving everyone else.
 */
import { status as Status } from '@grpc/grpc-js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../env/env.js';
import type { Wire } from './convert.js';
import { toStatus, unimplemented, type GrpcStatus } from './errors.js';
import type { ServerMetrics } from './metrics.js';
import { unaryHandlers, writeMethods, type Reply, type ServiceContext } from './service.js';
import { SnapshotStream } from './snapshot.js';
import { KeepAliveStream, WatchStream, type RequestStream, type StreamSink } from './streams.js';
import { snapshotStreamsMax, streamsMax } from './constants.js';
import { StatusError } from './errors.js';

export type Protocol = 'grpc' | 'http';

/** The bidirectional streams by "Service.Method". */
export const streamMethods = ['Watch.Watch', 'Lease.LeaseKeepAlive'] as const;
export type StreamMethod = (typeof streamMethods)[number];
/** The server streams: one request, then a stream of responses. */
export const serverStreamMethods = ['Maintenance.Snapshot'] as const;
export type ServerStreamMethod = (typeof serverStreamMethods)[number];

type StreamKind = 'watch' | 'keepalive' | 'snapshot';

const kindOf = (method: StreamMethod | ServerStreamMethod): StreamKind => {
  switch (method) {
    case 'Watch.Watch':
      return 'watch';
    case 'Lease.LeaseKeepAlive':
      return 'keepalive';
    case 'Maintenance.Snapshot':
      return 'snapshot';
  }
};

export class Dispatcher {
  private readonly open = new Set<StreamSink>();
  /** Open snapshot streams (each holds a copy of the whole state). */
  private snapshots = 0;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  unary(method: string, protocol: Protocol, request: Wire, reply: Reply): void {
    const started = this.now();
    let answered = false;
    const finish: Reply = (error, response) => {
      if (answered) return;
      answered = true;
      const status = error === undefined ? undefined : this.statusOf(method, error);
      this.record(method, protocol, status, started);
      if (status === undefined) reply(undefined, response);
      else reply(new StatusError(status.code, status.details));
    };
    const handler = unaryHandlers[method];
    if (handler === undefined) return finish(unimplemented(method));
    try {
      handler(this.ctx, request, finish);
    } catch (error) {
      finish(error);
    }
  }

  /**
   * Opens a stream; the caller feeds it requests (a server stream: its one request) and
   * closes it when the client goes.
   */
  stream(
    method: StreamMethod | ServerStreamMethod,
    protocol: Protocol,
    sink: StreamSink,
    idle?: () => void,
  ): RequestStream {
    const kind = kindOf(method);
    const refusal =
      this.open.size >= streamsMax
        ? 'etcdserver: too many streams'
        : kind === 'snapshot' && this.snapshots >= snapshotStreamsMax
          ? `etcdserver: too many snapshots in progress (at most ${snapshotStreamsMax})`
          : undefined;
    if (refusal !== undefined) {
      sink.end(new StatusError(Status.RESOURCE_EXHAUSTED, refusal));
      return { request() {}, close() {} };
    }
    this.metrics.requests.inc({ method, protocol, code: 'stream' });
    this.metrics.streams.inc({ kind });
    if (kind === 'snapshot') this.snapshots++;
    let closed = false;
    // Set once the stream exists; `close` may run before (a constructor ending the sink).
    const holder: { stream?: RequestStream } = {};
    const close = (): void => {
      if (closed) return;
      closed = true;
      this.open.delete(tracked);
      this.metrics.streams.dec({ kind });
      if (kind === 'snapshot') this.snapshots--;
      holder.stream?.close();
    };
    const tracked: StreamSink = {
      write: (message) => {
        if (closed) return true;
        const room = sink.write(message);
        if (!room) this.metrics.streamsFull.inc({ kind });
        return room;
      },
      onDrain: (fn) => sink.onDrain(fn),
      end: (error) => {
        if (closed) return;
        if (error !== undefined) this.statusOf(method, error);
        close();
        sink.end(error);
      },
    };
    this.open.add(tracked);
    const opened = this.newStream(kind, tracked, idle);
    holder.stream = opened;
    return {
      request: (message) => {
        if (closed) return;
        try {
          opened.request(message);
        } catch (error) {
          tracked.end(error);
        }
      },
      close,
    };
  }

  private newStream(
    kind: StreamKind,
    sink: StreamSink,
    idle: (() => void) | undefined,
  ): RequestStream {
    switch (kind) {
      case 'watch':
        return new WatchStream(this.ctx, sink);
      case 'keepalive':
        return new KeepAliveStream(this.ctx, sink, idle);
      case 'snapshot':
        return new SnapshotStream(this.ctx, sink);
    }
  }

  /** Ends every open stream with `error` (the server is stopping). */
  endStreams(error: unknown): void {
    for (const sink of [...this.open]) sink.end(error);
    this.open.clear();
  }

  private statusOf(method: string, error: unknown): GrpcStatus {
    const status = toStatus(error);
    if (status.code === Status.INTERNAL)
      this.log.error('request failed with an unexpected error', {
        method,
        error: describeError(error),
      });
    return status;
  }

  private record(
    method: string,
    protocol: Protocol,
    status: GrpcStatus | undefined,
    startedMs: number,
  ): void {
    const code = Status[status?.code ?? Status.OK];
    this.metrics.requests.inc({ method, protocol, code });
    this.metrics.requestSeconds.observe({ method, protocol }, (this.now() - startedMs) / 1000);
    if (!writeMethods.has(method)) return;
    if (status === undefined) this.metrics.proposalsCommitted.inc();
    else if (status.code === Status.UNAVAILABLE || status.code === Status.RESOURCE_EXHAUSTED)
      this.metrics.proposalsFailed.inc({ code });
  }
}
