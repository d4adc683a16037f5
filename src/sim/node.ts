/**
 * One simulated process: its clock, timers, disk and network endpoint, its status (up,
 * paused, crashed) and its incarnation. Every callback into the node runs through `run`,
 * which drops callbacks of a dead incarnation, defers them while the node is paused, and
 * turns a FatalError into a crash, as a real process would exit.
 */
import { assert } from '../core/assert.js';
import { FatalError, describeError } from '../core/errors.js';
import type { NodeId, TimerId } from '../core/ids.js';
import type { Random } from '../core/prng.js';
import type { Clock, Env, LogFields, Logger, Network, Timers } from '../env/env.js';
import { SimDisk, SimDiskState } from './disk.js';
import type { SimNetwork } from './network.js';
import type { SimEvent } from './queue.js';
import type { World } from './world.js';

/** How long a supervisor waits before restarting a process that exited on a fatal error. */
const supervisorRestartMs = 500;

export type NodeStatus = 'up' | 'paused' | 'crashed';

/** A node's clocks: monotonic time runs at `rate` (1 + drift); wall time may also jump. */
export class SimClock implements Clock {
  private monoBase: number;
  private baseAt = 0;
  rate = 1;
  wallOffsetMs: number;

  constructor(
    private readonly world: World,
    monoOriginMs: number,
    wallOriginMs: number,
  ) {
    this.monoBase = monoOriginMs;
    this.wallOffsetMs = wallOriginMs - monoOriginMs;
  }

  monotonicMs(): number {
    return this.monoBase + (this.world.now - this.baseAt) * this.rate;
  }

  wallMs(): number {
    return this.monotonicMs() + this.wallOffsetMs;
  }

  /** Changes the drift from now on, keeping monotonic time continuous. */
  setDriftPpm(ppm: number): void {
    this.monoBase = this.monotonicMs();
    this.baseAt = this.world.now;
    this.rate = 1 + ppm / 1e6;
  }

  jumpWall(deltaMs: number): void {
    this.wallOffsetMs += deltaMs;
  }
}

export interface NodeHooks<App> {
  /** Builds the application on a fresh Env (boot and every restart). */
  create(env: Env, node: SimNode<App>): App;
}

export class SimNode<App> {
  status: NodeStatus = 'up';
  incarnation = 0;
  app: App | undefined;
  readonly disk: SimDiskState;
  readonly clock: SimClock;
  crashes = 0;
  private handler: ((from: NodeId, payload: Uint8Array) => void) | undefined;
  private deferred: (() => void)[] = [];
  private timers = new Map<number, SimEvent>();
  private nextTimer = 1;

  constructor(
    readonly index: number,
    readonly id: NodeId,
    private readonly world: World,
    private readonly network: SimNetwork,
    private readonly ids: readonly NodeId[],
    private readonly indexOf: ReadonlyMap<NodeId, number>,
    private readonly random: Random,
    private readonly hooks: NodeHooks<App>,
  ) {
    this.disk = new SimDiskState(random.fork('disk'));
    this.clock = new SimClock(
      world,
      random.between(0, 1_000_000),
      1_790_000_000_000 + random.between(0, 1000),
    );
  }

  /** Starts (or restarts) the process from its durable disk. */
  boot(): void {
    assert(this.status !== 'paused', 'boot of a paused node');
    this.status = 'up';
    this.incarnation++;
    this.world.trace.record(this.world.now, 'boot', this.index, this.incarnation);
    const incarnation = this.incarnation;
    this.run(incarnation, () => {
      this.app = this.hooks.create(this.makeEnv(incarnation), this);
    });
  }

  crash(reason: string): void {
    if (this.status === 'crashed') return;
    this.status = 'crashed';
    this.crashes++;
    this.app = undefined;
    this.handler = undefined;
    this.deferred = [];
    for (const event of this.timers.values()) event.cancelled = true;
    this.timers.clear();
    const disk = this.disk.crash();
    this.world.trace.record(this.world.now, 'crash', this.index, this.crashes, () => ({
      reason,
      disk,
    }));
  }

