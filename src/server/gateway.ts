/**
 * The HTTP side of the client port: etcd's JSON gateway (`POST /v3/kv/put`, …), plus
 * `/health`, `/metrics` and `/version`.
 *
 * The gateway speaks what etcd's grpc-gateway speaks (see json.ts for the encoding). A
 * request body becomes protobuf bytes, then the very message gRPC would have decoded, and
 * goes through the same Dispatcher. Errors answer with grpc-gateway's body
 * `{"error": msg, "code": grpcCode, "message": msg}` and its HTTP status for the code.
 * Streams (`/v3/watch`, `/v3/lease/keepalive`) read a sequence of JSON objects from the
 * request body and answer newline-delimited `{"result": …}` objects, ending with
 * `{"error": {…}}` when the stream fails. The server stream (`/v3/maintenance/snapshot`)
 * reads one request body, as a unary call does, and answers the same way.
 *
 * Bad input of any kind (malformed JSON, wrong types, a body beyond the limit, an unknown
 * path) is answered with a 4xx and never reaches the store or crashes the process.
 */
import type * as http from 'node:http';
import type { PackageDefinition, ServiceDefinition } from '@grpc/proto-loader';
import { status as Status } from '@grpc/grpc-js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../env/env.js';
import type { Wire } from './convert.js';
import type { Dispatcher, ServerStreamMethod, StreamMethod } from './dispatch.js';
import { httpStatusOf, invalidArgument, StatusError, toStatus } from './errors.js';
import type { EtcdJson } from './json.js';
import { JsonObjectSplitter } from './json-stream.js';
import type { StreamSink } from './streams.js';
import { gatewayStreamMessagesMax } from './constants.js';

/** Gateway paths by etcd's grpc-gateway annotations (rpc.proto of etcd 3.5). */
export const gatewayRoutes: Readonly<Record<string, string>> = {
  '/v3/kv/range': 'KV.Range',
  '/v3/kv/put': 'KV.Put',
  '/v3/kv/deleterange': 'KV.DeleteRange',
  '/v3/kv/txn': 'KV.Txn',
  '/v3/kv/compaction': 'KV.Compact',
  '/v3/watch': 'Watch.Watch',
  '/v3/lease/grant': 'Lease.LeaseGrant',
  '/v3/lease/revoke': 'Lease.LeaseRevoke',
  '/v3/kv/lease/revoke': 'Lease.LeaseRevoke',
  '/v3/lease/keepalive': 'Lease.LeaseKeepAlive',
  '/v3/lease/timetolive': 'Lease.LeaseTimeToLive',
  '/v3/kv/lease/timetolive': 'Lease.LeaseTimeToLive',
  '/v3/lease/leases': 'Lease.LeaseLeases',
  '/v3/kv/lease/leases': 'Lease.LeaseLeases',
  '/v3/cluster/member/add': 'Cluster.MemberAdd',
  '/v3/cluster/member/remove': 'Cluster.MemberRemove',
  '/v3/cluster/member/update': 'Cluster.MemberUpdate',
  '/v3/cluster/member/list': 'Cluster.MemberList',
  '/v3/cluster/member/promote': 'Cluster.MemberPromote',
  '/v3/maintenance/alarm': 'Maintenance.Alarm',
  '/v3/maintenance/status': 'Maintenance.Status',
  '/v3/maintenance/defragment': 'Maintenance.Defragment',
  '/v3/maintenance/hash': 'Maintenance.Hash',
  '/v3/maintenance/hashkv': 'Maintenance.HashKV',
  '/v3/maintenance/snapshot': 'Maintenance.Snapshot',
  '/v3/maintenance/transfer-leadership': 'Maintenance.MoveLeader',
  '/v3/maintenance/downgrade': 'Maintenance.Downgrade',
  '/v3/auth/enable': 'Auth.AuthEnable',
  '/v3/auth/disable': 'Auth.AuthDisable',
  '/v3/auth/status': 'Auth.AuthStatus',
  '/v3/auth/authenticate': 'Auth.Authenticate',
};

export interface GatewayOptions {
  bodyBytesMax: number;
  /** GET /health: the status code and body. */
  health: () => { ok: boolean; body: Wire };
  /** GET /metrics: Prometheus text. */
  metrics: () => Promise<{ contentType: string; text: string }>;
  version: string;
}

interface Method {
  name: string;
  service: string;
  requestType: string;
  responseType: string;
  definition: ServiceDefinition[string];
}

export class Gateway {
  private readonly methods = new Map<string, Method>();

