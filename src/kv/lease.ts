/**
 * Leases, in two halves.
 *
 * `LeaseTable` is replicated: part of the state machine, changed only by applied entries
 * (grant, revoke, attach and detach through puts and deletes, checkpoints of the remaining
 * TTL). Every replica holds the same table.
 *
 * `LeaseClock` is local to the leader: it alone decides expiry, on its own monotonic clock,
 * and proposes revocations through the log. Keep-alives refresh it without a log entry (as
 * in etcd); the remaining TTLs are checkpointed through the log, batched per tick, so that a
 * new leader starts each lease from its last checkpointed remainder — it
 * neither revokes every lease at once after a stall nor hands every lease a full TTL again
 * (the lesson of etcd issue #15247). A leader that notices its own stall (ticks far apart:
 * a pause, a blocked event loop) pushes every deadline back by the stall, because no client
 * could have reached it to keep its lease alive meanwhile.
 *
 * A keep-alive is acknowledged only once the checkpoint carrying its refreshed deadline has
 * applied (the caller waits for it): so even across a failover, a lease lives at least its
 * TTL after the client sent its last acknowledged keep-alive. Without that wait, a leader
 * change right after a keep-alive would start the lease from an older, smaller remainder.
 *
 * Assumption, written where it is used: a lease expires no earlier than `ttl` after its last
 * keep-alive on the leader's clock; clients see it live at least `ttl × (1 − drift)` of real
 * time for a clock drift below `drift` (the simulator's drift bound is 1e-3).
 */
import { assert } from '../core/assert.js';
import { KvError } from './errors.js';
import { kvLimits } from './types.js';

export interface LeaseState {
  id: number;
  /** Granted TTL, seconds. */
  ttl: number;
  /** Attached keys, as latin1 binary strings. */
  keys: Set<string>;
  /** Remaining TTL at the last checkpoint, ms; undefined before the first. */
  remainingMs: number | undefined;
}

export class LeaseTable {
  readonly leases = new Map<number, LeaseState>();

  constructor(readonly minTtlSeconds: number) {}

  exists(id: number): boolean {
    return this.leases.has(id);
  }

  get(id: number): LeaseState | undefined {
    return this.leases.get(id);
  }

  /** Returns the granted TTL (raised to the minimum). */
  grant(id: number, ttl: number): number {
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new KvError('invalid-argument', `lease id ${id}`);
    if (ttl > kvLimits.maxLeaseTtlSeconds) throw new KvError('lease-ttl-too-large');
    if (this.leases.has(id)) throw new KvError('lease-exists');
    const granted = Math.max(this.minTtlSeconds, Math.ceil(ttl));
    this.leases.set(id, { id, ttl: granted, keys: new Set(), remainingMs: undefined });
    return granted;
  }

  /** Removes the lease; returns its keys (the caller deletes them in the same revision). */
  revoke(id: number): string[] {
    const lease = this.leases.get(id);
    if (lease === undefined) throw new KvError('lease-not-found');
    this.leases.delete(id);
    return [...lease.keys].sort();
  }

  attach(id: number, key: string): void {
    if (id === 0) return;
    const lease = this.leases.get(id);
    assert(lease !== undefined, 'attach to a lease checked to exist');
    lease.keys.add(key);
  }

  detach(id: number, key: string): void {
    if (id !== 0) this.leases.get(id)?.keys.delete(key);
  }

  checkpoint(id: number, remainingMs: number): void {
    const lease = this.leases.get(id);
    if (lease !== undefined) lease.remainingMs = remainingMs;
  }

  ids(): number[] {
    return [...this.leases.keys()].sort((a, b) => a - b);
  }

  snapshot(): [number, number, string[], number | null][] {
    return this.ids().map((id) => {
      const l = this.leases.get(id)!;
      return [id, l.ttl, [...l.keys].sort(), l.remainingMs ?? null];
    });
  }

  restore(data: [number, number, string[], number | null][]): void {
    this.leases.clear();
    for (const [id, ttl, keys, remaining] of data) {
      this.leases.set(id, { id, ttl, keys: new Set(keys), remainingMs: remaining ?? undefined });
    }
  }
}

export interface LeaseClockOptions {
  /** Tick gaps longer than this are a stall: deadlines move back by the gap. */
  stallMs: number;
  /** At most this many revocations proposed per tick (etcd limits the rate too). */
  revokesPerTick: number;
  /** A revocation proposed and not applied after this long is proposed again. */
  revokeRetryMs: number;
  /** Checkpoint a lease whose remaining TTL moved this much since its last checkpoint. */
  checkpointDriftMs: number;
  /** Planted bug: promotion reads a checkpoint as the time elapsed instead of remaining. */
  bugCheckpointElapsed?: boolean;
}

