/**
 * One client port for gRPC and HTTP/1.1, as etcd serves both on its client URL with cmux.
 *
 * A gRPC client opens its connection with the HTTP/2 preface ("PRI * HTTP/2.0…"); every
 * HTTP/1.1 request starts with a method name, and none is "PRI". The listener reads the
 * first four bytes of each connection, puts them back (`unshift`) and hands the socket
 * either to grpc-js (through its connection injector) or to a node:http server. A
 * connection that sends nothing within the sniff timeout is closed.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { clientConnectionsMax, protocolSniffTimeoutMs } from './constants.js';

const http2Preface = Buffer.from('PRI ');

export interface ProtocolRoutes {
  grpc: (socket: net.Socket) => void;
  http: (socket: net.Socket) => void;
}

export interface ClientListener {
  readonly port: number;
  /**
   * Stops accepting at once. Open connections are the routes' to close (net.Server's own
   * close callback would wait for them all).
   */
  close(): void;
  /** Destroys every connection still open (after the routes have said their goodbyes). */
  destroyConnections(): void;
  /** A TLS listener's new certificate, key and CAs, for the connections from now on. */
  setSecureContext(options: tls.TlsOptions): void;
}

/** An https:// client URL's TLS, and who hears of a handshake that failed. */
export interface SecureListening {
  options: tls.TlsOptions;
  onHandshakeError: (error: Error, remote: string) => void;
}

/**
 * Listens on `address`; with `secure` (an https:// URL), every connection is a TLS one whose
 * handshake must end within the sniff timeout, and what is sniffed and routed is the
 * decrypted stream. A failed handshake (a plaintext client, an unknown certificate) closes
 * that connection only.
 */
export function listenClients(
  address: { host: string; port: number },
  routes: ProtocolRoutes,
  done: (error: Error | undefined, listener: ClientListener | undefined) => void,
  secure?: SecureListening,
): void {
  // Tracked here because node:http only tracks connections of a server that listens itself.
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  let server: net.Server;
  if (secure === undefined) {
    server = net.createServer({ pauseOnConnect: true }, (socket) => {
      track(socket);
      sniff(socket, routes);
    });
  } else {
    const options = { ...secure.options, handshakeTimeout: protocolSniffTimeoutMs };
    server = tls.createServer(options, (socket) => sniff(socket, routes));
    // The TCP connections, so that those still in their handshake are closed at stop too.
    server.on('connection', track);
    server.on('tlsClientError', (error: Error, socket: tls.TLSSocket) =>
      secure.onHandshakeError(error, `${socket.remoteAddress}:${socket.remotePort}`),
    );
  }
  server.maxConnections = clientConnectionsMax;
  const onError = (error: Error): void => done(error, undefined);
  server.once('error', onError);
  server.listen(address.port, address.host, () => {
    server.off('error', onError);
    // Errors after listening (EMFILE on accept) must not crash the process.
    server.on('error', () => {});
    const bound = server.address() as net.AddressInfo;
    done(undefined, {
      port: bound.port,
      close: () => server.close(),
      setSecureContext: (options) => {
        if (server instanceof tls.Server) server.setSecureContext(options);
      },
      destroyConnections: () => {
        for (const socket of sockets) socket.destroy();
        sockets.clear();
      },
    });
  });
}

function sniff(socket: net.Socket, routes: ProtocolRoutes): void {
  let seen = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), protocolSniffTimeoutMs);
  const finish = (route: (socket: net.Socket) => void): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('end', onEnd);
    socket.pause();
    socket.unshift(seen);
    route(socket);
  };
  const onData = (chunk: Buffer): void => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, http2Preface.length);
    if (!seen.subarray(0, n).equals(http2Preface.subarray(0, n))) {
      finish(routes.http);
      // node:http consumes the socket's handle directly and reads the bytes put back only
      // from the stream, which flows once resumed.
      socket.resume();
      return;
    }
    if (seen.length >= http2Preface.length) finish(routes.grpc);
  };
  const onError = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  const onEnd = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('end', onEnd);
  socket.resume();
}
