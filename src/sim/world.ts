/**
 * Virtual time. Events run in (time, sequence) order and time jumps straight to the next
 * event, so a minute of cluster time with nothing to do costs nothing.
 */
import { assert } from '../core/assert.js';
import type { Random } from '../core/prng.js';
import { EventQueue, type SimEvent } from './queue.js';
import { Trace, type TraceSink } from './trace.js';

export class World {
  now = 0;
  readonly queue = new EventQueue();
  readonly trace: Trace;
  /** Runs after every event: white-box invariant checks of a workload. Throwing fails the run. */
  afterEvent: (() => void) | undefined;

  constructor(
    readonly random: Random,
    sink?: TraceSink,
  ) {
    this.trace = new Trace(sink);
  }

  at(time: number, run: () => void): SimEvent {
    assert(time >= this.now, () => `event at ${time} is before now ${this.now}`);
    return this.queue.push(time, run);
  }

  after(delayMs: number, run: () => void): SimEvent {
    return this.at(this.now + Math.max(0, delayMs), run);
  }

  /** Runs every event up to and including `endMs`, then sets the time to `endMs`. */
  runUntil(endMs: number): void {
    this.runWhile(() => true, endMs);
    if (this.now < endMs) this.now = endMs;
  }

  /**
   * Runs events in order while `keepGoing()` holds and the next event is due by `endMs`.
   * Returns true when it stopped because `keepGoing()` turned false.
   */
  runWhile(keepGoing: () => boolean, endMs: number): boolean {
    const queue = this.queue;
    for (;;) {
      if (!keepGoing()) return true;
      const next = queue.peekTime();
      if (next === undefined || next > endMs) return false;
      const event = queue.pop()!;
      if (event.cancelled) continue;
      this.now = event.time;
      event.run();
      this.afterEvent?.();
    }
  }
}
