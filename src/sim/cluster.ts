/**
 * A cluster of simulated nodes on one World: the network between them, their processes and
 * disks, and client calls into them. Workloads and the nemesis act on it.
 */
import { assert } from '../core/assert.js';
import { nodeId, type NodeId } from '../core/ids.js';
import type { Random } from '../core/prng.js';
import { simNodesMax } from './constants.js';
import { SimNetwork } from './network.js';
import { SimNode, type NodeHooks } from './node.js';
import type { World } from './world.js';

/** Latency of a client's call into a co-located node (both ways). */
const clientCallMs = 0.05;

export class Cluster<App> {
  readonly nodes: SimNode<App>[] = [];
  readonly network: SimNetwork;
  readonly ids: NodeId[];

  constructor(
    readonly world: World,
    random: Random,
    size: number,
    hooks: NodeHooks<App>,
  ) {
    assert(size >= 1 && size <= simNodesMax, () => `cluster size ${size} not in 1..${simNodesMax}`);
    this.ids = Array.from({ length: size }, (_, i) => nodeId(`n${i + 1}`));
    const indexOf = new Map(this.ids.map((id, i) => [id, i] as const));
    this.network = new SimNetwork(world, random.fork('net'), size, (to, from, payload) =>
      this.nodes[to]!.receive(from, payload),
    );
    for (let i = 0; i < size; i++) {
      this.nodes.push(
        new SimNode(
          i,
          this.ids[i]!,
          world,
          this.network,
          this.ids,
          indexOf,
          random.fork(`node-${i + 1}`),
          hooks,
        ),
      );
    }
  }

  get size(): number {
    return this.nodes.length;
  }

  node(index: number): SimNode<App> {
    const node = this.nodes[index];
    assert(node !== undefined, () => `no node ${index}`);
    return node;
  }

  bootAll(): void {
    for (const node of this.nodes) node.boot();
  }

  /**
   * A client call into node `index`: `fn` runs inside the node after a short delay. If the
   * node is crashed then, `onDown` runs instead (connection refused: the call did nothing).
   * A paused node runs the call when it resumes, as a real stalled process would.
   */
  call(index: number, fn: (app: App) => void, onDown: () => void): void {
    const node = this.node(index);
    const incarnation = node.incarnation;
    this.world.after(clientCallMs, () => {
      const app = node.app;
      if (node.incarnation !== incarnation || node.status === 'crashed' || app === undefined) {
        onDown();
        return;
      }
      if (!node.run(incarnation, () => fn(node.app ?? app))) onDown();
    });
  }

  /** Ends every fault: heals the network, resumes paused nodes, restarts crashed ones. */
  healAll(): void {
    this.network.heal();
    for (const node of this.nodes) {
      if (node.status === 'paused') node.resume();
      if (node.status === 'crashed') node.boot();
    }
  }

  upCount(): number {
    return this.nodes.filter((n) => n.status === 'up').length;
  }
}
