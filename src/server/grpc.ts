/**
 * The etcd v3 gRPC services on @grpc/grpc-js. Every method of the six services declared in
 * proto/ gets a handler: the implemented ones go through the Dispatcher, the rest (Auth,
 * Downgrade) answer UNIMPLEMENTED with a message saying so.
 *
 * grpc-js does not listen itself: the client listener (listener.ts) hands it the sockets
 * that speak HTTP/2, through a connection injector, so gRPC and the JSON gateway share the
 * client port as they do in etcd.
 */
import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition, ServiceDefinition } from '@grpc/proto-loader';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { gateUrlAuthority } from './authority.js';
import type { Wire } from './convert.js';
import {
  serverStreamMethods,
  streamMethods,
  type Dispatcher,
  type ServerStreamMethod,
  type StreamMethod,
} from './dispatch.js';
import { toStatus, unimplemented } from './errors.js';
import { etcdServiceNames } from './proto.js';
import type { StreamSink } from './streams.js';

export interface GrpcOptions {
  /** Largest message a client may send (etcd: --max-request-bytes plus gRPC overhead). */
  receiveBytesMax: number;
  /** Pass connections through gateUrlAuthority (see inject). */
  acceptUrlAuthority: boolean;
  /** Told how each connection is read. */
  onConnection?: (path: 'direct' | 'rewritten') => void;
}

export class GrpcFront {
  private readonly server: grpc.Server;
  private readonly injector: ReturnType<grpc.Server['createConnectionInjector']>;

  constructor(
    definition: PackageDefinition,
    private readonly dispatcher: Dispatcher,
    private readonly options: GrpcOptions,
  ) {
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': options.receiveBytesMax,
      // etcd's server keepalive enforcement: clients may ping every 5 s.
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      // Channelz (gRPC's introspection service, which Chorus does not serve) counts every
      // call and message with closures and clock reads; /metrics already counts calls.
      'grpc.enable_channelz': 0,
    });
    for (const service of etcdServiceNames) {
      const def = definition[`etcdserverpb.${service}`] as ServiceDefinition;
      this.server.addService(def, this.implement(service, def));
    }
    this.injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  /**
   * A socket whose first bytes are the HTTP/2 preface. With `acceptUrlAuthority`, a
   * connection whose requests carry etcdctl's "http://host:port" `:authority` reaches grpc-js
   * through the rewriter, so they are not reset (gateUrlAuthority); others, and all without
   * the option, go to HTTP/2 directly.
   */
  inject(socket: Socket): void {
    const route = (connection: Duplex, path: 'direct' | 'rewritten'): void => {
      this.options.onConnection?.(path);
      this.injector.injectConnection(connection);
    };
    if (this.options.acceptUrlAuthority) gateUrlAuthority(socket, route);
    else route(socket, 'direct');
  }

  /**
   * Closes every gRPC connection once the calls ended (their final statuses flushed to the
   * sockets — a stream ended with "server stopped" must say so, not "Call cancelled"), or
   * after `graceMs` at the latest. In-flight calls must have been answered or failed first.
   */
  close(done: () => void, graceMs = 500): void {
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.injector.destroy();
      this.server.forceShutdown();
      done();
    };
    const timer = setTimeout(finish, graceMs);
    this.server.tryShutdown(finish);
  }

  private implement(service: string, def: ServiceDefinition): grpc.UntypedServiceImplementation {
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(def)) {
      const full = `${service}.${name}`;
      if (method.requestStream && method.responseStream && isStreamMethod(full)) {
        implementation[name] = (call: grpc.ServerDuplexStream<Wire, Wire>) =>
          this.duplex(full, call);
      } else if (!method.requestStream && !method.responseStream) {
        implementation[name] = (
          call: grpc.ServerUnaryCall<Wire, Wire>,
          callback: grpc.sendUnaryData<Wire>,
        ) =>
          this.dispatcher.unary(full, 'grpc', call.request, (error, response) => {
            if (error === undefined) return callback(null, response);
            const status = toStatus(error);
            callback({ code: status.code, details: status.details });
          });
      } else if (!method.requestStream && method.responseStream && isServerStreamMethod(full)) {
        implementation[name] = (call: grpc.ServerWritableStream<Wire, Wire>) =>
          this.serverStream(full, call);
      } else {
        // No such method in etcd's API today; declared ones are all handled above.
        implementation[name] = (call: grpc.ServerWritableStream<Wire, Wire>) => {
          const status = toStatus(unimplemented(full));
          call.emit('error', { code: status.code, details: status.details });
        };
      }
    }
    return implementation;
  }

  private duplex(method: StreamMethod, call: grpc.ServerDuplexStream<Wire, Wire>): void {
    const { sink, gone } = callSink(call);
    const stream = this.dispatcher.stream(method, 'grpc', sink);
    call.on('data', (message: Wire) => stream.request(message));
    // The client half-closed: etcd ends the stream then too.
    call.on('end', () => {
      stream.close();
      sink.end();
    });
    gone(() => stream.close());
  }

  /** One request, then responses until the stream ends, the client cancels or we stop. */
  private serverStream(
    method: ServerStreamMethod,
    call: grpc.ServerWritableStream<Wire, Wire>,
  ): void {
    const { sink, gone } = callSink(call);
    const stream = this.dispatcher.stream(method, 'grpc', sink);
    gone(() => stream.close());
    stream.request(call.request);
  }
}

/**
 * A StreamSink over a grpc-js call that writes responses; `gone` registers what to release
 * when the client cancels or the call closes (after which writes are dropped).
 */
function callSink(
  call: grpc.ServerWritableStream<Wire, Wire> | grpc.ServerDuplexStream<Wire, Wire>,
): {
  sink: StreamSink;
  gone: (release: () => void) => void;
} {
  let ended = false;
  const sink: StreamSink = {
    write: (message) => (ended ? true : call.write(message)),
    onDrain: (fn) => call.on('drain', fn),
    end: (error) => {
      if (ended) return;
      ended = true;
      if (error === undefined) return void call.end();
      const status = toStatus(error);
      call.emit('error', { code: status.code, details: status.details });
    },
  };
  const gone = (release: () => void): void => {
    const onGone = (): void => {
      ended = true;
      release();
    };
    call.on('cancelled', onGone);
    call.on('close', onGone);
    call.on('error', onGone);
  };
  return { sink, gone };
}

function isStreamMethod(name: string): name is StreamMethod {
  return (streamMethods as readonly string[]).includes(name);
}

function isServerStreamMethod(name: string): name is ServerStreamMethod {
  return (serverStreamMethods as readonly string[]).includes(name);
}
