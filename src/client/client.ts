/**
 * A small etcd v3 client on @grpc/grpc-js: one channel per endpoint, every service over it,
 * the wire definitions of proto/ (loaded by src/server/proto.ts, so client and server cannot
 * disagree on a field).
 *
 * Failover follows etcd's own client: an endpoint that cannot be connected to within the
 * dial timeout is skipped, which is safe for every request since nothing was sent. Once a
 * request has been sent, an UNAVAILABLE answer moves on to the next endpoint only for the
 * requests that change nothing (`readOnlyMethods`); a put that timed out may have been
 * applied, so it is reported rather than sent twice. The command timeout bounds the whole
 * request, retries included.
 */
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition, PackageDefinition } from '@grpc/proto-loader';
import { loadEtcdProto } from '../server/proto.js';
import {
  commandTimeoutMsDefault,
  defaultEndpoint,
  dialTimeoutMsDefault,
  endpointsMax,
  receiveBytesMax,
  sendBytesMax,
} from './constants.js';
import { ClientInputError, EtcdClientError, fromGrpcError } from './errors.js';
import {
  readOnlyMethods,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  type SnapshotResponse,
  type UnaryMethod,
  type UnaryMethods,
  type WatchRequest,
  type WatchResponse,
} from './types.js';

export interface ClientOptions {
  /** host:port of each member to try, in order. */
  endpoints: readonly string[];
  dialTimeoutMs: number;
  commandTimeoutMs: number;
  /** Given, every endpoint is spoken to over TLS (etcdctl's --cacert, --cert, --key). */
  tls?: ClientTls;
}

/** PEM contents; without `ca`, the server's certificate is checked against Node's CAs. */
export interface ClientTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** etcdctl's --insecure-skip-tls-verify: encrypt, but accept any server certificate. */
  insecureSkipVerify?: boolean;
}

export const defaultClientOptions: ClientOptions = {
  endpoints: [defaultEndpoint],
  dialTimeoutMs: dialTimeoutMsDefault,
  commandTimeoutMs: commandTimeoutMsDefault,
};

export interface CallOptions {
  /** Ask this endpoint only (e.g. `endpoint status`, which reports on each member). */
  endpoint?: string;
}

/** The streams of the API, by "Service.Method", with their message types. */
export interface StreamMethods {
  'Watch.Watch': [WatchRequest, WatchResponse];
  'Lease.LeaseKeepAlive': [LeaseKeepAliveRequest, LeaseKeepAliveResponse];
}

let definition: PackageDefinition | undefined;
/** Parsing the protos takes tens of milliseconds: once per process. */
function etcdDefinition(): PackageDefinition {
  definition ??= loadEtcdProto();
  return definition;
}

function methodDefinition(method: string): MethodDefinition<object, object> {
  const [service, name] = method.split('.') as [string, string];
  const serviceDef = etcdDefinition()[`etcdserverpb.${service}`] as
    Record<string, MethodDefinition<object, object>> | undefined;
  const def = serviceDef?.[name];
  if (def === undefined) throw new Error(`no method ${method} in the etcd protos`);
  return def;
}

/**
 * "a:1,http://b:2" → ["a:1", "b:2"], as etcdctl accepts URLs as well as host:port. `tls`:
 * whether the endpoints are https:// URLs; one list does not mix http:// and https://, so
 * that no request meant for TLS is sent in the clear.
 */
export function parseEndpoints(text: string): string[] {
  return parseEndpointList(text).endpoints;
}

export function parseEndpointList(text: string): { endpoints: string[]; tls: boolean } {
  const parts = text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (parts.length === 0) throw new ClientInputError('--endpoints names no endpoint');
  if (parts.length > endpointsMax)
    throw new ClientInputError(`--endpoints names more than ${endpointsMax} endpoints`);
  const secure = parts.filter((p) => p.startsWith('https://'));
  if (secure.length > 0 && secure.length < parts.length)
    throw new ClientInputError(
      `--endpoints mixes https:// with plain endpoints (${secure[0]}, ${parts.find((p) => !p.startsWith('https://'))})`,
    );
  const endpoints = parts.map((part) => {
    const hostPort = part.replace(/^https?:\/\//, '').replace(/\/+$/, '');
    const match = /^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})$/.exec(hostPort);
    if (match === null || Number(match[2]) < 1 || Number(match[2]) > 65_535)
      throw new ClientInputError(`bad endpoint ${JSON.stringify(part)}: use host:port`);
    return hostPort;
  });
  return { endpoints, tls: secure.length > 0 };
}

export class EtcdClient {
  private readonly channels = new Map<string, grpc.Client>();
  /** Where the last successful request went: the next one starts there. */
  private preferred = 0;
  private closed = false;

  constructor(readonly options: ClientOptions) {
    if (options.endpoints.length === 0) throw new ClientInputError('no endpoints');
    if (!(options.dialTimeoutMs > 0) || !(options.commandTimeoutMs > 0))
      throw new ClientInputError('timeouts must be positive');
  }

  get endpoints(): readonly string[] {
    return this.options.endpoints;
  }

  /** One unary request, with failover and the command timeout. */
  async call<M extends UnaryMethod>(
    method: M,
    request: UnaryMethods[M][0],
    options: CallOptions = {},
  ): Promise<UnaryMethods[M][1]> {
    const deadlineMs = Date.now() + this.options.commandTimeoutMs;
    const order = this.order(options.endpoint);
    let lastError: EtcdClientError | undefined;
    for (const [i, endpoint] of order.entries()) {
      const last = i === order.length - 1;
      if ((await this.connect(endpoint, deadlineMs, !last)) !== undefined) continue;
      try {
        const response = await this.unary(endpoint, method, request, deadlineMs);
        this.prefer(endpoint);
        return response;
      } catch (error) {
        const failure = fromGrpcError(error, endpoint);
        if (failure.code !== grpc.status.UNAVAILABLE || !readOnlyMethods.has(method)) throw failure;
        lastError = failure;
      }
      if (Date.now() >= deadlineMs) break;
    }
    throw lastError ?? this.unreachable(order);
  }

