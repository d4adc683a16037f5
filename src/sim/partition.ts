/**
 * Partition shapes, after Jepsen's nemeses. Each applies cuts to a SimNetwork and returns a
 * description for the trace. Nodes are indexes 0..n-1.
 */
import { assertNever } from '../core/assert.js';
import type { Random } from '../core/prng.js';
import type { SimNetwork } from './network.js';

export const partitionShapes = [
  'isolate',
  'majority',
  'ring',
  'bridge',
  'halves',
  'one-way',
] as const;
export type PartitionShape = (typeof partitionShapes)[number];

export interface PartitionApplied {
  shape: PartitionShape;
  /** Human-readable groups, e.g. "[0] | [1 2 3 4]". */
  description: string;
}

function split(random: Random, n: number, firstSize: number): [number[], number[]] {
  const order = random.shuffle(Array.from({ length: n }, (_, i) => i));
  return [
    order.slice(0, firstSize).sort((a, b) => a - b),
    order.slice(firstSize).sort((a, b) => a - b),
  ];
}

const show = (group: readonly number[]): string => `[${group.join(' ')}]`;

export function applyPartition(
  net: SimNetwork,
  random: Random,
  shape: PartitionShape,
): PartitionApplied {
  const n = net.size;
  switch (shape) {
    case 'isolate': {
      const [alone, rest] = split(random, n, 1);
      net.cutBetween(alone, rest);
      return { shape, description: `${show(alone)} | ${show(rest)}` };
    }
    case 'majority': {
      // The minority side holds floor((n-1)/2) nodes: the majority keeps a quorum.
      const [minority, majority] = split(random, n, Math.max(1, Math.floor((n - 1) / 2)));
      net.cutBetween(minority, majority);
      return { shape, description: `${show(minority)} | ${show(majority)}` };
    }
    case 'halves': {
      const [a, b] = split(random, n, 1 + random.int(Math.max(1, n - 1)));
      net.cutBetween(a, b);
      return { shape, description: `${show(a)} | ${show(b)}` };
    }
    case 'ring': {
      // Each node sees a majority (itself and k neighbours each side in a shuffled ring), and
      // no two nodes see the same majority: the classic overlapping-majorities ring.
      const order = random.shuffle(Array.from({ length: n }, (_, i) => i));
      const position = new Array<number>(n);
      order.forEach((node, i) => (position[node] = i));
      const k = Math.ceil((Math.floor(n / 2) + 1 - 1) / 2);
      net.cutUnless((a, b) => {
        const d = Math.abs(position[a]! - position[b]!);
        return Math.min(d, n - d) <= k;
      });
      return { shape, description: `ring ${show(order)} k=${k}` };
    }
    case 'bridge': {
      // Two halves that share one bridge node, which talks to everyone.
      const order = random.shuffle(Array.from({ length: n }, (_, i) => i));
      const bridge = order[0]!;
      const rest = order.slice(1);
      const half = Math.ceil(rest.length / 2);
      const a = rest.slice(0, half).sort((x, y) => x - y);
      const b = rest.slice(half).sort((x, y) => x - y);
      net.cutBetween(a, b);
      return { shape, description: `${show(a)} <${bridge}> ${show(b)}` };
    }
    case 'one-way': {
      // Messages from group a to group b are lost; b to a still flow.
      const [a, b] = split(random, n, 1 + random.int(Math.max(1, n - 1)));
      for (const x of a) for (const y of b) net.cut(x, y);
      return { shape, description: `${show(a)} -/-> ${show(b)}` };
    }
    default:
      return assertNever(shape, 'partition shape');
  }
}
