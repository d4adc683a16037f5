/**
 * TCP transport throughput between two processes on loopback: one way, 100-byte payloads,
 * a TcpNetwork sender in this process and a TcpNetwork receiver in a forked child
 * (bench/transport-receiver.ts). Each run is bounded (messagesMax or durationMsMax, whichever
 * first) and timed from the first send until the child reports the last message received.
 *
 * The baseline, measured in the same session, sends the same bytes over a bare net.Socket
 * (no framing, no CRC, no queue, the same 64 KiB writes): the ratio is what framing,
 * checksums and bounded queueing cost. CHORUS_BENCH_RUNS sets the number of runs (default 5).
 */
import { fork } from 'node:child_process';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { nodeId } from '../src/core/ids.js';
import { seededRandom } from '../src/core/prng.js';
import { silentLogger } from '../src/env/env.js';
import { TcpNetwork } from '../src/env/node/tcp.js';
import type { Benchmark } from './run.js';
import { median } from './stats.js';
import type { FromReceiver, ReceiverMode, ToReceiver } from './transport-receiver.js';

const payloadBytes = 100;
const messagesMax = 2_000_000;
const durationMsMax = 5_000;
const runs = Number(process.env['CHORUS_BENCH_RUNS'] ?? 5);
const rawChunkMessages = 655; // 65,500 bytes per write, like the TcpNetwork's 64 KiB chunks
const receiverPath = fileURLToPath(new URL('./transport-receiver.js', import.meta.url));

interface Receiver {
  port: number;
  /** Resolves when the child has received `messages`. */
  expect(messages: number): Promise<void>;
  stop(): Promise<void>;
}

function startReceiver(mode: ReceiverMode): Promise<Receiver> {
  const child = fork(receiverPath, [mode, String(payloadBytes)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const send = (message: ToReceiver): void => {
    child.send(message);
  };
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('message', (ready: FromReceiver) => {
      if (ready.type !== 'ready') return reject(new Error(`receiver said ${ready.type} first`));
      resolve({
        port: ready.port,
        expect: (messages) =>
          new Promise((done, fail) => {
            const timer = setTimeout(
              () => fail(new Error('receiver did not report in time')),
              30_000,
            );
            child.once('message', (message: FromReceiver) => {
              clearTimeout(timer);
              if (message.type === 'done') done();
              else fail(new Error(`receiver said ${message.type}`));
            });
            send({ type: 'expect', messages });
          }),
        stop: () => {
          send({ type: 'exit' });
          return exited;
        },
      });
    });
  });
}

interface RunResult {
  messages: number;
  elapsedMs: number;
}

/** Sends through a TcpNetwork, never past its queue bound (a full queue would drop). */
async function runTcp(): Promise<RunResult> {
  const receiver = await startReceiver('tcp');
  const peer = nodeId('receiver');
  const network = new TcpNetwork({
    self: nodeId('sender'),
    listen: { host: '127.0.0.1', port: 0 },
    peers: new Map([[peer, { host: '127.0.0.1', port: receiver.port }]]),
    log: silentLogger,
    random: seededRandom(1),
  });
  const payload = new Uint8Array(payloadBytes).fill(0x5a);
  const queueMax = network.limits.peerQueueMessagesMax;
  const startMs = performance.now();
  let accepted = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      if (accepted >= messagesMax || performance.now() - startMs > durationMsMax) return resolve();
      const room = Math.min(
        queueMax - network.queued(peer).messages,
        messagesMax - accepted,
        4_096,
      );
      // A full queue waits for the socket to drain; a millisecond is a small part of a drain.
      if (room <= 0) return void setTimeout(pump, 1);
      for (let i = 0; i < room; i++) if (network.send(peer, payload)) accepted += 1;
      setImmediate(pump);
    };
    pump();
  });
  await receiver.expect(accepted);
  const elapsedMs = performance.now() - startMs;
  network.close();
  await receiver.stop();
  return { messages: accepted, elapsedMs };
}

/** The same bytes over a bare socket: 64 KiB writes, waiting for 'drain' as TcpNetwork does. */
async function runRaw(): Promise<RunResult> {
  const receiver = await startReceiver('raw');
  const template = Buffer.alloc(payloadBytes * rawChunkMessages, 0x5a);
  const socket = net.connect({ host: '127.0.0.1', port: receiver.port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const startMs = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (sent < messagesMax && performance.now() - startMs <= durationMsMax) {
        const messages = Math.min(rawChunkMessages, messagesMax - sent);
        sent += messages;
        // A fresh copy per write, as the socket may still hold the previous buffer.
        if (!socket.write(Buffer.from(template.subarray(0, messages * payloadBytes)))) {
          return void socket.once('drain', pump);
        }
      }
      resolve();
    };
    pump();
  });
  await receiver.expect(sent);
  const elapsedMs = performance.now() - startMs;
  socket.destroy();
  await receiver.stop();
  return { messages: sent, elapsedMs };
}

const rate = (r: RunResult): number => r.messages / (r.elapsedMs / 1000);
const format = (messagesPerSecond: number): string =>
  `${Math.round(messagesPerSecond).toLocaleString('en-US')} msg/s, ${((messagesPerSecond * payloadBytes) / 1e6).toFixed(1)} MB/s`;

export const transportBench: Benchmark = {
  name: 'transport',
  async run() {
    const tcp: number[] = [];
    const raw: number[] = [];
    // Interleaved, so a noisy moment on this shared machine hurts both sides alike.
    for (let i = 0; i < runs; i++) {
      const r = await runRaw();
      raw.push(rate(r));
      const t = await runTcp();
      tcp.push(rate(t));
      console.log(
        `  run ${i + 1}: tcp ${format(rate(t))} (${t.messages.toLocaleString('en-US')} in ${t.elapsedMs.toFixed(0)} ms); raw ${format(rate(r))}`,
      );
    }
    const tcpMedian = median(tcp);
    const rawMedian = median(raw);
    console.log(
      `  TcpNetwork, ${payloadBytes}-byte payloads, one way, two processes: median ${format(tcpMedian)}`,
    );
    console.log(
      `  raw net.Socket, same bytes, no framing or CRC:            median ${format(rawMedian)}`,
    );
    console.log(`  ratio TcpNetwork / raw socket: ${(tcpMedian / rawMedian).toFixed(2)}`);
  },
};
