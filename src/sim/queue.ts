/**
 * The event queue of the simulator: a binary min-heap ordered by (time, sequence). The
 * sequence number breaks ties in insertion order, so two events at the same virtual time
 * always run in the same order and a seed replays exactly.
 */
import { assert } from '../core/assert.js';

export interface SimEvent {
  time: number;
  seq: number;
  run: () => void;
  /** Set by cancel; a cancelled event is skipped when popped (lazy deletion). */
  cancelled: boolean;
}

export class EventQueue {
  private heap: SimEvent[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(time: number, run: () => void): SimEvent {
    assert(Number.isFinite(time), () => `event time ${time}`);
    const event: SimEvent = { time, seq: this.nextSeq++, run, cancelled: false };
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (p.time < time || (p.time === time && p.seq < event.seq)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = event;
    return event;
  }

  peekTime(): number | undefined {
    return this.heap[0]?.time;
  }

  pop(): SimEvent | undefined {
    const heap = this.heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      const n = heap.length;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        let child = left;
        let c = heap[left]!;
        if (right < n) {
          const r = heap[right]!;
          if (r.time < c.time || (r.time === c.time && r.seq < c.seq)) {
            child = right;
            c = r;
          }
        }
        if (last.time < c.time || (last.time === c.time && last.seq < c.seq)) break;
        heap[i] = c;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}
