/** Real time for one process: a monotonic clock from hrtime and the wall clock. */
import type { Clock, Timers } from '../env.js';
import type { TimerId } from '../../core/ids.js';

const originNs = process.hrtime.bigint();

export const nodeClock: Clock = {
  monotonicMs: () => Number(process.hrtime.bigint() - originNs) / 1e6,
  wallMs: () => Date.now(),
};

export class NodeTimers implements Timers {
  private readonly live = new Map<number, NodeJS.Timeout>();
  private nextId = 1;

  set(delayMs: number, fn: () => void): TimerId {
    const id = this.nextId++;
    const handle = setTimeout(
      () => {
        this.live.delete(id);
        fn();
      },
      Math.max(0, delayMs),
    );
    this.live.set(id, handle);
    return id as TimerId;
  }

  cancel(id: TimerId): void {
    const handle = this.live.get(id);
    if (handle !== undefined) {
      clearTimeout(handle);
      this.live.delete(id);
    }
  }

  /** Cancels every pending timer (process shutdown). */
  cancelAll(): void {
    for (const handle of this.live.values()) clearTimeout(handle);
    this.live.clear();
  }
}