  constructor(
    definition: PackageDefinition,
    private readonly json: EtcdJson,
    private readonly dispatcher: Dispatcher,
    private readonly options: GatewayOptions,
    private readonly log: Logger,
  ) {
    for (const [path, full] of Object.entries(gatewayRoutes)) {
      const [service, name] = full.split('.') as [string, string];
      const service_ = definition[`etcdserverpb.${service}`] as ServiceDefinition;
      const method = service_[name]!;
      this.methods.set(path, {
        name: full,
        service,
        requestType: typeName(method.requestType),
        responseType: typeName(method.responseType),
        definition: method,
      });
    }
  }

  /** What a --listen-metrics-urls port serves: /health, /metrics and /version, nothing else. */
  handleObservability(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    if (this.observability(req, res, path)) return;
    req.resume();
    sendError(
      res,
      new StatusError(
        Status.NOT_FOUND,
        `no such path ${path} (this port serves /health, /metrics and /version)`,
      ),
    );
  }

  /** Answers /health, /metrics or /version; false for any other request. */
  private observability(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
  ): boolean {
    if (req.method !== 'GET') return false;
    if (path === '/health') this.health(res);
    else if (path === '/metrics') this.metrics(res);
    else if (path === '/version')
      sendJson(res, 200, { etcdserver: this.options.version, etcdcluster: this.options.version });
    else return false;
    return true;
  }

  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    try {
      if (this.observability(req, res, path)) return;
      const method = this.methods.get(path);
      if (method === undefined) {
        req.resume();
        return sendError(res, new StatusError(Status.NOT_FOUND, `no such path ${path}`));
      }
      if (req.method !== 'POST') {
        req.resume();
        return sendJson(res, 405, { error: 'Method Not Allowed', code: 12, message: 'use POST' });
      }
      if (method.definition.requestStream) return this.stream(method, req, res);
      if (method.definition.responseStream) return this.serverStream(method, req, res);
      this.unary(method, req, res);
    } catch (error) {
      this.log.error('gateway request failed', { path, error: describeError(error) });
      if (!res.headersSent) sendError(res, new StatusError(Status.INTERNAL, 'internal error'));
      else res.destroy();
    }
  }

  private health(res: http.ServerResponse): void {
    const { ok, body } = this.options.health();
    sendJson(res, ok ? 200 : 503, body);
  }

  private metrics(res: http.ServerResponse): void {
    this.options.metrics().then(
      ({ contentType, text }) => {
        res.writeHead(200, { 'content-type': contentType });
        res.end(text);
      },
      (error: unknown) => {
        this.log.error('metrics failed', { error: describeError(error) });
        sendJson(res, 500, { error: 'metrics failed' });
      },
    );
  }

  private unary(method: Method, req: http.IncomingMessage, res: http.ServerResponse): void {
    readBody(req, this.options.bodyBytesMax, (error, text) => {
      if (error !== undefined) return sendError(res, error);
      let request: Wire;
      try {
        request = this.decodeRequest(method, text!.trim() === '' ? '{}' : text!);
      } catch (decodeError) {
        return sendError(res, toStatusError(decodeError));
      }
      this.dispatcher.unary(method.name, 'http', request, (replyError, response) => {
        if (replyError !== undefined) return sendError(res, toStatusError(replyError));
        let body: Wire;
        try {
          body = this.encodeResponse(method, response!);
        } catch (encodeError) {
          this.log.error('gateway response encoding failed', {
            method: method.name,
            error: describeError(encodeError),
          });
          return sendError(res, new StatusError(Status.INTERNAL, 'internal error'));
        }
        sendJson(res, 200, body);
      });
    });
  }

  /**
   * A server stream (`/v3/maintenance/snapshot`): the body is the one request, as in a unary
   * call; the answer is newline-delimited `{"result": …}` objects, as for the other streams.
   */
  private serverStream(method: Method, req: http.IncomingMessage, res: http.ServerResponse): void {
    readBody(req, this.options.bodyBytesMax, (error, text) => {
      if (error !== undefined) return sendError(res, error);
      // A client already gone would never drain: start nothing for it.
      if (res.destroyed) return;
      let request: Wire;
      try {
        request = this.decodeRequest(method, text!.trim() === '' ? '{}' : text!);
      } catch (decodeError) {
        return sendError(res, toStatusError(decodeError));
      }
      const out = this.responseLines(method, req, res);
      const stream = this.dispatcher.stream(method.name as ServerStreamMethod, 'http', out.sink);
      res.on('close', () => {
        out.gone();
        stream.close();
      });
      stream.request(request);
    });
  }

  /**
   * The response side of a gateway stream: newline-delimited `{"result": …}` objects, and
   * `{"error": …}` last when the stream fails. `ended()` says whether it is over.
   */
  private responseLines(
    method: Method,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    onWrite: () => void = () => {},
  ): { sink: StreamSink; ended: () => boolean; gone: () => void } {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    let ended = false;
    const sink: StreamSink = {
      write: (message) => {
        if (ended) return true;
        onWrite();
        const line = JSON.stringify({ result: this.encodeResponse(method, message) }) + '\n';
        return res.write(line);
      },
      onDrain: (fn) => res.on('drain', fn),
      end: (error) => {
        if (ended) return;
        ended = true;
        if (error !== undefined) {
          const s = toStatus(error);
          const httpCode = httpStatusOf(s.code);
          res.write(
            JSON.stringify({
              error: {
                grpc_code: s.code,
                http_code: httpCode,
                message: s.details,
                http_status: httpStatusText(httpCode),
              },
            }) + '\n',
          );
        }
        res.end();
        req.resume();
      },
    };
    return { sink, ended: () => ended, gone: () => (ended = true) };
  }

  private stream(method: Method, req: http.IncomingMessage, res: http.ServerResponse): void {
    let bodyDone = false;
    let messages = 0;
    let answered = 0;
    const out = this.responseLines(method, req, res, () => answered++);
    const sink = out.sink;
    const keepAlive = method.name === 'Lease.LeaseKeepAlive';
    const stream = this.dispatcher.stream(method.name as StreamMethod, 'http', sink, () => {
      // A keep-alive request body is finite: once it is read and answered, the stream ends.
      if (keepAlive && bodyDone) sink.end();
    });
    const splitter = new JsonObjectSplitter(this.options.bodyBytesMax);
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      if (out.ended()) return;
      try {
        for (const text of splitter.push(chunk)) {
          if (++messages > gatewayStreamMessagesMax)
            throw invalidArgument(`at most ${gatewayStreamMessagesMax} messages per stream`);
          stream.request(this.decodeRequest(method, text));
        }
      } catch (error) {
        sink.end(toStatusError(error));
      }
    });
    req.on('end', () => {
      bodyDone = true;
      if (!splitter.complete)
        return sink.end(invalidArgument('request body ends inside a JSON object'));
      // Each keep-alive is answered by exactly one response (or the stream's end).
      if (keepAlive && answered >= messages) sink.end();
    });
    res.on('close', () => {
      out.gone();
      stream.close();
    });
  }

  private decodeRequest(method: Method, text: string): Wire {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw invalidArgument(`malformed JSON: ${(error as Error).message}`);
    }
    const bytes = this.json.encode(method.requestType, json);
    return method.definition.requestDeserialize(Buffer.from(bytes)) as Wire;
  }

  private encodeResponse(method: Method, response: Wire): Wire {
    const bytes = method.definition.responseSerialize(response);
    return this.json.decode(method.responseType, bytes);
  }
}

