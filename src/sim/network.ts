/**
 * The simulated network: per message a latency (floor + exponential tail), loss,
 * duplication and extra reordering delay; directed links can be cut (partitions, one-way
 * cuts) or clogged (held, then released on unclog). A cut also drops messages already in
 * flight on that link when they arrive, as a router would.
 */
import { assert } from '../core/assert.js';
import type { Random } from '../core/prng.js';
import {
  clogQueueMessagesMax,
  latencyMsMinDefault,
  latencyMsTailMeanDefault,
} from './constants.js';
import type { World } from './world.js';

export interface NetworkFaults {
  latencyMsMin: number;
  latencyMsTailMean: number;
  /** Probability that a message is lost. */
  lossRate: number;
  /** Probability that a message is delivered twice. */
  dupRate: number;
  /** Probability that a message is held back by an extra delay (reordering it). */
  reorderRate: number;
  reorderDelayMsMean: number;
}

export const quietNetwork: NetworkFaults = {
  latencyMsMin: latencyMsMinDefault,
  latencyMsTailMean: latencyMsTailMeanDefault,
  lossRate: 0,
  dupRate: 0,
  reorderRate: 0,
  reorderDelayMsMean: 0,
};

export interface NetworkCounters {
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  cut: number;
  clogDropped: number;
  targetDown: number;
}

export type Deliver = (to: number, from: number, payload: Uint8Array) => boolean;

interface Held {
  from: number;
  to: number;
  payload: Uint8Array;
}

export class SimNetwork {
  faults: NetworkFaults = { ...quietNetwork };
  readonly counters: NetworkCounters = {
    sent: 0,
    delivered: 0,
    lost: 0,
    duplicated: 0,
    cut: 0,
    clogDropped: 0,
    targetDown: 0,
  };
  /** blocked[from * n + to] = 1 when the directed link from → to is cut. */
  private readonly blocked: Uint8Array;
  private readonly clogged: Uint8Array;
  private readonly held = new Map<number, Held[]>();

  constructor(
    private readonly world: World,
    private readonly random: Random,
    readonly size: number,
    private readonly deliver: Deliver,
  ) {
    this.blocked = new Uint8Array(size * size);
    this.clogged = new Uint8Array(size * size);
  }

  send(from: number, to: number, payload: Uint8Array): void {
    assert(from >= 0 && from < this.size && to >= 0 && to < this.size, () => `link ${from}->${to}`);
    this.counters.sent++;
    this.transmit(from, to, payload);
  }

  private transmit(from: number, to: number, payload: Uint8Array): void {
    const link = from * this.size + to;
    if (this.blocked[link] === 1) {
      this.counters.cut++;
      return;
    }
    if (this.clogged[link] === 1) {
      this.hold(link, { from, to, payload });
      return;
    }
    const faults = this.faults;
    if (faults.lossRate > 0 && this.random.chance(faults.lossRate)) {
      this.counters.lost++;
      return;
    }
    this.schedule(from, to, payload);
    if (faults.dupRate > 0 && this.random.chance(faults.dupRate)) {
      this.counters.duplicated++;
      this.schedule(from, to, payload);
    }
  }

  private schedule(from: number, to: number, payload: Uint8Array): void {
    const faults = this.faults;
    let delay = faults.latencyMsMin + this.random.exponential(faults.latencyMsTailMean);
    if (faults.reorderRate > 0 && this.random.chance(faults.reorderRate)) {
      delay += this.random.exponential(faults.reorderDelayMsMean);
    }
    const world = this.world;
    world.after(delay, () => {
      if (this.blocked[from * this.size + to] === 1) {
        this.counters.cut++;
        return;
      }
      world.trace.record(world.now, 'deliver', to, (from << 16) ^ payload.length);
      if (this.deliver(to, from, payload)) this.counters.delivered++;
      else this.counters.targetDown++;
    });
  }

  private hold(link: number, message: Held): void {
    let queue = this.held.get(link);
    if (queue === undefined) {
      queue = [];
      this.held.set(link, queue);
    }
    if (queue.length >= clogQueueMessagesMax) {
      this.counters.clogDropped++;
      return;
    }
    queue.push(message);
  }

  isCut(from: number, to: number): boolean {
    return this.blocked[from * this.size + to] === 1;
  }

  /** Cuts the directed link from → to (a one-way partition when used alone). */
  cut(from: number, to: number): void {
    if (from !== to) this.blocked[from * this.size + to] = 1;
  }

  /** Cuts every link between the two groups, both ways. */
  cutBetween(a: readonly number[], b: readonly number[]): void {
    for (const x of a) {
      for (const y of b) {
        this.cut(x, y);
        this.cut(y, x);
      }
    }
  }

  /** Leaves only the links allowed by `connected(a, b)` (symmetric), cutting the rest. */
  cutUnless(connected: (a: number, b: number) => boolean): void {
    for (let a = 0; a < this.size; a++) {
      for (let b = 0; b < this.size; b++) if (a !== b && !connected(a, b)) this.cut(a, b);
    }
  }

  clog(from: number, to: number): void {
    if (from !== to) this.clogged[from * this.size + to] = 1;
  }

  /** Releases a clogged link: held messages go out in order with fresh latency. */
  unclog(from: number, to: number): void {
    const link = from * this.size + to;
    this.clogged[link] = 0;
    const queue = this.held.get(link);
    if (queue === undefined) return;
    this.held.delete(link);
    for (const message of queue) this.transmit(message.from, message.to, message.payload);
  }

  /** Removes every cut and clog. */
  heal(): void {
    this.blocked.fill(0);
    for (let from = 0; from < this.size; from++) {
      for (let to = 0; to < this.size; to++)
        if (this.clogged[from * this.size + to] === 1) this.unclog(from, to);
    }
  }

  /** The cut links as "from->to" pairs, for the trace and tests. */
  cutLinks(): string[] {
    const links: string[] = [];
    for (let from = 0; from < this.size; from++) {
      for (let to = 0; to < this.size; to++)
        if (this.blocked[from * this.size + to] === 1) links.push(`${from}->${to}`);
    }
    return links;
  }
}