  pause(): void {
    if (this.status !== 'up') return;
    this.status = 'paused';
    this.world.trace.record(this.world.now, 'pause', this.index, 0);
  }

  resume(): void {
    if (this.status !== 'paused') return;
    this.status = 'up';
    this.world.trace.record(this.world.now, 'resume', this.index, this.deferred.length);
    const held = this.deferred;
    this.deferred = [];
    const incarnation = this.incarnation;
    for (const fn of held) this.world.after(0, () => this.run(incarnation, fn));
  }

  /** Runs `fn` inside this node if `incarnation` is still alive; defers it while paused. */
  run(incarnation: number, fn: () => void): boolean {
    if (incarnation !== this.incarnation || this.status === 'crashed') return false;
    if (this.status === 'paused') {
      this.deferred.push(fn);
      return true;
    }
    try {
      fn();
    } catch (error) {
      if (error instanceof FatalError) {
        // A real process exits and its supervisor (systemd, Kubernetes) starts it again.
        this.crash(`fatal: ${describeError(error)}`);
        const crashes = this.crashes;
        this.world.after(supervisorRestartMs, () => {
          if (this.status === 'crashed' && this.crashes === crashes) this.boot();
        });
        return true;
      }
      throw new Error(
        `node ${this.id} threw at ${this.world.now.toFixed(3)}ms: ${describeError(error)}`,
        {
          cause: error,
        },
      );
    }
    return true;
  }

  /** Delivers a network message; false when the node is down. */
  receive(from: number, payload: Uint8Array): boolean {
    const handler = this.handler;
    if (handler === undefined || this.status === 'crashed') return false;
    const fromId = this.ids[from]!;
    return this.run(this.incarnation, () => this.handler?.(fromId, payload));
  }

  private makeEnv(incarnation: number): Env {
    const world = this.world;
    const schedule = (delayMs: number, fn: () => void): void => {
      world.after(delayMs, () => this.run(incarnation, fn));
    };
    const timers: Timers = {
      set: (delayMs, fn) => {
        const id = this.nextTimer++;
        const event = world.after(Math.max(0, delayMs) / this.clock.rate, () => {
          this.timers.delete(id);
          world.trace.record(world.now, 'timer', this.index, id);
          this.run(incarnation, fn);
        });
        this.timers.set(id, event);
        return id as TimerId;
      },
      cancel: (id) => {
        const event = this.timers.get(id);
        if (event !== undefined) {
          event.cancelled = true;
          this.timers.delete(id);
        }
      },
    };
    const net: Network = {
      self: this.id,
      send: (to, payload) => {
        if (this.incarnation !== incarnation || this.status !== 'up') return false;
        const target = this.indexOf.get(to);
        if (target === undefined) return false;
        this.network.send(this.index, target, payload);
        return true;
      },
      onMessage: (handler) => {
        if (this.incarnation === incarnation) this.handler = handler;
      },
      peers: () => this.ids.filter((id) => id !== this.id),
      close: () => {
        if (this.incarnation === incarnation) this.handler = undefined;
      },
    };
    return {
      clock: this.clock,
      timers,
      random: this.random.fork(`life-${incarnation}`),
      net,
      disk: new SimDisk(this.disk, schedule),
      log: new SimLogger(world, this.index, {}),
    };
  }
}

/** Log lines go to the trace sink (when one is set) with virtual time; they do not change the hash. */
class SimLogger implements Logger {
  constructor(
    private readonly world: World,
    private readonly node: number,
    private readonly fields: LogFields,
  ) {}
  private write(level: string, message: string, fields?: LogFields): void {
    if (!this.world.trace.enabled) return;
    this.world.trace.log(this.world.now, this.node, level, message, { ...this.fields, ...fields });
  }
  debug(message: string, fields?: LogFields): void {
    this.write('debug', message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.write('info', message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.write('warn', message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.write('error', message, fields);
  }
  child(fields: LogFields): Logger {
    return new SimLogger(this.world, this.node, { ...this.fields, ...fields });
  }
}
