/**
 * The receiving process of the transport benchmark (bench/transport.ts forks it). Mode `tcp`
 * listens with a TcpNetwork and counts messages; mode `raw` listens with a bare net.Server and
 * counts 100-byte messages as bytes / 100. Talks to the parent over IPC:
 *   child → parent  { type: 'ready', port }     once listening
 *   parent → child  { type: 'expect', messages } after the last send
 *   child → parent  { type: 'done', messages }  once that many have arrived
 *   parent → child  { type: 'exit' }
 */
import * as net from 'node:net';
import { nodeId } from '../src/core/ids.js';
import { seededRandom } from '../src/core/prng.js';
import { silentLogger } from '../src/env/env.js';
import { TcpNetwork } from '../src/env/node/tcp.js';

export type ReceiverMode = 'tcp' | 'raw';
export type ToReceiver = { type: 'expect'; messages: number } | { type: 'exit' };
export type FromReceiver = { type: 'ready'; port: number } | { type: 'done'; messages: number };

const payloadBytes = Number(process.argv[3] ?? 100);
const mode = process.argv[2] as ReceiverMode;
let received = 0;
let rawBytes = 0;
let expected = Infinity;
let reported = false;

function tell(message: FromReceiver): void {
  process.send?.(message);
}

function check(): void {
  if (!reported && received >= expected) {
    reported = true;
    tell({ type: 'done', messages: received });
  }
}

function startTcp(): () => void {
  const network = new TcpNetwork({
    self: nodeId('receiver'),
    listen: { host: '127.0.0.1', port: 0 },
    // The receiver never sends, so the sender's address is never dialled.
    peers: new Map([[nodeId('sender'), { host: '127.0.0.1', port: 1 }]]),
    log: silentLogger,
    random: seededRandom(1),
  });
  network.onMessage(() => {
    received += 1;
    if (received >= expected) check();
  });
  network.start((error) => {
    if (error) throw error;
    tell({ type: 'ready', port: network.listening!.port });
  });
  return () => network.close();
}

function startRaw(): () => void {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk) => {
      rawBytes += chunk.length;
      received = Math.floor(rawBytes / payloadBytes);
      if (received >= expected) check();
    });
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1', () => {
    tell({ type: 'ready', port: (server.address() as net.AddressInfo).port });
  });
  return () => {
    for (const socket of sockets) socket.destroy();
    server.close();
  };
}

const stop = mode === 'tcp' ? startTcp() : startRaw();
process.on('message', (message: ToReceiver) => {
  if (message.type === 'expect') {
    expected = message.messages;
    check();
  } else {
    stop();
    process.disconnect();
  }
});
