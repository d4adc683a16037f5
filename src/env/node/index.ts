/**
 * The Env of a real process: real clock and timers, a seeded PRNG (its seed is logged so a
 * run's random choices can be replayed), the data directory on disk, pino logs and TCP.
 */
import { randomInt } from 'node:crypto';
import type { NodeId } from '../../core/ids.js';
import { seededRandom } from '../../core/prng.js';
import type { Env, Logger } from '../env.js';
import { nodeClock, NodeTimers } from './clock.js';
import { NodeDisk } from './disk.js';
import { nodeLogger } from './logger.js';
import { TcpNetwork, type PeerTls, type TcpAddress, type TcpLimits } from './tcp.js';

export { nodeClock, NodeTimers } from './clock.js';
export { NodeDisk } from './disk.js';
export { nodeLogger } from './logger.js';
export * from './tcp.js';

export interface NodeEnvOptions {
  self: NodeId;
  listen: TcpAddress;
  peers: ReadonlyMap<NodeId, TcpAddress | readonly TcpAddress[]>;
  dataDir: string;
  /** Seed of every random choice; drawn at random (and logged) when absent. */
  seed?: number;
  log?: Logger;
  limits?: Partial<TcpLimits>;
  /** TLS between members (https:// peer URLs). */
  tls?: PeerTls;
}

export interface NodeEnv {
  env: Env;
  net: TcpNetwork;
  timers: NodeTimers;
  /** Closes the network and cancels every timer. */
  close(done?: () => void): void;
}

/** Assembles the Env and starts listening; `done` runs once the port is bound. */
export function createNodeEnv(
  options: NodeEnvOptions,
  done: (error: Error | undefined, nodeEnv: NodeEnv | undefined) => void,
): void {
  // randomInt needs max - min below 2^48.
  const seed = options.seed ?? randomInt(0, 2 ** 48 - 1);
  const log = (options.log ?? nodeLogger()).child({ node: options.self });
  log.info('seed', { seed, reproduce: `CHORUS_SEED=${seed}` });
  const random = seededRandom(seed).fork(options.self);
  const timers = new NodeTimers();
  const net = new TcpNetwork({
    self: options.self,
    listen: options.listen,
    peers: options.peers,
    log,
    random: random.fork('net'),
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
  const env: Env = {
    clock: nodeClock,
    timers,
    random,
    net,
    disk: new NodeDisk(options.dataDir),
    log,
  };
  const nodeEnv: NodeEnv = {
    env,
    net,
    timers,
    close(closed) {
      timers.cancelAll();
      net.close(closed);
    },
  };
  net.start((error) => {
    if (error !== undefined) {
      net.close();
      done(error, undefined);
    } else {
      done(undefined, nodeEnv);
    }
  });
}