  /**
   * The first endpoint (from the preferred one on) whose connection is up within the dial
   * timeout, for the streams, which have no command timeout.
   */
  async reachable(endpoint?: string): Promise<string> {
    etcdDefinition(); // parsed now, so that it does not count in the time of a first request
    const order = this.order(endpoint);
    for (const [i, candidate] of order.entries()) {
      const deadlineMs = Date.now() + this.options.dialTimeoutMs;
      if ((await this.connect(candidate, deadlineMs, i < order.length - 1)) === undefined) {
        this.prefer(candidate);
        return candidate;
      }
    }
    throw this.unreachable(order);
  }

  /** `endpoint` just failed a stream: the next request starts with the endpoint after it. */
  avoid(endpoint: string): void {
    const index = this.endpoints.indexOf(endpoint);
    if (index >= 0) this.preferred = (index + 1) % this.endpoints.length;
  }

  /** A bidirectional stream on `endpoint` (from `reachable`); the caller ends it. */
  stream<M extends keyof StreamMethods>(
    method: M,
    endpoint: string,
  ): grpc.ClientDuplexStream<StreamMethods[M][0], StreamMethods[M][1]> {
    const def = methodDefinition(method);
    return this.channel(endpoint).makeBidiStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
    ) as grpc.ClientDuplexStream<StreamMethods[M][0], StreamMethods[M][1]>;
  }

  /** Maintenance.Snapshot on `endpoint`: the server streams the backend in chunks. */
  snapshot(endpoint: string): grpc.ClientReadableStream<SnapshotResponse> {
    const def = methodDefinition('Maintenance.Snapshot');
    return this.channel(endpoint).makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      {},
    ) as grpc.ClientReadableStream<SnapshotResponse>;
  }

  /** Closes every channel: pending calls fail with CANCELLED, and the process may exit. */
  close(): void {
    this.closed = true;
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  private credentials(): grpc.ChannelCredentials {
    const tls = this.options.tls;
    if (tls === undefined) return grpc.credentials.createInsecure();
    return grpc.credentials.createSsl(
      tls.ca ?? null,
      tls.key ?? null,
      tls.cert ?? null,
      tls.insecureSkipVerify === true ? { rejectUnauthorized: false } : {},
    );
  }

  private order(endpoint: string | undefined): string[] {
    if (endpoint !== undefined) return [endpoint];
    const n = this.endpoints.length;
    return Array.from({ length: n }, (_, i) => this.endpoints[(this.preferred + i) % n]!);
  }

  private channel(endpoint: string): grpc.Client {
    if (this.closed) throw new Error('the client is closed');
    let channel = this.channels.get(endpoint);
    if (channel === undefined) {
      channel = new grpc.Client(endpoint, this.credentials(), {
        'grpc.max_receive_message_length': receiveBytesMax,
        'grpc.max_send_message_length': sendBytesMax,
        // A refused connection is retried soon, so a member that is just starting is found
        // within the dial timeout.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 1_000,
      });
      this.channels.set(endpoint, channel);
    }
    return channel;
  }

  /**
   * Undefined once the endpoint's connection is up, an Error otherwise. With `failFast`, a
   * connection that has just failed (refused, reset) gives up at once so the next endpoint
   * is tried without waiting out the dial timeout on a member that is down; the last
   * candidate waits the whole dial timeout, for a member that is still starting.
   */
  private connect(
    endpoint: string,
    deadlineMs: number,
    failFast: boolean,
  ): Promise<Error | undefined> {
    const channel = this.channel(endpoint).getChannel();
    const dialDeadlineMs = Math.min(deadlineMs, Date.now() + this.options.dialTimeoutMs);
    return new Promise((resolve) => {
      const check = (): void => {
        const state = channel.getConnectivityState(true);
        if (state === grpc.connectivityState.READY) return resolve(undefined);
        if (state === grpc.connectivityState.SHUTDOWN)
          return resolve(new Error(`the channel to ${endpoint} is shut down`));
        if (state === grpc.connectivityState.TRANSIENT_FAILURE && failFast)
          return resolve(new Error(`the connection to ${endpoint} failed`));
        channel.watchConnectivityState(state, dialDeadlineMs, (error) =>
          error === undefined ? check() : resolve(error),
        );
      };
      check();
    });
  }

  private prefer(endpoint: string): void {
    const index = this.endpoints.indexOf(endpoint);
    if (index >= 0) this.preferred = index;
  }

  private unary<M extends UnaryMethod>(
    endpoint: string,
    method: M,
    request: UnaryMethods[M][0],
    deadlineMs: number,
  ): Promise<UnaryMethods[M][1]> {
    const def = methodDefinition(method);
    return new Promise((resolve, reject) => {
      this.channel(endpoint).makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        new grpc.Metadata(),
        { deadline: deadlineMs },
        (error, response) =>
          error !== null || response === undefined
            ? reject(error ?? new Error('empty response'))
            : resolve(response as UnaryMethods[M][1]),
      );
    });
  }

  private unreachable(order: readonly string[]): EtcdClientError {
    const seconds = this.options.dialTimeoutMs / 1000;
    const which = order.length === 1 ? order[0] : `any of ${order.join(', ')}`;
    return new EtcdClientError(
      grpc.status.UNAVAILABLE,
      `cannot connect to ${which} (--dial-timeout ${seconds}s)`,
      order[order.length - 1] ?? '',
      { local: true },
    );
  }
}