function typeName(type: ServiceDefinition[string]['requestType']): string {
  // proto-loader keeps the message's descriptor, named without its package; every request
  // and response of the services is in etcdserverpb.
  const descriptor = type as unknown as { type: { name: string } };
  return `etcdserverpb.${descriptor.type.name}`;
}

function toStatusError(error: unknown): StatusError {
  if (error instanceof StatusError) return error;
  if (error instanceof SyntaxError || error instanceof RangeError)
    return invalidArgument(error.message);
  const s = toStatus(error);
  return new StatusError(s.code, s.details);
}

function readBody(
  req: http.IncomingMessage,
  bytesMax: number,
  done: (error: StatusError | undefined, text: string | undefined) => void,
): void {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > bytesMax) {
    req.resume();
    return done(tooLarge(bytesMax), undefined);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let failed = false;
  req.on('data', (chunk: Buffer) => {
    if (failed) return;
    size += chunk.length;
    if (size > bytesMax) {
      failed = true;
      chunks.length = 0;
      return done(tooLarge(bytesMax), undefined);
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (!failed) done(undefined, Buffer.concat(chunks).toString('utf8'));
  });
  req.on('error', () => {
    failed = true;
  });
}

function tooLarge(bytesMax: number): StatusError {
  return new StatusError(Status.RESOURCE_EXHAUSTED, `request body larger than ${bytesMax} bytes`);
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function sendError(res: http.ServerResponse, error: StatusError): void {
  const code =
    error.code === Status.RESOURCE_EXHAUSTED && /body larger/.test(error.message)
      ? 413
      : httpStatusOf(error.code);
  sendJson(res, code, { error: error.message, code: error.code, message: error.message });
}

function httpStatusText(code: number): string {
  const texts: Record<number, string> = {
    400: 'Bad Request',
    404: 'Not Found',
    409: 'Conflict',
    413: 'Payload Too Large',
    429: 'Too Many Requests',
    499: 'Client Closed Request',
    500: 'Internal Server Error',
    501: 'Not Implemented',
    503: 'Service Unavailable',
    504: 'Gateway Timeout',
  };
  return texts[code] ?? String(code);
}
