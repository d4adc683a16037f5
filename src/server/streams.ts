/**
 * The two bidirectional streams of the etcd API, independent of the protocol that carries
 * them: Watch and LeaseKeepAlive. A stream receives decoded request messages and writes
 * response messages to a `StreamSink`, which gRPC (a grpc-js duplex call) and the JSON
 * gateway (newline-delimited JSON over HTTP/1.1) each implement.
 *
 * Backpressure: the sink's `write` returns false once its buffer is full. The watch hub then
 * pauses that watcher (it buffers nothing itself; history does); when the sink drains, the
 * stream resumes its watchers and they replay what they missed, in order.
 */
import { status as Status } from '@grpc/grpc-js';
import { KvError } from '../kv/errors.js';
import type { WatchResponse } from '../kv/watch.js';
import { event, int64, watchCreateRequest, type Wire } from './convert.js';
import { StatusError, toStatus } from './errors.js';
import type { ServiceContext } from './service.js';
import {
  keepAlivesPendingPerStreamMax,
  progressRetryMs,
  watchersPerStreamMax,
} from './constants.js';

export interface StreamSink {
  /** Sends one response; false when the buffer is full (the response was still taken). */
  write(message: Wire): boolean;
  /** Calls `fn` each time a full buffer has drained. */
  onDrain(fn: () => void): void;
  /** Ends the stream, with an error status when `error` is given. */
  end(error?: unknown): void;
}

export interface RequestStream {
  /** One request message from the client; a StatusError thrown here ends the stream. */
  request(message: Wire): void;
  /** The client is gone or the server stops: release everything the stream holds. */
  close(): void;
}

export class WatchStream implements RequestStream {
  private readonly ids = new Set<number>();
  private closed = false;
  /** A progress request waits until every watcher of the stream is synced. */
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly sink: StreamSink,
  ) {
    sink.onDrain(() => {
      for (const id of [...this.ids]) ctx.kv.watches.resume(id);
    });
  }

  request(message: Wire): void {
    if (this.closed) return;
    const create = message['createRequest'];
    const cancel = message['cancelRequest'];
    if (create !== undefined && create !== null) return this.create(create as Wire);
    if (cancel !== undefined && cancel !== null) {
      const id = int64((cancel as Wire)['watchId'], 'watch_id');
      // Only this stream's watchers: ids are per node, not per stream.
      if (this.ids.has(id)) this.ctx.kv.watches.cancel(id);
      return;
    }
    if (message['progressRequest'] !== undefined && message['progressRequest'] !== null)
      this.progress();
    // A request naming none of the three is ignored, as etcd does.
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.progressTimer);
    for (const id of this.ids) this.ctx.kv.watches.forget(id);
    this.ids.clear();
  }

  /**
   * A client's progress request, as etcd 3.5 answers it: one response with watch id -1 at
   * the current revision, which the client hands to every watcher of the stream. It says
   * "every watcher here has seen everything up to this revision", so it waits until all of
   * them are synced (none replaying history or paused by a slow reader). Requests that
   * arrive meanwhile share the one answer.
   */
  private progress(): void {
    if (this.progressTimer !== undefined || this.closed) return;
    const hub = this.ctx.kv.watches;
    if ([...this.ids].every((id) => hub.isSynced(id))) {
      this.send({ watchId: -1, revision: this.ctx.kv.machine.revision(), events: [] });
      return;
    }
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      this.progress();
    }, progressRetryMs);
  }

  private create(w: Wire): void {
    let canceled = false;
    const sink = (r: WatchResponse): boolean => {
      if (r.canceled === true) {
        canceled = true;
        this.ids.delete(r.watchId);
      }
      return this.send(r);
    };
    let id: number;
    try {
      if (this.ids.size >= watchersPerStreamMax)
        throw new StatusError(
          Status.RESOURCE_EXHAUSTED,
          `etcdserver: at most ${watchersPerStreamMax} watchers per stream`,
        );
      id = this.ctx.kv.watch(watchCreateRequest(w), sink);
    } catch (error) {
      // etcd answers a watch it cannot create with created and canceled at once.
      if (!(error instanceof KvError || error instanceof StatusError)) throw error;
      const watchId = typeof w['watchId'] === 'string' ? Number(w['watchId']) : 0;
      this.sink.write({
        header: this.ctx.header(),
        watchId: Number.isSafeInteger(watchId) ? watchId : -1,
        created: true,
        canceled: true,
        cancelReason: toStatus(error).details,
      });
      return;
    }
    if (!canceled) this.ids.add(id);
  }

  private send(r: WatchResponse): boolean {
    if (this.closed) return true;
    return this.sink.write({
      header: this.ctx.header(r.revision),
      watchId: r.watchId,
      created: r.created === true,
      canceled: r.canceled === true,
      compactRevision: r.compactRevision ?? 0,
      cancelReason: r.cancelReason ?? '',
      fragment: false,
      events: r.events.map(event),
    });
  }
}

export class KeepAliveStream implements RequestStream {
  private pending = 0;
  private closed = false;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly sink: StreamSink,
    /** Called when the last pending keep-alive is answered (the gateway ends then). */
    private readonly idle: () => void = () => {},
  ) {}

  get busy(): boolean {
    return this.pending > 0;
  }

  request(message: Wire): void {
    if (this.closed) return;
    const id = int64(message['ID'], 'ID');
    if (this.pending >= keepAlivesPendingPerStreamMax)
      throw new StatusError(Status.RESOURCE_EXHAUSTED, 'etcdserver: too many requests');
    this.pending++;
    this.ctx.kv.leaseKeepAlive(
      id,
      this.ctx.guard((error, ttl) => {
        this.pending--;
        if (this.closed) return;
        if (error instanceof KvError && error.kvCode === 'lease-not-found') {
          // etcd answers a keep-alive of an unknown or expired lease with TTL 0, not an error.
          this.sink.write({ header: this.ctx.header(), ID: id, TTL: 0 });
        } else if (error !== undefined) {
          this.closed = true;
          this.sink.end(error);
          return;
        } else {
          this.sink.write({ header: this.ctx.header(), ID: id, TTL: ttl });
        }
        if (this.pending === 0) this.idle();
      }),
    );
  }

  close(): void {
    this.closed = true;
  }
}
