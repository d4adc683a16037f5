// Shared helpers of the transport tests: TcpNetworks on 127.0.0.1 with ports chosen by the
// kernel, bounded waits, and a logger that remembers what it was told.
import { nodeId, type NodeId } from '../src/core/ids.js';
import { seededRandom } from '../src/core/prng.js';
import type { LogFields, Logger } from '../src/env/env.js';
import { TcpNetwork, type PeerTls, type TcpAddress, type TcpLimits } from '../src/env/node/tcp.js';

export interface LogLine {
  level: string;
  message: string;
  fields: LogFields;
}

/** A logger that keeps every line (children share the list and add their fields). */
export function recordingLogger(
  lines: LogLine[] = [],
  base: LogFields = {},
): Logger & { lines: LogLine[] } {
  const at =
    (level: string) =>
    (message: string, fields: LogFields = {}): void => {
      lines.push({ level, message, fields: { ...base, ...fields } });
    };
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => recordingLogger(lines, { ...base, ...fields }),
  };
}

/** Limits small enough for tests to hit and fast enough for them to finish. */
export const fastLimits: Partial<TcpLimits> = {
  reconnectDelayMsMin: 10,
  reconnectDelayMsMax: 100,
  handshakeTimeoutMs: 2_000,
  connectTimeoutMs: 2_000,
};

export function startNetwork(
  self: string,
  options: {
    port?: number;
    limits?: Partial<TcpLimits>;
    log?: Logger;
    peers?: Map<NodeId, TcpAddress | TcpAddress[]>;
    tls?: PeerTls;
  } = {},
): Promise<TcpNetwork> {
  const network = new TcpNetwork({
    self: nodeId(self),
    listen: { host: '127.0.0.1', port: options.port ?? 0 },
    peers: options.peers ?? new Map(),
    log: options.log ?? recordingLogger(),
    random: seededRandom(7).fork(self),
    limits: { ...fastLimits, ...options.limits },
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
  return new Promise((resolve, reject) => {
    network.start((error) => (error ? reject(error) : resolve(network)));
  });
}

export function addressOf(network: TcpNetwork): TcpAddress {
  const address = network.listening;
  if (address === undefined) throw new Error(`${network.self} is not listening`);
  return address;
}

/** Starts networks that all know each other. */
export async function startCluster(
  names: string[],
  options: { limits?: Partial<TcpLimits>; log?: Logger } = {},
): Promise<TcpNetwork[]> {
  const networks = await Promise.all(names.map((name) => startNetwork(name, options)));
  for (const a of networks) {
    for (const b of networks) if (a !== b) a.setPeer(b.self, addressOf(b));
  }
  return networks;
}

export function closeAll(networks: Iterable<TcpNetwork>): Promise<void> {
  return Promise.all(
    [...networks].map((n) => new Promise<void>((resolve) => n.close(resolve))),
  ).then(() => undefined);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until it holds; fails with `what` after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Collects every message a network receives. */
export function inbox(network: TcpNetwork): { from: NodeId; payload: Uint8Array }[] {
  const received: { from: NodeId; payload: Uint8Array }[] = [];
  network.onMessage((from, payload) => received.push({ from, payload }));
  return received;
}

export const text = (value: string): Uint8Array => new TextEncoder().encode(value);
export const untext = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
