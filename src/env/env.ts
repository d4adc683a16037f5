/**
 * The Env contract: the only door to time, randomness, network and disk. Protocol code
 * receives an Env and touches nothing else, so the simulator can swap every door for a
 * deterministic fake and replay a whole cluster from one seed.
 *
 * Everything asynchronous completes through a callback, never a Promise: the simulator runs
 * callbacks as events in virtual time, in a fixed order, so a run replays exactly.
 */
import type { DiskError } from '../core/errors.js';
import type { NodeId, TimerId } from '../core/ids.js';
import type { Random } from '../core/prng.js';

export type { Random } from '../core/prng.js';

export interface Clock {
  /** Milliseconds since an arbitrary origin; never goes back. May drift in simulation. */
  monotonicMs(): number;
  /** Milliseconds since the Unix epoch; may jump (NTP, skew) and must not order events. */
  wallMs(): number;
}

export interface Timers {
  /** Calls `fn` once after at least `delayMs` of this node's monotonic time. */
  set(delayMs: number, fn: () => void): TimerId;
  /** Cancels a timer; cancelling a fired or cancelled timer does nothing. */
  cancel(id: TimerId): void;
}

/**
 * A message network between nodes. A message may be lost, delayed, reordered or duplicated;
 * protocols must be correct anyway. Sends never block: a full per-peer queue drops the
 * message and counts it.
 */
export interface Network {
  readonly self: NodeId;
  /** Queues `payload` for `to`. Returns false when it was dropped at once (queue full, closed). */
  send(to: NodeId, payload: Uint8Array): boolean;
  /** Sets the handler for every message that arrives for this node (one handler). */
  onMessage(handler: (from: NodeId, payload: Uint8Array) => void): void;
  /** The peers this node can address. */
  peers(): readonly NodeId[];
  /** Stops sending and receiving; queued messages are dropped. */
  close(): void;
  /**
   * Optional: hands what `send` queued so far to the network now rather than once the
   * current callback returns (a leader's appends, before it does its own fsync's work).
   */
  flush?(): void;
}

export type Done = (error: DiskError | undefined) => void;
export type DoneWith<T> = (error: DiskError | undefined, value: T | undefined) => void;

/** An open file. Bytes are durable only after `sync` (and a `syncDir` of its directory after create). */
export interface DiskFile {
  readonly path: string;
  /** Current size in bytes, including bytes not yet durable. */
  size(): number;
  /** Writes at the end of the file. */
  append(data: Uint8Array, done: Done): void;
  /** Writes at `offset` (within or at the end of the file). */
  write(offset: number, data: Uint8Array, done: Done): void;
  read(offset: number, length: number, done: DoneWith<Uint8Array>): void;
  /** Cuts the file to `size` bytes. */
  truncate(size: number, done: Done): void;
  /** Makes every write so far durable (fdatasync semantics plus size). */
  sync(done: Done): void;
  close(done: Done): void;
}

/** A POSIX-like disk rooted at one directory per node; paths are relative, with '/'. */
export interface Disk {
  /** Opens a file for reading and writing, creating it (and not its directory) if missing. */
  open(path: string, done: DoneWith<DiskFile>): void;
  readFile(path: string, done: DoneWith<Uint8Array>): void;
  list(dir: string, done: DoneWith<string[]>): void;
  mkdir(dir: string, done: Done): void;
  rename(from: string, to: string, done: Done): void;
  remove(path: string, done: Done): void;
  /** Makes creates, renames and removes in `dir` durable. */
  syncDir(dir: string, done: Done): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface Env {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  readonly net: Network;
  readonly disk: Disk;
  readonly log: Logger;
}

/** A logger that drops everything (tests and benchmarks). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