/** The leader's view of lease deadlines, in its monotonic milliseconds. */
export class LeaseClock {
  private readonly deadlines = new Map<number, number>();
  private readonly revoking = new Map<number, number>();
  private readonly checkpointed = new Map<number, number>();
  /** Leases kept alive since the last tick: their new deadline must be checkpointed. */
  private readonly refreshed = new Set<number>();
  private lastTickMs: number | undefined;

  constructor(
    private readonly table: LeaseTable,
    private readonly options: LeaseClockOptions,
  ) {}

  /** Takes over every lease as the new leader, from its checkpointed remainder. */
  promote(nowMs: number): void {
    this.demote();
    this.lastTickMs = nowMs;
    for (const lease of this.table.leases.values()) {
      let remaining = lease.remainingMs ?? lease.ttl * 1000;
      if (this.options.bugCheckpointElapsed === true) remaining = lease.ttl * 1000 - remaining;
      this.deadlines.set(lease.id, nowMs + remaining);
      this.checkpointed.set(lease.id, remaining);
    }
  }

  demote(): void {
    this.deadlines.clear();
    this.revoking.clear();
    this.checkpointed.clear();
    this.refreshed.clear();
    this.lastTickMs = undefined;
  }

  get leading(): boolean {
    return this.lastTickMs !== undefined;
  }

  /** A grant applied while leading: the lease starts its full TTL now. */
  granted(id: number, nowMs: number): void {
    const lease = this.table.get(id);
    if (!this.leading || lease === undefined) return;
    this.deadlines.set(id, nowMs + lease.ttl * 1000);
  }

  /** A revocation applied. */
  revoked(id: number): void {
    this.refreshed.delete(id);
    this.deadlines.delete(id);
    this.revoking.delete(id);
    this.checkpointed.delete(id);
  }

  /**
   * A keep-alive: returns the TTL in seconds. The next tick's checkpoints include this lease;
   * acknowledge the client once that checkpoint has applied.
   */
  keepAlive(id: number, nowMs: number): number {
    const lease = this.table.get(id);
    if (lease === undefined || this.revoking.has(id)) throw new KvError('lease-not-found');
    assert(this.leading, 'keep-alive served by the leader only');
    this.deadlines.set(id, nowMs + lease.ttl * 1000);
    this.refreshed.add(id);
    return lease.ttl;
  }

  /** Whether this leader proposed the lease's revocation (expired, not yet applied). */
  isRevoking(id: number): boolean {
    return this.revoking.has(id);
  }

  /** Remaining ms on the leader's clock (undefined when not leading or unknown). */
  remainingMs(id: number, nowMs: number): number | undefined {
    const deadline = this.deadlines.get(id);
    return deadline === undefined ? undefined : Math.max(0, deadline - nowMs);
  }

  /**
   * Advances to `nowMs`: returns the leases to revoke now (bounded per tick) and the
   * remaining TTLs worth checkpointing.
   */
  tick(nowMs: number): { revoke: number[]; checkpoint: [number, number][] } {
    if (this.lastTickMs === undefined) return { revoke: [], checkpoint: [] };
    const gap = nowMs - this.lastTickMs;
    this.lastTickMs = nowMs;
    if (gap > this.options.stallMs) {
      for (const [id, deadline] of this.deadlines) this.deadlines.set(id, deadline + gap);
    }
    const revoke: number[] = [];
    const checkpoint: [number, number][] = [];
    const ids = [...this.deadlines.keys()].sort((a, b) => a - b);
    for (const id of ids) {
      const remaining = this.deadlines.get(id)! - nowMs;
      if (remaining <= 0) {
        const since = this.revoking.get(id);
        if (since !== undefined && nowMs - since < this.options.revokeRetryMs) continue;
        if (revoke.length >= this.options.revokesPerTick) continue;
        this.revoking.set(id, nowMs);
        revoke.push(id);
        continue;
      }
      const last = this.checkpointed.get(id);
      const due = last === undefined || last - remaining >= this.options.checkpointDriftMs;
      if (due || this.refreshed.has(id)) {
        this.checkpointed.set(id, remaining);
        checkpoint.push([id, remaining]);
      }
    }
    this.refreshed.clear();
    return { revoke, checkpoint };
  }
}
