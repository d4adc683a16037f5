/** Real time for one process: a monotonic clock from hrtime and the wall clock. */
import type { Clock, Timers } from '../env.js';
import type { TimerId } from '../../core/ids.js';

const originNs = process.hrtime.bigint();

export const nodeClock: Clock = {
  monotonicMs: () => Number(process.hrtime.bigint() - originNs) / 1e6,
  wallMs: () => Date.now(),
};

export class NodeTimers implements Timers {
  private readonly live = new Map<number, NodeJS.Timeout | NodeJS.Immediate>();
  private nextId = 1;

  /**
   * A zero delay runs on the next turn of the event loop (setImmediate): setTimeout's floor
   * is 1 ms, and the Raft loop hops through zero-delay timers several times per commit (each
   * node's Ready loop), which cost ~1 ms each on every write's path.
   */
  set(delayMs: number, fn: () => void): TimerId {
    const id = this.nextId++;
    const run = (): void => {
      this.live.delete(id);
      fn();
    };
    this.live.set(id, delayMs <= 0 ? setImmediate(run) : setTimeout(run, delayMs));
    return id as TimerId;
  }

  cancel(id: TimerId): void {
    const handle = this.live.get(id);
    if (handle !== undefined) {
      clear(handle);
      this.live.delete(id);
    }
  }

  /** Cancels every pending timer (process shutdown). */
  cancelAll(): void {
    for (const handle of this.live.values()) clear(handle);
    this.live.clear();
  }
}

function clear(handle: NodeJS.Timeout | NodeJS.Immediate): void {
  if ('refresh' in handle) clearTimeout(handle);
  else clearImmediate(handle);
}
