// Shared helpers of the storage tests: a tiny event loop that runs the simulated disk's
// completions in (time, sequence) order, one loop per process incarnation over a disk
// state that outlives crashes, and a logger that remembers its warnings.
import assert from 'node:assert/strict';
import type { ChorusError } from '../src/core/errors.js';
import { seededRandom } from '../src/core/prng.js';
import type { LogFields, Logger, Timers } from '../src/env/env.js';
import type { TimerId } from '../src/core/ids.js';
import type { Entry, HardState } from '../src/raft/types.js';
import { SimDisk, SimDiskState, quietDisk, type DiskFaults } from '../src/sim/disk.js';
import { EventQueue } from '../src/sim/queue.js';
import {
  RaftStorage,
  type Recovered,
  type SaveUpdate,
  type StorageOptions,
} from '../src/storage/index.js';

export interface LogLine {
  level: string;
  message: string;
  fields: LogFields;
}

export function recordingLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const at =
    (level: string) =>
    (message: string, fields: LogFields = {}): void => {
      lines.push({ level, message, fields });
    };
  const logger: Logger & { lines: LogLine[] } = {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger,
  };
  return logger;
}

/** One process lifetime: its own event queue; the disk state is shared across lifetimes. */
export class Incarnation {
  readonly queue = new EventQueue();
  now = 0;
  readonly log = recordingLogger();
  readonly disk: SimDisk;
  readonly env: { disk: SimDisk; log: Logger; timers: Timers };
  private readonly cancelled = new Set<number>();
  private nextTimer = 0;

  constructor(readonly state: SimDiskState) {
    this.disk = new SimDisk(state, (delayMs, fn) => {
      this.queue.push(this.now + delayMs, fn);
    });
    // Timers on the same event queue (storage spreads snapshot-file encoding over them).
    const timers: Timers = {
      set: (delayMs, fn) => {
        const id = this.nextTimer++;
        this.queue.push(this.now + delayMs, () => {
          if (!this.cancelled.delete(id)) fn();
        });
        return id as TimerId;
      },
      cancel: (id) => void this.cancelled.add(id),
    };
    this.env = { disk: this.disk, log: this.log, timers };
  }

  /** Runs at most `max` events; returns how many ran. */
  run(max = Number.POSITIVE_INFINITY): number {
    let ran = 0;
    while (ran < max) {
      const event = this.queue.pop();
      if (event === undefined) break;
      this.now = event.time;
      event.run();
      ran++;
    }
    return ran;
  }

  /** Runs events until `condition()` holds; fails if the queue drains first. */
  runUntil(condition: () => boolean, what: string): void {
    for (let i = 0; !condition(); i++) {
      assert.ok(i < 10_000_000, `runaway loop waiting for ${what}`);
      assert.ok(this.run(1) === 1, `queue drained waiting for ${what}`);
    }
  }
}

export function diskState(seed = 1, faults: Partial<DiskFaults> = {}): SimDiskState {
  const state = new SimDiskState(seededRandom(seed));
  state.faults = { ...quietDisk, ...faults };
  return state;
}

export interface Opened {
  error: ChorusError | undefined;
  storage: RaftStorage | undefined;
  recovered: Recovered | undefined;
}

export function tryOpen(life: Incarnation, dir = 'raft', options: StorageOptions = {}): Opened {
  let result: Opened | undefined;
  RaftStorage.open(
    life.env,
    dir,
    (error, storage, recovered) => (result = { error, storage, recovered }),
    options,
  );
  life.runUntil(() => result !== undefined, 'open');
  return result!;
}

export function open(
  life: Incarnation,
  dir = 'raft',
  options: StorageOptions = {},
): { storage: RaftStorage; recovered: Recovered } {
  const { error, storage, recovered } = tryOpen(life, dir, options);
  assert.equal(error, undefined, `open failed: ${error?.message}`);
  return { storage: storage!, recovered: recovered! };
}

/** Saves and runs the loop until acknowledged; returns the error, if any. */
export function save(
  life: Incarnation,
  storage: RaftStorage,
  update: SaveUpdate,
): ChorusError | undefined {
  let finished = false;
  let failure: ChorusError | undefined;
  storage.save(update, (error) => {
    finished = true;
    failure = error;
  });
  life.runUntil(() => finished, 'save');
  return failure;
}

export function settle(
  life: Incarnation,
  call: (done: (e: ChorusError | undefined) => void) => void,
): ChorusError | undefined {
  let finished = false;
  let failure: ChorusError | undefined;
  call((error) => {
    finished = true;
    failure = error;
  });
  life.runUntil(() => finished, 'call');
  return failure;
}

/** Entries from..to (inclusive) of `term`, data naming index and term so a mix-up shows. */
export function entries(from: number, to: number, term: number, size = 8): Entry[] {
  const result: Entry[] = [];
  for (let index = from; index <= to; index++) {
    const data = new Uint8Array(size);
    data.fill((index * 31 + term) & 0xff);
    data[0] = index & 0xff;
    data[1] = term & 0xff;
    result.push({ term, index, type: index % 7 === 0 ? 'conf-change' : 'normal', data });
  }
  return result;
}

export const hardState = (term: number, vote: string, commit: number): HardState => ({
  term,
  vote: vote as HardState['vote'],
  commit,
});

/** A compact, comparable view of a log: "index/term" per entry. */
export const shape = (log: readonly Entry[]): string[] => log.map((e) => `${e.index}/${e.term}`);
