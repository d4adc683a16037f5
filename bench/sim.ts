/**
 * Simulator throughput: delivered simulated messages per real second.
 * - baseline "relay": the simulator alone — 5 nodes pass 64 tokens around, each delivery
 *   costs one receive and one send, no protocol work;
 * - "broadcast": the 5-node gossip broadcast cluster (push + anti-entropy + durable log on
 *   the simulated disk), broadcasting a value every millisecond, no faults, no reads.
 * Each figure is the median of 5 runs after one warm-up run; the ratio compares them.
 */
import { seededRandom } from '../src/core/prng.js';
import { Cluster } from '../src/sim/cluster.js';
import { World } from '../src/sim/world.js';
import { runSimulation } from '../src/sim/run.js';
import { broadcastWorkload } from '../src/workload/broadcast.js';
import type { Benchmark } from './run.js';
import { median } from './stats.js';

const runs = 5;

/** The bare simulator: 5 nodes relay 64 tokens, one receive and one send per delivery. */
export function relay(virtualMs: number): { messages: number; seconds: number } {
  const world = new World(seededRandom(1));
  const cluster = new Cluster<null>(world, seededRandom(1), 5, {
    create(env) {
      const peers = env.net.peers();
      let next = 0;
      env.net.onMessage((_from, payload) => {
        env.net.send(peers[next++ % peers.length]!, payload);
      });
      return null;
    },
  });
  cluster.bootAll();
  const token = new Uint8Array(100);
  for (let i = 0; i < 64; i++) cluster.network.send(i % 5, (i + 1) % 5, token);
  const started = performance.now();
  world.runUntil(virtualMs);
  return {
    messages: cluster.network.counters.delivered,
    seconds: (performance.now() - started) / 1000,
  };
}

function broadcast(virtualMs: number): { messages: number; seconds: number } {
  const started = performance.now();
  const result = runSimulation(
    broadcastWorkload({ broadcastIntervalMsMean: 1, readIntervalMsMean: 1e12 }),
    {
      seed: 1,
      nodes: 5,
      nemesis: [],
      safetyMs: virtualMs,
    },
  );
  return { messages: result.messagesDelivered, seconds: (performance.now() - started) / 1000 };
}

function measure(name: string, fn: () => { messages: number; seconds: number }): number {
  fn(); // warm-up
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) {
    const { messages, seconds } = fn();
    rates.push(messages / seconds);
  }
  const m = median(rates);
  console.log(
    `${name.padEnd(10)} median ${Math.round(m).toLocaleString('en-US')} delivered msgs/s (runs: ${rates.map((r) => Math.round(r / 1000) + 'k').join(' ')})`,
  );
  return m;
}

export const simBench: Benchmark = {
  name: 'sim: delivered simulated messages per real second, 5 nodes',
  run() {
    const base = measure('relay', () => relay(2_000));
    const gossip = measure('broadcast', () => broadcast(10_000));
    console.log(
      `broadcast / relay = ${(gossip / base).toFixed(3)} (protocol work per message vs the bare simulator)`,
    );
    return Promise.resolve();
  },
};
